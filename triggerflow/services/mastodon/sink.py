"""The Mastodon sink: ``mastodon(items, visibility="unlisted", limit="5/hour")``.

Each item becomes one status (``POST /api/v1/statuses``) with the delivery's id as
``Idempotency-Key``: when an answer is lost and the step is retried, Mastodon returns
the status it already made instead of posting twice. The length limit is the
instance's (``GET /api/v2/instance``: ``configuration.statuses``, in grapheme clusters,
where every URL counts as ``characters_reserved_per_url``); longer text is cut at a word
(never inside a character) and the link is kept.
"""

from __future__ import annotations

import re
from collections.abc import Iterable
from dataclasses import dataclass

from ..._format import Format, render
from ..._text import fit, grapheme_count
from ...limits import Limit
from ...types import Item, SinkReport
from .._client import ServiceClient
from .._sink import Send, ServicePoster, deliver

__all__ = ["fit_status", "mastodon"]

VISIBILITIES = ("public", "unlisted", "private", "direct")
_URL = re.compile(r"https?://[^\s<>\"]+")


def mastodon(
    items: Iterable[Item],
    *,
    account: str = "default",
    visibility: str = "public",
    spoiler_text: str | None = None,
    format: Format | None = None,  # noqa: A002 - the word users expect
    first_run: int | None = None,
    limit: str | Limit | None = None,
) -> SinkReport:
    """Post items as statuses of a connected Mastodon account.

    Args:
        items: what to post (only items not yet posted by this trigger go out).
        account: the account's name (``triggerflow connect mastodon --account NAME``).
        visibility: ``public``, ``unlisted``, ``private`` (followers) or ``direct``.
        spoiler_text: a content warning shown before each status.
        format: ``callable(item) -> str`` or a template like ``"{title} {link}"``;
            default: the title, then the link on its own line.
        first_run: how many of the newest items the first run posts (default 5).
        limit: a publication limit, e.g. ``"5/hour"``; the rest waits for later runs.

    Returns:
        What was posted, queued or failed (in a preview: what would be posted).
    """
    return deliver(
        _Post(account, visibility, spoiler_text or "", format),
        items,
        first_run=first_run,
        limit=limit,
    )


def fit_status(text: str, link: str, max_chars: int, url_length: int = 23) -> str:
    """``text`` cut to ``max_chars`` as Mastodon counts them, keeping ``link`` whole.

    Mastodon counts grapheme clusters (``StatusLengthValidator``), every URL as
    ``url_length`` of them.
    """
    return fit(text, max_chars, lambda t: grapheme_count(_URL.sub("x" * url_length, t)), keep=link)


@dataclass(frozen=True)
class _Post(ServicePoster):
    account: str
    visibility: str
    spoiler_text: str
    format: Format | None
    service: str = "mastodon"

    @property
    def target(self) -> str:
        return f"account {self.account}"

    def problem(self) -> str | None:
        if self.visibility not in VISIBILITIES:
            return f"mastodon(visibility={self.visibility!r}): use one of {', '.join(VISIBILITIES)}"
        return None

    def preview(self, item: Item) -> str:
        return render(item, self.format)

    def start(self, client: ServiceClient) -> Send:
        config = client.get("/api/v2/instance", what="the instance").json().get("configuration", {})
        statuses = config.get("statuses") or {}
        max_chars = int(statuses.get("max_characters") or 500)
        url_length = int(statuses.get("characters_reserved_per_url") or 23)

        def send(item: Item, delivery: str, retried: bool) -> None:
            room = max_chars - len(self.spoiler_text)
            data = {
                "status": fit_status(render(item, self.format), item.link, room, url_length),
                "visibility": self.visibility,
            }
            if self.spoiler_text:
                data["spoiler_text"] = self.spoiler_text
            client.post(
                "/api/v1/statuses",
                data=data,
                headers={"Idempotency-Key": delivery},
                what=f"the status for {item.title or item.link or item.id!r}",
            )

        return send
