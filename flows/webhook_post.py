"""Example: a sink of your own. Each new item is POSTed as JSON to a web hook.

It uses only public names. The sink is a small `Poster` that talks to its service
and says per item what happened. `deliver()` runs it through triggerflow's outbox, which
adds the rest: the ledger (nothing sent twice), the first-run cut, publication limits,
retries, `preview` and `triggerflow status`.

Set WEBHOOK_POST_URL to the address that takes the POSTs (an incoming web hook of a
chat, ntfy, Home Assistant, a script of yours). The address often holds a token, so the
target shown in `status` and logs is the host name, or the `name=` you give.
"""

from __future__ import annotations

import os
from collections.abc import Callable, Iterable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from urllib.parse import urlsplit

import httpx

from triggerflow import Item, ItemRejected, SinkReport, SinkUnavailable, every, trigger
from triggerflow.sinks import Attempt, deliver
from triggerflow.sources import rss


@dataclass(frozen=True)
class WebhookPost:
    """POST each item as JSON; the delivery's id goes along as ``Idempotency-Key``."""

    url: str = field(repr=False)  # it often holds a token
    name: str | None = None
    timeout: float = 10.0
    sink: str = "webhook"

    @property
    def target(self) -> str:
        return self.name or urlsplit(self.url).hostname or "(no address)"

    def problem(self) -> str | None:
        if not self.url:
            return "webhook_post(): no address: set WEBHOOK_POST_URL or pass url="
        if urlsplit(self.url).scheme not in ("http", "https"):
            return f"webhook_post(): {self.target}: the address must start with https://"
        return None

    def preview(self, item: Item) -> str:
        return f"POST {item.display_title}"

    @contextmanager
    def open(self) -> Iterator[Callable[[Item, Attempt], None]]:
        with httpx.Client(timeout=self.timeout) as client:

            def post(item: Item, attempt: Attempt) -> None:
                body = {
                    "title": item.display_title,
                    "link": item.link,
                    "summary": item.summary,
                    "published": item.published.isoformat() if item.published else None,
                    "source": item.source,
                }
                try:
                    r = client.post(self.url, json=body, headers={"Idempotency-Key": attempt.id})
                except httpx.TransportError as e:  # down, refused, no answer in time
                    raise SinkUnavailable(
                        f"webhook {self.target}: {type(e).__name__}: {e}"
                    ) from None  # the request (with the address) stays out of the message
                if r.status_code == 429 or r.status_code >= 500:
                    raise SinkUnavailable(f"webhook {self.target} answered {r.status_code}")
                if r.status_code >= 400:
                    raise ItemRejected(
                        f"webhook {self.target} refused it: {r.status_code} {r.text[:200]}"
                    )

            yield post


def webhook_post(
    items: Iterable[Item],
    *,
    url: str | None = None,
    name: str | None = None,
    first_run: int | None = None,
    limit: str | None = None,
) -> SinkReport:
    """POST each new item to ``url`` (default: ``WEBHOOK_POST_URL``)."""
    address = url if url is not None else os.environ.get("WEBHOOK_POST_URL", "")
    return deliver(WebhookPost(address, name), items, first_run=first_run, limit=limit)


@trigger(schedule=every("1h"))
def python_news_to_webhook():
    """New posts from the Python blog, POSTed to my web hook, at most 10 an hour."""
    webhook_post(rss("https://blog.python.org/feeds/posts/default"), limit="10/hour")
