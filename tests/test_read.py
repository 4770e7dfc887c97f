"""The read model (``triggerflow.status``, ``items``, ``sql``) and the front ends that render it:
``triggerflow status``/``list`` and the bot's ``status``/``list`` say the same things."""

from __future__ import annotations

import re
import textwrap
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest

import triggerflow as tf
from triggerflow import Item
from triggerflow._commands import Commands
from triggerflow._store import Store
from triggerflow.cli import main
from triggerflow.config import settings
from triggerflow.exceptions import TriggerNotFound
from triggerflow.types import Route

T0 = datetime(2026, 1, 1, tzinfo=UTC)
T1 = T0 + timedelta(minutes=1)
NEWS = Route("news", "xmpp", "me@example.org")
ALERTS = Route("_alerts", "xmpp", "owner@example.org")


def _items(n: int) -> list[Item]:
    return [
        Item(source="feed", id=f"id{i}", title=f"title {i}", published=T0 + timedelta(hours=i))
        for i in range(n)
    ]


@pytest.fixture
def store() -> Store:
    """The configured store with one route of every state, an alert, a pause and a vacation."""
    s = Store.default()
    keys = [i.key for i in _items(6)]
    with s.transaction() as tx:
        tx.upsert_items(_items(6), T0)
        tx.link_trigger_sources("news", ["feed"])
        tx.link_trigger_sources("idle", ["feed"])  # collects, sends nothing
        tx.enqueue(NEWS, keys, 4, T0)  # first run: id2..id5 queued, id0, id1 skipped
        tx.record(NEWS, T0, sent=[keys[5]], rejected={keys[4]: "recipient unknown"})
        tx.record(NEWS, T1, unsent=[keys[3]], error="timeout", max_attempts=1)
        tx.enqueue(ALERTS, keys[:1], 10, T0)
        tx.record(ALERTS, T0, unsent=keys[:1], error="server down", max_attempts=1)
        tx.set_paused("quiet", True, T0, "too chatty")
        tx.start_vacation(T0 + timedelta(days=1), "hiking", ["news", "idle"])
    return s


def test_status_is_typed_values(store: Store) -> None:
    st = tf.status()
    (news,) = st.routes  # the alerts' route is left out
    assert (news.sent, news.queued, news.failed, news.dead, news.skipped) == (1, 1, 1, 1, 2)
    assert news.last_error == "timeout" and news.last_sent == T0
    assert st.collected == {"idle": 6, "news": 6}
    assert [(f.state, f.title, f.reason, f.at) for f in st.failures] == [
        ("dead", "title 3", "timeout", T1), ("failed", "title 4", "recipient unknown", T0),
    ]  # fmt: skip
    assert {f.trigger for f in st.failures} == {"news"}
    assert st.vacation.active and st.vacation.note == "hiking"
    assert [(p.trigger, p.why, p.note) for p in st.pauses] == [
        ("idle", "vacation", "hiking"), ("news", "vacation", "hiking"),
        ("quiet", "by hand", "too chatty"),
    ]  # fmt: skip
    assert st.pause_of("quiet") == tf.Pause("quiet", "by hand", T0, "too chatty")
    held = st.pause_of("new-one")  # a trigger that came during the vacation is held too
    assert held is not None and (held.trigger, held.why) == ("new_one", "vacation")

    everything = tf.status(alerts=True)
    assert [r.trigger for r in everything.routes] == ["_alerts", "news"]
    assert {f.trigger for f in everything.failures} == {"_alerts", "news"}
    only = tf.status("_alerts")
    assert [r.trigger for r in only.routes] == ["_alerts"] and only.collected == {}
    assert [(f.trigger, f.state) for f in only.failures] == [("_alerts", "dead")]
    with pytest.raises(TriggerNotFound, match="no trigger named 'nope' has run.*idle, news"):
        tf.status("nope")
    assert len(tf.status(failures=1).failures) == 1 and tf.status(failures=0).failures == ()


def test_status_reads_without_creating_the_store(data_dir: Path) -> None:
    st = tf.status()
    assert not st.ran and st.routes == () and not st.vacation.active
    assert not Store.default().path.exists()


