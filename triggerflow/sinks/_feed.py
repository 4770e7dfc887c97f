"""The feed sink: ``feed(items, name="news")`` collects items into a generated feed.

An item "sent" to a feed is recorded in the delivery ledger (sink ``feed``, target
the feed's name) like any other delivery, so a feed never lists an item twice and
several triggers can fill one feed. The XML is generated on demand by feedgen from
the newest entries (see :mod:`triggerflow.feeds`).
"""

from __future__ import annotations

import re
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from typing import ClassVar

from .._outbox import Attempt, Progress, keys_of
from .._steps import ALL, run_sink
from ..exceptions import ConfigurationError
from ..types import Item, ItemKey, SinkReport

__all__ = ["feed"]

_NAME = re.compile(r"^[A-Za-z0-9][A-Za-z0-9_.-]{0,63}$")


def feed(items: Iterable[Item], name: str) -> SinkReport:
    """Add items to the generated feed ``name`` (Atom and RSS 2.0).

    Args:
        items: what to publish; items already in the feed are not added again.
        name: the feed's name: letters, digits, ``-``, ``_``, ``.`` (it becomes the
            file name, e.g. ``triggerflow feeds export news``).

    Returns:
        How many items were added (in a preview: which would be).

    Raises:
        ConfigurationError: called outside a trigger, or the name is not usable.
    """
    if not _NAME.match(name):
        raise ConfigurationError(
            f"feed(name={name!r}): use letters, digits, '-', '_' or '.' (up to 64 characters)"
        )
    return run_sink(_FeedSender(name), items, first_run=ALL)


@dataclass(frozen=True)
class _FeedSender:
    """Adding to a feed is recording it: every owed item is "sent" at once."""

    target: str
    sink: str = "feed"
    keys_only: ClassVar[bool] = True  # the outbox reads no items for it

    def problem(self) -> str | None:
        return None

    def preview(self, item: Item) -> str:
        return item.display_title  # as the feed titles it

    def send(
        self, items: Sequence[Item], attempts: Mapping[ItemKey, Attempt], progress: Progress
    ) -> None:
        progress.sent(keys_of(items))  # keys only: nothing is read from the store
