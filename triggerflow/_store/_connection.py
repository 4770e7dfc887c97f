"""Short DuckDB connections with a bounded wait for another process's lock.

DuckDB lets one process at a time open a file for writing (read-only openers
conflict with a writer too), while Prefect runs every flow run in its own process
and users open notebooks. So every operation opens, runs one transaction and
closes. Before opening, it takes its turn in the queue of every triggerflow opener,
processes and threads alike (``_turns``: first come, first served; it waits as long
as the queue moves). An opener outside triggerflow that holds the file is retried
with backoff up to ``wait`` seconds, then reported as :class:`StoreBusyError`
naming the process that holds it.

Every connection is opened with :data:`CONFIG`: DuckDB must never download or load an
extension on its own. Opening a SQLite file (or a DuckDB file that uses an extension's
type) otherwise makes it fetch one from the internet (issue 15, item 14); the only
extension triggerflow uses, fts, is loaded explicitly (``triggerflow._store._fts``).
"""

from __future__ import annotations

import importlib.util
import os
import re
import sys
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import TypeVar

import duckdb

from ..exceptions import StoreBusyError, StoreError
from ._schema import MARKED_SINCE, MARKER, MIGRATIONS, VERSION
from ._turns import turn

T = TypeVar("T")

_HOLDER = re.compile(r"Conflicting lock is held in (.*?) \(PID (\d+)\)")

# The store's blocks: DuckDB's smallest (its default is 256 KiB). A new file starts with
# one block per table and per index, and DuckDB 1.4.4 leaks one block per changed index
# at a checkpoint (below): 16 KiB blocks make both 16 times smaller
# (bench/store_growth.py). Only new files get it; ``compact_store`` rewrites an older
# store with it. Not for the search index, which is written once and read in bulk: its
# rebuild took 30% longer with small blocks (bench/search.py).
BLOCK_SIZE = 16 * 1024

CONFIG: dict[str, str | bool | int | float] = {
    "autoinstall_known_extensions": False,
    "autoload_known_extensions": False,
    "allow_community_extensions": False,
    # The Python columns handed to DuckDB (``_bulk.columns``) are strings, bools or ints,
    # so it need not sample object columns for a type: duckdb 1.5.5's sampling took 2.4 s
    # for 10,000 rows of 12 columns (1.4.4: 3 ms; unsampled 1 ms on both) and fails on a
    # column that is all None (bench/README.md, "DuckDB 1.4.4 or 1.5.5").
    "pandas_analyze_sample": 0,
}

# The store's transactions write and read a few thousand rows; DuckDB's default, a
# thread per core, bought nothing there but competed for the cores with the feed parse
# workers that run at the same time: with one thread, the first poll of 500 feeds took
# 9% less time and 1.5 s less CPU (bench/run.py; bench/README.md, issue 20). Search and
# backups open their own connections with DuckDB's default.
STORE_THREADS = 1

# Bytes 8-11 of every DuckDB file (after the header block's checksum).
_MAGIC = b"DUCK"
_OTHER_FORMATS = {b"SQLite format 3\x00": "a SQLite database", b"PAR1": "a Parquet file"}

# DuckDB 1.4.4 leaks one block per index changed at every checkpoint of a file it
# opened anew (duckdb/duckdb#19468; fixed in 1.4.5, for which duckdb-ext-fts ships no
# fts). Its default, a checkpoint at every close, is one per write transaction here:
# ~1 MB per run of a trigger with 256 KiB blocks. So connections leave what they wrote
# in the WAL (which DuckDB replays on open, as after a crash) and only the transaction
# that finds the WAL this big checkpoints it: one checkpoint per CHECKPOINT_WAL of
# writes, not per write (bench/store_growth.py). 0: DuckDB's default.
CHECKPOINT_WAL = 1024 * 1024

RECOVERY_HINT = 'see `triggerflow store check` and the README, "Backups and recovery"'


def open_duckdb(
    path: Path | str, *, read_only: bool = False, store: bool = False
) -> duckdb.DuckDBPyConnection:
    """A DuckDB connection with triggerflow's settings (:data:`CONFIG`).

    ``store``: a connection to the store, for its short transactions: files it creates
    (the store, a copy ATTACHed to it) get the store's :data:`BLOCK_SIZE`, and it runs
    on :data:`STORE_THREADS`.
    """
    config = dict(CONFIG)
    if store:
        config["default_block_size"] = BLOCK_SIZE
        config["threads"] = STORE_THREADS
    return duckdb.connect(str(path), read_only=read_only, config=config)


