"""A consistent copy of the store, the store compacted in place, and a check of a file.

The copy is DuckDB's ``COPY FROM DATABASE`` into a new file, taken while the store is
open in this process: its turn at the store (``_turns``) keeps every other
triggerflow opener out and DuckDB's file lock any other process, so the copy sees one
state of every table while ``serve`` and its runs wait in the queue, as for any
transaction. Measured at 100,000 items: 0.6 s. It is also compact:
a copy holds none of the space the live file has lost to DuckDB 1.4.4's index
checkpoints (bench/README.md, "Store size"), which is what ``compact_store`` uses.

The other ways measured: ``CHECKPOINT`` plus a file copy under the lock is faster
(0.05 s) but copies that lost space too; ``EXPORT DATABASE`` writes a folder that needs
an ``IMPORT`` before it can even be checked.
"""

from __future__ import annotations

import os
import time
from contextlib import suppress
from dataclasses import dataclass, field
from pathlib import Path

import duckdb

from .._files import fsync_path
from ..exceptions import StoreError
from ._connection import (
    _retry_lock,
    check_file_type,
    no_pandas_probes,
    open_duckdb,
    quiet,
    schema_state,
    session,
    store_tables,
)
from ._schema import MIGRATIONS, VERSION
from ._turns import SUFFIX, turn

_ALIAS = "triggerflow_copy"


@dataclass
class CheckReport:
    """What ``triggerflow store check`` found in one file.

    Attributes:
        path: the file.
        problems: what is wrong, one sentence each; empty when the file is fine.
        notes: facts worth saying (schema version, rows, size).
    """

    path: Path
    problems: list[str] = field(default_factory=list)
    notes: list[str] = field(default_factory=list)

    @property
    def ok(self) -> bool:
        """True when nothing is wrong."""
        return not self.problems


def _quote_path(path: Path) -> str:
    return "'" + str(path).replace("'", "''") + "'"


def copy_store(path: Path, wait: float, dest: Path) -> None:
    """Write a consistent, compact copy of the store at ``path`` to the new file ``dest``.

    Raises:
        StoreError: the store cannot be opened or read, or ``dest`` cannot be written.
    """
    if dest.exists():
        raise StoreError(f"backup {dest}: already exists; choose another name")
    with session(path, wait) as con:
        _copy_into(con, dest, "backup")


def _copy_into(con: duckdb.DuckDBPyConnection, dest: Path, what: str) -> None:
    db = con.execute("SELECT current_database()").fetchone()[0]  # type: ignore[index]
    try:
        con.execute(f"ATTACH {_quote_path(dest)} AS {_ALIAS}")
    except duckdb.Error as e:
        raise StoreError(f"{what} {dest}: cannot be created: {e}") from e
    try:
        con.execute(f'COPY FROM DATABASE "{str(db).replace(chr(34), chr(34) * 2)}" TO {_ALIAS}')
    except BaseException:
        # duckdb 1.5 leaves the failed COPY's transaction open, aborted: DETACH would fail
        # with "transaction is aborted" in place of the real cause (say, a corrupt block).
        # Found trying 1.5.5 (bench/README.md, "DuckDB 1.4.4 or 1.5.5"); harmless on 1.4.4.
        with suppress(duckdb.Error):
            con.execute("ROLLBACK")
        con.execute(f"DETACH {_ALIAS}")
        _remove_db(dest)
        raise
    # The store's connections do not checkpoint on close (CHECKPOINT_WAL), nor would the
    # copy: checkpoint it, so that the copy is one file without a WAL.
    con.execute(f"CHECKPOINT {_ALIAS}")
    con.execute(f"DETACH {_ALIAS}")


def _remove_db(db: Path) -> None:
    for p in (db, Path(f"{db}.wal"), Path(f"{db}{SUFFIX}")):
        p.unlink(missing_ok=True)


def store_bytes(path: Path) -> int:
    """The store's size on disk: the file and its WAL."""
    total = 0
    for p in (path, Path(f"{path}.wal")):
        try:
            total += p.stat().st_size
        except FileNotFoundError:
            pass
    return total


