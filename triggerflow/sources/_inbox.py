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

from dataclasses import dataclass, field
from datetime import datetime
from typing import Protocol

from prefect import task
from prefect.cache_policies import NO_CACHE

from .. import _runtime
from .._store import Delivery, Store, now
from .._webhooks import drain_spool
from ..config import settings
from ..exceptions import ConfigurationError, TriggerflowError
from ..types import Item, Items, SourceReport

_BATCH = 1000  # deliveries read per run at most; the next run goes on from there


class InboxSpec(Protocol):
    """What an ``on=`` spec provides to read its deliveries."""

    kind: str

    def describe(self) -> str: ...

    def item(self, delivery: Delivery) -> Item | None:
        """The item for a delivery this trigger takes, or None."""
        ...


@dataclass
class _Read:
    items: list[Item] = field(default_factory=list)
    report: SourceReport = field(default_factory=lambda: SourceReport("inbox"))
    last_seq: int | None = None


def read_inbox(spec: InboxSpec) -> Items:
    """The deliveries for the trigger in progress (the trigger calls it, not users)."""
    ctx = _runtime.current()
    if ctx is None:
        raise ConfigurationError(f"{spec.describe()}: deliveries are read inside a trigger run")
    try:
        got: _Read = _runtime.call_step(
            _inbox_task, _read, f"{spec.kind}: {spec.describe()}", ctx.trigger, spec,
            ctx.mode == "run", ctx.defined_at or now(),
        )  # fmt: skip
    except TriggerflowError as e:  # the store stayed busy, also after Prefect's retries
        got = _Read(report=SourceReport(spec.kind, failures={"inbox": str(e)}))
    ctx.sources.append(got.report)
    ctx.items.extend(got.items)
    ctx.live.update(i.key for i in got.items)
    if got.last_seq is not None:
        ctx.cursors[spec.kind] = got.last_seq
    return Items(got.items)


def _read(trigger: str, spec: InboxSpec, write: bool, defined: datetime) -> _Read:
    s = settings()
    store = Store.default(s)
    if write:
        drain_spool(s.spool_dir, store)
    out = _Read(report=SourceReport(spec.kind))
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
        out.report.new = tx.upsert_items(out.items, now(), update=False)
    out.report.fetched = len(out.items)
    if deliveries:
        out.last_seq = deliveries[-1].seq
    n = len(deliveries)
    _runtime.logger().info(
        "%s: %d new in the inbox: %d for this trigger, %d not",
        spec.kind, n, len(out.items), n - len(out.items),
    )  # fmt: skip
    return out


_inbox_task = task(_read, name="inbox", cache_policy=NO_CACHE, persist_result=False,
                   retry_condition_fn=_runtime.only_transient)  # fmt: skip
