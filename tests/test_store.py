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
from triggerflow.limits import Limit
from triggerflow.types import Route

T0 = datetime(2026, 1, 1, tzinfo=UTC)
ROUTE = Route("t", "xmpp", "me@example.org")


def items(n: int, start: int = 0, source: str = "feed") -> list[Item]:
    return [
        Item(source=source, id=f"id{i}", title=f"title {i}", published=T0 + timedelta(hours=i))
        for i in range(start, start + n)
    ]


@pytest.fixture
def store(tmp_path: Path) -> Store:
    return Store(tmp_path / "s.duckdb", wait=5)


def test_schema_is_versioned_and_migrations_run_once(store: Store) -> None:
    with store.transaction() as tx:
        tx.con.execute("INSERT INTO meta VALUES ('marker', 'kept')")
    with store.transaction() as tx:  # reopening does not migrate again
        rows = dict(tx.con.execute("SELECT key, value FROM meta").fetchall())
    assert rows == {"schema_version": str(VERSION), "application": "triggerflow", "marker": "kept"}


def test_a_newer_schema_is_refused_clearly(store: Store) -> None:
    with store.transaction() as tx:
        tx.con.execute("UPDATE meta SET value = '999' WHERE key = 'schema_version'")
    with pytest.raises(StoreError, match="newer than this triggerflow"):
        with store.transaction():
            pass


def test_upsert_counts_new_items_only(store: Store) -> None:
    with store.transaction() as tx:
        assert tx.upsert_items(items(3), T0) == 3
        assert tx.upsert_items(items(4), T0) == 1
        assert tx.upsert_items(items(5), T0, update=False) == 1
        assert tx.con.execute("SELECT count(*) FROM items").fetchone() == (5,)


def test_rollback_leaves_nothing(store: Store) -> None:
    with store.transaction(commit=False) as tx:
        tx.upsert_items(items(3), T0)
    with store.transaction() as tx:
        assert tx.con.execute("SELECT count(*) FROM items").fetchone() == (0,)


def test_first_run_of_a_route_takes_the_newest_and_skips_the_rest(store: Store) -> None:
    with store.transaction() as tx:
        tx.upsert_items(items(10), T0)
        skipped = tx.enqueue(ROUTE, [i.key for i in items(10)], 3, T0)
        owed = tx.owed(ROUTE)
    assert skipped == 7
    assert [i.id for i in owed] == ["id7", "id8", "id9"]  # newest three, oldest first
    with store.transaction() as tx:  # later runs queue everything new
        tx.upsert_items(items(5, start=10), T0)
        later = T0 + timedelta(hours=1)
        assert tx.enqueue(ROUTE, [i.key for i in items(15)], 3, later) == 0
        assert len(tx.owed(ROUTE)) == 8


def test_live_events_are_never_cut_and_take_no_first_run_slot(store: Store) -> None:
    """Issue 15, item 10: a first run's cut counts the backlog only."""
    with store.transaction() as tx:
        tx.upsert_items(items(10), T0)
        keys = [i.key for i in items(10)]
        live = frozenset(keys[:6])  # older than the backlog, still live events
        assert tx.enqueue(ROUTE, keys, 3, T0, live=live) == 1
        owed = tx.owed(ROUTE)
    assert [i.id for i in owed] == [f"id{n}" for n in (0, 1, 2, 3, 4, 5, 7, 8, 9)]


def test_record_sent_rejected_unsent_and_dead(store: Store) -> None:
    keys = [i.key for i in items(4)]
    with store.transaction() as tx:
        tx.upsert_items(items(4), T0)
        tx.enqueue(ROUTE, keys, 10, T0)
        dead = tx.record(
            ROUTE, T0, sent=[keys[0]], rejected={keys[1]: "cancel/service-unavailable"},
            unsent=keys[2:], error="server down", max_attempts=2,
        )  # fmt: skip
        assert dead == 0
        assert tx.record(ROUTE, T0, unsent=keys[2:], error="still down", max_attempts=2) == 2
        rows = tx.con.execute(
            "SELECT item_id, state, attempts, last_error FROM deliveries ORDER BY item_id"
        ).fetchall()
        (status,) = tx.route_status()
    assert rows == [
        ("id0", "sent", 1, None),
        ("id1", "failed", 1, "cancel/service-unavailable"),
        ("id2", "dead", 2, "still down"),
        ("id3", "dead", 2, "still down"),
    ]
    assert (status.sent, status.failed, status.dead, status.queued) == (1, 1, 2, 0)


