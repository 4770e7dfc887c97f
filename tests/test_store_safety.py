"""Store safety on real files: no extension downloads, backups, restore, check, foreign
files and a private data dir (issue 15, items 14 and 16)."""

from __future__ import annotations

import logging
import os
import sqlite3
import stat
import subprocess
import sys
import textwrap
import time
from datetime import UTC, datetime, timedelta
from pathlib import Path

import duckdb
import pytest

from triggerflow import Item
from triggerflow import _backups as backups
from triggerflow._store import VERSION, Store
from triggerflow.cli import main
from triggerflow.config import settings
from triggerflow.exceptions import ConfigurationError, StoreError

T0 = datetime(2026, 1, 1, tzinfo=UTC)


def put(store: Store, n: int, start: int = 0) -> None:
    with store.transaction() as tx:
        tx.upsert_items(
            [Item(source="feed", id=f"id{i}", title=f"t{i}") for i in range(start, start + n)],
            T0,
        )


def count(path: Path, sql: str = "SELECT count(*) FROM items") -> int:
    con = duckdb.connect(str(path), read_only=True)
    try:
        return int(con.execute(sql).fetchone()[0])  # type: ignore[index]
    finally:
        con.close()


def corrupt_items_block(path: Path) -> None:
    """Overwrite bytes inside the block that holds the items' data (not the header)."""
    con = duckdb.connect(str(path))
    con.execute("CHECKPOINT")  # the store leaves recent writes in the WAL: write them out
    (block,) = con.execute(
        "SELECT min(block_id) FROM pragma_storage_info('items') WHERE block_id >= 0"
    ).fetchone()  # type: ignore[misc]
    (size,) = con.execute(
        "SELECT block_size FROM pragma_database_size() WHERE database_name = current_database()"
    ).fetchone()  # type: ignore[misc]
    con.close()
    # 3 header blocks of 4 KiB, then blocks (16 KiB for triggerflow's stores) that start
    # with their checksum; a small table uses only the start of its block (and only that
    # part is checksummed).
    with path.open("r+b") as fh:
        fh.seek(3 * 4096 + block * size + 16)
        fh.write(b"\xff" * 64)


# -- item 14: extensions ---------------------------------------------------------------------


def test_a_sqlite_file_is_refused_by_name_and_nothing_is_downloaded(data_dir: Path) -> None:
    s = settings()
    data_dir.mkdir(parents=True)
    db = sqlite3.connect(s.store_path)
    db.execute("CREATE TABLE notes (x)")
    db.commit()
    db.close()
    with pytest.raises(StoreError) as e:
        with Store(s.store_path, 2).transaction():
            pass
    # Before: DuckDB tried to download its sqlite extension from extensions.duckdb.org.
    assert str(s.store_path) in str(e.value) and "a SQLite database" in str(e.value)
    assert "download" not in str(e.value).lower()


def test_store_connections_never_install_or_load_extensions_by_themselves(
    tmp_path: Path,
) -> None:
    other = tmp_path / "other.sqlite"
    sqlite3.connect(other).close()
    store = Store(tmp_path / "s.duckdb", 2)
    with pytest.raises(StoreError) as e:
        with store.transaction() as tx:
            # sqlite_scan lives in an extension DuckDB would otherwise fetch and load.
            tx.con.execute(f"SELECT * FROM sqlite_scan('{other}', 'x')")
    assert "download" not in str(e.value).lower() and "http" not in str(e.value).lower()
    with store.transaction() as tx:
        settings_ = dict(
            tx.con.execute(
                "SELECT name, value FROM duckdb_settings() WHERE name IN "
                "('autoinstall_known_extensions', 'autoload_known_extensions', "
                "'allow_community_extensions')"
            ).fetchall()
        )
    assert set(settings_.values()) == {"false"}


# -- item 14: backup, check, restore ------------------------------------------------------------

WRITER = textwrap.dedent(
    """
    import sys, time
    from datetime import UTC, datetime
    from pathlib import Path
    from triggerflow import Item
    from triggerflow.types import Route
    from triggerflow._store import Store
    store = Store(Path(sys.argv[1]), wait=30)
    i = 0
    print("writing", flush=True)
    end = time.monotonic() + float(sys.argv[2])
    while time.monotonic() < end:
        with store.transaction() as tx:  # an item and its ledger row, in one transaction
            tx.upsert_items([Item(source="feed", id=f"w{i}", title="w")], datetime.now(UTC))
            tx.enqueue(Route("t", "xmpp", "me"), [("feed", f"w{i}")], 1000, datetime.now(UTC))
        i += 1
    print(i, flush=True)
    """
)


