"""The PostgreSQL store (issue 18, item 1) on a real cluster (tests/postgres_support.py).

The store's own tests and whole triggers run again here on PostgreSQL, unchanged: the
module's ``store`` fixture and ``TRIGGERFLOW_STORE_URL`` point them at a new database.
What only several writers at once can show (claims and limits across processes, the
inbox's order) is tested below them.
"""

from __future__ import annotations

import os
import subprocess
import sys
import textwrap
import time
from pathlib import Path
from typing import Any

import pytest

# Whole triggers through the library and the CLI, on the PostgreSQL store.
from test_feeds import (  # noqa: F401
    test_a_new_feed_takes_everything_on_its_first_run,
    test_merge_filter_and_round_trip_through_feedparser,
    test_status_of_one_trigger_by_name,
)

# Search keeps DuckDB (issue 18, item 2): the index is a DuckDB file on each host, the
# store attached to it through DuckDB's postgres extension.
from test_search import (  # noqa: F401
    test_an_edited_item_is_found_by_its_new_words_only,
    test_an_item_stored_a_second_ago_is_found_before_any_rebuild,
    test_equal_scores_are_newest_first,
    test_filters_trigger_source_dates_and_limit,
    test_results_render_with_scores,
    test_scores_are_the_fts_extensions_own,
    test_search_what_a_trigger_collected_from_the_cli,
    test_title_ranks_above_one_mention_in_the_body_before_and_after_a_rebuild,
    test_too_many_waiting_items_trigger_a_rebuild,
    test_words_accents_stems_and_every_word_required,
)

# The store's tests that are about the store's rules, not about DuckDB's file: run as they
# are, with this module's ``store`` fixture.
from test_store import (  # noqa: F401
    ROUTE,
    T0,
    items,
    test_a_claim_of_a_live_run_holds_until_its_lease_ends,
    test_a_claim_of_a_run_that_died_on_this_host_is_taken_over_at_once,
    test_a_newer_schema_is_refused_clearly,
    test_an_error_inside_a_transaction_rolls_it_back_and_propagates,
    test_batches_are_single_statements,
    test_first_run_of_a_route_takes_the_newest_and_skips_the_rest,
    test_live_events_are_never_cut_and_take_no_first_run_slot,
    test_owed_is_oldest_first_and_undated_items_go_by_when_they_were_seen,
    test_record_sent_rejected_unsent_and_dead,
    test_rollback_leaves_nothing,
    test_schema_is_versioned_and_migrations_run_once,
    test_skip_backlog_skips_what_is_owed_and_what_was_published_before,
    test_status_numbers_for_routes_failures_and_sources,
    test_tried_names_items_whose_send_got_no_answer_or_whose_run_died,
    test_update_false_leaves_stored_items_exactly_as_they_were,
    test_upsert_counts_new_items_only,
)

from triggerflow._store import Store
from triggerflow._store._postgres import PostgresStore, mask_url
from triggerflow.exceptions import StoreError


@pytest.fixture(autouse=True)
def on_postgres(postgres_url: str, monkeypatch: pytest.MonkeyPatch) -> str:
    """Every store of this module's tests is the PostgreSQL one (a new database each)."""
    monkeypatch.setenv("TRIGGERFLOW_STORE_URL", postgres_url)
    return postgres_url


@pytest.fixture
def store(postgres_url: str) -> PostgresStore:
    return PostgresStore(postgres_url, wait=5)


def test_the_setting_chooses_the_backend_and_the_duckdb_file_is_not_made(
    postgres_url: str, data_dir: Path
) -> None:
    store = Store.default()
    assert isinstance(store, PostgresStore)
    with store.transaction() as tx:
        assert tx.upsert_items(items(2), T0) == 2
    assert not (data_dir / "triggerflow.duckdb").exists()


def _columns_duckdb(tmp_path: Path) -> set[tuple[str, str, str]]:
    store = Store(tmp_path / "compare.duckdb", wait=5)
    with store.transaction() as tx:
        rows = tx.con.execute(
            "SELECT table_name, column_name, data_type FROM information_schema.columns "
            "WHERE table_catalog = current_database() AND table_schema = 'main'"
        ).fetchall()
    return {(t, c, _type(d)) for t, c, d in rows}


