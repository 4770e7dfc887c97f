"""How the CLI shows the read model: plain-text tables and lines, no logic.

``status_lines`` and ``list_lines`` render what ``_read`` computed (also for
``print(triggerflow.status())`` in a notebook); the bot renders the same values as chat
lines in ``_commands.py``. Light on purpose: no Prefect, no store.
"""

from __future__ import annotations

from collections.abc import Sequence
from datetime import datetime
from typing import TYPE_CHECKING, Any

from ._store._owners import is_dead, pid_of

if TYPE_CHECKING:
    from ._paused import Pause
    from ._read import Listing, Status, TriggerLine, Waiting
    from ._search import SearchResults
    from ._store import RouteStatus, SourceStatus


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
