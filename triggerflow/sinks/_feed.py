"""The feed sink: ``feed(items, name="news")`` collects items into a generated feed.

An item "sent" to a feed is recorded in the delivery ledger (sink ``feed``, target
the feed's name) like any other delivery, so a feed never lists an item twice and
several triggers can fill one feed. The XML is generated on demand by feedgen from
the newest entries (see :mod:`triggerflow.feeds`).
"""

from __future__ import annotations

import re
from collections.abc import Iterable

from prefect import task
from prefect.cache_policies import NO_CACHE

from .. import _runtime
from .._store import Store, now
from ..config import settings
from ..exceptions import ConfigurationError, TriggerflowError
from ..types import Item, Items, SinkReport

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
    ctx = _runtime.current()
    if ctx is None:
        raise ConfigurationError(
            "feed(): sinks publish only inside a trigger; call the trigger, or .preview() it"
        )
    if ctx.mode == "check":
        return SinkReport("feed", name)
    batch = items if isinstance(items, Items) else Items(items)
    args = (ctx.trigger, batch, name, ctx.mode != "run")
    try:
        report: SinkReport = _runtime.call_step(_feed_task, _publish, f"feed → {name}", *args)
    except TriggerflowError as e:  # the store stayed busy, also after retries
        report = SinkReport("feed", name, error=str(e))
    ctx.sinks.append(report)
    return report


def _publish(trigger: str, items: Items, name: str, dry_run: bool) -> SinkReport:
    s = settings()
    store = Store.default(s)
    route = (trigger, "feed", name)
    report = SinkReport("feed", name, dry_run=dry_run)
    with store.transaction(commit=not dry_run) as tx:
        t = now()
        tx.upsert_items(items, t, update=False)
        # A feed keeps what it is given: no first-run cut (readers see the newest N anyway).
        tx.enqueue(route, [i.key for i in items], len(items), t)
        claim = tx.claim(route, t)
        tx.record(route, t, sent=[i.key for i in claim.items])
    if dry_run:
        report.would_send = [i.display_title for i in claim.items]  # as the feed titles them
    else:
        report.sent = len(claim.items)
        _runtime.logger().info("feed → %s: %d new entries", name, report.sent)
    return report


_feed_task = task(_publish, name="feed", cache_policy=NO_CACHE, persist_result=False,
                  retry_condition_fn=_runtime.only_transient)  # fmt: skip
