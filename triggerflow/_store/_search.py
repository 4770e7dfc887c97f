"""The search query engine: the index file with the store attached, and the SQL that ranks.

``_search.py`` is the public side (what to search, when to rebuild); this module runs a
search: BM25 of the fts extension over the indexed items, the same BM25 computed in SQL
for the items written since the index was built, filters, and the hits' items.
"""

from __future__ import annotations

import threading
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import duckdb

from ..exceptions import SearchError, StoreError
from . import ITEM_SELECT, Store, open_duckdb
from ._fts import DOC_TEXT, STORE, attach_store, empty_index, index_path, load_fts, rowids
from ._postgres import PostgresStore

ALERTS_SOURCE = "triggerflow:alerts"  # _alerts.SOURCE (not imported: it pulls in the sinks)

# BM25 parameters, the fts extension's defaults (its match_bm25 uses the same).
_K, _B = 1.2, 0.75


class IndexConnection:
    """The index file (or an empty index in memory) with the store attached as ``store``.

    Loading the fts extension costs ~60 ms per connection, so each process keeps one
    read-only connection to the index file, reopened when a rebuild has replaced the
    file. That is safe where a kept store connection would not be: rebuilds write a new
    file and never wait for readers. The store is attached only for one search (it
    blocks writers meanwhile), and a lock keeps the searches of a process' threads
    from sharing the connection at once.
    """

    _lock = threading.Lock()
    _cached: tuple[object, duckdb.DuckDBPyConnection] | None = None

    def __init__(self, store: Store | PostgresStore) -> None:
        self.store = store

    @classmethod
    def _connection(cls, path: Path) -> duckdb.DuckDBPyConnection:
        try:
            st = path.stat()
            key: object = (str(path), st.st_ino, st.st_mtime_ns)
        except FileNotFoundError:
            key = (str(path), None)
        if cls._cached and cls._cached[0] == key:
            return cls._cached[1]
        cls.forget()
        try:
            if key[1] is None:  # type: ignore[index]
                con = open_duckdb(":memory:")
                load_fts(con)
                empty_index(con)
            else:
                con = open_duckdb(path, read_only=True)
                load_fts(con)
        except duckdb.Error as e:
            raise SearchError(
                f"search index {path}: cannot be read ({e}); delete it and run "
                "`triggerflow search --reindex`"
            ) from e
        cls._cached = (key, con)
        return con

    @classmethod
    def forget(cls) -> None:
        """Close the kept connection (tests, and before a rebuild replaces the file)."""
        if cls._cached:
            cls._cached[1].close()
            cls._cached = None

    def __enter__(self) -> duckdb.DuckDBPyConnection:
        self._lock.acquire()
        try:
            con = self._connection(index_path(self.store))
            self.attached = attach_store(con, self.store, STORE)
            self.attached.__enter__()
            _changed_rows(con, rowids(self.store))
        except BaseException:
            self._lock.release()
            raise
        return con

    def __exit__(self, *exc: object) -> None:
        try:
            self.attached.__exit__(None, None, None)
        finally:
            self._lock.release()


def terms(con: duckdb.DuckDBPyConnection, query: str) -> tuple[list[str], list[str]]:
    """The query's words (without stop words) and their stems, as the index sees them."""
    row = con.execute(
        """
        SELECT list(DISTINCT w ORDER BY w), list(DISTINCT stem(w, 'porter') ORDER BY 1)
        FROM (SELECT unnest(fts_main_docs.tokenize(?)) AS w)
        WHERE w <> '' AND w NOT IN (SELECT sw FROM fts_main_docs.stopwords)
        """,
        [query],
    ).fetchone()
    words, stems = (row[0], row[1]) if row else (None, None)
    if not words:
        raise SearchError(
            f"search {query!r}: no word to search for (only stop words, digits or punctuation)"
        )
    return list(words), list(stems)


# Items written since the index was built whose text may not be in it: new or edited
# ones (the hash tells). Only items stamped after index_meta.since can be; passing that
# time as a constant lets DuckDB skip the rest of the table by its zone maps.
CHANGED = "SELECT * FROM changed_rows i WHERE i.last_seen >= $since"


