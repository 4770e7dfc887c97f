"""Publication limits: "5 an hour, the rest later", also across concurrent runs."""

from __future__ import annotations

import os
import subprocess
import sys
import textwrap
import uuid
from datetime import timedelta
from pathlib import Path
from typing import Any

import duckdb
import pytest
from serve_support import spawn

from triggerflow import trigger
from triggerflow.exceptions import ConfigurationError
from triggerflow.limits import Limit, parse_limit
from triggerflow.sinks import xmpp
from triggerflow.sources import rss


@pytest.mark.parametrize(
    ("spec", "count", "seconds", "burst"),
    [("5/hour", 5, 3600, None), ("100/day, burst 10", 100, 86400, 10),
     ("3/10 minutes", 3, 600, None), ("1/s", 1, 1, None), (" 2 / Hours ", 2, 3600, None),
     ("5/w", 5, 604800, None), ("5/week", 5, 604800, None), ("5/15m", 5, 900, None),
     ("5/1 wk, burst 2", 5, 604800, 2), ("4/1.5h", 4, 5400, None), ("3/10 minute", 3, 600, None),
     ("1/1 second", 1, 1, None)],
)  # fmt: skip
def test_parse_limit(spec: str, count: int, seconds: int, burst: int | None) -> None:
    assert parse_limit(spec) == Limit(count, timedelta(seconds=seconds), burst)


@pytest.mark.parametrize("spec", ["5", "five/hour", "5/fortnight", "0/hour", "5/hour burst"])
def test_bad_limits_say_how_to_write_one(spec: str) -> None:
    with pytest.raises(ConfigurationError, match="5/hour"):
        parse_limit(spec)


def test_a_bad_unit_names_it_and_the_accepted_units() -> None:
    with pytest.raises(ConfigurationError) as e:
        parse_limit("5/fortnight")
    assert str(e.value) == (
        "limit '5/fortnight': unknown unit 'fortnight'; use s, m, h, d or w "
        "(e.g. '5/hour', '5/w', '3/15m' or '100/day, burst 10')"
    )


@pytest.mark.parametrize(
    ("spec", "shown"),
    [("5/hour", "5/hour"), ("5/w", "5/week"), ("5/15m", "5/15 minutes"), ("1/s", "1/second"),
     ("3/10 minute", "3/10 minutes"), ("3/90s", "3/90 seconds"), ("4/1.5h", "4/90 minutes"),
     ("100/day, burst 10", "100/day, burst 10")],
)  # fmt: skip
def test_a_limit_shows_in_words_and_reads_back(spec: str, shown: str) -> None:
    """str() is stored in the ledger's routes and parsed again by `status`."""
    limit = parse_limit(spec)
    assert str(limit) == shown and parse_limit(shown) == limit


def test_burst_adds_a_proportional_window() -> None:
    limit = parse_limit("20/day, burst 5")
    assert limit is not None and limit.windows() == [
        (20, timedelta(days=1)), (5, timedelta(hours=6)),
    ]  # fmt: skip
    assert str(limit) == "20/day, burst 5"


def _db(data_dir: Path, sql: str) -> list[tuple[Any, ...]]:
    con = duckdb.connect(str(data_dir / "triggerflow.duckdb"))
    try:
        return con.execute(sql).fetchall()
    finally:
        con.close()


def _an_hour_passes(data_dir: Path) -> None:
    """Move every send an hour and a minute into the past (a simulated clock)."""
    _db(data_dir, "UPDATE deliveries SET sent_at = sent_at - INTERVAL 61 MINUTE")


@pytest.fixture
def recipient(prosody: Any, receiver: Any, monkeypatch: pytest.MonkeyPatch) -> Any:
    jid, password = prosody.new_user("limited")
    r = receiver(jid, password)
    for key, value in prosody.env(owner=jid).items():
        monkeypatch.setenv(key, value)
    return r


