"""End to end: a feed on a real HTTP server, a trigger run by a real Prefect server, a real
Prosody delivering to a real XMPP client, and the DuckDB file in between.
"""

from __future__ import annotations

import os
import subprocess
import sys
import textwrap
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import duckdb
import pytest
from serve_support import spawn

from triggerflow import RunResult, trigger
from triggerflow.exceptions import TriggerRunFailed
from triggerflow.sinks import xmpp
from triggerflow.sources import rss

pytestmark = pytest.mark.usefixtures("prefect_api")


def titles(n: int, start: int = 0, prefix: str = "post") -> list[str]:
    return [f"{prefix} {i}" for i in range(start, start + n)]


def make_trigger(name: str, url: str, **sink: Any) -> Any:
    @trigger(name=name)
    def t() -> None:
        xmpp(rss(url), **sink)

    return t


def deliveries(data_dir: Path) -> list[tuple[Any, ...]]:
    con = duckdb.connect(str(data_dir / "triggerflow.duckdb"), read_only=True)
    try:
        return con.execute(
            "SELECT trigger, target, item_id, state, attempts, last_error FROM deliveries "
            "ORDER BY ALL"
        ).fetchall()
    finally:
        con.close()


def quiet(receiver: Any, expected: int, wait: float = 1.5) -> list[str]:
    """The messages after giving late ones a chance: no more than ``expected`` may arrive."""
    time.sleep(wait)
    got = receiver.messages
    assert len(got) == expected, got
    return got


@pytest.fixture
def recipient(prosody: Any, receiver: Callable[..., Any], monkeypatch: pytest.MonkeyPatch) -> Any:
    """A fresh XMPP user listening, and the sending account (sink@localhost) configured."""
    jid, password = prosody.new_user("rcpt")
    r = receiver(jid, password)
    r.password = password
    for key, value in prosody.env(owner=jid).items():
        monkeypatch.setenv(key, value)
    return r


