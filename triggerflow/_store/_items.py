"""Items keyed by (source, id), and the per-source fetch state."""

from __future__ import annotations

import hashlib
import json
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any

import duckdb

from .._durations import render_about
from ..types import Item, RawJSON
from ._base import TransactionBase
from ._bulk import columns, joined, split

_ITEM_COLUMNS = (
    "source", "id", "title", "link", "summary", "content", "author", "published", "tags",
    "enclosures", "raw", "hash",
)  # fmt: skip


@dataclass(frozen=True)
class SourceState:
    """What the store remembers of one source between runs."""

    source: str
    url: str
    etag: str | None = None
    last_modified: str | None = None
    fetched_at: datetime | None = None
    next_fetch: datetime | None = None  # not fetched before (None: at the next run)
    next_reason: str | None = None  # why not before then, in words
    failures: int = 0  # failed fetches in a row
    gone: bool = False  # it answered 410 Gone: not fetched until asked to
    last_error: str | None = None  # why its last fetch failed (None: it worked)


def content_hash(item: Item) -> str:
    """A hash of what a reader sees, to tell an edited entry from an unchanged one."""
    text = "\x1f".join((item.title, item.link, item.summary, item.content, item.author))
    return hashlib.sha256(text.encode()).hexdigest()[:32]


def row_to_item(row: Sequence[Any]) -> Item:
    """An ``Item`` from a row selected as ``SELECT {ITEM_SELECT} FROM items``."""
    source, id_, title, link, summary, content, author, published, tags, encl, raw = row
    return Item(
        source=source,
        id=id_,
        title=title or "",
        link=link or "",
        summary=summary or "",
        content=content or "",
        author=author or "",
        published=published,
        tags=tuple(tags or ()),
        enclosures=tuple(encl or ()),
        raw=RawJSON(raw or ""),
    )


def _raw_text(raw: Any) -> str:
    if isinstance(raw, RawJSON):
        return raw.text
    return json.dumps(raw, default=str, ensure_ascii=False)


ITEM_SELECT = "source, id, title, link, summary, content, author, published, tags, enclosures, raw"
# upsert_items' temporary table ``incoming`` has the item columns in this order.
_STORED_COLUMNS = ", ".join((*_ITEM_COLUMNS, "first_seen", "last_seen"))
_NOT_STORED = "NOT EXISTS (SELECT 1 FROM items i WHERE i.source = n.source AND i.id = n.id)"


def read_items(con: duckdb.DuckDBPyConnection, keys: Sequence[tuple[str, str]]) -> list[Item]:
    """The stored items of ``keys``, in that order (keys not stored are left out)."""
    if not keys:
        return []
    wanted = {"source": [k[0] for k in keys], "id": [k[1] for k in keys],
              "ord": list(range(len(keys)))}  # fmt: skip
    with columns(con, "wanted_py", wanted):
        rows = con.execute(
            f"""
            SELECT {", ".join("i." + c.strip() for c in ITEM_SELECT.split(","))}
            FROM wanted_py w JOIN items i ON i.source = w.source::VARCHAR AND i.id = w.id::VARCHAR
            ORDER BY w.ord
            """
        ).fetchall()
    return [row_to_item(r) for r in rows]


