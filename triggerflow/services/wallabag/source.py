"""The Wallabag source: entries saved (or starred) since last time.

``GET /api/entries.json`` pages through ``_embedded.items``; its ``since`` filters on
the update time, not on creation (tagging or starring an old entry brings it back), so
the cursor is our own (the newest ``updated_at`` seen, minus a second so that an entry
updated in the same second is not missed) and the store tells new entries from seen ones.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any

from ...types import Item, Items
from .._client import ServiceClient
from .._source import MAX_PAGES, read

__all__ = ["wallabag_entries"]

PER_PAGE = 50


def wallabag_entries(
    account: str = "default",
    *,
    starred: bool | None = None,
    archived: bool | None = None,
    tags: Sequence[str] = (),
) -> Items:
    """Entries of a connected Wallabag account, new or changed since the last run.

    Args:
        account: the account's name (``triggerflow connect wallabag --account NAME``).
        starred: only starred (True) or only not starred (False) entries.
        archived: only archived (True) or only unread (False) entries.
        tags: only entries with all of these tags.

    Example::

        feed(wallabag_entries(starred=True), name="my-stars")
    """
    return read(_Entries(account, starred, archived, tuple(tags)))


def _flag(value: bool | None) -> str | None:
    # Wallabag reads any non-empty text, "false" too, as true: send 1 or 0.
    return None if value is None else ("1" if value else "0")


@dataclass(frozen=True)
class _Entries:
    account: str
    starred: bool | None
    archived: bool | None
    tags: tuple[str, ...]
    service: str = field(default="wallabag", init=False)

    @property
    def what(self) -> str:
        parts = [n for n, v in (("starred", self.starred), ("archived", self.archived)) if v]
        parts += [f"not {n}" for n, v in (("starred", self.starred), ("archived", self.archived))
                  if v is False]  # fmt: skip
        parts += [f"#{t}" for t in self.tags]
        return " ".join(parts) or "entries"

    @property
    def label(self) -> str:
        return f"wallabag {self.what} ({self.account})"

    def key(self, client: ServiceClient) -> str:
        return f"wallabag:{client.block.user or client.base}:{self.what}"

    def fetch(self, client: ServiceClient, cursor: str | None) -> tuple[list[Item], str | None]:
        params: dict[str, Any] = {"sort": "updated", "order": "asc", "perPage": PER_PAGE}
        for name, value in (("starred", self.starred), ("archive", self.archived)):
            if value is not None:
                params[name] = _flag(value)
        if self.tags:
            params["tags"] = ",".join(self.tags)
        if cursor is None:  # first read: the newest page
            params.update(order="desc")
        else:
            params["since"] = cursor
        source = self.key(client)
        items: list[Item] = []
        newest = int(cursor) + 1 if cursor else 0
        for page in range(1, MAX_PAGES + 1):
            params["page"] = page
            body = client.get("/api/entries.json", params=params, what="the entries").json()
            entries = (body.get("_embedded") or {}).get("items") or []
            for entry in entries:
                items.append(_item(source, entry))
                updated = _time(entry.get("updated_at"))
                if updated is not None:
                    newest = max(newest, int(updated.timestamp()))
            if cursor is None or page >= int(body.get("pages") or 1):
                break
        return items, str(newest - 1) if newest else cursor


def _time(value: str | None) -> datetime | None:
    try:
        return datetime.fromisoformat(value) if value else None
    except ValueError:
        return None


def _item(source: str, entry: dict[str, Any]) -> Item:
    return Item(
        source=source,
        id=str(entry["id"]),
        title=entry.get("title") or "",
        link=entry.get("url") or "",
        content=entry.get("content") or "",
        author=entry.get("published_by")[0] if entry.get("published_by") else "",
        published=_time(entry.get("published_at")) or _time(entry.get("created_at")),
        tags=tuple(t["label"] for t in entry.get("tags") or () if t.get("label")),
        enclosures=(entry["preview_picture"],) if entry.get("preview_picture") else (),
        raw={k: v for k, v in entry.items() if k != "content"},
    )
