"""The XMPP sink: ``xmpp(items, to=...)`` or ``xmpp(items, room=...)``.

It sends what the delivery ledger says is owed (items passed now and items left
queued by earlier runs, oldest first) over one connection, and marks an item sent
only when the server acknowledged it without bouncing it (for a room: when the
room reflected it back), as soon as that acknowledgement came: at most
``_xmpp.MAX_UNACKED`` messages are ever written but unacknowledged, so a lost
connection or a killed process sends at most that many again.
"""

from __future__ import annotations

import re
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from datetime import timedelta

from .. import _runtime
from .._format import Format, render
from .._outbox import Attempt, Progress
from .._slots import account_slot
from .._steps import run_sink
from .._xmpp import XMPPConnection, send_messages_sync
from ..blocks import load_xmpp_account
from ..config import settings
from ..exceptions import ConfigurationError
from ..limits import Limit
from ..types import Item, ItemKey, SinkReport

__all__ = ["XMPPSender", "xmpp"]


def xmpp(
    items: Iterable[Item],
    to: str | None = None,
    *,
    room: str | None = None,
    account: str = "default",
    format: Format | None = None,  # noqa: A002 - the word users expect
    first_run: int | None = None,
    limit: str | Limit | None = None,
) -> SinkReport:
    """Send items as XMPP messages to a person or a chat room.

    Args:
        items: what to send (only items not yet sent to this target go out).
        to: a JID, e.g. ``me@example.org``; default: the account's ``owner``.
        room: a chat room (MUC) to join and post in, e.g. ``team@conference.example.org``.
        account: the sending account's name (see :mod:`triggerflow.blocks`).
        format: ``callable(item) -> str`` or a template like ``"{title} {link}"``;
            default: the message the source made (GitHub webhooks), else the title,
            then the link on its own line.
        first_run: how many of the newest items a target gets the first time
            (default ``TRIGGERFLOW_FIRST_RUN``, 5); older ones are recorded as skipped.
            Events (webhooks, bot messages) are never skipped: they are not a backlog.
        limit: a publication limit for this target, e.g. ``"5/hour"`` or
            ``"100/day, burst 10"`` (counted over every trigger that sends to it);
            what is over it stays queued and goes out in later runs, oldest first.

    Returns:
        What was sent, queued or failed (in a preview: what would be sent).

    Raises:
        ConfigurationError: called outside a trigger, or account/target missing.
    """
    ctx = _runtime.current()
    problem: str | None = None
    target = room or to or f"(owner of account {account!r})"
    if ctx is not None:
        try:
            if to and room:
                raise ConfigurationError("xmpp(): pass either to= or room=, not both")
            acct = load_xmpp_account(account)
            target = room or to or acct.owner or ""
            if not target:
                raise ConfigurationError(
                    f"xmpp(): no recipient: pass to= or room=, or set the owner of account "
                    f"{account!r}"
                )
        except ConfigurationError as e:
            problem = str(e)
            target = room or to or f"(owner of account {account!r})"
    sender = XMPPSender(target, account=account, room=room is not None, format=format)
    timeout = settings().xmpp_timeout if ctx is None else ctx.settings.xmpp_timeout
    return run_sink(
        sender,
        items,
        first_run=first_run,
        limit=limit,
        # Long enough for every bounded step of a send (connect, join, acks).
        lease=timedelta(seconds=timeout * 4 + 60),
        problem=problem,
    )


def _key(item: Item) -> str:
    return f"{item.source}\x1f{item.id}"


@dataclass(frozen=True)
class XMPPSender:
    """Messages to one JID or room over one connection (a :class:`Sender`)."""

    target: str
    account: str = "default"
    room: bool = False
    format: Format | None = None
    sink: str = "xmpp"

    def problem(self) -> str | None:
        return None  # the account is checked by xmpp(), which knows the run's mode

    def preview(self, item: Item) -> str:
        return render(item, self.format)

    def send(
        self, items: Sequence[Item], attempts: Mapping[ItemKey, Attempt], progress: Progress
    ) -> None:
        s = settings()
        acct = load_xmpp_account(self.account)
        conn = XMPPConnection(
            jid=acct.jid,
            password=acct.password.get_secret_value(),
            host=acct.host,
            port=acct.port,
            ca_file=acct.ca_file,
            allow_plaintext=acct.allow_plaintext,
            timeout=s.xmpp_timeout,
        )
        by_key = {_key(i): i.key for i in items}
        log = _runtime.logger()
        log.info("xmpp → %s: sending %d message(s) as %s", self.target, len(items), conn.jid)
        # One connection per account at a time, across every process that runs triggers:
        # a Prefect global concurrency limit (servers throttle or kick parallel logins),
        # given back at once when the run that held it was killed (see _slots).
        slot = "xmpp-" + re.sub(r"[^A-Za-z0-9_.@-]", "-", conn.jid)
        with account_slot(slot, timeout=s.xmpp_timeout * 8):

            def answered(sent: list[str], rejected: dict[str, str]) -> None:
                # On the event loop's thread: hand over and return (the ledger is written
                # by the outbox's recorder thread, within one transaction of the ack).
                progress.sent(by_key[k] for k in sent)
                for k, why in rejected.items():
                    progress.rejected(by_key[k], why)

            result = send_messages_sync(
                conn,
                self.target,
                [(_key(i), render(i, self.format)) for i in items],
                room_nick="triggerflow" if self.room else None,
                on_progress=answered,
            )
        if result.error is not None:
            raise result.error