def test_a_backup_taken_while_another_process_writes_is_whole_and_consistent(
    data_dir: Path,
) -> None:
    s = settings()
    put(Store(s.store_path), 10)
    writer = subprocess.Popen(
        [sys.executable, "-c", WRITER, str(s.store_path), "6"],
        stdout=subprocess.PIPE, text=True,
    )  # fmt: skip
    assert writer.stdout is not None and writer.stdout.readline().strip() == "writing"
    time.sleep(1.0)
    taken = [backups.backup(s) for _ in range(3)]
    out, _ = writer.communicate(timeout=60)
    assert writer.returncode == 0 and int(out) > 0
    sizes = []
    for path in taken:
        assert path.parent == s.backup_dir and path.name.startswith("backup-")
        assert backups.check(path, s).ok
        items = count(path, "SELECT count(*) FROM items WHERE source = 'feed' AND id LIKE 'w%'")
        ledger = count(path, "SELECT count(*) FROM deliveries")
        # One state of the store: every item written has its ledger row, none is half there,
        # and the writer's items are a prefix w0..wN (no transaction missing in between).
        assert items == ledger
        assert count(path, "SELECT coalesce(max(CAST(substr(id, 2) AS INT)) + 1, 0) FROM items "
                           "WHERE id LIKE 'w%'") == items  # fmt: skip
        sizes.append(items)
    assert sizes == sorted(sizes) and sizes[-1] > 0  # taken while the writer went on
    assert count(s.store_path) == 10 + int(out)  # the writer lost nothing to the backups