def _changed_rows(con: duckdb.DuckDBPyConnection, with_rowids: bool) -> None:
    """``changed_rows``: the attached store's items with a row id ``rid`` (see CHANGED).

    On DuckDB a view with the store's rowid (inlined: the filter still skips by zone
    maps). PostgreSQL's rows have none, so the items changed since the index was built
    are copied once per search, numbered below zero (the index's are above).
    """
    if with_rowids:
        con.execute(
            f"CREATE OR REPLACE TEMP VIEW changed_rows AS "
            f"SELECT i.rowid AS rid, i.* FROM {STORE}.items i"
        )
        return
    con.execute(
        f"CREATE OR REPLACE TEMP TABLE changed_rows AS "
        f"SELECT -row_number() OVER () AS rid, i.* FROM {STORE}.items i "
        "WHERE i.last_seen >= $since",
        {"since": since(con)},
    )


def since(con: duckdb.DuckDBPyConnection) -> datetime:
    row = con.execute("SELECT max(since) FROM index_meta").fetchone()
    return row[0] if row and row[0] else datetime(1970, 1, 1, tzinfo=UTC)


def waiting(con: duckdb.DuckDBPyConnection) -> int:
    row = con.execute(
        f"""
        SELECT count(*) FROM ({CHANGED}) i
        ANTI JOIN docs d ON d.source = i.source AND d.id = i.id AND d.hash = i.hash
        """,
        {"since": since(con)},
    ).fetchone()
    return int(row[0]) if row else 0


def built(con: duckdb.DuckDBPyConnection) -> tuple[datetime | None, int]:
    """When the index was last built, and how many items it covers (0: never)."""
    row = con.execute("SELECT max(built_at), max(items) FROM index_meta").fetchone()
    return (row[0], int(row[1] or 0)) if row else (None, 0)


def ranked(
    con: duckdb.DuckDBPyConnection,
    clean_query: str,
    stems: list[str],
    where: Where,
    limit: int,
) -> list[tuple[Any, ...]]:
    """The ``limit`` best hits as item rows followed by their score."""
    try:
        params = {"since": since(con), "stems": stems, "query": clean_query, "limit": limit}
        top = con.execute(ranked_sql(where), params | where.params).fetchall()
        return fetch(con, top)
    except duckdb.Error as e:
        raise StoreError(f"search: {e}") from e


def ranked_sql(where: Where) -> str:
    text = " || ' ' || ".join(f"coalesce({expr}, '')" for expr in DOC_TEXT.values())
    return f"""
    WITH
    q AS (SELECT unnest($stems::VARCHAR[]) AS t),
    changed AS (
        SELECT i.* FROM ({CHANGED}) i
        ANTI JOIN docs d ON d.source = i.source AND d.id = i.id AND d.hash = i.hash
    ),
    -- items in the index: the fts extension's own BM25 (an edited item's old text is
    -- left out: it is scored from its current text below)
    indexed AS (
        SELECT h.rid, h.source, h.id, h.when_, h.score FROM (
            SELECT rid, source, id, when_,
                   fts_main_docs.match_bm25(docid, $query, conjunctive := 1) AS score
            FROM docs d WHERE {where.sql("d.source", "d.when_")}
        ) h
        ANTI JOIN changed c ON c.source = h.source AND c.id = h.id
        WHERE h.score IS NOT NULL
    ),
    -- the rest: the same BM25, computed here from their words
    fresh AS (
        SELECT i.rid, i.source, i.id, coalesce(i.published, i.first_seen) AS when_,
               {text} AS text
        FROM changed i WHERE {where.sql("i.source", "coalesce(i.published, i.first_seen)")}
    ),
    words AS (SELECT rid, unnest(fts_main_docs.tokenize(text)) AS w FROM fresh),
    terms AS (
        SELECT rid, stem(w, 'porter') AS t FROM words
        WHERE w <> '' AND w NOT IN (SELECT sw FROM fts_main_docs.stopwords)
    ),
    lens AS (SELECT rid, count(*) AS len FROM terms GROUP BY rid),
    tf AS (
        SELECT rid, t, count(*) AS tf FROM terms WHERE t IN (SELECT t FROM q) GROUP BY rid, t
    ),
    matched AS (
        SELECT rid FROM tf GROUP BY rid HAVING count(*) = (SELECT count(*) FROM q)
    ),
    -- the index's statistics, as match_bm25 uses them (the scanned items' own when
    -- there is no index yet), so that both kinds of hits rank on one scale
    corpus AS (
        SELECT CASE WHEN s.num_docs > 0 THEN s.num_docs ELSE (SELECT count(*) FROM lens) END AS n,
               coalesce(s.avgdl, (SELECT avg(len) FROM lens)) AS avgdl,
               s.num_docs > 0 AS indexed
        FROM fts_main_docs.stats s
    ),
    df AS (
        SELECT q.t, CASE WHEN any_value(c.indexed) THEN coalesce(any_value(d.df), 0)
                    ELSE (SELECT count(*) FROM tf WHERE tf.t = q.t) END AS df
        FROM q LEFT JOIN fts_main_docs.dict d ON d.term = q.t, corpus c GROUP BY q.t
    ),
    scanned AS (
        SELECT tf.rid, sum(log((c.n - df.df + 0.5) / (df.df + 0.5) + 1)
                   * tf.tf * ({_K} + 1)
                   / (tf.tf + {_K} * (1 - {_B} + {_B} * l.len / c.avgdl))) AS score
        FROM tf JOIN matched m ON m.rid = tf.rid JOIN lens l ON l.rid = tf.rid
        JOIN df ON df.t = tf.t, corpus c
        GROUP BY tf.rid
    )
    SELECT rid, source, id, score FROM (
        SELECT * FROM indexed
        UNION ALL
        SELECT f.rid, f.source, f.id, f.when_, s.score FROM scanned s JOIN fresh f USING (rid)
    -- rounded: the extension's BM25 and the one above sum in another order, so equal
    -- scores can differ in the last bit and would put older hits first
    ) ORDER BY round(score, 9) DESC, when_ DESC NULLS LAST, source, id
    LIMIT $limit
    """