def check_file_type(path: Path) -> None:
    """Refuse a file that is not a DuckDB database before DuckDB guesses what it is.

    A missing or empty file is fine: the store is created there.

    Raises:
        StoreError: the file exists and is something else, named if we know it.
    """
    try:
        with path.open("rb") as fh:
            head = fh.read(16)
    except FileNotFoundError:
        return
    except OSError as e:
        raise StoreError(f"store {path}: cannot read it: {e.strerror or e}") from e
    if not head:
        # DuckDB refuses an empty file; it holds nothing, so the store is created anew.
        path.unlink(missing_ok=True)
        return
    if head[8:12] == _MAGIC:
        return
    kind = next((k for sig, k in _OTHER_FORMATS.items() if head.startswith(sig)), None)
    raise StoreError(
        f"store {path}: not a DuckDB file ({kind or 'unknown content'}), so not triggerflow's "
        "store; set TRIGGERFLOW_DATA_DIR to another folder, or move the file away"
    )


def _is_lock_conflict(e: duckdb.Error) -> bool:
    return "Could not set lock" in str(e) or "Conflicting lock" in str(e)


def _retry_lock(path: Path, wait: float, deadline: float, action: Callable[[], T]) -> T:
    """``action()``, retried with backoff while another process holds the file's lock."""
    delay = 0.01
    while True:
        try:
            return action()
        except duckdb.IOException as e:
            if not _is_lock_conflict(e):
                hint = f"; {RECOVERY_HINT}" if "Corrupt" in str(e) else ""
                raise StoreError(f"store {path}: cannot open: {e}{hint}") from e
            if time.monotonic() + delay > deadline:
                m = _HOLDER.search(str(e))
                who = f"process {m.group(2)} ({m.group(1)})" if m else "another process"
                raise StoreBusyError(
                    f"store {path}: {who} has held it for more than {wait:g} s; "
                    "close notebooks or tools that keep it open, or raise TRIGGERFLOW_STORE_WAIT"
                ) from e
            time.sleep(delay)
            delay = min(delay * 2, 0.25)


def _migrate(con: duckdb.DuckDBPyConnection, path: Path) -> None:
    # The common case in one query: the store is triggerflow's, at this version (the
    # full check below costs catalog queries more, on every transaction).
    try:
        row = con.execute(
            "SELECT max(value) FILTER (key = 'schema_version'), "
            "max(value) FILTER (key = 'application') FROM meta"
        ).fetchone()
    except (duckdb.CatalogException, duckdb.BinderException):
        row = None
    if row is not None and row == (str(VERSION), MARKER):
        return
    _check_and_migrate(con, path)


def store_tables(con: duckdb.DuckDBPyConnection) -> set[str]:
    """The tables and views of the file ``con`` opened (not of attached ones)."""
    rows = con.execute(
        "SELECT table_name FROM information_schema.tables WHERE table_catalog = current_database()"
    ).fetchall()
    return {r[0] for r in rows}


def schema_state(con: duckdb.DuckDBPyConnection, path: Path) -> int:
    """The schema version of the file, 0 for an empty one.

    Raises:
        StoreError: the file has tables but is not triggerflow's (no marker, and not a
            store from before the marker either), or it is newer than this triggerflow.
    """
    tables = store_tables(con)
    meta: dict[str, str] = {}
    if "meta" in tables:
        try:
            meta = {
                str(k): str(v) for k, v in con.execute("SELECT key, value FROM meta").fetchall()
            }
        except duckdb.Error:  # a `meta` table of someone else's design
            meta = {}
    try:
        version = int(meta.get("schema_version", "0"))
    except ValueError:
        version = -1
    # Stores written before the marker existed are recognised by their own tables.
    older = 0 < version < MARKED_SINCE and {"meta", "items", "deliveries"} <= tables
    if tables and meta.get("application") != MARKER and not older:
        shown = ", ".join(sorted(tables)[:5]) + (", …" if len(tables) > 5 else "")
        raise StoreError(
            f"store {path}: not a triggerflow store (it has tables of its own: {shown}, and "
            "no triggerflow marker), so it is left as it is; set TRIGGERFLOW_DATA_DIR to "
            "another folder, or move the file away"
        )
    if version < 0:
        raise StoreError(
            f"store {path}: its schema version {meta['schema_version']!r} is not a number; "
            + RECOVERY_HINT
        )
    if version > VERSION:
        raise StoreError(
            f"store {path}: schema version {version} is newer than this triggerflow "
            f"understands ({VERSION}); upgrade triggerflow"
        )
    return max(version, 0)