def test_items_and_sql_are_public_and_the_notebook_helpers_are_the_same(store: Store) -> None:
    from triggerflow import notebook as nb

    assert nb.items is tf.items and nb.sql is tf.sql and nb.status is tf.status
    assert nb.Table is tf.Table
    assert [i.id for i in tf.items(trigger="news", limit=2)] == ["id5", "id4"]
    table = tf.sql("SELECT state, count(*) AS n FROM deliveries GROUP BY ALL ORDER BY state")
    assert table.columns == ["state", "n"]
    assert dict(table.rows) == {"dead": 2, "failed": 1, "queued": 1, "sent": 1, "skipped": 2}


def _cli(args: list[str], capsys: pytest.CaptureFixture[str]) -> str:
    capsys.readouterr()
    assert main(args) in (0, 1)
    return capsys.readouterr().out


def _cli_counts(out: str, trigger: str) -> dict[str, int]:
    """The counts in ``trigger``'s row of the ``triggerflow status`` table, by column."""
    lines = out.splitlines()
    header = re.split(r"\s{2,}", lines[0])
    (row,) = [re.split(r"\s{2,}", line) for line in lines if line.startswith(trigger + " ")]
    wanted = {"SENT", "QUEUED", "FAILED", "DEAD", "SKIPPED"}
    return {h.lower(): int(v) for h, v in zip(header, row, strict=False) if h in wanted and int(v)}


def _bot_counts(out: str, trigger: str) -> dict[str, int]:
    """The counts in the bot's line ``trigger → target: 1 sent, 2 queued, …``."""
    (line,) = [line for line in out.splitlines() if line.startswith(trigger + " → ")]
    return {w: int(n) for n, w in re.findall(r"(\d+) (\w+)", line.split(": ", 1)[1]) if int(n)}


def test_cli_and_bot_status_agree(store: Store, capsys: pytest.CaptureFixture[str]) -> None:
    """A route with failed and dead items, the alerts' route, a pause and a vacation: the
    CLI and the bot show the same counts, leave out the same route and show both pauses.
    (Before the read model, the CLI counted dead items as failed, the bot showed the
    alerts' route, and only the bot said that a vacation was on.)"""
    cli = _cli(["status"], capsys)
    bot = Commands(settings(), {}).status("")
    expected = {"sent": 1, "queued": 1, "failed": 1, "dead": 1, "skipped": 2}
    assert _cli_counts(cli, "news") == expected, cli
    assert _bot_counts(bot, "news") == expected, bot
    for out in (cli, bot):
        assert "_alerts" not in out, out
        assert "On vacation since" in out and "hiking" in out, out
        assert "Paused by hand: quiet" in out and "too chatty" in out, out
        assert "timeout" in out, out  # why items wait
    assert "idle" in cli and "idle: 6 items, none sent" in bot
    # Asked for by name, both show only that trigger (and the bot takes `status NAME` too).
    assert "_alerts → owner@example.org: 0 sent, 1 dead" in Commands(settings(), {}).status(
        "_alerts"
    )
    assert _cli_counts(_cli(["status", "_alerts"], capsys), "_alerts") == {"dead": 1}


LIST_FLOWS = """
from triggerflow import trigger
from triggerflow.sinks import xmpp
from triggerflow.sources import rss

@trigger
def by_hand():
    pass

@trigger
def away():
    pass

@trigger
def needs_account():
    xmpp(rss("http://127.0.0.1:9/feed.xml"), account="work")
"""


def _cli_states(out: str) -> dict[str, str]:
    rows = [re.split(r"\s{2,}", line) for line in out.splitlines()[2:]]
    words = {"paused (by hand)": "by hand", "paused (vacation)": "vacation"}
    return {r[0]: words.get(r[2], r[2]) for r in rows if len(r) >= 3}


def _bot_states(out: str) -> dict[str, str]:
    states = {}
    for line in out.splitlines():
        if m := re.match(r"(\w+) \(on demand\): (.*)", line):
            said = m[2]
            states[m[1]] = (
                "by hand" if said.startswith("paused by hand since")
                else "vacation" if said.startswith("on vacation since")
                else said.split(":")[0]
            )  # fmt: skip
    return states


