"""The first step of every sink that sends: store the items, queue them, claim a batch.

In one transaction: the items are stored (also ad-hoc ones a trigger made itself), the
route (trigger, sink, target) owes the ones it never saw (a new target only the newest
``first_run``, plus every live event), and the owed items this run may send within the
publication limit are claimed. The report learns how many were skipped and how many
wait for the limit.
"""

from __future__ import annotations

from datetime import timedelta

from .. import _runtime
from .._store import Claim, Store, now
from ..limits import Limit
from ..types import Items, SinkReport

__all__ = ["claim_batch"]


def claim_batch(
    store: Store,
    route: tuple[str, str, str],
    items: Items,
    report: SinkReport,
    *,
    first_run: int,
    limit: Limit | None,
    lease: timedelta,
    live: frozenset[tuple[str, str]] = frozenset(),
) -> tuple[Claim, set[tuple[str, str]]]:
    """The claim, and which claimed items were sent before without an answer.

    ``lease``: how long the claim holds before a dead run's items are owed again.
    ``live``: the keys of events read from the inbox, which no first-run cut skips. A
    dry run (``report.dry_run``) rolls everything back.
    """
    with store.transaction(commit=not report.dry_run) as tx:
        t = now()
        tx.upsert_items(items, t, update=False)
        report.skipped = tx.enqueue(route, [i.key for i in items], first_run, t, live=live)
        claim = tx.claim(route, t, limit=limit, lease=lease)
        tried = tx.tried(route, [i.key for i in claim.items])
    report.held, report.next_at = claim.waiting, claim.next_at
    if claim.waiting:
        _runtime.logger().info(
            "%s → %s: %d item(s) wait for the limit %s (next at %s)", route[1], route[2],
            claim.waiting, limit, f"{claim.next_at:%H:%M}" if claim.next_at else "-",
        )  # fmt: skip
    return claim, tried
