"""X sources: a user's posts, the account's mentions, a recent search.

Each reads what is newer than the newest post it saw (``since_id``), newest first,
100 a page (``pagination_token`` from ``meta.next_token``); the first read takes the
newest 10 only: reading costs money too ($0.005 a post read, docs.x.com, read
2026-12-04), so a new source does not read a backlog it would skip anyway.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import datetime
from typing import Any
from urllib.parse import quote

from ...exceptions import ServiceNotFound
from ...types import Item, Items
from .._client import ServiceClient
from .._source import MAX_PAGES, read, title_of

__all__ = ["post_item", "x_mentions", "x_posts", "x_search"]

PAGE, FIRST_PAGE = 100, 10
FIELDS = {
    "tweet.fields": "created_at,author_id,entities",
    "expansions": "author_id",
    "user.fields": "username,name",
}


def x_posts(username: str | None = None, *, account: str = "default") -> Items:
    """New posts of ``username`` (default: the connected account's own)."""
    name = (username or "").lstrip("@")
    return read(_Timeline(account, f"posts of @{name}" if name else "posts", name, "tweets"))


def x_mentions(*, account: str = "default") -> Items:
    """New posts that mention the connected account."""
    return read(_Timeline(account, "mentions", "", "mentions"))


def x_search(query: str, *, account: str = "default") -> Items:
    """New posts of the last 7 days that match ``query`` (X's search operators:
    ``from:``, ``#tag``, ``-is:retweet``, ...)."""
    return read(_Timeline(account, f"search {query!r}", "", "search", query))


@dataclass(frozen=True)
class _Timeline:
    account: str
    name: str
    username: str  # "": the account's own
    kind: str  # "tweets", "mentions" or "search"
    query: str = ""
    service: str = field(default="x", init=False)

    @property
    def label(self) -> str:
        return f"x {self.name} ({self.account})"

    def key(self, client: ServiceClient) -> str:
        who = self.username.lower() or client.block.user or client.base
        if self.kind == "search":
            return f"x:search:{self.query}"
        return f"x:{who}:{self.kind}"

    def _path(self, client: ServiceClient) -> str:
        if self.kind == "search":
            return "/2/tweets/search/recent"
        user_id = str(getattr(client.block, "user_id", ""))
        if self.username:
            found = client.get(f"/2/users/by/username/{quote(self.username, safe='')}",
                               what=f"the user @{self.username}").json()  # fmt: skip
            user_id = str((found.get("data") or {}).get("id") or "")
            if not user_id:
                raise ServiceNotFound("x", f"X: no user @{self.username}", 404)
        return f"/2/users/{user_id}/{self.kind}"

    def fetch(self, client: ServiceClient, cursor: str | None) -> tuple[list[Item], str | None]:
        source = self.key(client)
        path = self._path(client)
        params: dict[str, Any] = {**FIELDS, "max_results": PAGE if cursor else FIRST_PAGE}
        if self.kind == "search":
            params["query"] = self.query
        if cursor:
            params["since_id"] = cursor
        items: list[Item] = []
        newest = cursor
        for _ in range(MAX_PAGES):
            body = client.get(path, params=params, what=f"the {self.name}").json()
            users = {u["id"]: u for u in (body.get("includes") or {}).get("users") or ()}
            items.extend(post_item(source, p, users) for p in body.get("data") or ())
            meta = body.get("meta") or {}
            if meta.get("newest_id") and (newest is None or int(meta["newest_id"]) > int(newest)):
                newest = str(meta["newest_id"])
            if cursor is None or not meta.get("next_token"):
                break
            params["pagination_token"] = meta["next_token"]
        items.sort(key=lambda i: int(i.id))  # oldest first
        return items, newest


def post_item(source: str, post: dict[str, Any], users: dict[str, Any]) -> Item:
    """An :class:`Item` of an X post."""
    text = str(post.get("text") or "")
    author = users.get(post.get("author_id")) or {}
    username = author.get("username") or ""
    created = post.get("created_at")
    tags = [h["tag"] for h in (post.get("entities") or {}).get("hashtags") or () if h.get("tag")]
    return Item(
        source=source,
        id=str(post["id"]),
        title=title_of(text),
        link=f"https://x.com/{username or 'i'}/status/{post['id']}",
        summary=text,
        content=text,
        author=f"@{username}" if username else "",
        published=datetime.fromisoformat(created.replace("Z", "+00:00")) if created else None,
        tags=tuple(tags),
        raw=post,
    )
