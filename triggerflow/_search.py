"""Full-text search over every stored item, ranked by BM25 (DuckDB's fts extension).

::

    import triggerflow
    hits = triggerflow.search("linux kernel", since="7d", trigger="security_digest")
    hits            # a table in Jupyter; hits.scores, hits.df()

Words are matched in an item's title, summary/content and author, after stemming
(``kernels`` finds ``kernel``) and without stop words; every word must occur. A title
counts twice, so an item about the words ranks above one that mentions them once.

The fts index is not maintained on insert, so it is rebuilt off the polling path
(``serve`` does it in the background, ``triggerflow.rebuild_search_index()`` or
``triggerflow search --reindex`` by hand). Items stored or edited since the last
rebuild are still found: each search scores them with the same BM25 formula against
the index's statistics. When too many items wait for the index, a search rebuilds it
first.
"""

from __future__ import annotations

import html
import re
import threading
from collections.abc import Iterable
from dataclasses import dataclass
from datetime import UTC, date, datetime, timedelta
from pathlib import Path
from typing import Any, Literal

import duckdb

from ._fts import DOC_TEXT, STORE, Progress, empty_index, index_path, load_fts, rebuild
from ._store import ITEM_SELECT, Store, attach_read_only, now, row_to_item
from .exceptions import SearchError, StoreError
from .types import Item, Items, _cut

__all__ = [
    "IndexStatus",
    "SearchResults",
    "rebuild_search_index",
    "search",
    "search_index_status",
]

# A search rebuilds the index first when more items wait for it than this, or than this
# share of the items it covers if that is more: each waiting item costs every search
# ~50 us (it is tokenized and scored), a rebuild ~75 us per item once (bench/search.py).
AUTO_REINDEX = 1_000
AUTO_REINDEX_SHARE = 0.02

_AGO = re.compile(r"^\s*(\d+)\s*([mhdw])\s*$")
_AGO_UNITS = {"m": 60, "h": 3600, "d": 86400, "w": 7 * 86400}

# BM25 parameters, the fts extension's defaults (its match_bm25 uses the same).
_K, _B = 1.2, 0.75


class SearchResults(Items):
    """Found items, best first, with their BM25 scores (``scores``, and in ``rows()``)."""

    __slots__ = ("query", "scores")

    def __init__(self, items: Iterable[Item], scores: Iterable[float], query: str) -> None:
        super().__init__(items)
        self.scores: tuple[float, ...] = tuple(scores)
        self.query = query

    def rows(self) -> list[dict[str, Any]]:
        """The hits as plain dicts: ``score`` and every item field but ``raw``."""
        return [
            {"score": round(s, 4), **r} for s, r in zip(self.scores, super().rows(), strict=True)
        ]

    def __repr__(self) -> str:
        if not self:
            return f"SearchResults({self.query!r}: no match)"
        lines = [f"SearchResults({self.query!r}: {len(self)} hits):"]
        for item, score in zip(self[:20], self.scores, strict=False):
            when = item.published.strftime("%Y-%m-%d") if item.published else "—"
            lines.append(f"  {score:6.3f}  {when}  {_cut(item.title or item.id, 70)}  {item.link}")
        if len(self) > 20:
            lines.append(f"  … and {len(self) - 20} more")
        return "\n".join(lines)

    def _repr_html_(self) -> str:
        head = f"<p>{html.escape(self.query)}: {len(self)} hits</p>"
        return head + super()._repr_html_() if self else head

    def _lead_columns(self) -> dict[str, list[str]]:
        return {"score": [f"{s:.3f}" for s in self.scores]}


@dataclass(frozen=True)
class IndexStatus:
    """How current the search index is.

    Attributes:
        indexed: items in the index.
        waiting: items stored or edited since it was built (found all the same,
            at a small cost per search).
        built_at: when it was built, or None if never.
    """

    indexed: int
    waiting: int
    built_at: datetime | None


def search(
    query: str,
    *,
    since: str | datetime | date | None = None,
    until: str | datetime | date | None = None,
    trigger: str | None = None,
    source: str | None = None,
    limit: int = 20,
    store: Store | None = None,
    reindex: Literal["auto", "never"] = "auto",
    progress: Progress | None = None,
) -> SearchResults:
    """Items matching every word of ``query``, best first.

    Args:
        query: words to look for (case, accents and word endings do not matter).
        since: only items published (else first seen) at or after this time:
            a datetime, a date, ``"2026-11-01"`` or an age such as ``"7d"``, ``"12h"``, ``"2w"``.
        until: only items published before this time (same forms).
        trigger: only items from the sources of this trigger.
        source: only items of sources whose key (a feed's URL) contains this text.
        limit: at most this many hits.
        store: the store to search (default: the configured one).
        reindex: ``"auto"`` rebuilds the index first when many items wait for it
            (more than ``AUTO_REINDEX``, or 2% of the index); ``"never"`` does not.
        progress: called as ``progress(done, total)`` while a rebuild copies items.

    Raises:
        SearchError: the query has no word to search for, a filter is not understood,
            or the fts extension is missing (``SearchUnavailable``).
    """
    if limit < 1:
        raise SearchError(f"search: limit must be at least 1, not {limit}")
    store = store or Store.default()
    where = _filters(store, since, until, trigger, source)
    _ensure(store)
    for attempt in range(2):
        with _IndexConnection(store) as con:
            words, stems = _terms(con, query)
            if reindex == "auto" and attempt == 0 and _too_many_waiting(con):
                rows = None
            else:
                rows = _ranked(con, " ".join(words), stems, where, limit)
        if rows is not None:
            break
        rebuild(store, progress)
    assert rows is not None
    return SearchResults((row_to_item(r[:-1]) for r in rows), (r[-1] for r in rows), query)


