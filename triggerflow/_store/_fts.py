"""DuckDB's ``fts`` extension and the search index file it builds.

The index lives in its own DuckDB file beside the store (``<store>.search.duckdb``)
because building it takes seconds to minutes (about 30 s for a million items) and
the store has a single writer: trigger runs must not wait for it. A rebuild copies
the items in short read-only visits to the store, builds the index in a temporary
file, and moves it over the old one; searches that already opened the old file
finish on it.

The extension is loaded from the ``duckdb-ext-fts`` wheel (no network needed; built
for exactly the pinned duckdb), else installed from DuckDB's extension server.

With the PostgreSQL store the index is a file in each host's data folder, and the store
is attached through DuckDB's ``postgres`` extension (the ``duckdb-ext-postgres`` wheel,
offline too) as ``store``, read-only: the same SQL reads both. PostgreSQL's readers never
block its writers, so a rebuild copies the items in one read; its rows have no DuckDB
``rowid``, so they are numbered as they are copied (``rowids``).
"""

from __future__ import annotations

import os
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from datetime import timedelta
from pathlib import Path

import duckdb

from ..exceptions import SearchUnavailable, StoreError
from . import Store, attach_read_only, now, open_duckdb, quiet
from ._postgres import PostgresStore

STORE = "store"  # the alias of the store attached to an index connection
_CHUNK = 100_000  # rows copied per visit to the store (each visit blocks writers briefly)
SINCE_MARGIN = 60  # seconds; see rebuild()
REBUILD_MEMORY = "1GB"

# What an item contributes to the index. The title counts twice: words in the title
# say more about an item than the same words once in a long body.
DOC_TEXT = {
    "title": "coalesce(i.title, '')",
    "title2": "coalesce(i.title, '')",
    "body": "regexp_replace(concat_ws(' ', i.summary, i.content), '<[^>]*>', ' ', 'g')",
    "author": "coalesce(i.author, '')",
}

Progress = Callable[[int, int], None]


def index_path(store: Store | PostgresStore) -> Path:
    """The index file of ``store`` (of a PostgreSQL store: in this host's data folder)."""
    path = store.path if isinstance(store, Store) else store.folder / "triggerflow.duckdb"
    return path.with_name(path.stem + ".search.duckdb")


def rowids(store: Store | PostgresStore) -> bool:
    """Whether the attached store's items have a DuckDB ``rowid`` (not PostgreSQL's)."""
    return isinstance(store, Store)


@contextmanager
def attach_store(
    con: duckdb.DuckDBPyConnection, store: Store | PostgresStore, alias: str = "store"
) -> Iterator[None]:
    """``store`` attached read-only to ``con`` as ``alias`` for a while, either backend."""
    if isinstance(store, Store):
        with attach_read_only(con, store.path, store.wait, alias):
            yield
        return
    _load(con, "postgres_scanner", "duckdb-ext-postgres")
    quoted = store.url.replace("'", "''")
    try:
        con.execute(f"ATTACH '{quoted}' AS {alias} (TYPE postgres, READ_ONLY)")
    except duckdb.Error as e:
        reason = str(e).splitlines()[0].replace(store.url, store.location)
        raise StoreError(f"store {store.location}: search cannot read it ({reason})") from None
    try:
        yield
    finally:
        con.execute(f"DETACH {alias}")


def load_fts(con: duckdb.DuckDBPyConnection) -> None:
    """Load the fts extension into ``con``, or say how to get it.

    Also turns DuckDB's progress bar off (see ``quiet``).
    """
    quiet(con)
    _load(con, "fts", "duckdb-ext-fts")


def _load(con: duckdb.DuckDBPyConnection, name: str, wheel: str) -> None:
    """Load extension ``name`` from the ``wheel`` installed beside duckdb, else DuckDB's
    server, or say how to get it."""
    try:
        import duckdb_ext  # namespace package of the duckdb-ext-* wheels

        for base in duckdb_ext.__path__:
            directory = os.path.join(base, "extensions")
            if os.path.isdir(directory):
                con.execute("SET extension_directory = ?", [directory])
                break
    except ImportError:
        pass
    try:
        con.execute(f"LOAD {name}")
        return
    except duckdb.Error:
        pass
    try:
        con.execute(f"INSTALL {name}")
        con.execute(f"LOAD {name}")
    except duckdb.Error as e:
        raise SearchUnavailable(
            f"search needs DuckDB's {name} extension for duckdb {duckdb.__version__}, and it "
            f"could not be loaded ({str(e).splitlines()[0]}); install it with "
            f"`pip install {wheel}` (its version must match duckdb's) "
            "or allow DuckDB to download it"
        ) from e


def _create_docs(con: duckdb.DuckDBPyConnection) -> None:
    con.execute(
        """
        CREATE TABLE docs (
            docid BIGINT, rid BIGINT, source VARCHAR, id VARCHAR, hash VARCHAR,
            when_ TIMESTAMPTZ, title VARCHAR, title2 VARCHAR, body VARCHAR, author VARCHAR
        );
        -- since: items last written before this are all in the index (or edited, and
        -- then their hash differs); see rebuild().
        CREATE TABLE index_meta (built_at TIMESTAMPTZ, items BIGINT, since TIMESTAMPTZ);
        """
    )


