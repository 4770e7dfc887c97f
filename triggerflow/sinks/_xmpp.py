"""The XMPP sink: ``xmpp(items, to=...)`` or ``xmpp(items, room=...)``.

It sends what the delivery ledger says is owed (items passed now and items left
queued by earlier runs, oldest first) over one connection, and marks an item sent
only when the server acknowledged it without bouncing it (for a room: when the
room reflected it back).
"""

from __future__ import annotations

import re
from collections.abc import Iterable
from datetime import timedelta

from prefect import task
from prefect.cache_policies import NO_CACHE
from prefect.concurrency.sync import concurrency

from .. import _runtime
from .._deployments import ensure_concurrency_limit
from .._store import QUEUED, Store, now
from .._xmpp import XMPPConnection, send_messages_sync
from ..blocks import load_xmpp_account
from ..config import settings
from ..exceptions import (
    ConfigurationError,
    TransientError,
    TriggerflowError,
)
from ..limits import Limit, parse_limit
from ..types import Item, Items, SinkReport
from ._claim import claim_batch
from ._format import Format, render

__all__ = ["xmpp"]


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
    if ctx is None:
        raise ConfigurationError(
            "xmpp(): sinks send only inside a trigger; call the trigger, or .preview() it"
        )
    problem: str | None = None
    try:
        rate = parse_limit(limit)
        if to and room:
            raise ConfigurationError("xmpp(): pass either to= or room=, not both")
        acct = load_xmpp_account(account)
        target = room or to or acct.owner
        if not target:
            raise ConfigurationError(
                f"xmpp(): no recipient: pass to= or room=, or set the owner of account {account!r}"
            )
    except ConfigurationError as e:
        if ctx.mode == "run":
            raise
        problem = str(e)
        target = room or to or f"(owner of account {account!r})"
        rate = None
    if ctx.mode == "check":
        if problem:
            ctx.problems.append(problem)
        return SinkReport("xmpp", target)
    batch = items if isinstance(items, Items) else Items(items)
    keep = ctx.settings.first_run if first_run is None else first_run
    dry_run = ctx.mode != "run"
    # The account goes by name: the password never becomes a task parameter.
    args = (ctx.trigger, batch, target, room is not None, account, format, keep, rate, dry_run,
            ctx.live_keys(batch))  # fmt: skip
    try:
        report: SinkReport = _runtime.call_step(_xmpp_task, _deliver, f"xmpp → {target}", *args)
    except TriggerflowError as e:  # still failing after Prefect's retries
        report = getattr(e, "report", None) or SinkReport("xmpp", target, error=str(e))
    if problem:  # a preview still shows what would be sent, and why it could not be
        report.error = problem
    ctx.sinks.append(report)
    return report


def _key(item: Item) -> str:
    return f"{item.source}\x1f{item.id}"


def _deliver(
    trigger: str,
    items: Items,
    target: str,
    is_room: bool,
    account: str,
    fmt: Format | None,
    first_run: int,
    limit: Limit | None,
    dry_run: bool,
    live: frozenset[tuple[str, str]] = frozenset(),
) -> SinkReport:
    s = settings()
    store = Store.default(s)
    route = (trigger, "xmpp", target)
    log = _runtime.logger()
    report = SinkReport("xmpp", target, dry_run=dry_run)
    # A lease long enough for every bounded step of a send (connect, join, acks).
    lease = timedelta(seconds=s.xmpp_timeout * 4 + 60)
    claim, _ = claim_batch(store, route, items, report, first_run=first_run, limit=limit,
                           lease=lease, live=live)  # fmt: skip
    owed = claim.items
    bodies = {_key(i): render(i, fmt) for i in owed}
    if dry_run:
        report.would_send = list(bodies.values())
        report.queued = len(owed) + claim.waiting
        return report
    if not owed:
        log.info("xmpp → %s: nothing to send now", target)
        report.queued = claim.waiting
        return report
    acct = load_xmpp_account(account)
    conn = XMPPConnection(
        jid=acct.jid,
        password=acct.password.get_secret_value(),
        host=acct.host,
        port=acct.port,
        ca_file=acct.ca_file,
        allow_plaintext=acct.allow_plaintext,
        timeout=s.xmpp_timeout,
    )
    log.info("xmpp → %s: sending %d message(s) as %s", target, len(owed), conn.jid)
    # One connection per account at a time, across every process that runs triggers: a
    # Prefect global concurrency limit (servers throttle or kick parallel logins).
    slot = ensure_concurrency_limit("xmpp-" + re.sub(r"[^A-Za-z0-9_.@-]", "-", conn.jid))
    with concurrency(slot, occupy=1, strict=True, timeout_seconds=s.xmpp_timeout * 8):
        result = send_messages_sync(
            conn, target, list(bodies.items()), room_nick="triggerflow" if is_room else None
        )
    by_key = {_key(i): i for i in owed}
    sent = [by_key[k].key for k in result.sent]
    rejected = {by_key[k].key: why for k, why in result.rejected.items()}
    unsent = [i.key for k, i in by_key.items() if k not in result.sent and k not in result.rejected]
    error = str(result.error) if result.error else None
    with store.transaction() as tx:
        dead = tx.record(
            route, now(), sent=sent, rejected=rejected, unsent=unsent, error=error,
            max_attempts=s.max_attempts,
        )  # fmt: skip
        if claim.waiting:  # what was just sent decides when the limit frees a slot
            report.next_at = tx.allowance("xmpp", target, limit, now())[1]
    report.sent = len(sent)
    report.failed = {by_key[k].title or by_key[k].id: why for k, why in result.rejected.items()}
    report.queued = len(unsent) - dead + claim.waiting
    for title, why in report.failed.items():
        log.warning("xmpp → %s: %r not delivered: %s", target, title, why)
    if dead:
        report.failed.update({f"{dead} item(s)": f"gave up after {s.max_attempts} attempts"})
    if result.error is not None:
        report.error = str(result.error)
        log.error("xmpp → %s: %s; %d item(s) stay %s", target, result.error, report.queued, QUEUED)
        if isinstance(result.error, TransientError):
            result.error.report = report  # type: ignore[attr-defined]
            raise result.error
    log.info("xmpp → %s: %d sent", target, report.sent)
    return report


_xmpp_task = task(_deliver, name="xmpp", cache_policy=NO_CACHE, persist_result=False,
                  retry_condition_fn=_runtime.only_transient)  # fmt: skip