def rebuild_search_index(store: Store | None = None, progress: Progress | None = None) -> int:
    """Rebuild the search index now; return how many items it covers.

    Triggers keep writing meanwhile: the items are copied in short visits to the store
    and the index is built in a file of its own.
    """
    return rebuild(store or Store.default(), progress)


def search_index_status(store: Store | None = None) -> IndexStatus:
    """How many items the index covers, how many wait for it, and when it was built."""
    store = store or Store.default()
    _ensure(store)
    with _IndexConnection(store) as con:
        waiting = _waiting(con)
        row = con.execute("SELECT max(built_at), max(items) FROM index_meta").fetchone()
    built_at, indexed = row if row else (None, None)
    return IndexStatus(int(indexed or 0), waiting, built_at)


# -- internals ------------------------------------------------------------------------


class _IndexConnection:
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

    def __init__(self, store: Store) -> None:
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
                con = duckdb.connect(":memory:")
                load_fts(con)
                empty_index(con)
            else:
                con = duckdb.connect(str(path), read_only=True)
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
            self.attached = attach_read_only(con, self.store.path, self.store.wait, STORE)
            self.attached.__enter__()
        except BaseException:
            self._lock.release()
            raise
        return con

    def __exit__(self, *exc: object) -> None:
        try:
            self.attached.__exit__(None, None, None)
        finally:
            self._lock.release()


def _ensure(store: Store) -> None:
    """Create (and migrate) the store if needed, so that it can be attached."""
    if not store.path.exists():
        with store.transaction():
            pass


def _terms(con: duckdb.DuckDBPyConnection, query: str) -> tuple[list[str], list[str]]:
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
_CHANGED = f"""
    SELECT i.rowid AS rid, i.* FROM {STORE}.items i WHERE i.last_seen >= $since
"""


def _since(con: duckdb.DuckDBPyConnection) -> datetime:
    row = con.execute("SELECT max(since) FROM index_meta").fetchone()
    return row[0] if row and row[0] else datetime(1970, 1, 1, tzinfo=UTC)


def _too_many_waiting(con: duckdb.DuckDBPyConnection) -> bool:
    row = con.execute("SELECT max(items) FROM index_meta").fetchone()
    indexed = int(row[0]) if row and row[0] else 0
    return _waiting(con) > max(AUTO_REINDEX, AUTO_REINDEX_SHARE * indexed)


def _waiting(con: duckdb.DuckDBPyConnection) -> int:
    row = con.execute(
        f"""
        SELECT count(*) FROM ({_CHANGED}) i
        ANTI JOIN docs d ON d.source = i.source AND d.id = i.id AND d.hash = i.hash
        """,
        {"since": _since(con)},
    ).fetchone()
    return int(row[0]) if row else 0


def _ranked(
    con: duckdb.DuckDBPyConnection,
    clean_query: str,
    stems: list[str],
    where: _Where,
    limit: int,
) -> list[tuple[Any, ...]]:
    """The ``limit`` best hits as item rows followed by their score."""
    try:
        params = {"since": _since(con), "stems": stems, "query": clean_query, "limit": limit}
        top = con.execute(_ranked_sql(where), params | where.params).fetchall()
        return _fetch(con, top)
    except duckdb.Error as e:
        raise StoreError(f"search: {e}") from e


def _ranked_sql(where: _Where) -> str:
    text = " || ' ' || ".join(f"coalesce({expr}, '')" for expr in DOC_TEXT.values())
    return f"""
    WITH
    q AS (SELECT unnest($stems::VARCHAR[]) AS t),
    changed AS (
        SELECT i.* FROM ({_CHANGED}) i
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
    ) ORDER BY score DESC, when_ DESC NULLS LAST, source, id
    LIMIT $limit
    """


def _fetch(con: duckdb.DuckDBPyConnection, top: list[tuple[Any, ...]]) -> list[tuple[Any, ...]]:
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
class _Where:
    """Filters as SQL over any table with a source and a time column, and parameters."""

    since: datetime | None
    until: datetime | None
    sources_of: str | None  # a trigger's name
    source_text: str | None

    def sql(self, source: str, when: str) -> str:
        clauses = ["true"]
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


def _filters(
    store: Store,
    since: str | datetime | date | None,
    until: str | datetime | date | None,
    trigger: str | None,
    source: str | None,
) -> _Where:
    if trigger:
        with store.transaction(commit=False) as con:
            rows = con.execute("SELECT DISTINCT trigger FROM trigger_sources").fetchall()
        known = [r[0] for r in rows]
        if trigger not in known:
            names = ", ".join(sorted(known)) or "none yet"
            raise SearchError(
                f"search: no items were collected by a trigger named {trigger!r} "
                f"(triggers with items: {names})"
            )
    return _Where(
        since=parse_time(since, "since") if since is not None else None,
        until=parse_time(until, "until") if until is not None else None,
        sources_of=trigger or None,
        source_text=source or None,
    )


def parse_time(value: str | datetime | date, name: str = "time") -> datetime:
    """A timezone-aware datetime from a datetime, a date, an ISO date/time or an age (``7d``)."""
    if isinstance(value, datetime):
        return value if value.tzinfo else value.replace(tzinfo=UTC)
    if isinstance(value, date):
        return datetime(value.year, value.month, value.day, tzinfo=UTC)
    m = _AGO.match(value)
    if m:
        return now() - timedelta(seconds=int(m.group(1)) * _AGO_UNITS[m.group(2)])
    try:
        return parse_time(datetime.fromisoformat(value.strip()), name)
    except ValueError:
        raise SearchError(
            f"search: {name}={value!r} is neither an age (30m, 12h, 7d, 2w) "
            "nor a date (2026-11-01, 2026-11-01T08:00)"
        ) from None
