"""Read-only summaries for ``triggerflow status`` and notebooks."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime

import duckdb

from ..types import Item
from ._items import ITEM_SELECT, row_to_item


@dataclass(frozen=True)
class RouteStatus:
    """Delivery counts of one (trigger, sink, target)."""

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


@dataclass(frozen=True)
class SourceStatus:
    """Fetch state of one source, as remembered by the store."""

    source: str
    kind: str
    items: int
    last_success: datetime | None
    last_error: str | None
    last_error_at: datetime | None
    triggers: tuple[str, ...]


class StatusMixin:
    """Summaries over the ledger and the sources."""

    @staticmethod
    def route_status(con: duckdb.DuckDBPyConnection) -> list[RouteStatus]:
        """Counts per (trigger, sink, target) with the latest error."""
        rows = con.execute(
            """
            SELECT trigger, sink, target,
                   count(*) FILTER (state = 'sent'),
                   count(*) FILTER (state IN ('queued', 'sending')),
                   count(*) FILTER (state = 'failed'), count(*) FILTER (state = 'dead'),
                   count(*) FILTER (state = 'skipped'),
                   arg_max(last_error, updated_at) FILTER (last_error IS NOT NULL),
                   max(sent_at),
                   (SELECT r.limit_spec FROM routes r WHERE r.trigger = d.trigger
                      AND r.sink = d.sink AND r.target = d.target)
            FROM deliveries d GROUP BY ALL ORDER BY trigger, sink, target
            """
        ).fetchall()
        return [RouteStatus(*r) for r in rows]

    @staticmethod
    def failures(
        con: duckdb.DuckDBPyConnection, limit: int = 20, trigger: str | None = None
    ) -> list[tuple[str, ...]]:
        """The latest failed or dead deliveries (of ``trigger``, else of all):
        trigger, target, state, title, reason."""
        rows = con.execute(
            """
            SELECT d.trigger, d.target, d.state, coalesce(i.title, d.item_id), d.last_error
            FROM deliveries d LEFT JOIN items i ON i.source = d.source AND i.id = d.item_id
            WHERE d.state IN ('failed', 'dead') AND ($2::VARCHAR IS NULL OR d.trigger = $2)
            ORDER BY d.updated_at DESC LIMIT $1
            """,
            [limit, trigger],
        ).fetchall()
        return [tuple(str(c) for c in r) for r in rows]

    @staticmethod
    def source_status(con: duckdb.DuckDBPyConnection) -> list[SourceStatus]:
        """Per source: items stored, last success, last error, triggers that read it."""
        rows = con.execute(
            """
            SELECT s.source, s.kind,
                   (SELECT count(*) FROM items i WHERE i.source = s.source),
                   s.last_success, s.last_error, s.last_error_at,
                   coalesce((SELECT list(t.trigger ORDER BY t.trigger) FROM trigger_sources t
                             WHERE t.source = s.source), [])
            FROM sources s ORDER BY s.source
            """
        ).fetchall()
        return [SourceStatus(*r[:6], tuple(r[6])) for r in rows]

    @staticmethod
    def items_per_trigger(con: duckdb.DuckDBPyConnection) -> dict[str, int]:
        """How many stored items came from the sources each trigger reads."""
        rows = con.execute(
            """
            SELECT t.trigger, count(i.id) FROM trigger_sources t
            LEFT JOIN items i ON i.source = t.source GROUP BY ALL
            """
        ).fetchall()
        return {trigger: n for trigger, n in rows}

    @staticmethod
    def feed_names(con: duckdb.DuckDBPyConnection) -> list[tuple[str, int, datetime | None]]:
        """Generated feeds: name, entries, last added."""
        return con.execute(
            "SELECT target, count(*), max(sent_at) FROM deliveries "
            "WHERE sink = 'feed' AND state = 'sent' GROUP BY ALL ORDER BY target"
        ).fetchall()

    @staticmethod
    def feed_entries(
        con: duckdb.DuckDBPyConnection, name: str, limit: int
    ) -> list[tuple[Item, datetime]]:
        """The newest ``limit`` entries of feed ``name``, newest first, with when added."""
        rows = con.execute(
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
