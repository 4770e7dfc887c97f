"""Failure alerts: one message when a trigger starts failing, one when it is back.

An outage is remembered in the store (``alerts``), so a trigger that fails every
15 minutes for a day says so once, not 96 times. The alert is an item delivered
through the same ledger as everything else, to the owner of the ``default`` XMPP
account (or the JID in ``TRIGGERFLOW_ALERTS``; ``off`` turns alerts off). When the
failure is the XMPP server itself, the alert waits in the queue and arrives once
the server is back, instead of being lost.
"""

from __future__ import annotations

from . import _runtime
from ._store import Store, now
from .blocks import load_xmpp_account
from .config import settings
from .exceptions import TriggerflowError
from .types import Item, Items, Route, SinkReport

ALERTS = "_alerts"  # the pseudo-trigger that alert deliveries belong to
SOURCE = "triggerflow:alerts"


def check(store: Store, trigger: str, failures: list[str]) -> None:
    """Record the run's outcome and send an alert if the trigger's state changed.

    Never raises: an alert that cannot be worked out (the store is busy, say) must
    not hide the failure of the run itself.
    """
    try:
        _check(store, trigger, failures)
    except TriggerflowError as e:
        _runtime.logger().warning("alerts for %s not updated: %s", trigger, e)


def _check(store: Store, trigger: str, failures: list[str]) -> None:
    log = _runtime.logger()
    t = now()
    with store.transaction() as tx:
        before = tx.failing(trigger)
        if failures and before is None:
            tx.set_failing(trigger, t, failures[0])
        elif not failures and before is not None:
            tx.set_failing(trigger, None)
    if failures and before is None:
        more = f" (and {len(failures) - 1} more problem(s))" if len(failures) > 1 else ""
        text = f"⚠ triggerflow: {trigger} is failing: {failures[0]}{more}"
        ident = f"{trigger}:{t.isoformat()}:failing"
    elif not failures and before is not None:
        since = f"{before[0]:%Y-%m-%d %H:%M}"
        text = f"✓ triggerflow: {trigger} is back to normal (failing since {since})"
        # Items that failed for good are not sent by the next runs: "back to normal"
        # alone would let the owner believe nothing is missing.
        with store.transaction(commit=False) as tx:
            _, failed, dead = tx.unsettled(trigger)
        if failed or dead:
            how = f"triggerflow retry {trigger}" + (" --dead" if dead else "")
            text += f"; {failed + dead} item(s) still wait for `{how}`"
        ident = f"{trigger}:{t.isoformat()}:back"
    else:
        with store.transaction(commit=False) as tx:
            queued = tx.unsettled(ALERTS)[0]
        if queued:
            _send(store, None)  # alerts left queued while the XMPP server was down
        return
    log.warning("alert: %s", text)
    _send(store, Item(source=SOURCE, id=ident, title=text, published=t))


def send_now(store: Store, ident: str, text: str) -> None:
    """One alert that belongs to no trigger's outage (serve was down); never raises."""
    try:
        _runtime.logger().warning("alert: %s", text)
        _send(store, Item(source=SOURCE, id=ident, title=text, published=now()))
    except TriggerflowError as e:
        _runtime.logger().warning("alert not sent: %s", e)


def _send(store: Store, alert: Item | None) -> None:
    """Deliver ``alert`` (and any alert still owed) to the default account's owner."""
    from ._outbox import Options, deliver
    from .sinks._xmpp import XMPPSender

    log = _runtime.logger()
    to = settings().alerts
    if to == "off":
        return
    try:
        account = load_xmpp_account("default")
    except TriggerflowError as e:
        log.warning("alert not sent: %s", e)
        return
    owner = account.owner if to == "owner" else to
    if not owner:
        log.warning("alert not sent: the default XMPP account has no owner (…_OWNER)")
        return
    batch = Items([alert] if alert else [])
    try:
        # A plain call, no task retries: the run is already failing, and what is not
        # sent now stays queued for the next run's check.
        deliver(
            XMPPSender(owner, account="default", format="{title}"),
            Route(ALERTS, "xmpp", owner),
            batch,
            Options(first_run=100),
            SinkReport("xmpp", owner),
            store=store,
            max_attempts=settings().max_attempts,
        )
    except TriggerflowError as e:
        log.warning("alert to %s queued: %s", owner, e)