OWNER = """
from triggerflow._store._owners import this_process
print(this_process(), flush=True)
"""


def test_a_claim_of_a_run_that_died_on_this_host_is_taken_over_at_once(store: Store) -> None:
    """A rerun right after a SIGKILL sends what the dead run held, not after its lease."""
    from triggerflow._store._owners import is_dead, this_process

    gone = subprocess.run(
        [sys.executable, "-c", OWNER], capture_output=True, text=True, check=True
    ).stdout.strip()  # that process has exited: its claim is a dead run's
    assert is_dead(gone) and not is_dead(this_process())
    keys = [i.key for i in items(4)]
    lease = timedelta(minutes=10)
    with store.transaction() as tx:
        tx.upsert_items(items(4), T0)
        tx.enqueue(ROUTE, keys, 10, T0)
        first = tx.claim(ROUTE, T0, limit=Limit(2, timedelta(hours=1)), lease=lease, owner=gone)
    assert len(first.items) == 2
    with store.transaction() as tx:  # a minute later, well within the lease
        again = tx.claim(ROUTE, T0 + timedelta(minutes=1), lease=lease, owner=this_process())
    assert [i.key for i in again.items] == keys  # the dead run's two, then the other two


def test_a_claim_of_a_live_run_holds_until_its_lease_ends(store: Store) -> None:
    from triggerflow._store._owners import this_process

    keys = [i.key for i in items(2)]
    lease = timedelta(minutes=10)
    with store.transaction() as tx:
        tx.upsert_items(items(2), T0)
        tx.enqueue(ROUTE, keys, 10, T0)
        assert len(tx.claim(ROUTE, T0, lease=lease, owner=this_process()).items) == 2
        other_host = "elsewhere.example:1:1"  # another machine's run: known only by its lease
        assert tx.claim(ROUTE, T0 + timedelta(minutes=9), lease=lease, owner=other_host).items == []
        late = tx.claim(ROUTE, T0 + timedelta(minutes=11), lease=lease, owner=other_host)
    assert [i.key for i in late.items] == keys


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


def test_tried_names_items_whose_send_got_no_answer_or_whose_run_died(store: Store) -> None:
    keys = [i.key for i in items(3)]
    with store.transaction() as tx:
        tx.upsert_items(items(3), T0)
        tx.enqueue(ROUTE, keys, 10, T0)
        assert tx.tried(ROUTE, keys) == set()
        claim = tx.claim(ROUTE, T0, lease=timedelta(minutes=5))
        assert len(claim.items) == 3
        tx.record(ROUTE, T0, sent=[keys[0]], unsent=[keys[1]], error="timed out")
        # keys[2] stays claimed: its run died. After the lease it is owed again, noted.
        again = tx.claim(ROUTE, T0 + timedelta(minutes=6), lease=timedelta(minutes=5))
        assert [i.key for i in again.items] == keys[1:]
        assert tx.tried(ROUTE, keys) == {keys[1], keys[2]}


def test_a_lock_held_briefly_by_another_process_is_waited_for(store: Store) -> None:
    with store.transaction() as tx:  # create the file first
        tx.upsert_items(items(1), T0)
    holder = _hold(store.path, 1.5)
    try:
        with store.transaction() as tx:  # waits with backoff, then gets in
            assert tx.upsert_items(items(2), T0) == 1
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