def _type(name: str) -> str:
    """One spelling of a column type for both engines."""
    name = name.upper()
    return {
        "CHARACTER VARYING": "VARCHAR",
        "TIMESTAMP WITH TIME ZONE": "TIMESTAMPTZ",
        "ARRAY": "VARCHAR[]",  # PostgreSQL's information_schema says only ARRAY
        "VARCHAR[]": "VARCHAR[]",
    }.get(name, name)


def test_both_backends_have_the_same_tables_and_columns(
    store: PostgresStore, tmp_path: Path
) -> None:
    """One list of migrations makes both schemas (issue 18, item 1)."""
    with store.transaction() as tx:
        rows = tx.con.execute(
            "SELECT table_name, column_name, data_type FROM information_schema.columns "
            "WHERE table_schema = current_schema()"
        ).fetchall()
    pg = {(t, c, _type(d)) for t, c, d in rows}
    duck = _columns_duckdb(tmp_path)
    assert pg == duck
    assert {t for t, _, _ in pg} >= {"items", "deliveries", "sources", "inbox", "pauses"}


def test_a_password_in_the_url_is_never_shown(postgres_url: str) -> None:
    secret = "s3cr3t-pw-8812"
    url = postgres_url.replace("postgres@", f"postgres:{secret}@").rsplit("/", 1)[0] + "/nope"
    store = PostgresStore(url, wait=1)
    with pytest.raises(StoreError) as caught:
        with store.transaction():
            pass
    text = str(caught.value)
    assert "does not exist" in text and secret not in text and "***" in text
    assert secret not in repr(store) and secret not in mask_url(url)
    env = {**os.environ, "TRIGGERFLOW_STORE_URL": url}
    shown = subprocess.run(
        [sys.executable, "-m", "triggerflow", "config"],
        capture_output=True, text=True, timeout=60, env=env,
    )  # fmt: skip
    assert "store_url" in shown.stdout and secret not in shown.stdout + shown.stderr


def test_an_unreachable_server_is_a_clear_error_after_the_wait() -> None:
    store = PostgresStore("postgresql://nobody@127.0.0.1:9/db", wait=0.5)
    with pytest.raises(StoreError, match=r"store postgresql://nobody@127\.0\.0\.1:9/db: cannot"):
        with store.transaction():
            pass


CLAIMER = textwrap.dedent(
    """
    import json, sys, time
    from datetime import UTC, datetime, timedelta
    from triggerflow._store._postgres import PostgresStore
    from triggerflow._store._owners import this_process
    from triggerflow.limits import Limit
    from triggerflow.types import Route

    store = PostgresStore(sys.argv[1], wait=30)
    start = float(sys.argv[2])
    while time.time() < start:  # every process claims at the same moment
        time.sleep(0.001)
    route = Route(sys.argv[3], "xmpp", "me@example.org")
    got = []
    for _ in range(5):
        with store.transaction() as tx:
            now = datetime.now(UTC)
            claim = tx.claim(route, now, limit=Limit(5, timedelta(hours=1)),
                             owner=this_process())
            time.sleep(0.3)  # a send takes a while: the others claim meanwhile
            tx.record(route, now, sent=claim.keys)
            got += claim.keys
    print(json.dumps(got))
    """
)


def test_processes_claiming_at_once_never_take_one_item_twice_and_keep_the_limit(
    store: PostgresStore, postgres_url: str
) -> None:
    """Six processes (two triggers, one target) claim at the same moment, five times each:
    each item goes to exactly one of them, and the target gets 5 in the hour, not more."""
    import json
    import time

    from triggerflow.types import Route

    keys = [i.key for i in items(40)]
    with store.transaction() as tx:
        tx.upsert_items(items(40), T0)
        for trigger in ("a", "b"):
            tx.enqueue(Route(trigger, "xmpp", "me@example.org"), keys, 40, T0)
    start = time.time() + 8  # all started (and imported) by then
    procs = [
        subprocess.Popen(
            [sys.executable, "-c", CLAIMER, postgres_url, str(start), trigger],
            stdout=subprocess.PIPE,
            text=True,
        )  # fmt: skip
        for trigger in ("a", "b", "a", "b", "a", "b")
    ]
    got: dict[str, list[Any]] = {"a": [], "b": []}
    for p, trigger in zip(procs, ("a", "b", "a", "b", "a", "b"), strict=True):
        out, _ = p.communicate(timeout=120)
        assert p.returncode == 0
        got[trigger] += [tuple(k) for k in json.loads(out)]
    sent = got["a"] + got["b"]
    assert len(sent) == 5  # the limit is the target's, whatever trigger sends
    for trigger in ("a", "b"):
        assert len(got[trigger]) == len(set(got[trigger]))  # nothing twice on a route
    with store.transaction() as tx:
        (count,) = tx.con.execute("SELECT count(*) FROM deliveries WHERE state = 'sent'").fetchone()
    assert count == 5


