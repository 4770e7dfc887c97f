"""The Apprise sink: ``notify(items, account="phone")`` sends each item as a notification.

Any Apprise URL works (ntfy, Telegram, Matrix, Discord, Gotify, e-mail, Signal, ...):
the account keeps it encrypted (``triggerflow connect apprise``), or ``url=`` names one
that holds no secret. Each item goes through the outbox like every sink: the ledger
(nothing sent twice), the first-run cut, limits, retries, previews and status.

Apprise's notifiers take no idempotency key, so the one window the outbox cannot close
is a notification sent whose answer was lost: the retry sends it again (at-least-once
there, as the README says). The target in the ledger and logs is the account's name, or
a digest of ``url=``: never the URL.
"""

from __future__ import annotations

import hashlib
import re
from collections.abc import Callable, Iterable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field

from ... import _runtime
from ..._format import Format, render
from ..._outbox import Attempt
from ..._steps import run_sink
from ...exceptions import ConfigurationError, ItemRejected, ServiceAuthError, SinkUnavailable
from ...limits import Limit
from ...types import Item, SinkReport
from .._account import load_service_account
from .client import describe, notifier, scrub, what_apprise_said

__all__ = ["notify"]

TYPES = ("info", "success", "warning", "failure")
_STATUS = re.compile(r"\berror=(\d{3})\b")  # how Apprise's HTTP notifiers say the status


def notify(
    items: Iterable[Item],
    account: str = "default",
    *,
    url: str | None = None,
    title: Format | None = None,
    format: Format | None = None,  # noqa: A002 - the word users expect
    type: str = "info",  # noqa: A002 - Apprise's word
    first_run: int | None = None,
    limit: str | Limit | None = None,
) -> SinkReport:
    """Send each item as a notification through Apprise, to any service it knows.

    Args:
        items: what to send (only items not yet sent to this notifier go out).
        account: the notifier's name (``triggerflow connect apprise --account NAME``),
            whose Apprise URL is saved encrypted.
        url: an Apprise URL to use instead of an account, for one that holds no secret
            (e.g. ``json://localhost:8080/hook``); a URL with credentials belongs in an
            account, because the trigger file would show it.
        title: the notification's title: ``callable(item) -> str`` or a template like
            ``"{author}: {title}"``; default: the item's title.
        format: its body, the same way; default: the item's link (else its title).
        type: Apprise's notification type: ``info``, ``success``, ``warning``, ``failure``.
        first_run: how many of the newest items the first run sends (default 5).
        limit: a publication limit, e.g. ``"10/hour"``.

    Returns:
        What was sent, queued or failed (in a preview: what would be sent).

    Example::

        notify(rss("https://blog.python.org/feeds/posts/default"), account="phone")
    """
    note = _Notify(account, url, title, format, type)
    return run_sink(note, items, first_run=first_run, limit=limit)


@dataclass(frozen=True)
class _Notify:
    account: str
    url: str | None = field(repr=False)  # may hold a token all the same
    title: Format | None
    body: Format | None
    type: str
    sink: str = "apprise"

    @property
    def target(self) -> str:
        if self.url is None:
            return f"account {self.account}"
        return f"url {hashlib.sha256(self.url.strip().encode()).hexdigest()[:12]}"

    def problem(self) -> str | None:
        if self.type not in TYPES:
            return f"notify(type={self.type!r}): use one of {', '.join(TYPES)}"
        try:
            if self.url is not None:
                notifier(self.url)
            elif _runtime.current() is not None:
                load_service_account("apprise", self.account)  # a preview says it, too
        except ConfigurationError as e:
            return f"notify(): {e}"
        return None

    def preview(self, item: Item) -> str:
        return f"{self.title_of(item)}: {self.body_of(item)}"

    def title_of(self, item: Item) -> str:
        return render(item, self.title) if self.title else item.display_title

    def body_of(self, item: Item) -> str:
        return render(item, self.body) if self.body else (item.link or item.display_title)

    def _url(self) -> str:
        if self.url is not None:
            return self.url.strip()
        block = load_service_account("apprise", self.account)
        return block.apprise_url.get_secret_value()  # type: ignore[attr-defined]

    @contextmanager
    def open(self) -> Iterator[Callable[[Item, Attempt], None]]:
        from apprise import NotifyType, OverflowMode

        url = self._url()
        plugin = notifier(url)
        what = f"Apprise {describe(url)}, {self.target}"

        def send(item: Item, attempt: Attempt) -> None:
            with what_apprise_said() as said:
                sent = plugin.notify(
                    body=self.body_of(item),
                    title=self.title_of(item),
                    notify_type=NotifyType(self.type),
                    overflow=OverflowMode.TRUNCATE,  # cut to the service's lengths, not refused
                )
            if not sent:
                raise _error(what, scrub(said[-1] if said else "no reason given", url))

        yield send


def _error(what: str, why: str) -> Exception:
    """Apprise's False in the error tree: refused for good, or worth a retry."""
    m = _STATUS.search(why)
    status = int(m.group(1)) if m else None
    if status in (401, 403):
        return ServiceAuthError(
            "apprise", f"{what}: refused ({why}); check the URL's credentials and save it "
            "again: triggerflow connect apprise", status,
        )  # fmt: skip
    if status is not None and 400 <= status < 500 and status not in (408, 425, 429):
        return ItemRejected(f"{what} refused it: {why}")
    return SinkUnavailable(f"{what}: {why}")
