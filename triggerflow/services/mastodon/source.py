"""Mastodon sources: the home timeline, a hashtag, mentions, favourites.

Each reads only what is newer than last time (Mastodon API, methods/timelines,
notifications, favourites): timelines and mentions page forward with ``min_id`` from the
newest id seen; favourites are ordered by when they were favourited, which only the
``Link`` header's ids know (a status id does not page there), so their cursor is the
``min_id`` of the ``rel="prev"`` link. The first read takes the newest page.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import datetime
from html.parser import HTMLParser
from typing import Any
from urllib.parse import parse_qs, quote, urlsplit

import httpx

from ...types import Item, Items
from .._client import ServiceClient
from .._source import MAX_PAGES, read, title_of

__all__ = ["mastodon_favourites", "mastodon_hashtag", "mastodon_home", "mastodon_mentions"]

PAGE = 40  # the most the timelines and favourites give per request


def mastodon_home(account: str = "default") -> Items:
    """New statuses of the account's home timeline (who it follows).

    Example::

        xmpp(mastodon_home(), to="me@example.org")
    """
    return read(_Timeline(account, "home", "/api/v1/timelines/home"))


def mastodon_hashtag(tag: str, account: str = "default") -> Items:
    """New public statuses with ``#tag`` (on the account's instance)."""
    tag = tag.lstrip("#")
    return read(_Timeline(account, f"#{tag}", f"/api/v1/timelines/tag/{quote(tag, safe='')}"))


def mastodon_mentions(account: str = "default") -> Items:
    """New statuses that mention the account (its ``mention`` notifications)."""
    return read(_Timeline(account, "mentions", "/api/v1/notifications", notifications=True))


def mastodon_favourites(account: str = "default") -> Items:
    """Statuses the account favourited since last time, e.g. to save them to Wallabag."""
    return read(_Favourites(account))


@dataclass(frozen=True)
class _Timeline:
    account: str
    name: str
    path: str
    notifications: bool = False
    service: str = field(default="mastodon", init=False)

    @property
    def label(self) -> str:
        return f"mastodon {self.name} ({self.account})"

    def key(self, client: ServiceClient) -> str:
        return f"mastodon:{client.block.user or client.base}:{self.name}"

    def fetch(self, client: ServiceClient, cursor: str | None) -> tuple[list[Item], str | None]:
        params: dict[str, Any] = {"limit": PAGE}
        if self.notifications:
            params["types[]"] = "mention"
        source = self.key(client)
        items: list[Item] = []
        newest = int(cursor) if cursor and cursor.isdigit() else None
        for _ in range(MAX_PAGES):
            if newest is not None:
                params["min_id"] = str(newest)  # the page right after it, oldest first
            page = client.get(self.path, params=params, what=f"the {self.name} timeline").json()
            if not page:
                break
            for entry in page:
                status = entry.get("status") if self.notifications else entry
                if status:
                    items.append(status_item(source, status))
            top = max(int(e["id"]) for e in page)
            newest = top if newest is None else max(newest, top)
            if cursor is None or len(page) < PAGE:
                break  # first read: the newest page only; or nothing more after this one
        return items, str(newest) if newest is not None else None


@dataclass(frozen=True)
class _Favourites:
    account: str
    service: str = field(default="mastodon", init=False)

    @property
    def label(self) -> str:
        return f"mastodon favourites ({self.account})"

    def key(self, client: ServiceClient) -> str:
        return f"mastodon:{client.block.user or client.base}:favourites"

    def fetch(self, client: ServiceClient, cursor: str | None) -> tuple[list[Item], str | None]:
        source = self.key(client)
        items: list[Item] = []
        params: dict[str, Any] = {"limit": PAGE}
        if cursor:
            params["min_id"] = cursor
        for _ in range(MAX_PAGES):
            r = client.get("/api/v1/favourites", params=params, what="the favourites")
            page = r.json()
            if not page:
                break
            items.extend(status_item(source, s) for s in page)
            prev = _link_param(r, "prev", "min_id")
            if prev is None:
                break
            cursor = prev
            if "min_id" not in params or len(page) < PAGE:
                break
            params["min_id"] = prev
        return items, cursor


def _link_param(r: httpx.Response, rel: str, name: str) -> str | None:
    """A query parameter of the ``Link`` header's ``rel`` URL (httpx parses the header)."""
    link = r.links.get(rel)
    if not link or "url" not in link:
        return None
    values = parse_qs(urlsplit(link["url"]).query).get(name)
    return values[0] if values else None


def status_item(source: str, status: dict[str, Any]) -> Item:
    """An :class:`Item` of a Mastodon status (a boost: the boosted status, by its booster)."""
    shown = status.get("reblog") or status
    text = html_text(shown.get("content") or "")
    spoiler = shown.get("spoiler_text") or ""
    who = (shown.get("account") or {}).get("acct", "")
    return Item(
        source=source,
        id=str(status["id"]),
        title=title_of(spoiler or text),
        link=shown.get("url") or shown.get("uri") or "",
        summary=text,
        content=shown.get("content") or "",
        author=f"@{who}" if who else "",
        published=_time(shown.get("created_at")),
        tags=tuple(t["name"] for t in shown.get("tags") or () if t.get("name")),
        enclosures=tuple(m["url"] for m in shown.get("media_attachments") or () if m.get("url")),
        raw=status,
    )


def _time(value: str | None) -> datetime | None:
    try:
        return datetime.fromisoformat(value) if value else None
    except ValueError:
        return None


class _Text(HTMLParser):
    """Mastodon's status HTML (p, br, a, span) as plain text with line breaks."""

    def __init__(self) -> None:
        super().__init__(convert_charrefs=True)
        self.parts: list[str] = []

    def handle_starttag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        if tag == "br":
            self.parts.append("\n")

    def handle_endtag(self, tag: str) -> None:
        if tag == "p":
            self.parts.append("\n\n")

    def handle_data(self, data: str) -> None:
        self.parts.append(data)


def html_text(content: str) -> str:
    """The text of a status' HTML ``content``."""
    parser = _Text()
    parser.feed(content)
    parser.close()
    return "".join(parser.parts).strip()
