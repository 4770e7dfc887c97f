"""Alerts that no run can send (issue 17, item 5): a run killed mid-way, a trigger whose
runs hang, a serve that was killed; each told once by XMPP, and once when it is back.
A real serve, its runner's run processes, a real Prosody and a real receiving client."""

from __future__ import annotations

import os
import signal
import time
from pathlib import Path

from serve_support import Serve, prefect_api
from xmpp_support import Prosody, Receiver

TRIGGERS = '''import os
import time
from pathlib import Path

from triggerflow import every, trigger


def _hold(name):
    # In a run the runner started (not when serve checks the trigger).
    if not os.environ.get("PREFECT__FLOW_RUN_ID"):
        return
    marks = Path(os.environ["WATCHDOG_MARKS"])
    if (marks / f"{name}.ok").exists():
        return  # runs normally: a completed run
    (marks / f"{name}.pid").write_text(str(os.getpid()))
    for _ in range(3000):  # 300 s at most
        if (marks / f"{name}.ok").exists():
            return
        time.sleep(0.1)


@trigger(schedule=every("1h"))
def killed():
    """Its runs (asked for by the test) hang until they may complete; one is killed."""
    _hold("killed")


@trigger(schedule=every("10s"))
def hangs():
    """Its first run never ends: no run completes."""
    _hold("hangs")
'''


def _until(check, timeout: float, what: str):  # type: ignore[no-untyped-def]
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        got = check()
        if got:
            return got
        time.sleep(0.2)
    raise AssertionError(f"timed out waiting for {what}")


def _said(receiver: Receiver, text: str) -> list[str]:
    return [m for m in receiver.messages if text in m]


def test_a_killed_run_a_late_trigger_and_a_killed_serve_are_each_told_once(
    prosody: Prosody, tmp_path: Path
) -> None:
    jid, password = prosody.new_user("owner")
    flows, marks = tmp_path / "flows", tmp_path / "marks"
    flows.mkdir()
    marks.mkdir()
    (flows / "watched.py").write_text(TRIGGERS)
    env = {**prosody.env(owner=jid), "TRIGGERFLOW_WATCHDOG": "1", "WATCHDOG_MARKS": str(marks)}
    serve = Serve(tmp_path / "data", flows, **env)
    again = Serve(tmp_path / "data", flows, **env)
    receiver = Receiver(prosody, jid, password)
    try:
        serve.start()
        killed_id = serve.deployments(2)["killed"]["id"]
        serve.create_run(killed_id)
        _until(lambda: (marks / "killed.pid").exists(), 90, "a run of `killed`")
        os.kill(int((marks / "killed.pid").read_text()), signal.SIGKILL)  # the run alone
        crashed = _until(lambda: _said(receiver, "killed is failing: its run"), 60, "the alert")
        assert "crashed" in crashed[0], crashed

        # No run of `hangs` completes: two of its times and the grace later, it is late.
        late = _until(lambda: _said(receiver, "hangs is failing: no completed run"), 90, "late")
        assert "every 10s" in late[0], late

        # `killed` may complete now: its next run is one, and it is back.
        (marks / "killed.ok").write_text("")
        serve.create_run(killed_id)
        _until(lambda: _said(receiver, "killed is back to normal"), 90, "back to normal")
        # One per outage: the looks every second meanwhile told nobody again.
        assert len(_said(receiver, "killed is failing")) == 1, receiver.messages
        assert len(_said(receiver, "hangs is failing")) == 1, receiver.messages

        assert serve.proc is not None
        os.kill(serve.proc.pid, signal.SIGKILL)
        serve.proc.wait(10)
        serve.wait_port_free()
        again.start()
        _until(lambda: _said(receiver, "serve was down"), 60, "the alert about serve")
        again.stop()
    finally:
        serve.kill()
        again.kill()
        receiver.close()
    assert len(_said(receiver, "serve was down")) == 1, receiver.messages


def test_a_worker_that_goes_away_is_told_once_and_once_when_it_is_back(
    prosody: Prosody, tmp_path: Path
) -> None:
    """A worker of a work pool (the prefect.yaml way, on another machine): Prefect marks it
    offline once it missed three heartbeats (2 s here; the server looks every second)."""
    import subprocess
    import sys

    jid, password = prosody.new_user("owner")
    flows = tmp_path / "flows"
    flows.mkdir()
    (flows / "watched.py").write_text(TRIGGERS)
    serve = Serve(
        tmp_path / "data", flows, TRIGGERFLOW_WATCHDOG="1", WATCHDOG_MARKS=str(tmp_path),
        PREFECT_SERVER_SERVICES_FOREMAN_LOOP_SECONDS="1", **prosody.env(owner=jid),
    )  # fmt: skip
    receiver = Receiver(prosody, jid, password)
    worker_env = {
        **serve.env,
        "PREFECT_API_URL": serve.api,
        "PREFECT_WORKER_HEARTBEAT_SECONDS": "2",
    }

    def worker() -> subprocess.Popen[bytes]:
        return subprocess.Popen(
            [sys.executable, "-m", "prefect", "worker", "start", "--pool", "elsewhere",
             "--type", "process", "--name", "w1"],
            env=worker_env, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
        )  # fmt: skip

    first = second = None
    try:
        serve.start()
        first = worker()
        _until(lambda: _worker_status(serve) == "ONLINE", 90, "the worker online")
        first.kill()
        first.wait(10)
        down = _until(lambda: _said(receiver, "worker w1 of pool elsewhere is failing"), 60, "down")
        assert "it is down" in down[0], down
        second = worker()
        _until(lambda: _said(receiver, "worker w1 of pool elsewhere is back"), 90, "back")
        assert len(_said(receiver, "worker w1 of pool elsewhere is failing")) == 1
        serve.stop()
    finally:
        for p in (first, second):
            if p is not None and p.poll() is None:
                p.kill()
                p.wait(10)
        serve.kill()
        receiver.close()


def _worker_status(serve: Serve) -> str | None:
    got = prefect_api("POST", f"{serve.api}/work_pools/elsewhere/workers/filter", {})
    if got.status_code != 200 or not got.json():
        return None
    return got.json()[0]["status"]
