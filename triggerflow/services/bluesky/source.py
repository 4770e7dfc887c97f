"""The Bluesky source: an author's new posts (``app.bsky.feed.getAuthorFeed``).

The feed comes newest first in pages (``cursor``, at most 100 a page); each entry is a
post, or a repost with ``reason`` (``app.bsky.feed.defs#reasonRepost``) saying when it
was reposted. The saved cursor is the newest entry's time: a later read pages back
until it reaches it (at most ``MAX_PAGES`` pages). The first read takes the newest page.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import datetime
from typing import Any

from ...types import Item, Items
from .._client import ServiceClient
from .._source import MAX_PAGES, read, title_of

__all__ = ["bluesky_posts", "post_item"]

PAGE = 100  # the most getAuthorFeed gives at once


def bluesky_posts(
    actor: str | None = None, *, account: str = "default", replies: bool = False,
    reposts: bool = False,
) -> Items:  # fmt: skip
    """New posts of ``actor`` (a handle like ``alice.bsky.social`` or a DID; default: the
    connected account itself).

    Args:
        actor: whose posts.
        account: the account that reads (``triggerflow connect bluesky --account NAME``).
        replies: include their replies to others.
        reposts: include what they reposted (as the original post).

    Example::

        xmpp(bluesky_posts("bsky.app"), to="me@example.org")
    """
    return read(_AuthorFeed(account, (actor or "").lstrip("@").lower(), replies, reposts))


@dataclass(frozen=True)
class _AuthorFeed:
    account: str
    actor: str  # "": the account itself
    replies: bool
    reposts: bool
    service: str = field(default="bluesky", init=False)

    @property
    def label(self) -> str:
        return f"bluesky posts of {self.actor or 'the account'} ({self.account})"

    def key(self, client: ServiceClient) -> str:
        kinds = "+replies" if self.replies else ""
        kinds += "+reposts" if self.reposts else ""
        return f"bluesky:{self.actor or getattr(client.block, 'did', '')}:posts{kinds}"

    def fetch(self, client: ServiceClient, cursor: str | None) -> tuple[list[Item], str | None]:
        actor = self.actor or str(getattr(client.block, "did", ""))
        source = self.key(client)
        seen = _time(cursor) if cursor else None
        params: dict[str, Any] = {
            "actor": actor, "limit": PAGE,
            "filter": "posts_with_replies" if self.replies else "posts_no_replies",
        }  # fmt: skip
        items: list[Item] = []
        newest = cursor
        for _ in range(MAX_PAGES):
            body = client.get(
                "/xrpc/app.bsky.feed.getAuthorFeed", params=params, what=f"the posts of {actor}"
            ).json()
            reached = False
            for entry in body.get("feed") or []:
                at = (entry.get("reason") or {}).get("indexedAt") or entry["post"]["indexedAt"]
                when = _time(at)
                if seen is not None and when is not None and when <= seen:
                    reached = True
                    break
                if newest is None or (when is not None and when > (_time(newest) or when)):
                    newest = at
                if entry.get("reason") and not self.reposts:
                    continue
                items.append(post_item(source, entry))
            if reached or seen is None or not body.get("cursor"):
                break
            params["cursor"] = body["cursor"]
        items.reverse()  # oldest first, as they were posted
        return items, newest


def post_item(source: str, entry: dict[str, Any]) -> Item:
    """An :class:`Item` of a feed entry (a repost: the reposted post)."""
    post = entry["post"]
    record = post.get("record") or {}
    text = str(record.get("text") or "")
    author = post.get("author") or {}
    handle = author.get("handle") or author.get("did", "")
    rkey = str(post["uri"]).rsplit("/", 1)[-1]
    tags = [
        f["tag"]
        for facet in record.get("facets") or ()
        for f in facet.get("features") or ()
        if f.get("$type") == "app.bsky.richtext.facet#tag" and f.get("tag")
    ]
    external = ((record.get("embed") or {}).get("external") or {}).get("uri")
    return Item(
        source=source,
        id=str(post["uri"]),
        title=title_of(text),
        link=f"https://bsky.app/profile/{handle}/post/{rkey}",
        summary=text,
        content=text,
        author=f"@{handle}" if handle else "",
        published=_time(record.get("createdAt") or post.get("indexedAt")),
        tags=tuple(dict.fromkeys([*tags, *(record.get("tags") or ())])),
        enclosures=(external,) if external else (),
        raw=entry,
    )


def _time(value: str | None) -> datetime | None:
    try:
        return datetime.fromisoformat(value.replace("Z", "+00:00")) if value else None
    except ValueError:
        return None