INBOX_WRITER = textwrap.dedent(
    """
    import sys
    from datetime import UTC, datetime
    from triggerflow._store._postgres import PostgresStore

    store = PostgresStore(sys.argv[1], wait=30)
    for n in range(int(sys.argv[3])):
        with store.transaction() as tx:
            tx.inbox_add("github", f"{sys.argv[2]}-{n}", "push", None, "{}",
                         datetime.now(UTC), False)
    """
)


def test_a_reader_following_the_inbox_sees_every_delivery_of_concurrent_writers(
    store: PostgresStore, postgres_url: str
) -> None:
    """Sequence numbers are drawn before commit; the inbox commits them in order, so a
    cursor that moves past a number never skips one that commits later."""
    per_writer, writers = 150, 4
    procs = [
        subprocess.Popen([sys.executable, "-c", INBOX_WRITER, postgres_url, f"w{w}",
                          str(per_writer)])
        for w in range(writers)
    ]  # fmt: skip
    seen: set[str] = set()
    cursor = 0
    import time

    deadline = time.monotonic() + 120
    while time.monotonic() < deadline:
        running = any(p.poll() is None for p in procs)
        with store.transaction(commit=False) as tx:
            batch = tx.inbox_after("github", cursor, limit=50)
        for d in batch:
            seen.add(d.id)
            cursor = d.seq
        if not running and not batch:
            break
    assert all(p.wait(timeout=30) == 0 for p in procs)
    assert len(seen) == per_writer * writers


def test_the_status_and_a_run_from_the_cli_use_the_postgresql_store(
    feeds: Any, tmp_path: Path, data_dir: Path
) -> None:
    feeds.publish("/cli.xml", ["one", "two"])
    flows = tmp_path / "flows"
    flows.mkdir()
    (flows / "f.py").write_text(
        textwrap.dedent(
            f"""
            from triggerflow import trigger
            from triggerflow.sinks import feed
            from triggerflow.sources import rss

            @trigger
            def to_pg():
                feed(rss({feeds.url("/cli.xml")!r}), name="on-pg")
            """
        )
    )
    env = {**os.environ, "TRIGGERFLOW_FLOWS_DIR": str(flows)}

    def cli(*args: str) -> subprocess.CompletedProcess[str]:
        return subprocess.run(
            [sys.executable, "-m", "triggerflow", *args],
            capture_output=True, text=True, timeout=180, env=env,
        )  # fmt: skip

    ran = cli("run", "to_pg")
    assert ran.returncode == 0, ran.stderr
    status = cli("status")
    assert status.returncode == 0, status.stderr
    assert "feed:on-pg" in status.stdout
    assert not (data_dir / "triggerflow.duckdb").exists()
    with Store.default().transaction(commit=False) as tx:
        assert sorted(i.title for i in tx.items()) == ["one", "two"]


def test_file_operations_of_the_duckdb_store_say_what_to_use_instead(postgres_url: str) -> None:
    for args in (["store", "backup"], ["store", "compact"]):
        done = subprocess.run(
            [sys.executable, "-m", "triggerflow", *args],
            capture_output=True, text=True, timeout=60, env=dict(os.environ),
        )  # fmt: skip
        assert done.returncode != 0
        assert "is for the DuckDB file" in done.stderr and "pg_dump" in done.stderr, done.stderr