def fetch(con: duckdb.DuckDBPyConnection, top: list[tuple[Any, ...]]) -> list[tuple[Any, ...]]:
    """The items of the hits ``(rid, source, id, score)``, in that order.

    Looked up by the store's row id (a join on the key reads the whole table: ~150 ms at
    1M items, ~20 ms this way); a row that moved since the index was built is found by
    its key instead.
    """
    if not top:
        return []
    cols = ", ".join(f"i.{c.strip()}" for c in ITEM_SELECT.split(","))
    rows = con.execute(
        f"SELECT i.rowid, {cols} FROM {STORE}.items i WHERE i.rowid IN (SELECT unnest(?))",
        [[t[0] for t in top]],
    ).fetchall()
    found = {(r[1], r[2]): r[1:] for r in rows}
    missing = [t for t in top if (t[1], t[2]) not in found]
    if missing:
        rows = con.execute(
            f"SELECT {cols} FROM {STORE}.items i "
            "WHERE list_contains(?, i.id) AND list_contains(?, i.source)",
            [[t[2] for t in missing], [t[1] for t in missing]],
        ).fetchall()
        found.update({(r[0], r[1]): r for r in rows})
    return [(*found[(t[1], t[2])], t[3]) for t in top if (t[1], t[2]) in found]


@dataclass(frozen=True)
class Where:
    """Filters as SQL over any table with a source and a time column, and parameters."""

    since: datetime | None
    until: datetime | None
    sources_of: str | None  # a trigger's name
    source_text: str | None
    # Failure alerts are items too (of the `_alerts` pseudo-trigger), but a search for
    # "failing" is about what the triggers collected: alerts only when asked for.
    alerts: bool = False

    def sql(self, source: str, when: str) -> str:
        clauses = [f"{source} {'=' if self.alerts else '<>'} '{ALERTS_SOURCE}'"]
        if self.since:
            clauses.append(f"{when} >= $f_since")
        if self.until:
            clauses.append(f"{when} < $f_until")
        if self.sources_of:
            of_trigger = f"SELECT source FROM {STORE}.trigger_sources WHERE trigger = $f_trigger"
            clauses.append(f"{source} IN ({of_trigger})")
        if self.source_text:
            clauses.append(f"contains({source}, $f_source)")
        return " AND ".join(clauses)

    @property
    def params(self) -> dict[str, Any]:
        values = {
            "f_since": self.since,
            "f_until": self.until,
            "f_trigger": self.sources_of,
            "f_source": self.source_text,
        }
        return {k: v for k, v in values.items() if v}
