"""The read model's values and how they show: frozen values, plain-text tables and lines.

``_read`` computes the values (``Status``, ``Listing``…) and nothing else; here they
are defined with their rendering, ``status_lines`` and ``list_lines`` (also
``print(triggerflow.status())`` in a notebook), so the values can print themselves
without the computing module and the rendering importing each other. The bot renders
the same values as chat lines in ``_commands.py``. Light on purpose: no Prefect, no
store connection.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from datetime import datetime
from pathlib import Path
from typing import TYPE_CHECKING, Any, Literal

from ._paused import Pause, pause_of
from ._store import FailedDelivery, RouteStatus, SourceStatus, Vacation
from ._store._owners import is_dead, pid_of
from ._webhooks import SpoolState
from .limits import Limit

if TYPE_CHECKING:
    from ._search import SearchResults


# -- the values ---------------------------------------------------------------------------


@dataclass(frozen=True)
class Waiting:
    """Queued items of one route that wait for its publication limit.

    Attributes:
        trigger: the trigger that owes them.
        sink: the sink (``xmpp``, ``mastodon``…).
        target: who gets them.
        queued: how many wait.
        limit: the limit the sink last ran with (as it reads now, also for a row that an
            older version wrote).
        allowed: how many may go now (0: the limit's window is full).
        next_at: when the next slot frees; None with ``allowed`` 0: when a send that is
            in progress now completes.
    """

    trigger: str
    sink: str
    target: str
    queued: int
    limit: Limit
    allowed: int
    next_at: datetime | None


@dataclass(frozen=True)
class Webhooks:
    """How many GitHub webhook deliveries of one event the store received.

    Attributes:
        event: the ``X-GitHub-Event`` (``push``, ``issues``…).
        count: deliveries received.
        ignored: True for events that no trigger announces (stored all the same).
    """

    event: str
    count: int
    ignored: bool


@dataclass(frozen=True)
class Status:
    """What was collected, sent, queued and failed, and why: :func:`status`'s answer.

    Attributes:
        store: the store it was read from (its file, or its PostgreSQL URL without
            the password).
        trigger: the trigger asked for (its name as stored, with ``_``), or None: all.
        routes: per (trigger, sink, target): sent, queued, failed, dead and skipped
            counts, the limit, the last error and when the last item went out.
        collected: items stored per trigger (from the sources it reads).
        sources: per source: items, last success, last error, the triggers that read it.
        failures: the latest failed or dead deliveries, newest first.
        waiting: the routes whose queued items wait for their publication limit.
        pauses: the triggers held now: paused by hand, or by the vacation.
        vacation: the vacation in progress (``active`` False if none).
        webhooks: GitHub webhook deliveries received, per event (only when ``trigger``
            is None).
        spool: deliveries answered while the store was busy and not stored yet, and
            spool files that cannot be read (only when ``trigger`` is None).
    """

    store: Path | str
    trigger: str | None = None
    routes: tuple[RouteStatus, ...] = ()
    collected: Mapping[str, int] = field(default_factory=dict)
    sources: tuple[SourceStatus, ...] = ()
    failures: tuple[FailedDelivery, ...] = ()
    waiting: tuple[Waiting, ...] = ()
    pauses: tuple[Pause, ...] = ()
    vacation: Vacation = field(default_factory=Vacation)
    webhooks: tuple[Webhooks, ...] = ()
    spool: SpoolState = field(default_factory=SpoolState)

    @property
    def ran(self) -> bool:
        """Whether anything was collected or received yet."""
        received = self.webhooks or self.spool.waiting or self.spool.torn
        return bool(self.routes or self.collected or self.sources or received)

    @property
    def triggers(self) -> list[str]:
        """Every trigger that sent or collected something, by name."""
        return sorted({r.trigger for r in self.routes} | set(self.collected))

    @property
    def failing_sources(self) -> tuple[SourceStatus, ...]:
        """The sources whose last fetch failed."""
        return tuple(s for s in self.sources if s.last_error)

    def pause_of(self, trigger: str) -> Pause | None:
        """Why ``trigger`` is held now (by hand, or by the vacation), or None."""
        return pause_of(self.vacation, trigger.replace("-", "_"))

    def __str__(self) -> str:
        return "\n".join(status_lines(self))

    def _repr_pretty_(self, p: Any, cycle: bool) -> None:  # IPython: show it like the CLI
        p.text(repr(self) if cycle else str(self))


TriggerState = Literal[
    "active", "paused", "not deployed", "not configured", "unchecked", "broken", "unknown"
]


@dataclass(frozen=True)
class TriggerLine:
    """One trigger as ``triggerflow list`` and the bot's ``list`` show it.

    Attributes:
        name: the trigger's name.
        schedule: when it runs, for people (``every 15m``, ``on GitHub push…``).
        state: ``broken`` (serve could not deploy it), ``unchecked`` (an account could
            not be checked without Prefect), ``not configured``, ``paused`` (see
            ``pause``), ``not deployed``, ``active``, or ``unknown`` (no Prefect server
            to ask).
        pause: with state ``paused``, why: by hand or the vacation (None: paused in
            Prefect itself, e.g. in its UI).
        problems: what is wrong with it (serve's reason first), empty if nothing.
        last_state: the state of its last finished run (``Completed``, ``Failed``…).
        last_run_at: when that run ended.
        next_run_at: its next scheduled run.
    """

    name: str
    schedule: str
    state: TriggerState
    pause: Pause | None = None
    problems: tuple[str, ...] = ()
    last_state: str | None = None
    last_run_at: datetime | None = None
    next_run_at: datetime | None = None


@dataclass(frozen=True)
class Listing:
    """The triggers with their state: what :func:`listing` returns.

    Attributes:
        triggers: one line per trigger, by name.
        vacation: the vacation in progress (``active`` False if none).
        prefect: the Prefect API that was asked about deployments and runs, or None.
        prefect_error: why it could not be asked, if it could not.
    """

    triggers: tuple[TriggerLine, ...]
    vacation: Vacation
    prefect: str | None = None
    prefect_error: str | None = None


# -- how they show ------------------------------------------------------------------------


def table(rows: Sequence[Sequence[Any]], header: Sequence[str]) -> str:
    """Rows under a header, in columns as wide as their widest cell."""
    cells = [[str(c) for c in header]] + [["" if c is None else str(c) for c in r] for r in rows]
    widths = [max(len(r[i]) for r in cells) for i in range(len(header))]
    lines = ["  ".join(c.ljust(w) for c, w in zip(r, widths, strict=True)).rstrip() for r in cells]
    lines.insert(1, "  ".join("-" * w for w in widths))
    return "\n".join(lines)


def when(t: datetime | None) -> str:
    """A time in the local timezone, to the minute; ``-`` for none."""
    return t.astimezone().strftime("%Y-%m-%d %H:%M") if t else "-"


def next_slot(w: Waiting) -> str:
    """When the next of a route's waiting items may go: ``now``, ``at …``, or later."""
    if w.allowed:
        return "now"
    return f"at {when(w.next_at)}" if w.next_at else "when a send completes"


def held_line(r: RouteStatus) -> str:
    """What a run holds on a route: still sending, or died (and when they are owed again)."""
    pids = ", ".join(str(pid_of(h)) for h in r.held_by) or "?"
    if r.held_by and all(is_dead(h) for h in r.held_by):
        return f"{r.held} held by a run that died (pid {pids}): the next run sends them"
    until = f" until {when(r.held_until)}" if r.held_until else ""
    return f"{r.held} being sent by a run (pid {pids}; its claim holds{until})"


def vacation_line(st: Status | Listing) -> str | None:
    """``On vacation since …: note``, or None when not on vacation."""
    away = st.vacation
    if not (away.active and away.since is not None):
        return None
    return f"On vacation since {when(away.since)}" + (f": {away.note}" if away.note else "")


def pause_lines(pauses: Sequence[Pause]) -> list[str]:
    """The held triggers: one line each paused by hand (since, note), one for the vacation."""
    out = []
    for p in pauses:
        if p.why == "by hand":
            note = f": {p.note}" if p.note else ""
            out.append(f"Paused by hand: {p.trigger} (since {when(p.since)}){note}")
    away = [p.trigger for p in pauses if p.why == "vacation"]
    return out + ([f"Paused for the vacation: {', '.join(away)}"] if away else [])


def status_lines(st: Status, *, sources: bool = False) -> list[str]:
    """``triggerflow status``: the routes as a table, then what waits, fails and is held."""
    out: list[str] = []
    if not st.ran:
        out.append("Nothing collected yet: no trigger has run (`triggerflow config`: where).")
    else:
        rows = [
            (r.trigger, f"{r.sink}:{r.target}", st.collected.get(r.trigger, 0), r.sent,
             r.queued, r.failed, r.dead, r.skipped, when(r.last_sent))
            for r in st.routes
        ]  # fmt: skip
        sent = {r.trigger for r in st.routes}
        rows += [(t, "-", n, 0, 0, 0, 0, 0, "-") for t, n in st.collected.items() if t not in sent]
        header = (
            "TRIGGER", "TARGET", "ITEMS", "SENT", "QUEUED", "FAILED", "DEAD", "SKIPPED",
            "LAST SENT",
        )  # fmt: skip
        out.append(table(rows, header))
    for w in st.waiting:
        out.append(
            f"  {w.trigger} → {w.target}: {w.queued} wait for the limit {w.limit}; "
            f"next {next_slot(w)}"
        )
    for r in st.routes:
        if r.held:
            out.append(f"  {r.trigger} → {r.target}: {held_line(r)}")
    errors = [r for r in st.routes if r.last_error and (r.queued or r.failed or r.dead)]
    if errors:
        out += ["", "Why items are waiting:"]
        out += [f"  {r.trigger} → {r.target}: {r.last_error}" for r in errors]
    failed = st.failures
    if failed:
        out += ["", "Failed deliveries (newest first):"]
        out += [f"  {f.trigger} → {f.target} [{f.state}] {f.title}: {f.reason}" for f in failed]
    away = vacation_line(st)
    if away or st.pauses:
        out.append("")
        out += [away] if away else []
        out += pause_lines(st.pauses)
    spool = st.spool
    if st.webhooks or spool.waiting or spool.torn:
        taken = ", ".join(f"{w.event} {w.count}" for w in st.webhooks if not w.ignored)
        left = ", ".join(f"{w.event} {w.count}" for w in st.webhooks if w.ignored)
        received = sum(w.count for w in st.webhooks) + spool.waiting
        out += ["", f"GitHub webhooks received: {received}"]
        out.append(f"  announced: {taken or 'none'}")
        out.append(f"  ignored (events that are not announced): {left or 'none'}")
        if spool.waiting:
            out.append(
                f"  in the spool: {spool.waiting} (answered while the store was busy; "
                "stored with the next delivery or run)"
            )
        if spool.torn:
            out.append(
                f"  ✗ {len(spool.torn)} spooled delivery file(s) cannot be read, not stored "
                f"(redeliver them from GitHub): {', '.join(spool.torn)}"
            )
    out += ["", f"Sources: {len(st.sources)}, failing: {len(st.failing_sources)}"]
    for src in st.failing_sources:
        out.append(f"  ✗ {src.source} (since {when(src.last_error_at)}): {src.last_error}")
        if src.gone_at or src.next_fetch:
            out.append(f"    {next_try(src)}")
    silent = [x for x in st.sources if x.silent_since is not None]
    if silent:
        out.append(f"Silent feeds: {len(silent)} (no new item for much longer than usual)")
        for src in silent:
            out.append(f"  ? {src.source} (noted {when(src.silent_since)}): {src.silent_note}")
    if sources:
        out.append(
            table(
                [
                    (
                        x.source,
                        x.kind,
                        x.items,
                        when(x.last_success),
                        when(x.last_error_at) if x.last_error else "-",
                        next_try(x, short=True),
                        x.next_reason or "-",
                    )
                    for x in st.sources
                ],  # fmt: skip
                ("SOURCE", "KIND", "ITEMS", "LAST SUCCESS", "LAST ERROR", "NEXT TRY", "WHY"),
            )
        )
    return out


def next_try(src: SourceStatus, *, short: bool = False) -> str:
    """When a source is fetched next: "next run", a time, "never (410 Gone)"; in full
    (``short=False``) with the reason."""
    if src.gone_at is not None:
        return (
            "never (410 Gone)"
            if short
            else f"not fetched since {when(src.gone_at)}: {src.next_reason}"
        )
    if src.next_fetch is None:
        return "next run"
    return when(src.next_fetch) if short else f"next try {when(src.next_fetch)}: {src.next_reason}"


def trigger_state(t: TriggerLine) -> str:
    """The STATUS column of ``triggerflow list``."""
    if t.state == "paused":
        return {None: "paused", "by hand": "paused (by hand)", "vacation": "paused (vacation)"}[
            t.pause.why if t.pause else None
        ]
    return "?" if t.state == "unknown" else t.state


def list_lines(found: Listing) -> list[str]:
    """``triggerflow list``: a table of the triggers, their problems, vacation, Prefect."""
    rows = [
        (t.name, t.schedule, trigger_state(t),
         f"{t.last_state} {when(t.last_run_at)}" if t.last_state else "-", when(t.next_run_at))
        for t in found.triggers
    ]  # fmt: skip
    out = [table(rows, ("TRIGGER", "SCHEDULE", "STATUS", "LAST RUN", "NEXT RUN"))]
    out += [f"  {t.name}: {problem}" for t in found.triggers for problem in t.problems]
    away = vacation_line(found)
    out += [away] if away else []
    if found.prefect_error:
        out.append(found.prefect_error)
    elif found.prefect:
        out.append(f"Prefect: {found.prefect}")
    else:
        out.append("Prefect: not running (start `triggerflow serve` to see paused/last run)")
    return out


def search_lines(hits: SearchResults) -> list[str]:
    """``triggerflow search``: score, date, title and link of each hit, best first."""
    from .types import _cut

    rows = []
    for item, score in zip(hits, hits.scores, strict=True):
        day = item.published.astimezone().strftime("%Y-%m-%d") if item.published else "-"
        rows.append((f"{score:.2f}", day, _cut(item.display_title, 60), item.link or item.source))
    return [table(rows, ("SCORE", "DATE", "TITLE", "LINK"))]
