"""Read-only summaries for ``triggerflow status`` and notebooks."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime
from typing import Any

from ..types import Item
from ._base import TransactionBase
from ._items import ITEM_SELECT, row_to_item
from ._schema import DEAD, FAILED, QUEUED


@dataclass(frozen=True)
class RouteStatus:
    """Delivery counts of one (trigger, sink, target): a route of :func:`triggerflow.status`.

    Attributes:
        trigger: the trigger that delivers.
        sink: the sink (``xmpp``, ``feed``, ``mastodon``…).
        target: who receives (a JID, a room, a feed name…).
        sent: items delivered and confirmed.
        queued: items owed (waiting for the next run, a limit, or being sent now).
        failed: items refused for good (``triggerflow retry`` owes them again).
        dead: items given up after the maximum of attempts (``retry --dead``).
        skipped: items left out on purpose (the first run's cut, a vacation's backlog).
        last_error: the latest error of any of its deliveries, if any.
        last_sent: when the last item went out.
        limit: the publication limit the sink last ran with (``"5/hour"``), if any.
        held: of ``queued``, the items a run has claimed and is sending (or was, when it
            died: the next run takes them over at once if it died on this host, else
            once ``held_until`` passed).
        held_by: who holds them, ``host:pid:start`` each (``_store._owners``).
        held_until: when the last of those claims ends.
    """

    trigger: str
    sink: str
    target: str
    sent: int
    queued: int
    failed: int
    dead: int
    skipped: int
    last_error: str | None
    last_sent: datetime | None
    limit: str | None = None  # the publication limit the sink last ran with
    held: int = 0
    held_by: tuple[str, ...] = ()
    held_until: datetime | None = None


@dataclass(frozen=True)
class FailedDelivery:
    """One delivery that failed for good (``failed``) or was given up (``dead``).

    Attributes:
        trigger: the trigger that owes it.
        sink: the sink it was for (``xmpp``, ``feed``, ``mastodon``…).
        target: where it was to go (a JID, a room, a feed name…).
        state: ``failed`` (refused: a bounce, an unknown recipient; not tried again until
            ``triggerflow retry``) or ``dead`` (given up after the maximum of attempts;
            ``triggerflow retry --dead``).
        title: the item's title (its id when the item has none stored).
        reason: the last error, as the sink reported it.
        at: when it was last tried.
    """

    trigger: str
    sink: str
    target: str
    state: str
    title: str
    reason: str
    at: datetime


@dataclass(frozen=True)
class SourceStatus:
    """Fetch state of one source, as remembered by the store.

    Attributes:
        source: the source's key (a feed's URL as written in the trigger).
        kind: ``rss``, ``github``, ``mastodon``…
        items: items stored from it.
        last_success: when it last answered (also with "not modified").
        last_error: why its last fetch failed, or None when it worked.
        last_error_at: when that was.
        triggers: the triggers that read it, by name.
        next_fetch: a feed's next fetch, not before (None: by the next run).
        next_reason: why not before then.
        failures: its failed fetches in a row.
        gone_at: when it answered 410 Gone (not fetched since), or None.
        silent_since: when it was noted silent (no new item for much longer than
            usual), or None.
        silent_note: that note, in words.
    """

    source: str
    kind: str
    items: int
    last_success: datetime | None
    last_error: str | None
    last_error_at: datetime | None
    triggers: tuple[str, ...]
    next_fetch: datetime | None = None
    next_reason: str | None = None
    failures: int = 0
    gone_at: datetime | None = None
    silent_since: datetime | None = None
    silent_note: str | None = None


class StatusMixin(TransactionBase):
    """Summaries over the ledger and the sources."""

    def route_status(self) -> list[RouteStatus]:
        """Counts per (trigger, sink, target) with the latest error."""
        rows = self.con.execute(
            """
            SELECT trigger, sink, target,
                   count(*) FILTER (WHERE state = 'sent'),
                   count(*) FILTER (WHERE state IN ('queued', 'sending')),
                   count(*) FILTER (WHERE state = 'failed'),
                   count(*) FILTER (WHERE state = 'dead'),
                   count(*) FILTER (WHERE state = 'skipped'),
                   (array_agg(last_error ORDER BY updated_at DESC)
                        FILTER (WHERE last_error IS NOT NULL))[1],
                   max(sent_at),
                   (SELECT r.limit_spec FROM routes r WHERE r.trigger = d.trigger
                      AND r.sink = d.sink AND r.target = d.target),
                   count(*) FILTER (WHERE state = 'sending'),
                   coalesce(array_agg(DISTINCT claimed_by ORDER BY claimed_by)
                            FILTER (WHERE state = 'sending' AND claimed_by IS NOT NULL),
                            ARRAY[]::VARCHAR[]),
                   max(lease_until) FILTER (WHERE state = 'sending')
            FROM deliveries d GROUP BY trigger, sink, target ORDER BY trigger, sink, target
            """
        ).fetchall()
        return [RouteStatus(*r[:12], tuple(r[12]), r[13]) for r in rows]

    def failures(self, limit: int = 20, trigger: str | None = None) -> list[tuple[str, ...]]:
        """The latest failed or dead deliveries (of ``trigger``, else of all):
        trigger, target, state, title, reason."""
        rows = self.con.execute(
            """
            SELECT d.trigger, d.target, d.state, coalesce(i.title, d.item_id), d.last_error
            FROM deliveries d LEFT JOIN items i ON i.source = d.source AND i.id = d.item_id
            WHERE d.state IN ('failed', 'dead') AND ($2::VARCHAR IS NULL OR d.trigger = $2)
            ORDER BY d.updated_at DESC LIMIT $1
            """,
            [limit, trigger],
        ).fetchall()
        return [tuple(str(c) for c in r) for r in rows]

    def source_status(self) -> list[SourceStatus]:
        """Per source: items stored, last success, last error, triggers that read it."""
        rows = self.con.execute(
            """
            SELECT s.source, s.kind,
                   (SELECT count(*) FROM items i WHERE i.source = s.source),
                   s.last_success, s.last_error, s.last_error_at,
                   coalesce((SELECT array_agg(t.trigger ORDER BY t.trigger)
                             FROM trigger_sources t WHERE t.source = s.source),
                            ARRAY[]::VARCHAR[]),
                   s.next_fetch, s.next_reason, coalesce(s.failures, 0), s.gone_at,
                   s.silent_since, s.silent_note
            FROM sources s ORDER BY s.source
            """
        ).fetchall()
        return [SourceStatus(*r[:6], tuple(r[6]), *r[7:]) for r in rows]

    def items_per_trigger(self) -> dict[str, int]:
        """How many stored items came from the sources each trigger reads."""
        rows = self.con.execute(
            """
            SELECT t.trigger, count(i.id) FROM trigger_sources t
            LEFT JOIN items i ON i.source = t.source GROUP BY t.trigger
            """
        ).fetchall()
        return {trigger: n for trigger, n in rows}

    def feed_names(self) -> list[tuple[str, int, datetime | None]]:
        """Generated feeds: name, entries, last added."""
        return self.con.execute(
            "SELECT target, count(*), max(sent_at) FROM deliveries "
            "WHERE sink = 'feed' AND state = 'sent' GROUP BY target ORDER BY target"
        ).fetchall()

    def feed_entries(self, name: str, limit: int) -> list[tuple[Item, datetime]]:
        """The newest ``limit`` entries of feed ``name``, newest first, with when added."""
        rows = self.con.execute(
            f"""
            SELECT {", ".join("i." + c.strip() for c in ITEM_SELECT.split(","))}, d.sent_at
            FROM deliveries d JOIN items i ON i.source = d.source AND i.id = d.item_id
            WHERE d.sink = 'feed' AND d.target = $1 AND d.state = 'sent'
            ORDER BY coalesce(i.published, d.sent_at) DESC, i.source, i.id
            LIMIT $2
            """,
            [name, limit],
        ).fetchall()
        return [(row_to_item(r[:-1]), r[-1]) for r in rows]

    def unsettled(self, trigger: str) -> tuple[int, int, int]:
        """How many of ``trigger``'s deliveries are queued, failed and dead."""
        row = self.con.execute(
            "SELECT count(*) FILTER (WHERE state = $q), count(*) FILTER (WHERE state = $f), "
            "count(*) FILTER (WHERE state = $d) FROM deliveries WHERE trigger = $t",
            {"q": QUEUED, "f": FAILED, "d": DEAD, "t": trigger},
        ).fetchone()
        return (int(row[0]), int(row[1]), int(row[2])) if row else (0, 0, 0)

    def triggers_with_sources(self) -> list[str]:
        """The triggers that have read a source (and so have items), by name."""
        rows = self.con.execute(
            "SELECT DISTINCT trigger FROM trigger_sources ORDER BY trigger"
        ).fetchall()
        return [r[0] for r in rows]

    def items(
        self,
        *,
        trigger: str | None = None,
        source: str | None = None,
        since: datetime | None = None,
        limit: int = 100,
    ) -> list[Item]:
        """Stored items, newest first: all, a trigger's, or of sources containing ``source``."""
        rows = self.con.execute(
            f"""
            SELECT {ITEM_SELECT} FROM items
            WHERE ($trigger::VARCHAR IS NULL
                   OR source IN (SELECT source FROM trigger_sources WHERE trigger = $trigger))
              AND ($source::VARCHAR IS NULL OR strpos(source, $source) > 0)
              AND ($since::TIMESTAMPTZ IS NULL OR coalesce(published, first_seen) >= $since)
            ORDER BY coalesce(published, first_seen) DESC, id LIMIT $limit
            """,
            {"trigger": trigger, "source": source, "since": since, "limit": limit},
        ).fetchall()
        return [row_to_item(r) for r in rows]

    def query(
        self, sql: str, params: Sequence[Any] | dict[str, Any] | None = None
    ) -> tuple[list[str], list[tuple[Any, ...]]]:
        """A user's own SQL on the store (``triggerflow.sql``): column names and rows."""
        cur = self.con.execute(sql, params or [])
        rows = cur.fetchall()
        return [d[0] for d in cur.description or []], rows

    def failed_deliveries(
        self, limit: int = 20, trigger: str | None = None, *, leave_out: Sequence[str] = ()
    ) -> list[FailedDelivery]:
        """The latest failed or dead deliveries, newest first: of ``trigger``, else of every
        trigger but those in ``leave_out``."""
        rows = self.con.execute(
            """
            SELECT d.trigger, d.sink, d.target, d.state, coalesce(i.title, d.item_id),
                   coalesce(d.last_error, ''), d.updated_at
            FROM deliveries d LEFT JOIN items i ON i.source = d.source AND i.id = d.item_id
            WHERE d.state IN ($failed, $dead)
              AND ($trigger::VARCHAR IS NULL OR d.trigger = $trigger)
              AND ($trigger::VARCHAR IS NOT NULL OR d.trigger <> ALL($leave_out::VARCHAR[]))
            ORDER BY d.updated_at DESC, d.trigger, d.target LIMIT $limit
            """,
            {"failed": FAILED, "dead": DEAD, "trigger": trigger,
             "leave_out": list(leave_out), "limit": limit},
        ).fetchall()  # fmt: skip
        return [FailedDelivery(*r) for r in rows]