class ItemsMixin(TransactionBase):
    """Writing and reading items and source state (always inside ``Store.transaction``)."""

    def upsert_items(self, items: Sequence[Item], now: datetime, *, update: bool = True) -> int:
        """Store ``items`` (one statement) and return how many were not stored before.

        With ``update`` False, items already stored are left exactly as they are.
        """
        if not items:
            return 0
        unique = {i.key: i for i in items}  # one row per key: DuckDB refuses double updates
        cols: dict[str, list[Any]] = {c: [] for c in _ITEM_COLUMNS}
        for i in unique.values():
            cols["source"].append(i.source)
            cols["id"].append(i.id)
            cols["title"].append(i.title)
            cols["link"].append(i.link)
            cols["summary"].append(i.summary)
            cols["content"].append(i.content)
            cols["author"].append(i.author)
            cols["published"].append(i.published.isoformat() if i.published else None)
            cols["tags"].append(joined(i.tags))
            cols["enclosures"].append(joined(i.enclosures))
            cols["raw"].append(_raw_text(i.raw))
            cols["hash"].append(content_hash(i))
        self.con.execute("DROP TABLE IF EXISTS incoming")
        with columns(self.con, "incoming_py", cols):
            self.con.execute(
                f"""
                CREATE TEMP TABLE incoming AS
                SELECT source::VARCHAR AS source, id::VARCHAR AS id, title::VARCHAR AS title,
                       link::VARCHAR AS link, summary::VARCHAR AS summary,
                       content::VARCHAR AS content, author::VARCHAR AS author,
                       published::TIMESTAMPTZ AS published, {split("tags")} AS tags,
                       {split("enclosures")} AS enclosures, raw::VARCHAR AS raw,
                       hash::VARCHAR AS hash
                FROM incoming_py
                """
            )
        row = self.con.execute(f"SELECT count(*) FROM incoming n WHERE {_NOT_STORED}").fetchone()
        new = int(row[0]) if row else 0
        if not update:
            self.con.execute(
                f"INSERT INTO items ({_STORED_COLUMNS}) SELECT n.*, $1::TIMESTAMPTZ, "
                f"$1::TIMESTAMPTZ FROM incoming n WHERE {_NOT_STORED}",
                [now],
            )
            self.con.execute("DROP TABLE incoming")
            return new
        self.con.execute(
            f"""
            INSERT INTO items ({_STORED_COLUMNS})
            SELECT n.*, $1::TIMESTAMPTZ, $1::TIMESTAMPTZ FROM incoming n
            ON CONFLICT (source, id) DO UPDATE SET
                title = excluded.title, link = excluded.link, summary = excluded.summary,
                content = excluded.content, author = excluded.author,
                published = excluded.published, tags = excluded.tags,
                enclosures = excluded.enclosures, raw = excluded.raw, hash = excluded.hash,
                last_seen = excluded.last_seen
            """,
            [now],
        )
        self.con.execute("DROP TABLE incoming")
        return new

    def source_states(self, sources: Sequence[str]) -> dict[str, SourceState]:
        """The remembered state of each of ``sources`` that has one."""
        rows = self.con.execute(
            "SELECT source, url, etag, last_modified, fetched_at, next_fetch, next_reason, "
            "coalesce(failures, 0), gone_at IS NOT NULL, last_error FROM sources "
            "WHERE source = ANY($1)",
            [list(sources)],
        ).fetchall()
        return {r[0]: SourceState(*r) for r in rows}

    def save_source_success(
        self,
        state: SourceState,
        kind: str,
        title: str | None,
        now: datetime,
        *,
        modified: bool,
    ) -> None:
        """Record a successful fetch (``modified`` False for a 304)."""
        self.save_source_successes([(state, title, modified)], kind, now)

    def save_source_successes(
        self,
        fetched: Sequence[tuple[SourceState, str | None, bool]],
        kind: str,
        now: datetime,
    ) -> None:
        """Record successful fetches, (state, title, modified) each, in one statement;
        each state's ``next_fetch`` and ``next_reason`` say when it is due again."""
        if not fetched:
            return
        data = {
            "next_fetch": [st.next_fetch for st, _, _ in fetched],
            "next_reason": [st.next_reason for st, _, _ in fetched],
            "source": [st.source for st, _, _ in fetched],
            "url": [st.url for st, _, _ in fetched],
            "title": [title for _, title, _ in fetched],
            "etag": [st.etag for st, _, _ in fetched],
            "lm": [st.last_modified for st, _, _ in fetched],
            "modified": [bool(m) for _, _, m in fetched],
        }
        with columns(self.con, "sources_py", data):
            self.con.execute(
                """
                INSERT INTO sources (source, kind, url, title, etag, last_modified, fetched_at,
                                     checked_at, last_success, next_fetch, next_reason,
                                     failures)
                SELECT source::VARCHAR, $kind, url::VARCHAR, title::VARCHAR, etag::VARCHAR,
                       lm::VARCHAR, CASE WHEN modified::BOOLEAN THEN $now::TIMESTAMPTZ END,
                       $now, $now, next_fetch::TIMESTAMPTZ, next_reason::VARCHAR, 0
                FROM sources_py
                ON CONFLICT (source) DO UPDATE SET
                    url = excluded.url, title = coalesce(excluded.title, sources.title),
                    etag = excluded.etag, last_modified = excluded.last_modified,
                    fetched_at = coalesce(excluded.fetched_at, sources.fetched_at),
                    checked_at = excluded.checked_at, last_success = excluded.last_success,
                    last_error = NULL, last_error_at = NULL, next_fetch = excluded.next_fetch,
                    next_reason = excluded.next_reason, failures = 0, gone_at = NULL
                """,
                {"kind": kind, "now": now},
            )

    def note_silent(
        self, sources: Sequence[str], now: datetime, *, at_least: float, times: float = 10
    ) -> list[tuple[str, str]]:
        """Note the ``sources`` that went silent: no new item for ``times`` their median
        gap between items (of their last 100), and at least ``at_least`` seconds.

        Each silence is noted once (``silent_since``), and the note cleared when the
        source has a new item; a source with fewer than 4 items has no rhythm to judge.
        Returns the newly silent ones, with the note in words.
        """
        if not sources:
            return []
        rows = self.con.execute(
            """
            WITH recent AS (
                SELECT source, seen FROM (
                    SELECT source, coalesce(published, first_seen) AS seen,
                           row_number() OVER (PARTITION BY source
                                              ORDER BY coalesce(published, first_seen) DESC)
                               AS n
                    FROM items WHERE source = ANY($sources)
                ) r WHERE n <= 100
            ), gaps AS (
                SELECT source, seen, (extract(epoch FROM seen)
                       - extract(epoch FROM lag(seen) OVER (PARTITION BY source ORDER BY seen)))
                       ::FLOAT8 AS gap
                FROM recent
            )
            SELECT g.source, max(g.seen), percentile_cont(0.5) WITHIN GROUP (ORDER BY g.gap),
                   count(g.gap), s.silent_since
            FROM gaps g JOIN sources s USING (source)
            GROUP BY g.source, s.silent_since
            """,
            {"sources": list(sources)},
        ).fetchall()
        newly: list[tuple[str, str]] = []
        quiet: list[str] = []
        for source, last, gap, gaps, since in rows:
            silent = gaps >= 3 and gap is not None and last is not None
            if silent:
                quiet_for = (now - last).total_seconds()
                silent = quiet_for > max(times * gap, at_least)
            if not silent:
                quiet.append(source)
            elif since is None:
                note = (
                    f"no new item since {last:%Y-%m-%d} (usually one every "
                    f"{render_about(timedelta(seconds=gap))})"
                )
                newly.append((source, note))
        if quiet:
            self.con.execute(
                "UPDATE sources SET silent_since = NULL, silent_note = NULL "
                "WHERE source = ANY($1) AND silent_since IS NOT NULL",
                [quiet],
            )
        if newly:
            data = {"source": [x[0] for x in newly], "note": [x[1] for x in newly]}
            with columns(self.con, "silent_py", data):
                self.con.execute(
                    "UPDATE sources SET silent_since = $1, silent_note = n.note::VARCHAR "
                    "FROM silent_py n WHERE sources.source = n.source::VARCHAR",
                    [now],
                )
        return newly

    def source_cursor(self, source: str) -> str | None:
        """Where an API source stopped reading last time (None: it never read)."""
        row = self.con.execute("SELECT cursor FROM sources WHERE source = $1", [source]).fetchone()
        return row[0] if row else None

    def save_source_cursor(
        self,
        source: str,
        kind: str,
        url: str,
        cursor: str | None,
        now: datetime,
    ) -> None:
        """Record a successful read of an API source and where it stopped."""
        self.con.execute(
            """
            INSERT INTO sources (source, kind, url, cursor, fetched_at, checked_at, last_success)
            VALUES ($1, $2, $3, $4, $5, $5, $5)
            ON CONFLICT (source) DO UPDATE SET
                url = excluded.url, cursor = coalesce(excluded.cursor, sources.cursor),
                fetched_at = excluded.fetched_at, checked_at = excluded.checked_at,
                last_success = excluded.last_success, last_error = NULL, last_error_at = NULL
            """,
            [source, kind, url, cursor, now],
        )

    def save_source_error(
        self,
        source: str,
        url: str,
        kind: str,
        error: str,
        now: datetime,
        *,
        retry: SourceState | None = None,
    ) -> None:
        """Record a failed fetch; the previous ETag and items stay as they were.

        ``retry``: the source's next fetch after it (``next_fetch``, ``next_reason``,
        ``failures``, ``gone``); without it they stay as they were.
        """
        self.con.execute(
            """
            INSERT INTO sources (source, kind, url, checked_at, last_error, last_error_at)
            VALUES ($1, $2, $3, $4, $5, $4)
            ON CONFLICT (source) DO UPDATE SET
                checked_at = excluded.checked_at, last_error = excluded.last_error,
                last_error_at = excluded.last_error_at
            """,
            [source, kind, url, now, error],
        )
        if retry is not None:
            self.con.execute(
                """
                UPDATE sources SET next_fetch = $2, next_reason = $3, failures = $4,
                    gone_at = CASE WHEN $5 THEN coalesce(gone_at, $6::TIMESTAMPTZ) END
                WHERE source = $1
                """,
                [source, retry.next_fetch, retry.next_reason, retry.failures, retry.gone, now],
            )

    def make_sources_due(self, trigger: str) -> int:
        """Every feed ``trigger`` reads is fetched by its next run, whatever its next-fetch
        time, also one that answered 410 Gone (``triggerflow run NAME --all-feeds``);
        returns how many had to wait."""
        rows = self.con.execute(
            """
            UPDATE sources SET next_fetch = NULL, next_reason = NULL, gone_at = NULL
            WHERE source IN (SELECT source FROM trigger_sources WHERE trigger = $1)
              AND (next_fetch IS NOT NULL OR gone_at IS NOT NULL)
            RETURNING source
            """,
            [trigger],
        ).fetchall()
        return len(rows)

    def keys_of_last_fetch(self, sources: Sequence[str]) -> list[tuple[str, str]]:
        """The keys of the items each source listed when it last answered with content
        (for 304s), newest first per source."""
        if not sources:
            return []
        rows = self.con.execute(
            """
            SELECT i.source, i.id
            FROM items i JOIN sources s ON s.source = i.source AND i.last_seen = s.fetched_at
            WHERE i.source = ANY($1)
            ORDER BY i.source, i.published DESC NULLS LAST
            """,
            [list(sources)],
        ).fetchall()
        return [(r[0], r[1]) for r in rows]

    def items_by_keys(self, keys: Sequence[tuple[str, str]]) -> list[Item]:
        """The stored items of ``keys``, in that order (keys not stored are left out)."""
        return read_items(self.con, keys)

    def link_trigger_sources(self, trigger: str, sources: Sequence[str]) -> None:
        """Remember that ``trigger`` reads ``sources`` (for ``status``)."""
        if sources:
            self.con.execute(
                "INSERT INTO trigger_sources SELECT $1, unnest($2::VARCHAR[]) "
                "ON CONFLICT DO NOTHING",
                [trigger, list(sources)],
            )