def _check_and_migrate(con: duckdb.DuckDBPyConnection, path: Path) -> None:
    version = schema_state(con, path)
    for number in range(version, VERSION):
        con.execute("BEGIN")
        con.execute(MIGRATIONS[number])
        con.execute("INSERT OR REPLACE INTO meta VALUES ('schema_version', ?)", [str(number + 1)])
        con.execute("COMMIT")


def quiet(con: duckdb.DuckDBPyConnection) -> None:
    """No progress bar from long statements: it writes to stdout, which is the CLI's.

    In Jupyter without ipywidgets DuckDB refuses any change of that setting (and
    draws no bar there), so a refusal is fine.
    """
    try:
        con.execute("SET enable_progress_bar = false")
    except duckdb.Error:
        pass


_PANDAS_MISSING: bool | None = None


@contextmanager
def no_pandas_probes() -> Iterator[None]:
    """Let DuckDB's Python binding fail fast at importing pandas when it is not installed.

    The binding tries ``import pandas`` for every Python value it converts (to recognise
    pandas' types) and does not remember a failure: storing 10,000 items meant 280,000
    failed imports, each a search of ``sys.path`` (10.8 s of a 12 s insert). A ``None`` in
    ``sys.modules`` makes each attempt fail at once. Only while we talk to DuckDB, so a
    pandas installed later in a notebook's session still imports.
    """
    global _PANDAS_MISSING
    if _PANDAS_MISSING is None:
        _PANDAS_MISSING = importlib.util.find_spec("pandas") is None
    if not _PANDAS_MISSING or "pandas" in sys.modules:
        yield
        return
    sys.modules["pandas"] = None  # type: ignore[assignment]
    try:
        yield
    finally:
        if sys.modules.get("pandas", 0) is None:
            del sys.modules["pandas"]


@contextmanager
def session(
    path: Path, wait: float, *, migrate: bool = True
) -> Iterator[duckdb.DuckDBPyConnection]:
    """The store open (and so locked against other processes) for a while, no transaction.

    For work that must see one state of the whole file without holding a transaction,
    such as a backup: no other process can write while this is open. ``migrate=False``
    opens the file as it is (``triggerflow store check``).
    """
    _private_parent(path)
    check_file_type(path)
    deadline = time.monotonic() + wait
    with turn(path, wait), no_pandas_probes():
        con = _retry_lock(path, wait, deadline, lambda: open_duckdb(path, store=True))
        try:
            quiet(con)
            if CHECKPOINT_WAL:
                con.execute("PRAGMA disable_checkpoint_on_shutdown")
            if migrate:
                _migrate(con, path)
            yield con
        except duckdb.Error as e:
            raise StoreError(f"store {path}: {e}") from e
        finally:
            try:
                _checkpoint_if_due(con, path)
            finally:
                con.close()


def _checkpoint_if_due(con: duckdb.DuckDBPyConnection, path: Path) -> None:
    if not CHECKPOINT_WAL:
        return
    try:
        due = os.path.getsize(f"{path}.wal") >= CHECKPOINT_WAL
    except OSError:
        return
    if due:
        try:
            con.execute("CHECKPOINT")
        except duckdb.Error:
            pass  # it stays in the WAL, replayed on open: the next writer tries again


@contextmanager
def connect(path: Path, wait: float, *, commit: bool = True) -> Iterator[duckdb.DuckDBPyConnection]:
    """One short transaction on the store; rolled back instead when ``commit`` is False."""
    with session(path, wait) as con:
        con.execute("BEGIN")
        try:
            yield con
        except BaseException:
            con.execute("ROLLBACK")
            raise
        con.execute("COMMIT" if commit else "ROLLBACK")


def _private_parent(path: Path) -> None:
    # The folder is normally the data dir, which also holds Prefect's database and the
    # key to saved secrets: only its owner may enter it (see config.private_dir).
    if not path.parent.is_dir():
        from ..config import private_dir

        private_dir(path.parent)


@contextmanager
def attach_read_only(
    con: duckdb.DuckDBPyConnection, path: Path, wait: float, alias: str
) -> Iterator[None]:
    """The store attached read-only to ``con`` (a connection to another file) for a while.

    The search index lives in its own file; reading both in one query needs this.
    Holding it blocks writers of other processes, so callers keep it short.
    """
    deadline = time.monotonic() + wait
    quoted = str(path).replace("'", "''")
    with turn(path, wait):
        _retry_lock(
            path, wait, deadline, lambda: con.execute(f"ATTACH '{quoted}' AS {alias} (READ_ONLY)")
        )
        try:
            yield
        finally:
            con.execute(f"DETACH {alias}")
