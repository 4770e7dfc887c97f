"""The DuckDB store on real files: schema, items, ledger, and a lock held by another process."""

from __future__ import annotations

import subprocess
import sys
import textwrap
import time
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest

from triggerflow import Item
from triggerflow._store import VERSION, Store
from triggerflow.exceptions import StoreBusyError, StoreError

T0 = datetime(2026, 1, 1, tzinfo=UTC)
ROUTE = ("t", "xmpp", "me@example.org")


def items(n: int, start: int = 0, source: str = "feed") -> list[Item]:
    return [
        Item(source=source, id=f"id{i}", title=f"title {i}", published=T0 + timedelta(hours=i))
        for i in range(start, start + n)
    ]


@pytest.fixture
def store(tmp_path: Path) -> Store:
    return Store(tmp_path / "s.duckdb", wait=5)


def test_schema_is_versioned_and_migrations_run_once(store: Store) -> None:
    with store.transaction() as con:
        con.execute("INSERT INTO meta VALUES ('marker', 'kept')")
    with store.transaction() as con:  # reopening does not migrate again
        rows = dict(con.execute("SELECT key, value FROM meta").fetchall())
    assert rows == {"schema_version": str(VERSION), "marker": "kept"}


def test_a_newer_schema_is_refused_clearly(store: Store) -> None:
    with store.transaction() as con:
        con.execute("UPDATE meta SET value = '999' WHERE key = 'schema_version'")
    with pytest.raises(StoreError, match="newer than this triggerflow"):
        with store.transaction():
            pass


def test_upsert_counts_new_items_only(store: Store) -> None:
    with store.transaction() as con:
        assert store.upsert_items(con, items(3), T0) == 3
        assert store.upsert_items(con, items(4), T0) == 1
        assert store.upsert_items(con, items(5), T0, update=False) == 1
        assert con.execute("SELECT count(*) FROM items").fetchone() == (5,)


def test_rollback_leaves_nothing(store: Store) -> None:
    with store.transaction(commit=False) as con:
        store.upsert_items(con, items(3), T0)
    with store.transaction() as con:
        assert con.execute("SELECT count(*) FROM items").fetchone() == (0,)


def test_first_run_of_a_route_takes_the_newest_and_skips_the_rest(store: Store) -> None:
    with store.transaction() as con:
        store.upsert_items(con, items(10), T0)
        skipped = store.enqueue(con, ROUTE, [i.key for i in items(10)], 3, T0)
        owed = store.owed(con, ROUTE)
    assert skipped == 7
    assert [i.id for i in owed] == ["id7", "id8", "id9"]  # newest three, oldest first
    with store.transaction() as con:  # later runs queue everything new
        store.upsert_items(con, items(5, start=10), T0)
        later = T0 + timedelta(hours=1)
        assert store.enqueue(con, ROUTE, [i.key for i in items(15)], 3, later) == 0
        assert len(store.owed(con, ROUTE)) == 8


def test_record_sent_rejected_unsent_and_dead(store: Store) -> None:
    keys = [i.key for i in items(4)]
    with store.transaction() as con:
        store.upsert_items(con, items(4), T0)
        store.enqueue(con, ROUTE, keys, 10, T0)
        dead = store.record(
            con, ROUTE, T0, sent=[keys[0]], rejected={keys[1]: "cancel/service-unavailable"},
            unsent=keys[2:], error="server down", max_attempts=2,
        )  # fmt: skip
        assert dead == 0
        assert (
            store.record(con, ROUTE, T0, unsent=keys[2:], error="still down", max_attempts=2) == 2
        )
        rows = con.execute(
            "SELECT item_id, state, attempts, last_error FROM deliveries ORDER BY item_id"
        ).fetchall()
        (status,) = store.route_status(con)
    assert rows == [
        ("id0", "sent", 1, None),
        ("id1", "failed", 1, "cancel/service-unavailable"),
        ("id2", "dead", 2, "still down"),
        ("id3", "dead", 2, "still down"),
    ]
    assert (status.sent, status.failed, status.dead, status.queued) == (1, 1, 2, 0)


HOLD = """
import duckdb, sys, time
con = duckdb.connect(sys.argv[1])
con.execute("CREATE TABLE IF NOT EXISTS hold (x INT)")
print("locked", flush=True)
time.sleep(float(sys.argv[2]))
con.close()
"""


def _hold(path: Path, seconds: float) -> subprocess.Popen[str]:
    p = subprocess.Popen(
        [sys.executable, "-c", textwrap.dedent(HOLD), str(path), str(seconds)],
        stdout=subprocess.PIPE, text=True,
    )  # fmt: skip
    assert p.stdout is not None and p.stdout.readline().strip() == "locked"
    return p


def test_a_lock_held_briefly_by_another_process_is_waited_for(store: Store) -> None:
    with store.transaction() as con:  # create the file first
        store.upsert_items(con, items(1), T0)
    holder = _hold(store.path, 1.5)
    try:
        with store.transaction() as con:  # waits with backoff, then gets in
            assert store.upsert_items(con, items(2), T0) == 1
        assert holder.poll() is not None  # it really was the other process's turn first
    finally:
        holder.wait(10)


def test_a_lock_held_too_long_is_a_clear_error_naming_the_holder(tmp_path: Path) -> None:
    path = tmp_path / "busy.duckdb"
    holder = _hold(path, 10)
    try:
        started = time.monotonic()
        with pytest.raises(StoreBusyError) as busy:
            with Store(path, wait=1).transaction():
                pass
        assert time.monotonic() - started < 8  # bounded by `wait`, not by the holder
        assert f"process {holder.pid}" in str(busy.value)
        assert "TRIGGERFLOW_STORE_WAIT" in str(busy.value)
    finally:
        holder.kill()
        holder.wait()


def test_batches_are_single_statements(store: Store) -> None:
    """5,000 items in one upsert: one call, no per-row round trips (a row count check)."""
    many = items(5000)
    with store.transaction() as con:
        assert store.upsert_items(con, many, T0) == 5000
        store.enqueue(con, ROUTE, [i.key for i in many], 5000, T0)
        store.record(con, ROUTE, T0, sent=[i.key for i in many])
        assert con.execute("SELECT count(*) FROM deliveries WHERE state = 'sent'").fetchone() == (
            5000,
        )


def test_skip_backlog_skips_what_is_owed_and_what_was_published_before(store: Store) -> None:
    with store.transaction() as con:
        store.upsert_items(con, items(3), T0)
        store.enqueue(con, ROUTE, [i.key for i in items(3)], 10, T0)
        assert store.skip_backlog(con, ["t"], T0 + timedelta(hours=4)) == 3
        # found after the return: published at hours 3..5, the return was at hour 4
        store.upsert_items(con, items(3, start=3), T0)
        later = T0 + timedelta(days=1)
        assert store.enqueue(con, ROUTE, [i.key for i in items(6)], 10, later) == 1
        assert [i.id for i in store.owed(con, ROUTE)] == ["id4", "id5"]
