"""What the sinks of web services share: the ledger, limits, one request per item.

A service sink is a small object (a :class:`Poster`) that knows its service, its target
and how to send one item. :func:`deliver` does the rest like the XMPP sink: items are
stored, queued on the route (trigger, sink, target), claimed within the publication
limit, sent one at a time, and each is recorded as sent right after the service
confirmed it, so a run that dies halfway does not send the confirmed ones again.

What a retry may repeat is covered per service: Mastodon's ``Idempotency-Key`` (the
delivery's id), Wallabag's "this URL is already saved" answer, and for Trello a look at
the list for items whose earlier attempt got no answer.
"""

from __future__ import annotations

import hashlib
from collections.abc import Callable, Iterable
from datetime import timedelta
from typing import Protocol

from prefect import task
from prefect.cache_policies import NO_CACHE

from .. import _runtime
from .._service_client import ServiceClient
from .._store import QUEUED, Store, now
from ..blocks import load_service_account
from ..config import settings
from ..exceptions import (
    ConfigurationError,
    ServiceError,
    ServiceRejected,
    TransientError,
    TriggerflowError,
)
from ..limits import Limit, parse_limit
from ..types import Item, Items, SinkReport
from ._claim import claim_batch

__all__ = ["Poster", "Send", "deliver", "delivery_id"]

# Sends one item: (item, the delivery's id, True if an earlier attempt got no answer).
Send = Callable[[Item, str, bool], None]


class Poster(Protocol):
    """One service sink: which service and account, which target, how to send."""

    service: str
    account: str
    target: str

    def problem(self) -> str | None:
        """A configuration problem found without any I/O (None: fine)."""
        ...

    def preview(self, item: Item) -> str:
        """What would be sent for ``item``, for people (dry runs)."""
        ...

    def start(self, client: ServiceClient) -> Send:
        """Prepare a run (e.g. read the instance's limits); return the per-item send."""
        ...


def delivery_id(route: tuple[str, str, str], item: Item) -> str:
    """A stable id of delivering ``item`` on ``route``: the same in a retry and a rerun."""
    text = "\x1f".join((*route, item.source, item.id))
    return hashlib.sha256(text.encode()).hexdigest()[:32]


def deliver(
    poster: Poster,
    items: Iterable[Item],
    *,
    first_run: int | None = None,
    limit: str | Limit | None = None,
) -> SinkReport:
    """Send ``items`` with ``poster`` inside a trigger; the sink functions' common half."""
    name = poster.service
    ctx = _runtime.current()
    if ctx is None:
        raise ConfigurationError(
            f"{name}(): sinks send only inside a trigger; call the trigger, or .preview() it"
        )
    problem = poster.problem()
    try:
        rate = parse_limit(limit)
        load_service_account(poster.service, poster.account)  # a preview says it, too
    except ConfigurationError as e:
        problem, rate = problem or str(e), None
    if problem and ctx.mode == "run":
        raise ConfigurationError(problem)
    if ctx.mode == "check":
        if problem:
            ctx.problems.append(problem)
        return SinkReport(name, poster.target)
    batch = items if isinstance(items, Items) else Items(items)
    keep = ctx.settings.first_run if first_run is None else first_run
    args = (ctx.trigger, poster, batch, keep, rate, ctx.mode != "run", ctx.live_keys(batch))
    try:
        report: SinkReport = _runtime.call_step(
            _deliver_task, _deliver, f"{name} → {poster.target}", *args
        )
    except TriggerflowError as e:  # still failing after Prefect's retries
        report = getattr(e, "report", None) or SinkReport(name, poster.target, error=str(e))
    if problem:
        report.error = problem
    ctx.sinks.append(report)
    return report


def _deliver(
    trigger: str,
    poster: Poster,
    items: Items,
    first_run: int,
    limit: Limit | None,
    dry_run: bool,
    live: frozenset[tuple[str, str]] = frozenset(),
) -> SinkReport:
    s = settings()
    store = Store.default(s)
    sink, target = poster.service, poster.target
    route = (trigger, sink, target)
    log = _runtime.logger()
    report = SinkReport(sink, target, dry_run=dry_run)
    # Long enough for every item's request, with rate-limit waits, before a dead run's
    # claim is given up.
    lease = timedelta(seconds=s.rate_limit_wait * 2 + 600)
    claim, tried = claim_batch(store, route, items, report, first_run=first_run, limit=limit,
                               lease=lease, live=live)  # fmt: skip
    owed = claim.items
    if dry_run:
        report.would_send = [poster.preview(i) for i in owed]
        report.queued = len(owed) + claim.waiting
        return report
    if not owed:
        log.info("%s → %s: nothing to send now", sink, target)
        report.queued = claim.waiting
        return report
    error: ServiceError | None = None
    done = 0
    try:
        with ServiceClient(
            poster.service, poster.account, timeout=s.http_timeout, max_wait=s.rate_limit_wait
        ) as client:
            send = poster.start(client)
            for item in owed:
                try:
                    send(item, delivery_id(route, item), item.key in tried)
                except ServiceRejected as e:  # this item only: the next may well go
                    _record(store, route, rejected={item.key: str(e)})
                    report.failed[item.title or item.id] = str(e)
                    log.warning("%s → %s: %r not sent: %s", sink, target, item.title, e)
                else:
                    _record(store, route, sent=[item.key])
                    report.sent += 1
                done += 1
    except ServiceError as e:  # the service or the account: the rest waits
        error = e
    unsent = [i.key for i in owed[done:]]
    dead = 0
    if unsent:
        dead = _record(store, route, unsent=unsent, error=str(error), max_attempts=s.max_attempts)
    if claim.waiting:
        with store.transaction() as tx:  # what was just sent decides when a slot frees
            report.next_at = tx.allowance(sink, target, limit, now())[1]
    report.queued = len(unsent) - dead + claim.waiting
    if dead:
        report.failed[f"{dead} item(s)"] = f"gave up after {s.max_attempts} attempts"
    if error is not None:
        report.error = str(error)
        log.error("%s → %s: %s; %d item(s) stay %s", sink, target, error, report.queued, QUEUED)
        if isinstance(error, TransientError):
            error.report = report  # type: ignore[attr-defined]
            raise error
    log.info("%s → %s: %d sent", sink, target, report.sent)
    return report


def _record(store: Store, route: tuple[str, str, str], **outcome: object) -> int:
    with store.transaction() as tx:
        return tx.record(route, now(), **outcome)  # type: ignore[arg-type]


_deliver_task = task(_deliver, name="service sink", cache_policy=NO_CACHE, persist_result=False,
                     retry_condition_fn=_runtime.only_transient)  # fmt: skip
