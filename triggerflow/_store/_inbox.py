"""The inbox: deliveries that arrived by themselves, kept until triggers read them.

A webhook delivery is committed here before the HTTP answer; each trigger that reads
the inbox keeps a cursor (the last ``seq`` it turned into items), moved only after its
sinks have put what they owe in the ledger, so that a failed run reads them again.

A trigger reads only what was received since it first existed (``trigger_starts``:
when ``serve`` first loaded it, or its first run, whichever came first): a new trigger
does not replay the deliveries that were stored for others before it was written. The
start is a time, not a ``seq``, because a delivery spooled while the store was busy gets
its ``seq`` later than it was received (see ``_webhooks``).
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime

from ._base import LOCK_INBOX, TransactionBase, advisory_lock


@dataclass(frozen=True)
class Delivery:
    """One inbox entry."""

    kind: str
    id: str
    seq: int
    event: str
    repo: str | None
    payload: str
    received_at: datetime
    ignored: bool


class InboxMixin(TransactionBase):
    """Inbox writes and reads (inside ``Store.transaction``)."""

    def inbox_add(
        self,
        kind: str,
        id_: str,
        event: str,
        repo: str | None,
        payload: str,
        received_at: datetime,
        ignored: bool,
    ) -> bool:
        """Store a delivery; False if one with this id is already there (a redelivery)."""
        advisory_lock(self.con, LOCK_INBOX, kind)  # seq in commit order (see _postgres)
        row = self.con.execute(
            """
            INSERT INTO inbox (kind, id, event, repo, payload, received_at, ignored)
            VALUES ($1, $2, $3, $4, $5, $6, $7) ON CONFLICT DO NOTHING RETURNING seq
            """,
            [kind, id_, event, repo, payload, received_at, ignored],
        ).fetchall()
        return bool(row)

    def inbox_add_many(
        self,
        kind: str,
        rows: list[tuple[str, str, str | None, str, datetime, bool]],
    ) -> set[str]:
        """Store ``(id, event, repo, payload, received_at, ignored)`` rows in one
        statement; return the ids that were new (the others were redeliveries)."""
        if not rows:
            return set()
        cols = list(zip(*rows, strict=True))
        advisory_lock(self.con, LOCK_INBOX, kind)
        found = self.con.execute(
            """
            INSERT INTO inbox (kind, id, event, repo, payload, received_at, ignored)
            SELECT $kind, unnest($ids::VARCHAR[]), unnest($events::VARCHAR[]),
                   unnest($repos::VARCHAR[]), unnest($payloads::VARCHAR[]),
                   unnest($times::TIMESTAMPTZ[]), unnest($ignored::BOOLEAN[])
            ON CONFLICT DO NOTHING RETURNING id
            """,
            {
                "kind": kind, "ids": list(cols[0]), "events": list(cols[1]),
                "repos": list(cols[2]), "payloads": list(cols[3]), "times": list(cols[4]),
                "ignored": list(cols[5]),
            },
        ).fetchall()  # fmt: skip
        return {r[0] for r in found}

    def inbox_after(
        self,
        kind: str,
        after: int,
        limit: int = 1000,
        *,
        since: datetime | None = None,
    ) -> list[Delivery]:
        """The deliveries of ``kind`` after ``seq`` (and received at or after ``since``),
        oldest first (at most ``limit``)."""
        rows = self.con.execute(
            "SELECT kind, id, seq, event, repo, payload, received_at, ignored FROM inbox "
            "WHERE kind = $1 AND seq > $2 AND ($4::TIMESTAMPTZ IS NULL OR received_at >= $4) "
            "ORDER BY seq LIMIT $3",
            [kind, after, limit, since],
        ).fetchall()
        return [Delivery(*r) for r in rows]

    def trigger_started(self, names: list[str], at: datetime) -> None:
        """Note that the triggers ``names`` exist from ``at`` on, unless known already
        (the earliest sighting wins: a restart of serve must not move a start)."""
        if names:
            self.con.execute(
                "INSERT INTO trigger_starts SELECT unnest($names::VARCHAR[]), $at "
                "ON CONFLICT DO NOTHING",
                {"names": names, "at": at},
            )

    def trigger_since(self, trigger: str) -> datetime | None:
        """When ``trigger`` first existed, if it was ever seen."""
        row = self.con.execute(
            "SELECT since FROM trigger_starts WHERE trigger = $1", [trigger]
        ).fetchone()
        return row[0] if row else None

    def inbox_cursor(self, trigger: str, kind: str) -> int:
        row = self.con.execute(
            "SELECT seq FROM inbox_cursors WHERE trigger = $1 AND kind = $2", [trigger, kind]
        ).fetchone()
        return int(row[0]) if row else 0

    def set_inbox_cursor(self, trigger: str, kind: str, seq: int) -> None:
        # Runs of one trigger may overlap: a cursor only moves forward.
        self.con.execute(
            """
            INSERT INTO inbox_cursors VALUES ($1, $2, $3)
            ON CONFLICT (trigger, kind) DO UPDATE SET seq = greatest(seq, excluded.seq)
            """,
            [trigger, kind, seq],
        )

    def inbox_counts(self, kind: str) -> list[tuple[str, int, bool]]:
        """``(event, count, ignored)`` over the whole inbox of ``kind``, for ``status``."""
        return [
            (e, int(n), bool(i))
            for e, n, i in self.con.execute(
                "SELECT event, count(*), ignored FROM inbox WHERE kind = $1 "
                "GROUP BY event, ignored ORDER BY ignored, event",
                [kind],
            ).fetchall()
        ]