def test_cli_and_bot_list_agree_on_pauses_and_problems(
    tmp_path: Path, store: Store, capsys: pytest.CaptureFixture[str]
) -> None:
    """A pause by hand, a vacation pause and a trigger without its account, in both lists.
    (Before, the CLI told a vacation from a pause by parsing a sentence and showed a pause
    by hand as a bare "paused"; the bot said "active" for a trigger that was not
    configured.)"""
    from triggerflow._discovery import discover

    flows = tmp_path / "flows"
    flows.mkdir()
    (flows / "mine.py").write_text(textwrap.dedent(LIST_FLOWS))
    with store.transaction() as tx:
        tx.set_paused("by_hand", True, T0, None)
    cli = _cli(["--flows", str(flows), "list"], capsys)
    bot = Commands(settings(), discover(flows).triggers).list("")
    expected = {"away": "vacation", "by_hand": "by hand", "needs_account": "not configured"}
    assert _cli_states(cli) == expected, cli
    assert _bot_states(bot) == expected, bot
    for out in (cli, bot):
        assert "On vacation since" in out and "hiking" in out, out
        assert "TRIGGERFLOW_XMPP_WORK_JID" in out, out  # the fix, named


def test_the_alerts_pseudo_trigger_is_named_once() -> None:
    from triggerflow import _alerts, _read

    assert _read.ALERTS == _alerts.ALERTS


def test_cli_and_bot_say_alike_what_waits_for_a_limit(capsys: pytest.CaptureFixture[str]) -> None:
    from triggerflow._show import when
    from triggerflow._store import now

    chatty = Route("chatty", "xmpp", "me@example.org")
    keys = [i.key for i in _items(2)]
    at = now()
    with Store.default().transaction() as tx:
        tx.upsert_items(_items(2), at)
        tx.enqueue(chatty, keys, 10, at)
        tx.record(chatty, at, sent=keys[:1])
        # what a run of the sink with limit="1/hour" leaves (its claim writes the route)
        tx.con.execute("INSERT INTO routes VALUES ('chatty', 'xmpp', 'me@example.org', '1/h')")
    (w,) = tf.status().waiting
    assert (w.trigger, w.queued, str(w.limit), w.allowed) == ("chatty", 1, "1/hour", 0)
    assert w.next_at is not None and abs((w.next_at - at).total_seconds() - 3600) < 1
    said = f"1 wait for the limit 1/hour; next at {when(w.next_at)}"
    assert f"chatty → me@example.org: {said}" in _cli(["status"], capsys)
    assert f"\n  {said}\n" in Commands(settings(), {}).status("")


def test_status_says_what_a_run_holds_and_whether_it_died(
    capsys: pytest.CaptureFixture[str],
) -> None:
    """Items claimed by a killed run are shown, with what happens to them, in CLI and bot."""
    import subprocess
    import sys

    from triggerflow._store._owners import pid_of, this_process

    script = "from triggerflow._store._owners import this_process as t; print(t())"
    gone = subprocess.run(
        [sys.executable, "-c", script], capture_output=True, text=True, check=True
    ).stdout.strip()  # that process has ended: its claims are a dead run's
    s = Store.default()
    keys = [i.key for i in _items(5)]
    now = datetime.now(UTC)
    with s.transaction() as tx:
        tx.upsert_items(_items(5), now)
        tx.link_trigger_sources("news", ["feed"])
        tx.enqueue(NEWS, keys, 10, now)
        tx.claim(NEWS, now, limit=tf.Limit(3, timedelta(hours=1)), owner=gone)
    (route,) = tf.status().routes
    assert (route.queued, route.held, route.held_by) == (5, 3, (gone,))
    dead = f"news → me@example.org: 3 held by a run that died (pid {pid_of(gone)})"
    assert main(["status"]) == 0
    assert dead in capsys.readouterr().out
    bot = Commands(settings(), {}).status("")
    assert dead.split(": ", 1)[1] in bot

    later = Route("news", "xmpp", "you@example.org")
    with s.transaction() as tx:  # a live run (this process) on another route
        tx.enqueue(later, keys, 10, now)
        tx.claim(later, now, owner=this_process())
    assert main(["status"]) == 0
    live = capsys.readouterr().out
    assert "you@example.org: 5 being sent by a run (pid" in live and "its claim holds until" in live
