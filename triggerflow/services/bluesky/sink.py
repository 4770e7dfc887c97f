"""The Bluesky sink: ``bluesky(items, limit="10/hour")`` posts each item once.

Exactly once without an idempotency key: a post is a record of the account's repository
(``com.atproto.repo.putRecord``), and its record key is derived from the delivery, so a
repeat names the same record. ``swapRecord: null`` asks the PDS to write only if there
is no such record: a repeat is refused (400 ``InvalidSwap``) and counts as sent, and a
post is never edited. After an attempt that got no answer the record is looked up
first (``getRecord``), for a PDS that does not read a null swap. (``createRecord`` picks
a new key each time: one retried after a lost answer would post twice.)

The record key is a TID (the ``tid`` format of ``app.bsky.feed.post``): the item's
publication time in microseconds and a 10-bit clock id, the sub-second part and the
clock id taken from the delivery's hash.

Text: at most 300 graphemes and 3000 UTF-8 bytes (the post lexicon), cut at a word;
links are shown short (``example.org/a-long-pa...``, as Bluesky's app does) with a link
facet to the whole URL, ``@handle`` mentions (resolved to DIDs) and ``#tags`` become
facets, all by UTF-8 byte offsets; the item's link also becomes a link card.
"""

from __future__ import annotations

import re
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any
from urllib.parse import urlsplit

from ..._format import Format, render
from ..._text import fit, grapheme_count
from ...limits import Limit
from ...types import Item, SinkReport, plain_text
from .._client import ServiceClient
from .._sink import Send, ServicePoster, deliver
from .account import xrpc_error

__all__ = ["bluesky", "fit_post", "record_key"]

POST = "app.bsky.feed.post"
MAX_GRAPHEMES, MAX_BYTES = 300, 3000  # app.bsky.feed.post: text
_URL = re.compile(r"https?://[^\s<>\"]+[^\s<>\".,;:!?)\]'’”]")
_LABEL = r"[a-zA-Z0-9](?:[a-zA-Z0-9-]*[a-zA-Z0-9])?"  # one part of a domain name
_MENTION = re.compile(rf"(?<![\w@/.])@({_LABEL}(?:\.{_LABEL})+)")
_TAG = re.compile(r"(?<![\w#&/])#(\w*[^\W\d]\w*)")  # a tag is not only digits (#1)
_FACET = "app.bsky.richtext.facet"
_S32 = "234567abcdefghijklmnopqrstuvwxyz"  # base32-sortable, the TID alphabet


def bluesky(
    items: Iterable[Item],
    *,
    account: str = "default",
    format: Format | None = None,  # noqa: A002 - the word users expect
    langs: Sequence[str] = (),
    card: bool = True,
    first_run: int | None = None,
    limit: str | Limit | None = None,
) -> SinkReport:
    """Post items to a connected Bluesky account.

    Args:
        items: what to post (only items not yet posted by this trigger go out).
        account: the account's name (``triggerflow connect bluesky --account NAME``).
        format: ``callable(item) -> str`` or a template like ``"{title} {link}"``;
            default: the title, then the link on its own line.
        langs: the posts' languages (at most 3), e.g. ``["en"]``: Bluesky's feeds filter by them.
        card: show the item's link as a card (title and summary) under the post.
        first_run: how many of the newest items the first run posts (default 5).
        limit: a publication limit, e.g. ``"10/hour"``; the rest waits for later runs.

    Returns:
        What was posted, queued or failed (in a preview: what would be posted).
    """
    return deliver(
        _Post(account, format, tuple(langs), card), items, first_run=first_run, limit=limit
    )


