"""The Wallabag sink: ``wallabag(items, tags=["triggerflow"])`` saves each item's link.

``POST /api/entries.json`` with the URL; Wallabag fetches the page itself. A URL the
account already saved comes back as the existing entry: that is "sent", not a second
entry, which also makes a retried request harmless.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from dataclasses import dataclass

from ...exceptions import ServiceRejected
from ...limits import Limit
from ...types import Item, SinkReport
from .._client import ServiceClient
from .._sink import Send, ServicePoster, deliver

__all__ = ["wallabag"]


def wallabag(
    items: Iterable[Item],
    *,
    account: str = "default",
    tags: Sequence[str] = (),
    archive: bool = False,
    starred: bool = False,
    first_run: int | None = None,
    limit: str | Limit | None = None,
) -> SinkReport:
    """Save each item's link to a connected Wallabag account (read it later).

    Args:
        items: what to save (items without a link are reported as failed).
        account: the account's name (``triggerflow connect wallabag --account NAME``).
        tags: tags to put on every saved entry.
        archive: save them as already read.
        starred: star them.
        first_run: how many of the newest items the first run saves (default 5).
        limit: a publication limit, e.g. ``"20/day"``.

    Returns:
        What was saved, queued or failed (in a preview: what would be saved).
    """
    return deliver(
        _Save(account, tuple(tags), archive, starred), items, first_run=first_run, limit=limit
    )


@dataclass(frozen=True)
class _Save(ServicePoster):
    account: str
    tags: tuple[str, ...]
    archive: bool
    starred: bool
    service: str = "wallabag"

    @property
    def target(self) -> str:
        return f"account {self.account}"

    def problem(self) -> str | None:
        bad = [t for t in self.tags if "," in t]
        return f"wallabag(tags=...): a tag cannot contain a comma: {bad[0]!r}" if bad else None

    def preview(self, item: Item) -> str:
        return item.link or f"(no link: {item.title or item.id})"

    def start(self, client: ServiceClient) -> Send:
        def send(item: Item, delivery: str, retried: bool) -> None:
            if not item.link.startswith(("http://", "https://")):
                raise ServiceRejected("wallabag", f"{item.title or item.id!r} has no web link")
            data = {
                "url": item.link,
                # Wallabag reads any non-empty text, "false" too, as true: 1 or 0.
                "archive": "1" if self.archive else "0",
                "starred": "1" if self.starred else "0",
            }
            if self.tags:
                data["tags"] = ",".join(self.tags)
            client.post("/api/entries.json", data=data, what=f"saving {item.link}")

        return send