def _start_hosts(tmp_path: Path, script: str, *args: str) -> list[subprocess.Popen[str]]:
    """Two "hosts" running ``script``: each its own HOME, data folder and PREFECT_HOME,
    sharing only the PostgreSQL store and the Prefect API. Each touches its ``NAME.ready``
    file when set up, then waits for ``go`` (made here once both are ready)."""
    hosts = []
    for name in ("one", "two"):
        home = tmp_path / name
        (home / "prefect").mkdir(parents=True)
        env = {**os.environ, "HOME": str(home), "TRIGGERFLOW_DATA_DIR": str(home / "data"),
               "PREFECT_HOME": str(home / "prefect")}  # fmt: skip
        cmd = [sys.executable, "-c", script, str(tmp_path / f"{name}.ready"),
               str(tmp_path / "go"), *args]  # fmt: skip
        hosts.append(subprocess.Popen(cmd, env=env, stdout=subprocess.PIPE,
                                      stderr=subprocess.PIPE, text=True))  # fmt: skip
    deadline = time.monotonic() + 120
    while not all((tmp_path / f"{n}.ready").exists() for n in ("one", "two")):
        assert time.monotonic() < deadline and all(h.poll() is None for h in hosts), [
            h.communicate() for h in hosts if h.poll() is not None
        ]
        time.sleep(0.05)
    (tmp_path / "go").touch()
    return hosts


# A worker on another host: its own HOME, data folder and PREFECT_HOME, sharing only
# the PostgreSQL store and the Prefect API with the first. It loads the saved account,
# says so, and calls X when told to go (both at the same moment).
_HOST = """
import sys, time
from pathlib import Path
from triggerflow.services._client import ServiceClient

ready, go = Path(sys.argv[1]), Path(sys.argv[2])
with ServiceClient("x") as client:
    ready.touch()
    deadline = time.monotonic() + 120
    while not go.exists() and time.monotonic() < deadline:
        time.sleep(0.01)
    print(client.get("/2/users/me").json()["data"]["username"])
"""


@pytest.mark.usefixtures("prefect_api")
def test_two_hosts_refreshing_one_token_at_once_both_keep_working(
    x_api: Any, tmp_path: Path
) -> None:
    """X's refresh tokens work once: without a lock both hosts share, the second host
    would spend the spent one and be refused (a file lock holds on one machine only)."""
    from test_x import connect, saved

    connect(x_api)
    x_api.expire_tokens()
    hosts = _start_hosts(tmp_path, _HOST)
    answers = [h.communicate(timeout=120) for h in hosts]
    assert [out.strip() for out, _ in answers] == ["tester", "tester"], answers
    assert x_api.count("/2/oauth2/token") == 2  # the code at connect, one refresh
    newest = saved().refresh_token
    assert newest is not None and newest.get_secret_value() not in x_api.spent_refresh


def test_notebooks_items_and_sql_read_the_postgresql_store(store: PostgresStore) -> None:
    import triggerflow

    with store.transaction() as tx:
        tx.upsert_items(items(5), T0)
    shown = triggerflow.items(source="feed", limit=3)
    assert [i.title for i in shown] == ["title 4", "title 3", "title 2"]
    table = triggerflow.sql(
        "SELECT count(*) AS n FROM items WHERE title LIKE '%title%' AND source = $1", ["feed"]
    )
    assert table.column("n") == [5]


_SENDER = """
import sys, time
from pathlib import Path
from triggerflow.services._client import ServiceClient

ready, go, n = Path(sys.argv[1]), Path(sys.argv[2]), int(sys.argv[3])
with ServiceClient("trello") as client:
    client.get("/1/members/me")
    ready.touch()
    deadline = time.monotonic() + 120
    while not go.exists() and time.monotonic() < deadline:
        time.sleep(0.01)
    for _ in range(n):
        client.get("/1/members/me/boards")
print("done")
"""


@pytest.mark.usefixtures("prefect_api")
def test_two_hosts_keep_one_trello_token_within_its_window_together(
    trello: Any, tmp_path: Path
) -> None:
    """Trello allows 100 requests per 10 s per token: two hosts sending 80 each at once
    must together send no more than 100 in the first 10 s (each counting for itself,
    they would send all 160 in a moment)."""
    from test_services import trello_account

    trello_account(trello)
    # connect's own check of the token is not a worker's request: let its window pass
    trello.advance(trello.rate_interval)
    start = trello.now()
    hosts = _start_hosts(tmp_path, _SENDER, "80")
    answers = [h.communicate(timeout=180) for h in hosts]
    assert [out.strip() for out, _ in answers] == ["done", "done"], answers
    sent = sorted(r.time for r in trello.requests_to("/1/members/me/boards") if r.time >= start)
    assert len(sent) == 160  # a 429 would have been sent again: more than 160
    # the window opened with the first of them; a margin for the way from PostgreSQL's
    # clock to the stand-in's
    first_window = [t for t in sent if t < sent[0] + 9.5]
    assert len(first_window) <= 100, len(first_window)