def _post_count(text: str) -> int:
    """One number for both limits: 300 graphemes and 3000 bytes (a tenth of a grapheme each)."""
    return max(grapheme_count(text), -(-len(text.encode()) // (MAX_BYTES // MAX_GRAPHEMES)))


def short_url(url: str) -> str:
    """A URL as Bluesky's app shows it: no scheme, a long path cut at 13 characters."""
    parts = urlsplit(url)
    path = (parts.path if parts.path != "/" else "") + (f"?{parts.query}" if parts.query else "")
    path += f"#{parts.fragment}" if parts.fragment else ""
    return parts.netloc + (path[:13] + "..." if len(path) > 15 else path)


def fit_post(text: str, link: str = "") -> tuple[str, list[tuple[str, str]]]:
    """``text`` with its URLs shown short, cut to a post's length keeping ``link``; and
    the (shown, URL) pairs, in order, for the link facets."""
    links: list[tuple[str, str]] = []

    def shorten(m: re.Match[str]) -> str:
        links.append((short_url(m.group(0)), m.group(0)))
        return links[-1][0]

    shown = _URL.sub(shorten, text)
    keep = short_url(link) if link and link in text else ""
    return fit(shown, MAX_GRAPHEMES, _post_count, keep=keep), links


def facets(text: str, links: list[tuple[str, str]], dids: dict[str, str]) -> list[dict[str, Any]]:
    """The facets of ``text``: links (shown text -> URL), mentions of handles in ``dids``,
    tags; each by its UTF-8 byte range."""
    found: list[tuple[int, int, dict[str, Any]]] = []
    start = 0
    for shown, url in links:
        at = text.find(shown, start)
        if at < 0:
            continue  # cut away with the rest of the text
        found.append((at, at + len(shown), {"$type": f"{_FACET}#link", "uri": url}))
        start = at + len(shown)

    def free(a: int, b: int) -> bool:
        return all(b <= s or a >= e for s, e, _ in found)

    for m in _MENTION.finditer(text):
        did = dids.get(m.group(1).lower())
        if did and free(m.start(), m.end()):
            found.append((m.start(), m.end(), {"$type": f"{_FACET}#mention", "did": did}))
    for m in _TAG.finditer(text):
        if free(m.start(), m.end()) and grapheme_count(m.group(1)) <= 64:
            found.append((m.start(), m.end(), {"$type": f"{_FACET}#tag", "tag": m.group(1)}))

    def offset(i: int) -> int:
        return len(text[:i].encode())

    return [
        {"index": {"byteStart": offset(a), "byteEnd": offset(b)}, "features": [feature]}
        for a, b, feature in sorted(found, key=lambda f: f[0])
    ]


def mentions(text: str) -> list[str]:
    """The handles ``text`` mentions (lower case, in order, once each)."""
    return list(dict.fromkeys(m.group(1).lower() for m in _MENTION.finditer(text)))


def record_key(item: Item, delivery: str) -> str:
    """The post's record key: a TID of the item's time, the rest from the delivery's hash."""
    bits = int(delivery, 16)  # the delivery id: 128 bits of a hash
    seconds = int(item.published.timestamp()) if item.published else 0
    if not 946_684_800 <= seconds <= 4_102_444_800:  # 2000..2100, else a time from the hash
        seconds = 1_700_000_000 + (bits >> 40) % 10**8
    micros = seconds * 1_000_000 + bits % 1_000_000
    value = (micros << 10) | ((bits >> 20) & 0x3FF)
    return "".join(_S32[(value >> (5 * i)) & 31] for i in reversed(range(13)))


@dataclass(frozen=True)
class _Post(ServicePoster):
    account: str
    format: Format | None
    langs: tuple[str, ...]
    card: bool
    service: str = "bluesky"

    @property
    def target(self) -> str:
        return f"account {self.account}"

    def problem(self) -> str | None:
        if len(self.langs) > 3:
            return f"bluesky(langs=...): at most 3 languages, not {len(self.langs)}"
        return None

    def preview(self, item: Item) -> str:
        return fit_post(render(item, self.format), item.link)[0]  # what record() posts

    def record(self, item: Item, rendered: str, dids: dict[str, str]) -> dict[str, Any]:
        text, links = fit_post(rendered, item.link)
        record: dict[str, Any] = {
            "$type": POST,
            "text": text,
            "createdAt": datetime.now(UTC).strftime("%Y-%m-%dT%H:%M:%S.%f")[:-3] + "Z",
        }
        found = facets(text, links, dids)
        if found:
            record["facets"] = found
        if self.langs:
            record["langs"] = list(self.langs)
        if self.card and item.link.startswith(("http://", "https://")):
            record["embed"] = {
                "$type": "app.bsky.embed.external",
                "external": {
                    "uri": item.link,
                    "title": item.title[:300],
                    "description": plain_text(item.summary or item.content)[:1000],
                },
            }
        return record

    def start(self, client: ServiceClient) -> Send:
        did = str(getattr(client.block, "did", ""))
        known: dict[str, str] = {}  # handle -> DID, or "" for one that does not resolve

        def resolve(handles: list[str]) -> dict[str, str]:
            for handle in handles:
                if handle not in known:
                    r = client.get(
                        "/xrpc/com.atproto.identity.resolveHandle", params={"handle": handle},
                        accept=(400,), what=f"the handle @{handle}",
                    )  # fmt: skip
                    known[handle] = str(r.json().get("did") or "") if r.status_code == 200 else ""
            return known

        def send(item: Item, delivery: str, retried: bool) -> None:
            key = {"repo": did, "collection": POST, "rkey": record_key(item, delivery)}
            what = f"the post for {item.title or item.link or item.id!r}"
            if retried:  # the last attempt got no answer: it may have posted
                r = client.get("/xrpc/com.atproto.repo.getRecord", params=key, accept=(400,),
                               what=what)  # fmt: skip
                if r.status_code == 200:
                    return
                if xrpc_error(r) != "RecordNotFound":
                    raise client.error(r, what)
            rendered = render(item, self.format)
            record = self.record(item, rendered, resolve(mentions(rendered)))
            r = client.post(
                "/xrpc/com.atproto.repo.putRecord",
                json={**key, "record": record, "swapRecord": None},
                accept=(400,), what=what,
            )  # fmt: skip
            if r.status_code == 400 and xrpc_error(r) != "InvalidSwap":  # InvalidSwap: posted
                raise client.error(r, what)

        return send