# Another triggerflow process writing in a loop: short transactions back to back, each
# holding the file 0.2 s, for at most `seconds` (and at most 400 of them).
BUSY_WRITER = """
import sys, time
from pathlib import Path
from triggerflow._store import Store
store = Store(Path(sys.argv[1]), wait=30)
end = time.monotonic() + float(sys.argv[2])
print("writing", flush=True)
for n in range(400):
    if time.monotonic() > end:
        break
    with store.transaction() as tx:
        tx.con.execute("INSERT OR REPLACE INTO meta VALUES ('busy', ?)", [str(n)])
        time.sleep(0.2)
"""


def _busy_writer(path: Path, seconds: float, code: str = BUSY_WRITER) -> subprocess.Popen[str]:
    p = subprocess.Popen(
        [sys.executable, "-c", textwrap.dedent(code), str(path), str(seconds)],
        stdout=subprocess.PIPE, text=True,
    )  # fmt: skip
    assert p.stdout is not None and p.stdout.readline().strip() == "writing"
    return p


def test_a_writer_waits_its_turn_however_long_the_queue_while_it_moves(store: Store) -> None:
    """Item 3 of issue 17: eight other processes write back to back, so a turn comes
    about every 8 x 0.4 s, longer than `wait`; but each of their turns is short, so this
    one never gives up. With retries alone it gave up after `wait` (StoreBusyError), and
    the busy writers' quick first retries took most free moments before its own. (0.4 s
    turns and 3 s, not 0.2 and 1.5: one turn's opening of the file, on a machine busy with
    other tests, once took longer than 1.5 s on its own.)"""
    with store.transaction() as tx:  # create the file first
        tx.upsert_items(items(1), T0)
    writers = [
        _busy_writer(store.path, 45, code=BUSY_WRITER.replace("0.2)", "0.4)")) for _ in range(8)
    ]
    try:
        patient = Store(store.path, wait=3.0)
        for n in range(4):
            with patient.transaction() as tx:
                assert tx.upsert_items(items(1, start=10 + n), T0) == 1
        assert all(w.poll() is None for w in writers)  # they were writing all along
    finally:
        for w in writers:
            w.kill()
            w.wait()


def test_a_turn_held_too_long_by_a_triggerflow_process_names_it(store: Store) -> None:
    holder = _busy_writer(store.path, 10, code=BUSY_WRITER.replace("0.2)", "20)"))
    try:
        time.sleep(0.3)
        with pytest.raises(StoreBusyError) as busy:
            with Store(store.path, wait=1).transaction():
                pass
        assert f"process {holder.pid} (" in str(busy.value)
        assert "TRIGGERFLOW_STORE_WAIT" in str(busy.value)
    finally:
        holder.kill()
        holder.wait()
    # Its line in the queue went with it: the next opener does not wait for a dead turn.
    with Store(store.path, wait=1).transaction() as tx:
        assert tx.upsert_items(items(1, start=50), T0) == 1


def test_batches_are_single_statements(store: Store) -> None:
    """5,000 items in one upsert: one call, no per-row round trips (a row count check)."""
    many = items(5000)
    with store.transaction() as tx:
        assert tx.upsert_items(many, T0) == 5000
        tx.enqueue(ROUTE, [i.key for i in many], 5000, T0)
        tx.record(ROUTE, T0, sent=[i.key for i in many])
        assert tx.con.execute(
            "SELECT count(*) FROM deliveries WHERE state = 'sent'"
        ).fetchone() == (5000,)


def test_skip_backlog_skips_what_is_owed_and_what_was_published_before(store: Store) -> None:
    with store.transaction() as tx:
        tx.upsert_items(items(3), T0)
        tx.enqueue(ROUTE, [i.key for i in items(3)], 10, T0)
        assert tx.skip_backlog(["t"], T0 + timedelta(hours=4)) == 3
        # found after the return: published at hours 3..5, the return was at hour 4
        tx.upsert_items(items(3, start=3), T0)
        later = T0 + timedelta(days=1)
        assert tx.enqueue(ROUTE, [i.key for i in items(6)], 10, later) == 1
        assert [i.id for i in tx.owed(ROUTE)] == ["id4", "id5"]