def _create_index(con: duckdb.DuckDBPyConnection) -> None:
    fields = ", ".join(f"'{f}'" for f in DOC_TEXT)
    con.execute(
        f"PRAGMA create_fts_index('docs', 'docid', {fields}, "
        "stemmer='porter', stopwords='english', overwrite=1)"
    )
    # The extension stores its postings (term, document) in document order, so finding
    # one term's documents scans all of them (77M rows for 1M items). Stored in term
    # order, DuckDB's zone maps skip all but a few row groups: 3-8x faster searches at
    # 1M items (bench/search.py) for ~10 s more rebuild. Same table, same columns.
    con.execute(
        """
        CREATE TABLE fts_main_docs.terms_by_term AS
            SELECT * FROM fts_main_docs.terms ORDER BY termid, docid;
        DROP TABLE fts_main_docs.terms;
        ALTER TABLE fts_main_docs.terms_by_term RENAME TO terms;
        """
    )


def empty_index(con: duckdb.DuckDBPyConnection) -> None:
    """An empty index in ``con`` (an in-memory connection), for a store never indexed."""
    _create_docs(con)
    _create_index(con)


def rebuild(store: Store | PostgresStore, progress: Progress | None = None) -> int:
    """Build the search index of ``store`` anew; return how many items it covers."""
    target = index_path(store)
    tmp = target.with_name(f".{target.name}.{os.getpid()}.tmp")
    if not target.parent.is_dir():  # a PostgreSQL store's host may have no data folder yet
        from ..config import private_dir

        private_dir(target.parent)
    _remove_leftovers(target)
    try:
        return _build(store, target, tmp, progress)
    except BaseException:
        for path in (tmp, Path(f"{tmp}.wal")):
            path.unlink(missing_ok=True)
        raise


def _remove_leftovers(target: Path) -> None:
    """Half-built index files of rebuilds whose process is gone."""
    for path in target.parent.glob(f".{target.name}.*.tmp*"):
        pid = path.name.removeprefix(f".{target.name}.").split(".")[0]
        if pid.isdigit() and (int(pid) == os.getpid() or not _alive(int(pid))):
            path.unlink(missing_ok=True)


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True


def _build(store: Store | PostgresStore, target: Path, tmp: Path, progress: Progress | None) -> int:
    with store.transaction():  # creates and migrates the store if it is new
        pass
    con = open_duckdb(tmp)
    try:
        # Unbounded, building the index of 1M items peaked at 3.5 GB; DuckDB spills to
        # disk beyond this instead.
        con.execute(f"SET memory_limit = '{REBUILD_MEMORY}'")
        load_fts(con)
        _create_docs(con)
        # Writers stamp items (last_seen) just before their transaction, which may wait up
        # to store.wait for the lock: anything stamped before `since` was committed before
        # the copy began, so searches need only look at items stamped after it.
        since = now() - timedelta(seconds=store.wait + SINCE_MARGIN)
        total = _count_items(con, store)
        copied = 0
        start = 0  # the next store rowid to copy
        select = ", ".join(f"{expr} AS {name}" for name, expr in DOC_TEXT.items())
        # PostgreSQL: all at once, numbered as copied (readers do not block its writers).
        rid, chunk = ("i.rowid", "i.rowid >= $start AND i.rowid < $end") if rowids(store) else (
            "row_number() OVER ()", "$start >= 0 AND $end > 0")  # fmt: skip
        while True:
            # One short read-only visit per range of rows, so writers get the store
            # in between.
            with attach_store(con, store, STORE):
                con.execute(
                    f"""
                    CREATE OR REPLACE TEMP TABLE chunk AS
                    SELECT {rid} AS rid, i.source, i.id, i.hash,
                           coalesce(i.published, i.first_seen) AS when_, {select}
                    FROM {STORE}.items i WHERE {chunk}
                    """,
                    {"start": start, "end": start + _CHUNK},
                )
                row = (
                    con.execute(f"SELECT max(rowid) FROM {STORE}.items").fetchone()
                    if rowids(store)
                    else None
                )
            last = row[0] if row and row[0] is not None else -1
            con.execute(
                f"INSERT INTO docs SELECT $base + row_number() OVER (ORDER BY rid), "
                f"rid, source, id, hash, when_, {', '.join(DOC_TEXT)} FROM chunk",
                {"base": copied},
            )
            copied = int(con.execute("SELECT count(*) FROM docs").fetchone()[0])  # type: ignore[index]
            start += _CHUNK
            if progress:
                progress(copied, max(total, copied))
            if start > last:
                break
        # rowids are not promised to be stable while others write: an item seen twice
        # keeps its later copy only.
        con.execute(
            "DELETE FROM docs WHERE docid NOT IN (SELECT max(docid) FROM docs GROUP BY source, id)"
        )
        copied = int(con.execute("SELECT count(*) FROM docs").fetchone()[0])  # type: ignore[index]
        _create_index(con)
        con.execute("INSERT INTO index_meta VALUES (?, ?, ?)", [now(), copied, since])
        con.execute("CHECKPOINT")
    finally:
        con.close()
    Path(f"{target}.wal").unlink(missing_ok=True)
    os.replace(tmp, target)
    return copied


def _count_items(con: duckdb.DuckDBPyConnection, store: Store | PostgresStore) -> int:
    with attach_store(con, store, STORE):
        row = con.execute(f"SELECT count(*) FROM {STORE}.items").fetchone()
    return int(row[0]) if row else 0