def test_feed_to_xmpp_exactly_once_across_runs_and_outages(
    feeds: Any,
    prosody: Any,
    recipient: Any,
    receiver: Callable[..., Any],
    data_dir: Path,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setenv("TRIGGERFLOW_RETRIES", "1")
    feeds.publish("/news.xml", titles(3))
    news = make_trigger("news", feeds.url("/news.xml"))

    result = news()
    assert isinstance(result, RunResult)
    assert sorted(m.splitlines()[0] for m in recipient.wait_for(3)) == titles(3)
    quiet(recipient, 3)
    assert (result.new, result.sinks[0].sent) == (3, 3)

    again = news()  # nothing new: nothing sent
    assert (again.new, again.sinks[0].sent) == (0, 0)
    quiet(recipient, 3)

    feeds.publish("/news.xml", titles(4))  # one more
    news()
    assert recipient.wait_for(4)[3].splitlines()[0] == "post 3"
    quiet(recipient, 4)

    # The server goes away: the run fails with a clear reason, the new items stay queued.
    feeds.publish("/news.xml", titles(6))
    with prosody.down():
        with pytest.raises(TriggerRunFailed, match="unreachable") as failed:
            news()
        assert "connection refused" in str(failed.value)
        rows = deliveries(data_dir)
        queued = [r for r in rows if r[3] == "queued"]
        assert len(queued) == 2
        assert all(r[4] == 2 for r in queued), queued  # first try + 1 Prefect retry
        assert all("unreachable" in (r[5] or "") for r in queued)
        status = subprocess.run(
            [sys.executable, "-m", "triggerflow", "status"],
            capture_output=True, text=True, timeout=60, env=dict(os.environ),
        )  # fmt: skip
        assert "news" in status.stdout and "unreachable" in status.stdout, status.stdout

    # Back: the next run delivers what was owed, once. (The listening client lost its
    # connection with the server; it logs in again and reads what the server kept for it.)
    back = news()
    assert back.sinks[0].sent == 2
    again_online = receiver(recipient.jid, recipient.password, include_delayed=True)
    got = recipient.messages + again_online.wait_for(2)
    quiet(again_online, 2)
    assert sorted(m.splitlines()[0] for m in got) == sorted(titles(6))
    assert {r[3] for r in deliveries(data_dir)} == {"sent"}


def test_wrong_password_fails_once_with_a_readable_reason(
    feeds: Any, prosody: Any, recipient: Any, data_dir: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("TRIGGERFLOW_RETRIES", "2")
    monkeypatch.setenv("TRIGGERFLOW_XMPP_DEFAULT_PASSWORD", "not-the-password")
    feeds.publish("/pw.xml", titles(2))
    with pytest.raises(TriggerRunFailed, match="refused the password") as failed:
        make_trigger("pw", feeds.url("/pw.xml"))()
    assert "not-the-password" not in str(failed.value)
    rows = deliveries(data_dir)
    assert [(r[3], r[4]) for r in rows] == [("queued", 1), ("queued", 1)]  # one attempt only
    quiet(recipient, 0, wait=0.5)


def test_unknown_recipient_is_a_permanent_failure_in_status(
    feeds: Any, prosody: Any, recipient: Any, data_dir: Path
) -> None:
    feeds.publish("/nobody.xml", titles(1))
    with pytest.raises(TriggerRunFailed, match="service-unavailable"):
        make_trigger("nobody", feeds.url("/nobody.xml"), to="nosuchuser@localhost")()
    (row,) = deliveries(data_dir)
    assert row[3] == "failed" and "service-unavailable" in row[5]
    out = subprocess.run(
        [sys.executable, "-m", "triggerflow", "status"],
        capture_output=True, text=True, timeout=60, env=dict(os.environ),
    ).stdout  # fmt: skip
    assert "nosuchuser@localhost" in out and "service-unavailable" in out and "post 0" in out


def test_room_receives_the_messages(
    feeds: Any, prosody: Any, receiver: Callable[..., Any], monkeypatch: pytest.MonkeyPatch
) -> None:
    for key, value in prosody.env().items():
        monkeypatch.setenv(key, value)
    room = f"team{os.getpid()}@{prosody.muc}"
    watcher = receiver("alice", room=room)
    feeds.publish("/room.xml", titles(2, prefix="room post"))
    result = make_trigger("room", feeds.url("/room.xml"), room=room, format="{title}")()
    assert result.sinks[0].sent == 2
    assert sorted(watcher.wait_for(2)) == ["room post 0", "room post 1"]


def test_a_new_target_gets_only_the_newest_items(
    feeds: Any, recipient: Any, data_dir: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("TRIGGERFLOW_FIRST_RUN", "2")
    feeds.publish("/long.xml", titles(7))
    result = make_trigger("long", feeds.url("/long.xml"), format="{title}")()
    assert (result.sinks[0].sent, result.sinks[0].skipped) == (2, 5)
    assert sorted(recipient.wait_for(2)) == ["post 5", "post 6"]  # the newest
    quiet(recipient, 2)


def test_preview_sends_nothing_and_changes_nothing(
    feeds: Any, recipient: Any, data_dir: Path
) -> None:
    feeds.publish("/p.xml", titles(2))
    t = make_trigger("p", feeds.url("/p.xml"), format="{title}")
    t()
    recipient.wait_for(2)
    before = deliveries(data_dir)
    feeds.publish("/p.xml", titles(3))
    preview = t.preview()
    assert preview.dry_run and len(preview) == 3
    assert preview.sinks[0].would_send == ["post 2"]
    assert deliveries(data_dir) == before
    quiet(recipient, 2)
    # ... and the real run after it still sends the new one.
    assert t().sinks[0].sent == 1


TRIGGER_FILE = """
from triggerflow import trigger
from triggerflow.sinks import xmpp
from triggerflow.sources import rss

@trigger
def {name}():
    xmpp(rss({url!r}), format="{{title}}")
"""


def test_two_processes_and_a_reader_share_one_store(
    feeds: Any, recipient: Any, data_dir: Path, tmp_path: Path
) -> None:
    """Two trigger runs in two processes at once, and a notebook-style reader meanwhile."""
    flows = tmp_path / "flows"
    flows.mkdir()
    for name in ("left", "right"):
        feeds.publish(f"/{name}.xml", titles(4, prefix=name))
        (flows / f"{name}.py").write_text(
            textwrap.dedent(TRIGGER_FILE.format(name=name, url=feeds.url(f"/{name}.xml")))
        )
    env = {**os.environ, "TRIGGERFLOW_FLOWS_DIR": str(flows), "TRIGGERFLOW_FIRST_RUN": "10"}
    reader = textwrap.dedent(f"""
        import time, triggerflow._store as s
        store = s.Store({str(data_dir / "triggerflow.duckdb")!r}, wait=30)
        n = 0
        deadline = time.monotonic() + 20
        while time.monotonic() < deadline and n < 40:
            with store.transaction(commit=False) as tx:
                tx.route_status()
            n += 1
            time.sleep(0.05)
        print(n)
    """)
    procs = [spawn(["-m", "triggerflow", "run", name], env) for name in ("left", "right")]
    procs.append(spawn(["-c", reader], env))
    outs = [p.communicate(timeout=180)[0] for p in procs]
    assert [p.returncode for p in procs] == [0, 0, 0], outs
    got = recipient.wait_for(8)
    quiet(recipient, 8)
    assert sorted(got) == sorted(titles(4, prefix="left") + titles(4, prefix="right"))
    assert "4 sent" in outs[0] and "4 sent" in outs[1]
    assert int(outs[2].strip().splitlines()[-1]) > 0  # the reader read while they wrote
    states = {r[3] for r in deliveries(data_dir)}
    assert states == {"sent"}
    assert len(deliveries(data_dir)) == 8


def test_secrets_stay_out_of_logs_artifacts_and_the_store(
    feeds: Any, prosody: Any, recipient: Any, data_dir: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    from prefect.client.orchestration import get_client
    from prefect.client.schemas.filters import LogFilter, LogFilterFlowRunId

    from triggerflow._async import run_sync

    secret = "s3cret-Passw0rd-xyz"
    prosody.register("secretive", secret)
    for key, value in prosody.env(user="secretive", owner=recipient.jid).items():
        monkeypatch.setenv(key, value)
    feeds.publish("/s.xml", titles(2))
    t = make_trigger("secretive", feeds.url("/s.xml"))
    state = t(return_state=True)
    assert state.is_completed()
    recipient.wait_for(2)
    # ... and a failing run, whose error text is the most likely place for a leak.
    monkeypatch.setenv("TRIGGERFLOW_XMPP_DEFAULT_PASSWORD", secret + "-wrong")
    feeds.publish("/s.xml", titles(3))
    failed = t(return_state=True)
    assert failed.is_failed()

    async def everything_prefect_kept() -> str:
        async with get_client() as client:
            texts = []
            for run_state in (state, failed):
                run_id = run_state.state_details.flow_run_id
                run = await client.read_flow_run(run_id)
                texts.append(repr(run.parameters) + repr(run.state))
                logs = await client.read_logs(
                    LogFilter(flow_run_id=LogFilterFlowRunId(any_=[run_id]))
                )
                texts += [log.message for log in logs]
                for task_run in await client.read_task_runs():
                    texts.append(repr(task_run.task_inputs) + repr(task_run.state))
            texts += [repr(a.data) for a in await client.read_artifacts()]
            return "\n".join(texts)

    kept = run_sync(everything_prefect_kept())
    assert "secretive" in kept and "refused the password" in kept  # we did read the logs
    assert secret not in kept
    assert secret.encode() not in (data_dir / "triggerflow.duckdb").read_bytes()


def test_a_run_shows_its_task_runs_and_ends_with_a_summary_artifact(
    feeds: Any, recipient: Any
) -> None:
    from prefect.client.orchestration import get_client
    from prefect.client.schemas.filters import (
        ArtifactFilter,
        ArtifactFilterKey,
        FlowRunFilter,
        FlowRunFilterId,
    )

    from triggerflow._async import run_sync

    feeds.publish("/ui.xml", titles(3))
    state = make_trigger("watched", feeds.url("/ui.xml"))(return_state=True)
    run_id = state.state_details.flow_run_id

    async def look() -> tuple[list[str], str]:
        async with get_client() as client:
            tasks = await client.read_task_runs(
                flow_run_filter=FlowRunFilter(id=FlowRunFilterId(any_=[run_id]))
            )
            (artifact,) = await client.read_artifacts(
                artifact_filter=ArtifactFilter(key=ArtifactFilterKey(any_=["watched-summary"])),
                flow_run_filter=FlowRunFilter(id=FlowRunFilterId(any_=[run_id])),
            )
            return sorted(t.name for t in tasks), str(artifact.data)

    names, summary = run_sync(look())
    assert names == [f"rss: {feeds.url('/ui.xml')}", f"xmpp → {recipient.jid}"]
    assert "| new | 3 |" in summary
    assert f"| sent to {recipient.jid} (xmpp) | 3 |" in summary