def test_an_older_file_is_migrated_forward_and_keeps_its_rows(tmp_path: Path) -> None:
    """A file written by the first release (schema 1) opens with today's schema, data kept."""
    import duckdb

    from triggerflow._store._schema import MIGRATIONS

    path = tmp_path / "old.duckdb"
    con = duckdb.connect(str(path))
    con.execute(MIGRATIONS[0])
    con.execute("INSERT INTO meta VALUES ('schema_version', '1')")
    con.execute(
        "INSERT INTO items (source, id, title, first_seen, last_seen) "
        "VALUES ('f', 'a', 'old', $1, $1)",
        [T0],
    )
    con.close()
    store = Store(path, wait=5)
    for _ in range(2):  # the second open finds nothing to do
        with store.transaction() as tx:
            version = tx.con.execute(
                "SELECT value FROM meta WHERE key = 'schema_version'"
            ).fetchone()
            tables = {
                r[0] for r in tx.con.execute("SELECT table_name FROM duckdb_tables()").fetchall()
            }
            kept = tx.con.execute("SELECT title FROM items").fetchall()
        assert version == (str(VERSION),)
        assert {"pauses", "vacation", "routes"} <= tables  # from migrations 2 and 3
        assert kept == [("old",)]


def test_update_false_leaves_stored_items_exactly_as_they_were(store: Store) -> None:
    edited = [Item(source="feed", id="id0", title="edited title", published=T0)]
    later = T0 + timedelta(days=1)
    with store.transaction() as tx:
        tx.upsert_items(items(1), T0)
        assert tx.upsert_items(edited, later, update=False) == 0
        assert tx.con.execute("SELECT title, last_seen FROM items").fetchone() == ("title 0", T0)
        assert tx.upsert_items(edited, later) == 0  # an edit is not a new item
        assert tx.con.execute("SELECT title, first_seen, last_seen FROM items").fetchone() == (
            "edited title",
            T0,
            later,
        )


def test_an_error_inside_a_transaction_rolls_it_back_and_propagates(store: Store) -> None:
    with pytest.raises(RuntimeError, match="half way"):
        with store.transaction() as tx:
            tx.upsert_items(items(2), T0)
            raise RuntimeError("half way")
    with store.transaction() as tx:
        assert tx.con.execute("SELECT count(*) FROM items").fetchone() == (0,)


def test_owed_is_oldest_first_and_undated_items_go_by_when_they_were_seen(store: Store) -> None:
    undated = Item(source="feed", id="undated", title="no date")
    with store.transaction() as tx:
        tx.upsert_items([*items(2, start=5)], T0)
        tx.upsert_items([undated], T0 + timedelta(hours=1))  # seen between the others
        keys = [undated.key, *(i.key for i in items(2, start=5))]
        assert tx.enqueue(ROUTE, keys, 10, T0) == 0
        assert [i.id for i in tx.owed(ROUTE)] == ["undated", "id5", "id6"]


def test_status_numbers_for_routes_failures_and_sources(store: Store) -> None:
    from triggerflow._store import SourceState

    keys = [i.key for i in items(6)]
    with store.transaction() as tx:
        tx.upsert_items(items(6), T0)
        tx.enqueue(ROUTE, keys, 4, T0)  # first run: id2..id5 queued, id0, id1 skipped
        tx.record(
            ROUTE, T0, sent=[keys[5]], rejected={keys[4]: "recipient unknown"},
            unsent=[keys[3]], error="timeout", max_attempts=1,
        )  # fmt: skip
        tx.save_source_success(
            SourceState("feed", "http://127.0.0.1/feed"), "rss", "A feed", T0, modified=True
        )
        tx.save_source_error("other", "http://127.0.0.1/o", "rss", "server answered 500", T0)
        tx.link_trigger_sources("t", ["feed", "other"])
        tx.link_trigger_sources("u", ["feed"])
        (route,) = tx.route_status()
        failures = tx.failures()
        sources = {s.source: s for s in tx.source_status()}
    counts = (route.sent, route.queued, route.failed, route.dead, route.skipped)
    assert counts == (1, 1, 1, 1, 2)
    assert route.last_sent == T0
    assert sorted((f[2], f[3], f[4]) for f in failures) == [
        ("dead", "title 3", "timeout"),
        ("failed", "title 4", "recipient unknown"),
    ]
    assert sources["feed"].items == 6 and sources["feed"].last_success == T0
    assert sources["feed"].last_error is None and sources["feed"].triggers == ("t", "u")
    assert sources["other"].items == 0 and sources["other"].last_success is None
    assert sources["other"].last_error == "server answered 500"
    assert sources["other"].triggers == ("t",)