@dataclass(frozen=True)
class Compacted:
    """What ``compact_store`` did.

    Attributes:
        path: the store.
        before: bytes on disk before (file and WAL).
        after: bytes on disk after.
        block_size: the block size the store had before (it has ``BLOCK_SIZE`` now).
        seconds: how long the store was held.
    """

    path: Path
    before: int
    after: int
    block_size: int
    seconds: float


def compact_store(path: Path, wait: float) -> Compacted:
    """Replace the store with a compact copy of itself, while serve and its runs go on.

    DuckDB 1.4.4 leaves space behind at checkpoints that it never reuses
    (``_connection.CHECKPOINT_WAL``); a copy written anew holds none of it. The copy is
    taken and put in place within one turn at the store: every triggerflow opener, in
    any process, waits in the queue (``_turns``) and opens the new file when its turn
    comes, so no process has the old file open when it is replaced. Before the rename
    the store is checkpointed (so no WAL is left that would belong to the old file) and
    the copy is checked; a kill at any moment leaves either the old store or the new
    one, and at worst a ``.compact-*.tmp`` file that the next compaction removes.

    Raises:
        StoreBusyError: another process holds the store longer than ``wait``.
        StoreError: the store cannot be read, or the copy failed its check (the store is
            left as it was).
    """
    started = time.monotonic()
    for old in path.parent.glob(f".{path.name}.compact-*.tmp"):
        _remove_db(old)  # a compaction that was killed
    tmp = path.with_name(f".{path.name}.compact-{os.getpid()}.tmp")
    wal = Path(f"{path}.wal")
    with turn(path, wait):
        before = store_bytes(path)
        with session(path, wait) as con:
            row = con.execute(
                "SELECT block_size FROM pragma_database_size() "
                "WHERE database_name = current_database()"
            ).fetchone()
            block_size = int(row[0]) if row else 0
            con.execute("CHECKPOINT")  # the WAL into the file: the copy is all of it
            _copy_into(con, tmp, "compaction")
        try:
            report = check_file(tmp, wait)
            if not report.ok:
                raise StoreError(
                    f"store {path}: not compacted, the copy failed its check: {report.problems[0]}"
                )
            if wal.exists() and wal.stat().st_size:
                raise StoreError(f"store {path}: not compacted, its WAL was not emptied")
            fsync_path(tmp)
            os.replace(tmp, path)
        except BaseException:
            _remove_db(tmp)
            raise
        wal.unlink(missing_ok=True)
        fsync_path(path.parent)
        Path(f"{tmp}{SUFFIX}").unlink(missing_ok=True)  # the check's turns file
        return Compacted(path, before, store_bytes(path), block_size, time.monotonic() - started)


def _expected_columns(version: int) -> dict[str, list[str]]:
    """Tables and columns the migrations up to ``version`` create."""
    con = open_duckdb(":memory:")
    try:
        for ddl in MIGRATIONS[:version]:
            con.execute(ddl)
        return _columns(con)
    finally:
        con.close()


def _columns(con: duckdb.DuckDBPyConnection) -> dict[str, list[str]]:
    rows = con.execute(
        "SELECT table_name, column_name FROM information_schema.columns "
        "WHERE table_catalog = current_database() ORDER BY table_name, ordinal_position"
    ).fetchall()
    out: dict[str, list[str]] = {}
    for table, column in rows:
        out.setdefault(table, []).append(column)
    return out


def _q(name: str) -> str:
    return '"' + name.replace('"', '""') + '"'


