"""Short DuckDB connections with a bounded wait for another process's lock.

DuckDB lets one process at a time open a file for writing (read-only openers
conflict with a writer too), while Prefect runs every flow run in its own process
and users open notebooks. So every operation opens, runs one transaction and
closes; a lock conflict is retried with backoff up to ``wait`` seconds, then
reported as :class:`StoreBusyError` naming the process that holds it.

Within one process DuckDB shares a single database instance between connections to
the same file, so threads never see that lock: their concurrent transactions fail
with write-write conflicts instead (even the first migration races on creating
``meta``). A per-file lock in this process serialises them, under the same ``wait``.
"""

from __future__ import annotations

import importlib.util
import re
import sys
import threading
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import TypeVar

import duckdb

from ..exceptions import StoreBusyError, StoreError
from ._schema import MIGRATIONS, VERSION

T = TypeVar("T")

_HOLDER = re.compile(r"Conflicting lock is held in (.*?) \(PID (\d+)\)")


# One re-entrant lock per store file in this process (re-entrant: a transaction opened
# inside another on the same thread must not deadlock, it behaves as it did before).
_FILE_LOCKS: dict[Path, threading.RLock] = {}
_FILE_LOCKS_GUARD = threading.Lock()


def _file_lock(path: Path) -> threading.RLock:
    key = path.resolve()
    with _FILE_LOCKS_GUARD:
        return _FILE_LOCKS.setdefault(key, threading.RLock())


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
                raise StoreError(f"store {path}: cannot open: {e}") from e
            if time.monotonic() + delay > deadline:
                m = _HOLDER.search(str(e))
                who = f"process {m.group(2)} ({m.group(1)})" if m else "another process"
                raise StoreBusyError(
                    f"store {path}: {who} has held it for more than {wait:g} s; "
                    "close notebooks or tools that keep it open, or raise TRIGGERFLOW_STORE_WAIT"
                ) from e
            time.sleep(delay)
            delay = min(delay * 2, 0.25)


@contextmanager
def _thread_lock(path: Path, wait: float) -> Iterator[None]:
    lock = _file_lock(path)
    if not lock.acquire(timeout=min(max(wait, 0.0), threading.TIMEOUT_MAX)):
        raise StoreBusyError(
            f"store {path}: another thread of this process has held it for more than "
            f"{wait:g} s; raise TRIGGERFLOW_STORE_WAIT if its transactions are that long"
        )
    try:
        yield
    finally:
        lock.release()


def _migrate(con: duckdb.DuckDBPyConnection, path: Path) -> None:
    # The common case in one query: the store is at this version (the full check
    # below costs a catalog query more, on every transaction).
    try:
        row = con.execute("SELECT value FROM meta WHERE key = 'schema_version'").fetchone()
    except duckdb.CatalogException:
        row = None
    if row is not None and row[0] == str(VERSION):
        return
    _check_and_migrate(con, path)


def _check_and_migrate(con: duckdb.DuckDBPyConnection, path: Path) -> None:
    has_meta = con.execute(
        "SELECT count(*) FROM information_schema.tables WHERE table_name = 'meta'"
    ).fetchone()
    version = 0
    if has_meta and has_meta[0]:
        row = con.execute("SELECT value FROM meta WHERE key = 'schema_version'").fetchone()
        version = int(row[0]) if row else 0
    if version > VERSION:
        raise StoreError(
            f"store {path}: schema version {version} is newer than this triggerflow "
            f"understands ({VERSION}); upgrade triggerflow"
        )
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
def connect(path: Path, wait: float, *, commit: bool = True) -> Iterator[duckdb.DuckDBPyConnection]:
    """One short transaction on the store; rolled back instead when ``commit`` is False."""
    path.parent.mkdir(parents=True, exist_ok=True)
    deadline = time.monotonic() + wait
    with _thread_lock(path, wait), no_pandas_probes():
        con = _retry_lock(path, wait, deadline, lambda: duckdb.connect(str(path)))
        try:
            quiet(con)
            _migrate(con, path)
            con.execute("BEGIN")
            try:
                yield con
            except BaseException:
                con.execute("ROLLBACK")
                raise
            con.execute("COMMIT" if commit else "ROLLBACK")
        except duckdb.Error as e:
            raise StoreError(f"store {path}: {e}") from e
        finally:
            con.close()


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
    with _thread_lock(path, wait):
        _retry_lock(
            path, wait, deadline, lambda: con.execute(f"ATTACH '{quoted}' AS {alias} (READ_ONLY)")
        )
        try:
            yield
        finally:
            con.execute(f"DETACH {alias}")
