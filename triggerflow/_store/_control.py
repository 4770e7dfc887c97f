"""Pauses by hand and vacation: what ``serve`` must re-apply after every start.

Prefect forgets both: re-deploying (``serve`` or ``prefect deploy``) un-pauses every
deployment (shared notes/prefect.md §5), so the store is where they are kept.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field
from datetime import datetime

from ._base import TransactionBase
from ._schema import QUEUED, SKIPPED


@dataclass(frozen=True)
class Vacation:
    """The vacation in progress, if any, and the triggers paused by hand."""

    active: bool = False
    since: datetime | None = None
    note: str | None = None
    resume: tuple[str, ...] = ()  # the triggers that were active when it began
    paused: dict[str, datetime] = field(default_factory=dict)  # by hand, with when
    notes: dict[str, str] = field(default_factory=dict)  # why, for those paused with a note


class ControlMixin(TransactionBase):
    """Reads and writes of pauses and vacation (inside ``Store.transaction``)."""

    def vacation(self) -> Vacation:
        """The current vacation and pauses."""
        rows = self.con.execute("SELECT trigger, paused_at, note FROM pauses").fetchall()
        paused = {trigger: at for trigger, at, _ in rows}
        notes = {trigger: note for trigger, _, note in rows if note}
        row = self.con.execute("SELECT since, note, resume FROM vacation WHERE id = 1").fetchone()
        if row is None:
            return Vacation(paused=paused, notes=notes)
        return Vacation(True, row[0], row[1], tuple(row[2]), paused, notes)

    def start_vacation(self, since: datetime, note: str | None, resume: Sequence[str]) -> None:
        self.con.execute(
            "INSERT INTO vacation VALUES (1, $1, $2, $3::VARCHAR[])",
            [since, note, sorted(set(resume))],
        )

    def end_vacation(self) -> None:
        self.con.execute("DELETE FROM vacation")

    def set_paused(self, trigger: str, paused: bool, at: datetime, note: str | None) -> None:
        if paused:
            self.con.execute(
                "INSERT INTO pauses VALUES ($1, $2, $3) ON CONFLICT (trigger) "
                "DO UPDATE SET paused_at = excluded.paused_at, note = excluded.note",
                [trigger, at, note],
            )
        else:
            self.con.execute("DELETE FROM pauses WHERE trigger = $1", [trigger])

    def skip_backlog(self, triggers: Sequence[str], until: datetime) -> int:
        """Mark what ``triggers`` still owe as skipped, and skip items published before ``until``
        that their next runs find; returns how many queued deliveries were skipped."""
        row = self.con.execute(
            "SELECT count(*) FROM deliveries WHERE state = $1 AND trigger = ANY($2::VARCHAR[])",
            [QUEUED, list(triggers)],
        ).fetchone()
        self.con.execute(
            "UPDATE deliveries SET state = $1, updated_at = $2 "
            "WHERE state = $3 AND trigger = ANY($4::VARCHAR[])",
            [SKIPPED, until, QUEUED, list(triggers)],
        )
        self.con.execute(
            "INSERT INTO skip_before SELECT unnest($1::VARCHAR[]), $2 "
            "ON CONFLICT (trigger) DO UPDATE SET until = excluded.until",
            [list(triggers), until],
        )
        return int(row[0]) if row else 0


class AlertsMixin(TransactionBase):
    """Which triggers are failing now (one alert per outage, one when it ends)."""

    def failing(self, trigger: str) -> tuple[datetime, str] | None:
        row = self.con.execute(
            "SELECT failing_since, reason FROM alerts WHERE trigger = $1", [trigger]
        ).fetchone()
        return (row[0], row[1]) if row else None

    def set_failing(self, trigger: str, since: datetime | None, reason: str = "") -> None:
        if since is None:
            self.con.execute("DELETE FROM alerts WHERE trigger = $1", [trigger])
        else:
            self.con.execute(
                "INSERT INTO alerts VALUES ($1, $2, $3) ON CONFLICT (trigger) DO UPDATE SET "
                "failing_since = excluded.failing_since, reason = excluded.reason",
                [trigger, since, reason],
            )