def check_file(path: Path, wait: float = 30.0) -> CheckReport:
    """Check one store file (the live store or a backup) without changing it.

    - it is a DuckDB file, and DuckDB opens it;
    - it is triggerflow's (the marker, or a store from before it) and not newer than
      this triggerflow;
    - every table and column the schema version promises is there;
    - every row of every table can be read: DuckDB verifies the checksum of each block
      it reads, so this finds damaged blocks;
    - no two rows share a primary key, and the inbox sequence is ahead of every stored
      delivery (else new webhook deliveries would be missed by the read cursors).
    """
    report = CheckReport(path)
    if not path.is_file():
        report.problems.append(f"{path}: no such file")
        return report
    try:
        check_file_type(path)
    except StoreError as e:
        report.problems.append(str(e))
        return report
    try:
        with turn(path, wait), no_pandas_probes():
            # Read-only: a check never changes the file (nor replays its WAL into it).
            deadline = time.monotonic() + wait
            con = _retry_lock(path, wait, deadline, lambda: open_duckdb(path, read_only=True))
            try:
                quiet(con)
                _check_open(con, path, report)
            finally:
                con.close()
    except StoreError as e:
        report.problems.append(str(e))
    except duckdb.Error as e:
        report.problems.append(f"store {path}: {e}")
    return report


def _check_open(con: duckdb.DuckDBPyConnection, path: Path, report: CheckReport) -> None:
    try:
        version = schema_state(con, path)
    except StoreError as e:
        report.problems.append(str(e))
        return
    if version == 0 and not store_tables(con):
        report.notes.append("empty: no triggerflow data yet")
        return
    if version < VERSION:
        report.notes.append(f"schema version {version} (migrated to {VERSION} on first use)")
    else:
        report.notes.append(f"schema version {version}")
    have = _columns(con)
    for table, columns in _expected_columns(version).items():
        if table not in have:
            report.problems.append(f"table {table}: missing")
            continue
        missing = [c for c in columns if c not in have[table]]
        if missing:
            report.problems.append(f"table {table}: missing columns {', '.join(missing)}")
    rows = 0
    unreadable: set[str] = set()
    for table in sorted(have):
        try:
            # Every column of every row, so that DuckDB reads (and checksums) every block.
            n = con.execute(
                f"SELECT count(*), bit_xor(hash(COLUMNS(*))) FROM {_q(table)}"
            ).fetchone()
        except duckdb.Error as e:
            report.problems.append(f"table {table}: cannot be read: {_first_line(e)}")
            unreadable.add(table)
            continue
        rows += int(n[0]) if n else 0
    for table, columns in _primary_keys(con):
        if table in unreadable:
            continue
        keys = ", ".join(_q(c) for c in columns)
        try:
            dup = con.execute(
                f"SELECT count(*) FROM (SELECT 1 FROM {_q(table)} GROUP BY {keys} "
                "HAVING count(*) > 1)"
            ).fetchone()
        except duckdb.Error as e:
            report.problems.append(f"table {table}: cannot be read: {_first_line(e)}")
            continue
        if dup and dup[0]:
            report.problems.append(f"table {table}: {dup[0]} key(s) stored more than once")
    _check_inbox_sequence(con, report)
    size = os.path.getsize(path)
    report.notes.append(f"{rows:,} rows in {len(have)} tables, {size / 1e6:.1f} MB")


def _primary_keys(con: duckdb.DuckDBPyConnection) -> list[tuple[str, list[str]]]:
    rows = con.execute(
        "SELECT table_name, constraint_column_names FROM duckdb_constraints() "
        "WHERE database_name = current_database() AND constraint_type = 'PRIMARY KEY'"
    ).fetchall()
    return [(str(t), [str(c) for c in cols]) for t, cols in rows]


def _check_inbox_sequence(con: duckdb.DuckDBPyConnection, report: CheckReport) -> None:
    try:
        seq = con.execute(
            "SELECT last_value FROM duckdb_sequences() "
            "WHERE database_name = current_database() AND sequence_name = 'inbox_seq'"
        ).fetchone()
        top = con.execute("SELECT max(seq) FROM inbox").fetchone()
    except duckdb.Error:
        return  # a store from before the inbox (schema < 5)
    if top and top[0] is not None and (seq is None or (seq[0] or 0) < top[0]):
        report.problems.append(
            f"sequence inbox_seq: at {seq[0] if seq else 'nothing'}, behind the inbox's "
            f"newest {top[0]}: new webhook deliveries would not be read"
        )


def _first_line(e: BaseException) -> str:
    return str(e).strip().splitlines()[0] if str(e).strip() else type(e).__name__