def test_five_an_hour_the_rest_later_in_order(
    prefect_api: str, feeds: Any, recipient: Any, data_dir: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("TRIGGERFLOW_FIRST_RUN", "50")
    titles = [f"item {i:02}" for i in range(12)]
    feeds.publish("/busy.xml", titles)
    url = feeds.url("/busy.xml")

    @trigger
    def chatty() -> None:
        xmpp(rss(url), format="{title}", limit="5/hour")

    first = chatty().sinks[0]
    assert (first.sent, first.queued, first.held) == (5, 7, 7)
    assert first.next_at is not None
    assert recipient.wait_for(5) == titles[:5]  # the oldest first
    assert chatty().sinks[0].sent == 0  # the hour is not over

    status = subprocess.run(
        [sys.executable, "-m", "triggerflow", "status"],
        capture_output=True, text=True, timeout=60, env=dict(os.environ),
    ).stdout  # fmt: skip
    assert "7" in status and "5/hour" in status and "next" in status, status

    _an_hour_passes(data_dir)
    assert chatty().sinks[0].sent == 5
    _an_hour_passes(data_dir)
    last = chatty().sinks[0]
    assert (last.sent, last.queued) == (2, 0)
    assert recipient.wait_for(12) == titles  # all, in order, once
    states = _db(data_dir, "SELECT state, count(*) FROM deliveries GROUP BY ALL")
    assert states == [("sent", 12)]


TRIGGER_FILE = """
from triggerflow import trigger
from triggerflow.sinks import xmpp
from triggerflow.sources import rss

@trigger
def {name}():
    xmpp(rss({url!r}), format="{{title}}", limit="5/hour")
"""


def test_two_concurrent_runs_on_one_target_never_exceed_the_limit(
    prefect_api: str, feeds: Any, recipient: Any, data_dir: Path, tmp_path: Path
) -> None:
    flows = tmp_path / "flows"
    flows.mkdir()
    for name in ("left", "right"):
        feeds.publish(f"/{name}.xml", [f"{name} {i}" for i in range(6)])
        (flows / f"{name}.py").write_text(
            textwrap.dedent(TRIGGER_FILE.format(name=name, url=feeds.url(f"/{name}.xml")))
        )
    env = {**os.environ, "TRIGGERFLOW_FLOWS_DIR": str(flows), "TRIGGERFLOW_FIRST_RUN": "50"}
    procs = [spawn(["-m", "triggerflow", "run", name], env) for name in ("left", "right")]
    outs = [p.communicate(timeout=180)[0] for p in procs]
    assert [p.returncode for p in procs] == [0, 0], outs
    recipient.wait_for(5)
    import time

    time.sleep(1.5)  # a sixth message would have arrived by now
    assert len(recipient.messages) == 5
    states = dict(_db(data_dir, "SELECT state, count(*) FROM deliveries GROUP BY ALL"))
    assert states == {"sent": 5, "queued": 7}


def test_each_account_sends_over_one_connection_at_a_time(
    prefect_api: str, feeds: Any, recipient: Any
) -> None:
    """The sink holds a Prefect global concurrency limit per account, created by us."""
    from prefect.client.orchestration import get_client

    from triggerflow._async import run_sync

    feeds.publish("/one.xml", ["one"])
    url = feeds.url("/one.xml")

    @trigger
    def single() -> None:
        xmpp(rss(url))

    assert single().sinks[0].sent == 1

    async def read() -> Any:
        async with get_client() as client:
            return await client.read_global_concurrency_limit_by_name("xmpp-sink@localhost")

    limit = run_sync(read())
    assert (limit.limit, limit.active, limit.active_slots) == (1, True, 0)  # taken, given back


HOLD_SLOT = """\
import time
from triggerflow._slots import account_slot
with account_slot("xmpp-slot-test", timeout=60):
    print("held", flush=True)
    time.sleep(600)
"""


def test_a_slot_held_by_a_killed_run_is_given_back_whatever_its_data_dir(
    prefect_api: str, tmp_path: Path
) -> None:
    """The slot lives in Prefect's database, so the holder's mark lives beside it.

    Two data dirs over one Prefect (a shared PREFECT_HOME, or one server) share its
    slots: a run killed while holding one, with the other data dir, must not keep the
    slot from us until its lease ends (or for good, with no server to end it).
    """
    from triggerflow._slots import LEASE_SECONDS, account_slot

    env = {**os.environ, "TRIGGERFLOW_DATA_DIR": str(tmp_path / "other-data")}
    holder = subprocess.Popen(
        [sys.executable, "-c", HOLD_SLOT], env=env, stdout=subprocess.PIPE, text=True
    )
    try:
        assert holder.stdout is not None and holder.stdout.readline().strip() == "held"
    finally:
        holder.kill()
        holder.wait()
    # Well within the lease: only a known-dead holder's slot comes back this soon.
    with account_slot("xmpp-slot-test", timeout=LEASE_SECONDS / 4):
        pass


DEAD_HOLDER = """\
from triggerflow._slots import _marks
from triggerflow._store._owners import this_process
print(this_process())
print(_marks())
"""


def test_a_dead_holders_mark_never_gives_away_a_live_holders_slot(prefect_api: str) -> None:
    """A run killed after it gave its slot back, but before its mark was gone, leaves a
    dead holder's mark for a slot that is no longer its own: the next run may end that
    (long ended) lease, never take the slot a live run holds now."""
    from triggerflow._slots import account_slot

    name = "xmpp-slot-test2"
    holder = subprocess.Popen(
        [sys.executable, "-c", HOLD_SLOT.replace("xmpp-slot-test", name)],
        stdout=subprocess.PIPE, text=True,
    )  # fmt: skip
    try:
        assert holder.stdout is not None and holder.stdout.readline().strip() == "held"
        dead, folder = subprocess.run(
            [sys.executable, "-c", DEAD_HOLDER], capture_output=True, text=True, check=True
        ).stdout.split("\n")[:2]
        Path(folder, f"{name}.{uuid.uuid4()}.holder").write_text(dead)
        with pytest.raises(TimeoutError), account_slot(name, timeout=3):
            pytest.fail("took the slot a live run holds")
        assert holder.poll() is None
    finally:
        holder.kill()
        holder.wait()
