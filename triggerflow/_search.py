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
from collections.abc import Iterable
from dataclasses import dataclass
from datetime import UTC, date, datetime
from typing import Any, Literal

import duckdb

from ._durations import UNITS_HELP, parse_duration
from ._store import PostgresStore, Store, now, row_to_item
from ._store import _search as q
from ._store._fts import Progress, rebuild
from .exceptions import ConfigurationError, SearchError
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
_AGES = "30s, 15m, 12h, 7d, 2w"

# What reads as an attempt at an age (a number, then letters) rather than at a date: its
# mistakes are told as such ("unknown unit 'fortnight'").
_AGO = re.compile(r"^\s*[\d.]+\s*[a-z]+\s*$", re.IGNORECASE)


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
            lines.append(f"  {score:6.3f}  {when}  {_cut(item.display_title, 70)}  {item.link}")
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
    store: Store | PostgresStore | None = None,
    reindex: Literal["auto", "never"] = "auto",
    progress: Progress | None = None,
) -> SearchResults:
    """Items matching every word of ``query``, best first.

    Args:
        query: words to look for (case, accents and word endings do not matter).
        since: only items published (else first seen) at or after this time:
            a datetime, a date, ``"2026-11-01"`` or an age such as ``"30s"``, ``"12h"``,
            ``"7d"``, ``"2w"`` (a duration written as for ``every()``).
        until: only items published before this time (same forms).
        trigger: only items from the sources of this trigger; ``"_alerts"`` for the
            failure alerts, which are left out otherwise.
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
        with q.IndexConnection(store) as con:
            words, stems = q.terms(con, query)
            if reindex == "auto" and attempt == 0 and _too_many_waiting(con):
                rows = None
            else:
                rows = q.ranked(con, " ".join(words), stems, where, limit)
        if rows is not None:
            break
        rebuild(store, progress)
    assert rows is not None
    return SearchResults((row_to_item(r[:-1]) for r in rows), (r[-1] for r in rows), query)


def rebuild_search_index(
    store: Store | PostgresStore | None = None, progress: Progress | None = None
) -> int:
    """Rebuild the search index now; return how many items it covers.

    Triggers keep writing meanwhile: the items are copied in short visits to the store
    and the index is built in a file of its own.
    """
    return rebuild(store or Store.default(), progress)


def search_index_status(store: Store | PostgresStore | None = None) -> IndexStatus:
    """How many items the index covers, how many wait for it, and when it was built."""
    store = store or Store.default()
    _ensure(store)
    with q.IndexConnection(store) as con:
        waiting = q.waiting(con)
        built_at, indexed = q.built(con)
    return IndexStatus(indexed, waiting, built_at)


# -- internals ------------------------------------------------------------------------


def _ensure(store: Store | PostgresStore) -> None:
    """Create (and migrate) the store if needed, so that it can be attached."""
    if not store.exists():
        with store.transaction():
            pass


def _too_many_waiting(con: duckdb.DuckDBPyConnection) -> bool:
    indexed = q.built(con)[1]
    return q.waiting(con) > max(AUTO_REINDEX, AUTO_REINDEX_SHARE * indexed)


def _filters(
    store: Store,
    since: str | datetime | date | None,
    until: str | datetime | date | None,
    trigger: str | None,
    source: str | None,
) -> q.Where:
    alerts = trigger == "_alerts"  # the pseudo-trigger of failure alerts (_alerts.ALERTS)
    if trigger and not alerts:
        with store.transaction(commit=False) as tx:
            known = tx.triggers_with_sources()
        if trigger not in known:
            names = ", ".join(sorted(known)) or "none yet"
            raise SearchError(
                f"search: no items were collected by a trigger named {trigger!r} "
                f"(triggers with items: {names})"
            )
    return q.Where(
        since=parse_time(since, "since") if since is not None else None,
        until=parse_time(until, "until") if until is not None else None,
        sources_of=None if alerts else trigger or None,
        source_text=source or None,
        alerts=alerts,
    )


def parse_time(value: str | datetime | date, name: str = "time") -> datetime:
    """A timezone-aware datetime from a datetime, a date, an ISO date/time or an age
    (``30s``, ``12h``, ``7d``, ``1 week``: a duration as for ``every()``, before now).

    Raises:
        SearchError: neither an age nor a date; for a number and a word, which unit is
            unknown and which are accepted.
    """
    if isinstance(value, datetime):
        return value if value.tzinfo else value.replace(tzinfo=UTC)
    if isinstance(value, date):
        return datetime(value.year, value.month, value.day, tzinfo=UTC)
    if _AGO.match(value):
        try:
            return now() - parse_duration(value, what=f"search: {name}={value!r}", examples=_AGES)
        except ConfigurationError as e:
            raise SearchError(str(e)) from e
    try:
        return parse_time(datetime.fromisoformat(value.strip()), name)
    except ValueError:
        raise SearchError(
            f"search: {name}={value!r} is neither an age ({_AGES}; {UNITS_HELP}) "
            "nor a date (2026-11-01, 2026-11-01T08:00)"
        ) from None