def test_check_says_ok_or_names_the_file_and_what_is_wrong(
    data_dir: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    s = settings()
    put(Store(s.store_path), 2000)
    assert main(["store", "check"]) == 0
    out = capsys.readouterr().out
    assert f"OK: {s.store_path}" in out and f"schema version {VERSION}" in out
    corrupt_items_block(s.store_path)
    assert main(["store", "check"]) == 1
    out = capsys.readouterr().out
    assert f"Problems in {s.store_path}" in out
    assert "table items: cannot be read" in out and "Corrupt database file" in out
    other = data_dir / "other.duckdb"
    con = duckdb.connect(str(other))
    con.execute("CREATE TABLE customers (name VARCHAR)")
    con.close()
    assert main(["store", "check", str(other)]) == 1
    assert "not a triggerflow store" in capsys.readouterr().out


def test_compact_says_what_it_gave_back_and_leaves_a_damaged_store_as_it_was(
    data_dir: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    s = settings()
    put(Store(s.store_path), 2000)
    assert main(["store", "compact"]) == 0
    out = capsys.readouterr().out
    assert f"Compacting {s.store_path}" in out and "Compacted: " in out and " MB → " in out
    assert count(s.store_path) == 2000 and backups.check(s.store_path, s).ok
    corrupt_items_block(s.store_path)
    damaged = s.store_path.read_bytes()
    assert main(["store", "compact"]) == 1
    err = capsys.readouterr().err
    assert str(s.store_path) in err and "Corrupt database file" in err
    assert s.store_path.read_bytes() == damaged  # not replaced by a partial copy
    assert sorted(p.name for p in data_dir.iterdir() if "compact" in p.name) == []


def test_restore_refuses_while_serve_runs_and_refuses_a_damaged_backup(
    data_dir: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    s = settings()
    put(Store(s.store_path), 2000)
    good = backups.backup(s)
    damaged = data_dir / "damaged.duckdb"
    damaged.write_bytes(good.read_bytes())
    corrupt_items_block(damaged)
    put(Store(s.store_path), 5, start=5000)
    # A live serve (this process stands in for it: its pid is alive).
    s.serve_state.write_text(f'{{"pid": {os.getpid()}, "api_url": "x", "ui_url": "y"}}')
    with pytest.raises(ConfigurationError, match="serve is running"):
        backups.restore(s, good)
    s.serve_state.unlink()
    assert main(["store", "restore", str(damaged)]) == 1
    err = capsys.readouterr().err
    assert f"backup {damaged}: not restored" in err and "Corrupt database file" in err
    assert count(s.store_path) == 2005  # untouched


def test_restore_brings_a_backup_back_and_keeps_the_store_it_replaced(
    data_dir: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    s = settings()
    store = Store(s.store_path)
    put(store, 3)
    good = backups.backup(s)
    put(store, 4, start=100)
    corrupt_items_block(s.store_path)  # the store is damaged after the backup
    with pytest.raises(StoreError):
        with store.transaction() as tx:
            tx.con.execute("SELECT * FROM items").fetchall()
    assert main(["store", "restore", str(good)]) == 0
    out = capsys.readouterr().out
    (replaced,) = data_dir.glob("triggerflow.duckdb.replaced-*")
    assert str(replaced) in out
    assert count(s.store_path) == 3
    with store.transaction() as tx:  # usable again, for reading and writing
        tx.upsert_items([Item(source="feed", id="new", title="n")], T0)
    assert count(s.store_path) == 4
    assert replaced.stat().st_size > 0


def test_serve_keeps_the_newest_daily_backups(
    data_dir: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("TRIGGERFLOW_BACKUPS", "2")
    s = settings()
    put(Store(s.store_path), 3)
    s.backup_dir.mkdir(parents=True)
    for days in (5, 4, 3):  # older daily backups, and one taken by hand (never removed)
        at = datetime.now(UTC) - timedelta(days=days)
        (s.backup_dir / f"daily-{at:%Y%m%d-%H%M%S}.duckdb").write_bytes(b"")
    (s.backup_dir / "backup-20200101-000000.duckdb").write_bytes(b"")
    said: list[str] = []
    t = backups.Backups(s, said.append, first=0)
    t.start()
    deadline = time.monotonic() + 30
    while len(backups.daily_backups(s)) != 2 and time.monotonic() < deadline:
        time.sleep(0.05)
    newest = backups.daily_backups(s)[-1]
    deadline = time.monotonic() + 30
    while time.monotonic() < deadline and not (newest.exists() and newest.stat().st_size):
        time.sleep(0.05)
    t.stop()
    assert said == [] and not t.is_alive()
    daily = backups.daily_backups(s)
    assert len(daily) == 2 and count(daily[-1]) == 3  # a new one, and the newest old one
    assert (s.backup_dir / "backup-20200101-000000.duckdb").exists()
    assert backups.next_due(s) > 23 * 3600  # the next one tomorrow


def test_no_daily_backups_when_turned_off(data_dir: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("TRIGGERFLOW_BACKUPS", "0")
    s = settings()
    put(Store(s.store_path), 1)
    t = backups.Backups(s, print, first=0)
    t.start()
    t.join(5)
    assert not t.is_alive() and backups.daily_backups(s) == []


# -- item 16: foreign files, an old store, a private data dir --------------------------------


def test_a_duckdb_file_of_someone_else_is_refused_and_left_as_it_was(tmp_path: Path) -> None:
    path = tmp_path / "theirs.duckdb"
    con = duckdb.connect(str(path))
    con.execute("CREATE TABLE customers (name VARCHAR); INSERT INTO customers VALUES ('a')")
    con.execute("CREATE TABLE meta (k INT)")  # even with a table called meta
    con.close()
    with pytest.raises(StoreError) as e:
        with Store(path, 2).transaction():
            pass
    msg = str(e.value)
    assert str(path) in msg and "not a triggerflow store" in msg and "customers" in msg
    con = duckdb.connect(str(path), read_only=True)
    tables = {r[0] for r in con.execute("SELECT table_name FROM duckdb_tables()").fetchall()}
    con.close()
    assert tables == {"customers", "meta"}  # not migrated


def test_a_store_from_before_the_marker_is_adopted(tmp_path: Path) -> None:
    from triggerflow._store._schema import MIGRATIONS

    path = tmp_path / "old.duckdb"
    con = duckdb.connect(str(path))
    for ddl in MIGRATIONS[:6]:
        con.execute(ddl)
    con.execute("INSERT INTO meta VALUES ('schema_version', '6')")
    con.execute(
        "INSERT INTO items (source, id, title, first_seen, last_seen) "
        "VALUES ('f', 'a', 'x', $1, $1)",
        [T0],
    )
    con.close()
    with Store(path, 2).transaction() as tx:
        meta = dict(tx.con.execute("SELECT key, value FROM meta").fetchall())
        kept = tx.con.execute("SELECT title FROM items").fetchall()
    assert meta == {"schema_version": str(VERSION), "application": "triggerflow"}
    assert kept == [("x",)]


def test_an_empty_file_becomes_a_marked_store(tmp_path: Path) -> None:
    path = tmp_path / "empty.duckdb"
    path.touch()
    with Store(path, 2).transaction() as tx:
        row = tx.con.execute("SELECT value FROM meta WHERE key = 'application'").fetchone()
    assert row == ("triggerflow",)


def _mode(path: Path) -> int:
    return stat.S_IMODE(path.stat().st_mode)


def test_the_data_dir_and_prefect_home_are_private(data_dir: Path) -> None:
    from triggerflow._prefect_server import prefect_environment

    old = os.umask(0o022)
    try:
        s = settings()
        put(Store(s.store_path), 1)
        assert _mode(data_dir) == 0o700  # created by the store's first transaction
        prefect_environment(s)
        assert _mode(s.prefect_home) == 0o700
        backups.backup(s)
        assert _mode(s.backup_dir) == 0o700
    finally:
        os.umask(old)


def test_an_existing_open_data_dir_is_tightened_with_a_warning(
    data_dir: Path, caplog: pytest.LogCaptureFixture
) -> None:
    from triggerflow._prefect_server import prefect_environment

    data_dir.mkdir(mode=0o755)
    data_dir.chmod(0o755)
    (data_dir / "keep.txt").write_text("x")
    (data_dir / "keep.txt").chmod(0o644)
    with caplog.at_level(logging.WARNING, logger="triggerflow"):
        prefect_environment(settings())
    assert _mode(data_dir) == 0o700
    assert _mode(data_dir / "keep.txt") == 0o644  # only the folder itself changes
    assert any(f"made {data_dir} private" in r.getMessage() for r in caplog.records)
