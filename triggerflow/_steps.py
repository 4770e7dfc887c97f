"""The step runner: one front half for every source and sink call in a trigger body.

Sinks (``xmpp(items, to=...)``, ``feed(...)``, ``mastodon(...)``, a user's own) come
with a :class:`~triggerflow._outbox.Sender` or ``Poster``; sources (``rss(...)``, the
service readers, the inbox of ``on=`` triggers, a user's own) with a body that fetches.
Either way the call is checked against the run's mode (``check``: configuration
problems only, no I/O; ``preview``: a dry run whose store writes are rolled back;
``run``: a Prefect task, retried when the error is a
:class:`~triggerflow.TransientError`), and the report it returns is the very object the
step filled in, also when the step failed after its retries: outcomes are values, never
attributes hung on an exception.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass, field
from datetime import timedelta
from functools import cache
from typing import Any, Literal

from . import _runtime
from ._outbox import Options, Poster, Sender, deliver
from ._store import Store
from .config import settings
from .exceptions import ConfigurationError, TransientError, TriggerflowError
from .limits import Limit, parse_limit
from .types import InStore, Item, ItemKey, Items, Route, SinkReport, SourceReport, items_of

__all__ = ["ALL", "Fetched", "Reading", "run_sink", "run_source"]

# ``first_run=ALL``: no first-run cut (a feed keeps what it is given).
ALL: Literal["all"] = "all"


def only_transient(task: Any, task_run: Any, state: Any) -> bool:
    """Prefect ``retry_condition_fn``: retry transient errors only."""
    try:
        state.result()
    except TransientError:
        return True
    except BaseException:
        return False
    return False


@cache
def _task(plain: Callable[..., Any], name: str) -> Any:
    # Made on first use: importing Prefect costs ~1.5 s and 80 MB, which a source called
    # outside a Prefect run (a notebook, a script, a preview) never needs.
    from prefect import task
    from prefect.cache_policies import NO_CACHE

    return task(plain, name=name, cache_policy=NO_CACHE, persist_result=False,
                retry_condition_fn=only_transient)  # fmt: skip


def call_step(plain: Callable[..., Any], task_name: str, name: str, *args: Any) -> Any:
    """Call a source/sink step: as a Prefect task (``task_name``) in real runs, as a plain
    call otherwise."""
    ctx = _runtime.current()
    if ctx is None or ctx.mode != "run":
        return plain(*args)
    from prefect.tasks import exponential_backoff

    s = ctx.settings
    options: dict[str, Any] = {"task_run_name": name, "retries": s.retries}
    if s.retries:
        options["retry_delay_seconds"] = exponential_backoff(backoff_factor=s.retry_delay)(
            s.retries
        )
    return _task(plain, task_name).with_options(**options)(*args)


def run_sink(
    sink: Sender | Poster,
    items: Iterable[Item],
    *,
    first_run: int | Literal["all"] | None = None,
    limit: str | Limit | None = None,
    lease: timedelta | None = None,
    problem: str | None = None,
) -> SinkReport:
    """Deliver ``items`` with ``sink`` inside the trigger run in progress.

    Args:
        sink: the sink (its ``problem()`` is asked first, without I/O).
        items: what to deliver; only what the ledger owes goes out.
        first_run: how many of the newest items a new target gets (default
            ``TRIGGERFLOW_FIRST_RUN``), or :data:`ALL`.
        limit: a publication limit, e.g. ``"5/hour"``.
        lease: how long the claim holds before a dead run's items are owed again
            (default: long enough for a slow service; a run known dead loses it at once).
        problem: a configuration problem the caller found already (an account missing).

    Raises:
        ConfigurationError: called outside a trigger, or (in a real run) misconfigured.
    """
    name = sink.sink
    ctx = _runtime.current()
    if ctx is None:
        raise ConfigurationError(
            f"{name}(): sinks deliver only inside a trigger; call the trigger, or .preview() it"
        )
    problem = problem or sink.problem()
    rate: Limit | None = None
    try:
        rate = parse_limit(limit)
    except ConfigurationError as e:
        problem = problem or str(e)
    if problem and ctx.mode == "run":
        raise ConfigurationError(problem)
    if ctx.mode == "check":
        if problem:
            ctx.problems.append(problem)
        return SinkReport(name, sink.target)
    batch = items if isinstance(items, Items) else Items(items)
    s = ctx.settings
    keep = s.first_run if first_run is None else (None if first_run == ALL else int(first_run))
    options = Options(
        first_run=keep,
        limit=rate,
        # Long enough for every item's request, with rate-limit waits; a run that died on
        # this host loses its claim at once (``_store._owners``), so this only matters
        # for a run on another machine, or one that hangs.
        lease=lease or timedelta(seconds=s.rate_limit_wait * 2 + 600),
        live=ctx.live_keys(batch),
    )
    route = Route(ctx.trigger, name, sink.target)
    report = SinkReport(name, sink.target, dry_run=ctx.mode != "run")
    try:
        call_step(_deliver, "sink", str(route), sink, route, batch, options, report)
    except TriggerflowError as e:  # still failing after Prefect's retries
        report.error = report.error or str(e)
    if problem:  # a preview still shows what would be sent, and why it could not be
        report.error = problem
    ctx.sinks.append(report)
    return report


def _deliver(
    sink: Sender | Poster, route: Route, items: Items, options: Options, report: SinkReport
) -> SinkReport:
    return deliver(sink, route, items, options, report, max_attempts=settings().max_attempts)


@dataclass(frozen=True)
class Reading:
    """What a source's body may do in this call.

    Attributes:
        trigger: the trigger in progress (None: none, e.g. a notebook exploring).
        use_store: whether the store is read and written (False outside a trigger).
        write: False in a preview: the store is read, and what the body writes to it is
            rolled back.
    """

    trigger: str | None = None
    use_store: bool = False
    write: bool = False


@dataclass
class Fetched:
    """What a source's body returns: the items, an inbox cursor where it has one, and
    whether more is waiting in the inbox beyond what one run reads.

    ``in_store``: keys of items that follow ``items``, already in the store (an unchanged
    feed's last items): read only if someone looks at them. ``stored``: ``items`` were
    written to the store as they are (a sink need not write them again).
    """

    items: list[Item] = field(default_factory=list)
    cursor: int | None = None
    more: bool = False
    in_store: list[ItemKey] = field(default_factory=list)
    stored: bool = False

    _as: Items | None = field(default=None, repr=False, compare=False)

    def as_items(self) -> Items:
        """The items as :class:`Items`, those in the store read on first use (once)."""
        if self._as is None:
            later = InStore(tuple(self.in_store), _load_stored)
            stored = [i.key for i in self.items] if self.stored else []
            self._as = items_of([tuple(self.items), later], stored)
        return self._as


def _load_stored(keys: Sequence[ItemKey]) -> list[Item]:
    with Store.default().transaction(commit=False) as tx:
        return tx.items_by_keys(keys)


SourceBody = Callable[[Reading, SourceReport], Fetched]


def run_source(
    label: str,
    kind: str,
    body: SourceBody,
    *,
    problem: Callable[[], str | None] | None = None,
    outside: bool = True,
) -> Fetched:
    """Call a source's ``body`` in the run in progress; its items join the run's items.

    Args:
        label: the step's name in logs and the Prefect UI (``rss: <url>``).
        kind: the report's source kind (``rss``, ``mastodon``…).
        body: fetches, stores what it got (when ``Reading.use_store``) and fills the
            report's failures; raises a TransientError when a retry may help.
        problem: a configuration check without I/O, for ``check`` mode.
        outside: whether the source may be called outside a trigger (to explore).
    """
    ctx = _runtime.current()
    report = SourceReport(kind)
    if ctx is None:
        if not outside:
            raise ConfigurationError(f"{label}: read only inside a trigger run")
        return body(Reading(), report)
    if ctx.mode == "check":
        found = problem() if problem else None
        if found:
            ctx.problems.append(found)
        return Fetched()
    reading = Reading(ctx.trigger, use_store=True, write=ctx.mode == "run")
    try:
        got: Fetched = call_step(_read, "source", label, body, reading, report)
    except TriggerflowError as e:  # still failing after Prefect's retries
        got = Fetched()
        if not report.failures:
            report.failures[label] = str(e)
    ctx.sources.append(report)
    ctx.items.append(got.as_items())
    return got


def _read(body: SourceBody, reading: Reading, report: SourceReport) -> Fetched:
    # A retry starts afresh (the same report object: the last attempt's word counts).
    report.failures.clear()
    report.warnings.clear()
    report.fetched = report.new = 0
    return body(reading, report)