def test_threads_of_one_process_take_turns(tmp_path: Path) -> None:
    """One process, several threads, a fresh file: DuckDB shares one instance between them,
    so without the store's own lock the first migration and same-row updates conflict."""
    import threading

    from triggerflow._store import SourceState

    store = Store(tmp_path / "threads.duckdb", wait=30)
    errors: list[BaseException] = []

    def work(n: int) -> None:
        for k in range(15):
            try:
                with store.transaction() as tx:
                    tx.upsert_items(items(1, start=n * 100 + k), T0)
                    # every thread updates the same row: a write-write conflict if unserialised
                    state = SourceState("feed", "http://127.0.0.1/f", etag=f"{n}-{k}")
                    tx.save_source_success(state, "rss", None, T0, modified=True)
            except BaseException as e:  # collected, asserted below
                errors.append(e)

    threads = [threading.Thread(target=work, args=(n,)) for n in range(4)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(60)
    assert not any(t.is_alive() for t in threads)
    assert errors == []
    with store.transaction() as tx:
        assert tx.con.execute("SELECT count(*) FROM items").fetchone() == (60,)


def test_a_thread_holding_the_store_too_long_is_a_clear_error(tmp_path: Path) -> None:
    import threading

    path = tmp_path / "held.duckdb"
    entered, release = threading.Event(), threading.Event()

    def hold() -> None:
        with Store(path, wait=5).transaction():
            entered.set()
            release.wait(10)

    holder = threading.Thread(target=hold)
    holder.start()
    try:
        assert entered.wait(10)
        started = time.monotonic()
        with pytest.raises(StoreBusyError, match="another thread of this process"):
            with Store(path, wait=0.3).transaction():
                pass
        assert time.monotonic() - started < 3
    finally:
        release.set()
        holder.join(10)
    with Store(path, wait=5).transaction():  # and once it is released, all is well
        pass


WRITER = """
import sys
from datetime import UTC, datetime
from pathlib import Path
from triggerflow import Item
from triggerflow._store import Store
store, n = Store(Path(sys.argv[1]), wait=60), int(sys.argv[2])
for k in range(int(sys.argv[3])):
    with store.transaction() as tx:
        tx.upsert_items([Item(source="p", id=f"{n}-{k}")], datetime.now(UTC))
"""


def test_processes_take_turns_and_a_reader_sees_progress(tmp_path: Path) -> None:
    """Three writer processes (like Prefect flow runs) and this one reading (like a notebook):
    each waits for the file lock with backoff; every write lands, every read succeeds."""
    path = tmp_path / "shared.duckdb"
    reader = Store(path, wait=60)
    with reader.transaction():  # create and migrate before the race starts
        pass
    per_writer = 15
    writers = [
        subprocess.Popen([sys.executable, "-c", WRITER, str(path), str(n), str(per_writer)])
        for n in range(3)
    ]
    seen: list[int] = []
    try:
        deadline = time.monotonic() + 120
        while any(w.poll() is None for w in writers) and time.monotonic() < deadline:
            with reader.transaction(commit=False) as tx:
                row = tx.con.execute("SELECT count(*) FROM items").fetchone()
            seen.append(row[0] if row else -1)
            time.sleep(0.02)  # a notebook does not hammer the file either
    finally:
        for w in writers:
            if w.poll() is None:
                w.kill()
            w.wait(30)
    assert [w.returncode for w in writers] == [0, 0, 0]
    assert seen == sorted(seen)  # reads are consistent snapshots, never going back
    with reader.transaction(commit=False) as tx:
        assert tx.con.execute("SELECT count(*) FROM items").fetchone() == (3 * per_writer,)


def test_storing_items_does_not_search_for_pandas_per_value(
    store: Store, monkeypatch: pytest.MonkeyPatch
) -> None:
    """DuckDB's binding tries ``import pandas`` for every value it converts; without
    pandas each try searched sys.path (10.8 s of a 12 s insert of 10,000 items)."""
    import importlib.abc

    from triggerflow._store import _connection

    lookups: list[str] = []

    class Watch(importlib.abc.MetaPathFinder):
        def find_spec(self, name: str, path: object = None, target: object = None) -> None:
            if name == "pandas":
                lookups.append(name)
            return None  # and pandas is then not found, as on a machine without it

    monkeypatch.delitem(sys.modules, "pandas", raising=False)
    monkeypatch.setattr(sys, "meta_path", [Watch(), *sys.meta_path])
    monkeypatch.setattr(_connection, "_PANDAS_MISSING", True)
    with store.transaction() as tx:
        assert tx.upsert_items(items(300), T0) == 300
        tx.enqueue(ROUTE, [i.key for i in items(300)], 300, T0)
    assert lookups == []
    assert "pandas" not in sys.modules  # left as found: a later `import pandas` still works
    with store.transaction(commit=False) as tx:
        row = tx.con.execute("SELECT count(*), count(DISTINCT item_id) FROM deliveries").fetchone()
    assert row == (300, 300)


def _compact_size(path: Path, tmp: Path) -> int:
    """Bytes the same data takes in a fresh DuckDB file (COPY FROM DATABASE)."""
    from triggerflow._store import open_duckdb

    copy = tmp / "compact.duckdb"
    copy.unlink(missing_ok=True)
    con = open_duckdb(":memory:", store=True)  # triggerflow's settings: its block size
    con.execute(f"ATTACH '{path}' AS live (READ_ONLY)")
    con.execute(f"ATTACH '{copy}' AS compact")
    con.execute("COPY FROM DATABASE live TO compact")
    con.execute("DETACH compact")
    con.close()
    return copy.stat().st_size


def test_the_file_does_not_grow_a_block_with_every_transaction(tmp_path: Path) -> None:
    """DuckDB 1.4.4 leaks a 256 KiB block per changed index at each checkpoint of a newly
    opened file (duckdb/duckdb#19468): checkpointing at every close grew the store by
    ~0.5 MB per transaction here (bench/store_growth.py). A bound on size, not on time."""
    store = Store(tmp_path / "s.duckdb", wait=5)
    for n in range(100):  # what a run does to one item: store it, owe it, send it
        with store.transaction() as tx:
            tx.upsert_items(items(1, start=n), T0)
            tx.enqueue(ROUTE, [("feed", f"id{n}")], 1000, T0)
            claim = tx.claim(ROUTE, T0)
            tx.record(ROUTE, T0, sent=[i.key for i in claim.items])
    wal = Path(f"{store.path}.wal")
    size = store.path.stat().st_size + (wal.stat().st_size if wal.exists() else 0)
    compact = _compact_size(store.path, tmp_path)
    with store.transaction() as tx:
        assert tx.con.execute(
            "SELECT count(*) FROM deliveries WHERE state = 'sent'"
        ).fetchone() == (100,)
    assert size <= 2 * compact, f"{size / 1e6:.1f} MB for {compact / 1e6:.1f} MB of data"


def _bloated_store(path: Path, transactions: int, monkeypatch: pytest.MonkeyPatch) -> None:
    """A store as triggerflow wrote it before: 256 KiB blocks, a checkpoint at every close."""
    from triggerflow._store import _connection

    with monkeypatch.context() as m:
        m.setattr(_connection, "BLOCK_SIZE", 256 * 1024)
        m.setattr(_connection, "CHECKPOINT_WAL", 0)
        store = Store(path, wait=5)
        for n in range(transactions):
            with store.transaction() as tx:
                tx.upsert_items(items(1, start=n), T0)
                tx.enqueue(ROUTE, [("feed", f"id{n}")], 1000, T0)
                claim = tx.claim(ROUTE, T0)
                tx.record(ROUTE, T0, sent=[i.key for i in claim.items])


def _block_size(path: Path) -> int:
    from triggerflow._store import open_duckdb

    con = open_duckdb(path, read_only=True)
    try:
        return int(
            con.execute(
                "SELECT block_size FROM pragma_database_size() "
                "WHERE database_name = current_database()"
            ).fetchone()[0]  # type: ignore[index]
        )
    finally:
        con.close()


def test_compaction_gives_the_space_back_while_other_processes_write(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The store is rewritten and put in place within one turn, so the writers of other
    processes (like runs of serve) wait for it and go on with the new file: every write
    lands, none fails, and the old store's space (and 256 KiB blocks) are gone."""
    from triggerflow._store._backup import check_file, compact_store

    path = tmp_path / "shared.duckdb"
    _bloated_store(path, 40, monkeypatch)
    bloated = path.stat().st_size
    per_writer = 40
    writers = [
        subprocess.Popen([sys.executable, "-c", WRITER, str(path), str(n), str(per_writer)])
        for n in range(2)
    ]
    done = []
    try:
        deadline = time.monotonic() + 120
        while any(w.poll() is None for w in writers) and time.monotonic() < deadline:
            if len(done) < 5:
                done.append(compact_store(path, 60))
            time.sleep(0.05)
    finally:
        for w in writers:
            if w.poll() is None:
                w.kill()
            w.wait(30)
    done.append(compact_store(path, 60))
    assert [w.returncode for w in writers] == [0, 0]
    assert len(done) >= 2 and done[0].block_size == 256 * 1024 and done[0].before >= bloated
    assert _block_size(path) == 16 * 1024
    report = check_file(path, 5)
    assert report.ok, report.problems
    with Store(path, wait=5).transaction(commit=False) as tx:
        assert tx.con.execute("SELECT count(*) FROM items").fetchone() == (40 + 2 * per_writer,)
        assert tx.con.execute(
            "SELECT count(*) FROM deliveries WHERE state = 'sent'"
        ).fetchone() == (40,)
    size = path.stat().st_size
    assert size <= 2 * _compact_size(path, tmp_path) and size * 10 <= bloated, (size, bloated)
    assert sorted(p.name for p in tmp_path.iterdir()) == [
        "compact.duckdb",
        "shared.duckdb",
        "shared.duckdb.turns",
    ]


def test_serve_compacts_a_store_that_has_doubled(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """serve's compactor: the first check compacts (and says so when it gave space back);
    later checks leave a store alone until it has doubled."""
    from triggerflow import _backups
    from triggerflow.config import settings

    monkeypatch.setenv("TRIGGERFLOW_DATA_DIR", str(tmp_path))
    s = settings()
    _bloated_store(s.store_path, 20, monkeypatch)
    before = s.store_path.stat().st_size
    said: list[str] = []
    c = _backups.Compactor(s, said.append, first=0, every=0.05)
    c.start()
    try:
        deadline = time.monotonic() + 60
        while c.compacted is None and time.monotonic() < deadline:
            time.sleep(0.05)
        first, checks = c.compacted, c.checks
        assert first is not None and first.after * 5 <= before
        while c.checks < checks + 5 and time.monotonic() < deadline:
            time.sleep(0.05)
        assert c.checks >= checks + 5
        assert c.compacted is first  # the store has not grown: nothing was rewritten
    finally:
        c.stop()
    assert not c.is_alive()
    assert len(said) == 1 and said[0].startswith("store compacted: ") and " MB → " in said[0]
