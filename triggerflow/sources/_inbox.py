"""What triggers read from the inbox (webhook deliveries, bot messages), shared by sources.

A run reads the inbox of one kind from its trigger's cursor, turns what the trigger's
spec accepts into items, stores them, and returns them; the trigger saves the cursor
only after its function returned, when the sinks have put what they owe in the ledger.

Only deliveries received since the trigger first existed are read (serve records that
when it first loads the trigger; one that serve never saw, run from a notebook or a
``prefect deploy`` worker, starts when the process of its first run defined it).
Its items are live events, not a backlog: the sinks' first-run cut does not apply to
them (``RunContext.live``).
"""

from __future__ import annotations

from datetime import datetime
from functools import partial
from typing import Any, Protocol, runtime_checkable

from .. import _runtime
from .._steps import Fetched, Reading, run_source
from .._store import Delivery, Store, now
from .._webhooks import drain_spool
from ..config import settings
from ..exceptions import ConfigurationError
from ..types import Item, Items, SourceReport

_BATCH = 1000  # deliveries read per run at most; the next run goes on from there


@runtime_checkable
class EventSource(Protocol):
    """What ``@trigger(on=...)`` needs of an event source (``github_webhook``, ...).

    Events arrive in the store's inbox under ``kind`` (the webhook receiver and the bot
    write them there before they answer); a run of the trigger reads the deliveries it
    has not seen yet, and ``item()`` makes each one the trigger takes an item.

    Attributes:
        kind: the inbox the events arrive in, e.g. ``"github"``.
    """

    kind: str

    def describe(self) -> str:
        """A short human form, e.g. ``GitHub push from me/project`` (``list``, logs)."""
        ...

    def item(self, delivery: Delivery) -> Item | None:
        """The item for a delivery this trigger takes, or None."""
        ...

    def read(self) -> Items:
        """The new deliveries for the trigger in progress: usually ``read_inbox(self)``."""
        ...

    def prefect_trigger(self) -> Any:
        """The Prefect deployment trigger that starts a run when an event arrived."""
        ...


def read_inbox(spec: EventSource) -> Items:
    """The deliveries for the trigger in progress (the trigger calls it, not users)."""
    ctx = _runtime.current()
    if ctx is None:
        raise ConfigurationError(f"{spec.describe()}: deliveries are read inside a trigger run")
    defined = ctx.defined_at or now()
    got = run_source(
        f"{spec.kind}: {spec.describe()}", spec.kind, partial(_read, spec, defined), outside=False
    )
    ctx.live.update(i.key for i in got.items)
    if got.cursor is not None:
        ctx.cursors[spec.kind] = got.cursor
    ctx.more = ctx.more or got.more
    return Items(got.items)


def _read(spec: EventSource, defined: datetime, reading: Reading, report: SourceReport) -> Fetched:
    trigger, write = reading.trigger or "", reading.write
    s = settings()
    store = Store.default(s)
    if write:
        drain_spool(s.spool_dir, store)
    out = Fetched()
    with store.transaction(commit=write) as tx:
        since = tx.trigger_since(trigger)
        if since is None:  # never loaded by serve: it exists since this process made it
            since = defined
            tx.trigger_started([trigger], since)
        after = tx.inbox_cursor(trigger, spec.kind)
        deliveries = tx.inbox_after(spec.kind, after, _BATCH, since=since)
        for d in deliveries:
            item = None if d.ignored else spec.item(d)
            if item is not None:
                out.items.append(item)
        report.new = tx.upsert_items(out.items, now(), update=False)
    report.fetched = len(out.items)
    if deliveries:
        out.cursor = deliveries[-1].seq
    out.more = len(deliveries) == _BATCH
    n = len(deliveries)
    _runtime.logger().info(
        "%s: %d new in the inbox: %d for this trigger, %d not",
        spec.kind, n, len(out.items), n - len(out.items),
    )  # fmt: skip
    return out
