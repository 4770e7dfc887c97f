"""The delivery ledger: for each (trigger, sink, target, item), what is owed.

A sink never decides from dates what to send; it asks the ledger. Rows are
``queued`` until the other side confirmed them (``sent``), bounced them
(``failed``), or they failed too often (``dead``). The first run of a new
(trigger, sink, target) only queues the newest few items; the rest are
``skipped`` so that a new target is not flooded with a feed's whole history.
Live events (webhook deliveries, bot messages received since the trigger existed)
are no history: they are always queued, and take no first-run slot.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from datetime import datetime, timedelta

import duckdb

from ..limits import Limit
from ..types import Item, Route
from ._base import LOCK_TARGET, TransactionBase, advisory_lock
from ._bulk import columns
from ._items import read_items
from ._owners import is_dead
from ._schema import DEAD, FAILED, QUEUED, SENDING, SENT, SKIPPED

Key = tuple[str, str]


@dataclass(frozen=True)
class Claim:
    """What one run may send now on a route, and what waits.

    ``keys``: every claimed item, oldest first; ``items``: the first ``read`` of them
    (all unless :meth:`LedgerMixin.claim` was told otherwise), at hand or read.
    """

    items: list[Item]
    waiting: int = 0  # owed but over the limit
    next_at: datetime | None = None  # when the limit lets the next one go
    keys: list[Key] = field(default_factory=list)


class LedgerMixin(TransactionBase):
    """Queueing, selecting and recording deliveries (inside ``Store.transaction``)."""

    def enqueue(
        self,
        route: Route,
        keys: Sequence[Key],
        first_run: int,
        now: datetime,
        *,
        live: frozenset[Key] = frozenset(),
    ) -> int:
        """Queue the ``keys`` this route has never seen; returns how many were skipped.

        The items must already be stored. On the
        route's first run only the newest ``first_run`` of them are queued, except the
        ``live`` ones (events received since the trigger existed), which always are.
        """
        trigger, sink, target = route.trigger, route.sink, route.target
        keys = list(dict.fromkeys(keys))  # a key twice must not take two first-run slots
        # Runs on other hosts at once (PostgreSQL): one decides the route's first run.
        advisory_lock(self.con, LOCK_TARGET, f"{sink}\x1f{target}")
        known = self.con.execute(
            "SELECT count(*) FROM deliveries WHERE trigger = $1 AND sink = $2 AND target = $3",
            [trigger, sink, target],
        ).fetchone()
        first = not (known and known[0])
        keys_py = {
            "source": [k[0] for k in keys],
            "item_id": [k[1] for k in keys],
            "ord": list(range(len(keys))),
            "live": [k in live for k in keys],
        }
        with columns(self.con, "enqueue_py", keys_py):
            _insert_new(self.con, trigger, sink, target, first, first_run, now)
        row = self.con.execute(
            "SELECT count(*) FROM deliveries WHERE trigger = $1 AND sink = $2 AND target = $3 "
            "AND state = $4 AND queued_at = $5",
            [trigger, sink, target, SKIPPED, now],
        ).fetchone()
        return int(row[0]) if row else 0

    def owed(self, route: Route, *, have: Mapping[Key, Item] | None = None) -> list[Item]:
        """The items still owed on ``route``, oldest first.

        ``have``: items at hand (what the sink was given); only the others are read from
        the store, so a batch of 10,000 new items is not read back.
        """
        keys = self.owed_keys(route)
        have = have or {}
        read = {i.key: i for i in read_items(self.con, [k for k in keys if k not in have])}
        return [have.get(k) or read[k] for k in keys if k in have or k in read]

    def owed_keys(self, route: Route) -> list[Key]:
        """The keys of the items still owed on ``route``, oldest first."""
        trigger, sink, target = route.trigger, route.sink, route.target
        rows = self.con.execute(
            """
            SELECT d.source, d.item_id
            FROM deliveries d JOIN items i ON i.source = d.source AND i.id = d.item_id
            WHERE d.trigger = $1 AND d.sink = $2 AND d.target = $3 AND d.state = $4
            ORDER BY coalesce(i.published, i.first_seen), i.first_seen, i.id
            """,
            [trigger, sink, target, QUEUED],
        ).fetchall()
        return [(r[0], r[1]) for r in rows]

    def claim(
        self,
        route: Route,
        now: datetime,
        *,
        limit: Limit | None = None,
        lease: timedelta = timedelta(minutes=5),
        owner: str | None = None,
        have: Mapping[Key, Item] | None = None,
        read: int | None = None,
    ) -> Claim:
        """Take the owed items this run may send (oldest first), within ``limit``
        (``have``: items at hand, not read from the store; see :meth:`owed`). With
        ``read``, only the first ``read`` claimed items are read (the sink reads the
        others as it goes: 10,000 items are not all held at once).

        Claimed rows are ``sending`` until :meth:`record`: a second run at the same time
        neither sends them again nor exceeds the limit, which counts what the target got
        from *every* trigger. The claim holds for ``lease``, for ``owner`` (this process,
        see ``_owners``); items whose lease ended, or whose owner is known dead (it ran on
        this host and its process is gone), are owed again.
        """
        trigger, sink, target = route.trigger, route.sink, route.target
        # Counting what the target got and taking the rest is one step per target, also
        # for runs on other hosts (PostgreSQL; one writer at a time on DuckDB anyway).
        advisory_lock(self.con, LOCK_TARGET, f"{sink}\x1f{target}")
        self.con.execute(
            "INSERT INTO routes VALUES ($1, $2, $3, $4) ON CONFLICT (trigger, sink, target) "
            "DO UPDATE SET limit_spec = excluded.limit_spec",
            [trigger, sink, target, str(limit) if limit else None],
        )
        # The run that claimed these died; whether the service got them is unknown, which
        # the note tells sinks that look before they send again (see ``tried``).
        holders = self.con.execute(
            "SELECT DISTINCT claimed_by FROM deliveries WHERE sink = $1 AND target = $2 "
            "AND state = $3 AND claimed_by IS NOT NULL",
            [sink, target, SENDING],
        ).fetchall()
        dead = [h for (h,) in holders if is_dead(h)]
        self.con.execute(
            "UPDATE deliveries SET state = $queued, updated_at = $now, claimed_by = NULL, "
            f"lease_until = NULL, last_error = coalesce(last_error, '{INTERRUPTED}') "
            "WHERE sink = $sink AND target = $target AND state = $sending "
            "AND (coalesce(lease_until, updated_at + $lease) < $now "
            "     OR claimed_by = ANY($dead::VARCHAR[]))",
            {"queued": QUEUED, "sending": SENDING, "now": now, "sink": sink, "target": target,
             "lease": lease, "dead": dead},
        )  # fmt: skip
        owed = self.owed_keys(route)
        allowed, next_at = self.allowance(sink, target, limit, now)
        allowed = min(allowed, len(owed))
        take = owed[:allowed]
        have = have or {}
        first = take if read is None else take[:read]
        got = {i.key: i for i in read_items(self.con, [k for k in first if k not in have])}
        items = [have.get(k) or got[k] for k in first]
        if take:
            self.con.execute(
                f"""UPDATE deliveries SET state = '{SENDING}', updated_at = $now,
                    claimed_by = $owner, lease_until = $until
                    FROM {_KEYS} WHERE {_WHERE} AND state = '{QUEUED}' AND {_MATCH}""",
                {"trigger": trigger, "sink": sink, "target": target, "now": now,
                 "owner": owner, "until": now + lease, **_key_lists(take)},
            )  # fmt: skip
        waiting = len(owed) - len(take)
        return Claim(items, waiting, next_at if waiting else None, take)

    def tried(self, route: Route, keys: Sequence[Key]) -> set[Key]:
        """Which of ``keys`` were sent before without an answer (a timeout, a dead run).

        A sink whose service cannot tell a repeated request from a new one looks for
        these at the target before sending them again.
        """
        if not keys:
            return set()
        trigger, sink, target = route.trigger, route.sink, route.target
        rows = self.con.execute(
            f"SELECT source, item_id FROM deliveries, {_KEYS} WHERE {_WHERE} AND {_MATCH} "
            f"AND state <> '{SENT}' AND (attempts > 0 OR last_error IS NOT NULL)",
            {"trigger": trigger, "sink": sink, "target": target, **_key_lists(keys)},
        ).fetchall()
        return {(r[0], r[1]) for r in rows}

    def requeue(self, trigger: str | None, now: datetime, *, dead: bool = False) -> int:
        """Owe failed (and with ``dead``, dead) items again, with a fresh attempt count."""
        states = [FAILED, DEAD] if dead else [FAILED]
        row = self.con.execute(
            "SELECT count(*) FROM deliveries WHERE state = ANY($states::VARCHAR[]) "
            "AND ($trigger::VARCHAR IS NULL OR trigger = $trigger)",
            {"states": states, "trigger": trigger},
        ).fetchone()
        self.con.execute(
            f"UPDATE deliveries SET state = '{QUEUED}', attempts = 0, last_error = NULL, "
            "updated_at = $now WHERE state = ANY($states::VARCHAR[]) "
            "AND ($trigger::VARCHAR IS NULL OR trigger = $trigger)",
            {"states": states, "trigger": trigger, "now": now},
        )
        return int(row[0]) if row else 0

    def allowance(
        self, sink: str, target: str, limit: Limit | None, now: datetime
    ) -> tuple[int, datetime | None]:
        """How many more ``target`` may get now under ``limit``, and when the next slot frees."""
        if limit is None:
            return 2**31, None
        allowed, next_at = 2**31, None
        for count, window in limit.windows():
            used, oldest = self.con.execute(
                """
                SELECT count(*), min(sent_at) FILTER (WHERE state = $sent) FROM deliveries
                WHERE sink = $sink AND target = $target
                  AND (state = $sending OR (state = $sent AND sent_at > $since))
                """,
                {"sent": SENT, "sending": SENDING, "sink": sink, "target": target,
                 "since": now - window},
            ).fetchone() or (0, None)  # fmt: skip
            allowed = min(allowed, max(0, count - used))
            if used >= count and oldest is not None:
                free = oldest + window
                next_at = free if next_at is None else max(next_at, free)
        return allowed, next_at

    def record(
        self,
        route: Route,
        now: datetime,
        *,
        sent: Sequence[Key] = (),
        rejected: Mapping[Key, str] | None = None,
        unsent: Sequence[Key] = (),
        error: str | None = None,
        max_attempts: int = 5,
    ) -> int:
        """Record one send attempt; returns how many items became dead.

        ``sent`` were confirmed, ``rejected`` bounced (permanent, per item), and
        ``unsent`` were owed but not confirmed because of ``error``: they stay
        queued until they have failed ``max_attempts`` times.
        """
        trigger, sink, target = route.trigger, route.sink, route.target
        base = {"trigger": trigger, "sink": sink, "target": target, "now": now}
        if sent:
            self.con.execute(
                f"""UPDATE deliveries SET state = '{SENT}', attempts = attempts + 1,
                    claimed_by = NULL, lease_until = NULL,
                    sent_at = $now, updated_at = $now, last_error = NULL
                    FROM {_KEYS} WHERE {_WHERE} AND {_MATCH}""",
                {**base, **_key_lists(sent)},
            )
        for key, reason in (rejected or {}).items():
            self.con.execute(
                f"""UPDATE deliveries SET state = '{FAILED}', attempts = attempts + 1,
                    claimed_by = NULL, lease_until = NULL,
                    last_error = $reason, updated_at = $now
                    WHERE {_WHERE} AND source = $source AND item_id = $id""",
                {**base, "reason": reason, "source": key[0], "id": key[1]},
            )
        if not unsent:
            return 0
        self.con.execute(
            f"""UPDATE deliveries SET attempts = attempts + 1, last_error = $error,
                updated_at = $now,
                claimed_by = NULL, lease_until = NULL,
                state = CASE WHEN attempts + 1 >= $max THEN '{DEAD}' ELSE '{QUEUED}' END
                FROM {_KEYS} WHERE {_WHERE} AND state IN ('{QUEUED}', '{SENDING}')
                AND {_MATCH}""",
            {**base, **_key_lists(unsent), "error": error, "max": max_attempts},
        )
        row = self.con.execute(
            f"SELECT count(*) FROM deliveries, {_KEYS} WHERE {_WHERE} AND state = '{DEAD}' "
            f"AND updated_at = $now AND {_MATCH}",
            {**base, **_key_lists(unsent)},
        ).fetchone()
        return int(row[0]) if row else 0


INTERRUPTED = "a run ended while sending it"

# The keys of one call as a relation, joined in UPDATE ... FROM (one statement per batch).
_KEYS = (
    "(SELECT unnest($key_sources::VARCHAR[]) AS k_source, unnest($key_ids::VARCHAR[]) AS k_id) k"
)
_MATCH = "deliveries.source = k.k_source AND deliveries.item_id = k.k_id"
_WHERE = "deliveries.trigger = $trigger AND deliveries.sink = $sink AND deliveries.target = $target"


def _key_lists(keys: Sequence[Key]) -> dict[str, list[str]]:
    return {"key_sources": [k[0] for k in keys], "key_ids": [k[1] for k in keys]}


def _insert_new(
    con: duckdb.DuckDBPyConnection,
    trigger: str,
    sink: str,
    target: str,
    first: bool,
    first_run: int,
    now: datetime,
) -> None:
    """Queue (or skip) the keys of relation ``enqueue_py`` this route has not seen."""
    con.execute(
        """
        INSERT INTO deliveries (trigger, sink, target, source, item_id, state, attempts,
                                queued_at, updated_at)
        SELECT $trigger, $sink, $target, k.source, k.item_id,
               CASE WHEN k.before_skip THEN $skipped
                    WHEN NOT $first OR k.live OR k.rank <= $keep THEN $queued
                    ELSE $skipped END,
               0, $now, $now
        FROM (
            SELECT n.source, n.item_id, n.live,
                   -- the newest first, counted among the backlog only
                   row_number() OVER (PARTITION BY n.live
                                      ORDER BY coalesce(i.published, i.first_seen) DESC,
                                      n.ord) AS rank,
                   -- `vacation off --skip-backlog`: what was published while away
                   coalesce(i.published < (SELECT until FROM skip_before
                                           WHERE skip_before.trigger = $trigger), false)
                       AS before_skip
            FROM (SELECT source::VARCHAR AS source, item_id::VARCHAR AS item_id, ord,
                         live::BOOLEAN AS live
                  FROM enqueue_py) n
            JOIN items i ON i.source = n.source AND i.id = n.item_id
        ) k
        ON CONFLICT DO NOTHING
        """,
        {
            "trigger": trigger,
            "sink": sink,
            "target": target,
            "first": first,
            "keep": first_run,
            "queued": QUEUED,
            "skipped": SKIPPED,
            "now": now,
        },
    )
