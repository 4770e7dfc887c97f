"""Event triggers run inside serve's process: one run at a time per trigger, a bounded
number at once, each a flow run of the trigger's deployment (issue 17, items 1, 2, 6)."""

from __future__ import annotations

import hashlib
import hmac
import os
import threading
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest

from triggerflow import trigger
from triggerflow._event_runs import EventRuns
from triggerflow._watch import deployment_for
from triggerflow.sources import github_webhook

WORKERS = 2


class Meter:
    """How many runs go at once, per trigger and overall, and where they ran."""

    def __init__(self) -> None:
        self.lock = threading.Lock()
        self.active: dict[str, int] = {}
        self.peak: dict[str, int] = {}
        self.total = 0
        self.peak_total = 0
        self.runs: dict[str, int] = {}
        self.pids: set[int] = set()

    def body(self, name: str, seconds: float, meet: int = 0) -> None:
        """One run's body: counted while it lasts. ``meet``: wait (up to 20 s) until that
        many run at once, so a test sees the bound reached without timing luck."""
        with self.lock:
            self.active[name] = self.active.get(name, 0) + 1
            self.peak[name] = max(self.peak.get(name, 0), self.active[name])
            self.total += 1
            self.peak_total = max(self.peak_total, self.total)
            self.runs[name] = self.runs.get(name, 0) + 1
            self.pids.add(os.getpid())
        deadline = time.monotonic() + 20
        while meet and self.peak_total < meet and time.monotonic() < deadline:
            time.sleep(0.02)
        time.sleep(seconds)
        with self.lock:
            self.active[name] -= 1
            self.total -= 1


def event_trigger(name: str, meter: Meter, seconds: float = 0.3, meet: int = 0) -> Any:
    def body(events: Any) -> None:
        meter.body(name, seconds, meet)

    return trigger(on=github_webhook(events="push"), name=name)(body)


@pytest.fixture
def served(prefect_api: str) -> Iterator[Callable[..., tuple[EventRuns, dict[str, Any], dict]]]:
    made: list[EventRuns] = []

    def make(triggers: dict[str, Any]) -> tuple[EventRuns, dict[str, Any], dict]:
        ids = {n: deployment_for(t, [], in_process=True).apply() for n, t in triggers.items()}
        runs = EventRuns(WORKERS)
        made.append(runs)
        return runs, triggers, ids

    yield make
    for runs in made:
        runs.stop()


def wait_idle(runs: EventRuns, names: list[str], timeout: float = 120) -> None:
    deadline = time.monotonic() + timeout
    while any(runs.busy(n) for n in names):
        assert time.monotonic() < deadline, "runs did not end"
        time.sleep(0.05)


def flow_runs(deployment_id: Any) -> list[Any]:
    from prefect.client.orchestration import get_client
    from prefect.client.schemas.filters import DeploymentFilter, DeploymentFilterId

    with get_client(sync_client=True) as client:
        return client.read_flow_runs(
            deployment_filter=DeploymentFilter(id=DeploymentFilterId(any_=[deployment_id]))
        )


def test_a_burst_of_wake_ups_runs_each_trigger_one_at_a_time_within_the_bound(
    served: Callable[..., Any],
) -> None:
    meter = Meter()
    names = ["burst_a", "burst_b", "burst_c"]
    runs, triggers, ids = served({n: event_trigger(n, meter, meet=WORKERS) for n in names})
    runs.attach(triggers, ids)  # each runs once at start: what came while serve was down
    for _ in range(100):
        runs.wake("github", lambda on: on.woken_by("push", "me/x"))
        runs.wake("xmpp")  # another inbox: none of these
    wait_idle(runs, names)

    assert meter.peak == {n: 1 for n in names}  # never two runs of one trigger
    assert meter.peak_total == WORKERS  # the bound, reached and never passed
    assert meter.pids == {os.getpid()}  # in this process, no interpreter per run
    for n in names:
        # 101 wake-ups: the start's run, then at most one more owed (the rest folded in)
        assert 1 <= meter.runs[n] <= 2, meter.runs
        made = flow_runs(ids[n])
        assert len(made) == meter.runs[n]  # each a flow run of the deployment…
        assert {r.state.type.value for r in made} == {"COMPLETED"}
        assert all("event" in r.tags for r in made)  # …marked as an event run
    assert runs.started == sum(meter.runs.values())


def test_a_filter_wakes_only_its_triggers(served: Callable[..., Any]) -> None:
    meter = Meter()
    mine = trigger(on=github_webhook(repo="me/*", events="push"), name="mine")(
        lambda events: meter.body("mine", 0)
    )
    other = trigger(on=github_webhook(repo="you/*", events="push"), name="other")(
        lambda events: meter.body("other", 0)
    )
    runs, triggers, ids = served({"mine": mine, "other": other})
    runs.attach(triggers, ids)
    wait_idle(runs, ["mine", "other"])
    assert meter.runs == {"mine": 1, "other": 1}
    runs.wake("github", lambda on: on.woken_by("push", "me/project"))
    wait_idle(runs, ["mine", "other"])
    assert meter.runs == {"mine": 2, "other": 1}
    runs.wake("github", lambda on: on.woken_by("issues", "me/project"))  # not its event
    wait_idle(runs, ["mine", "other"])
    assert meter.runs == {"mine": 2, "other": 1}


def test_a_run_asked_for_in_the_ui_is_taken_here_in_turn(served: Callable[..., Any]) -> None:
    """A scheduled run of the deployment (the UI's Run, `triggerflow run`, the catch-up
    schedule) is run here, after the run going."""
    from prefect.client.orchestration import get_client

    meter = Meter()
    runs, triggers, ids = served({"asked": event_trigger("asked", meter, seconds=2)})
    runs.attach(triggers, ids)
    deadline = time.monotonic() + 30
    while not meter.runs and time.monotonic() < deadline:
        time.sleep(0.05)
    with get_client(sync_client=True) as client:
        asked = client.create_flow_run_from_deployment(ids["asked"])  # Scheduled, now
    wait_idle(runs, ["asked"], timeout=5)  # the first run is still going meanwhile
    deadline = time.monotonic() + 60
    while time.monotonic() < deadline:
        with get_client(sync_client=True) as client:
            state = client.read_flow_run(asked.id).state
        if state is not None and state.is_final():
            break
        time.sleep(0.2)
    assert state is not None and state.is_completed(), state
    assert meter.peak == {"asked": 1} and meter.runs == {"asked": 2}
    assert len(flow_runs(ids["asked"])) == 2  # no extra run made for it


def test_stop_does_not_wait_for_a_run_that_does_not_end(served: Callable[..., Any]) -> None:
    """Serve must stop within seconds whatever runs: a run still going is left to die
    with the process (its threads are daemons; Python would wait for an executor's)."""
    release = threading.Event()
    started = threading.Event()

    def body(events: Any) -> None:
        started.set()
        release.wait(120)

    runs, triggers, ids = served({"endless": trigger(on=github_webhook(), name="endless")(body)})
    runs.attach(triggers, ids)
    try:
        assert started.wait(60)
        t = time.monotonic()
        runs.stop(timeout=2)
        assert time.monotonic() - t < 4
        assert runs.busy("endless")  # still going: not waited for
        assert all(th.daemon for th in threading.enumerate() if th.name.startswith("triggerflow-"))
    finally:
        release.set()


SECRET = "event runs secret"
PUSH = Path(__file__).parent / "fixtures" / "github-webhooks" / "push" / "payload.json"

TRIGGER_FILE = """\
import os
from triggerflow import trigger
from triggerflow.sources import github_webhook


@trigger(on=github_webhook(events="push"))
def pids(events):
    with open({out!r}, "a") as fh:
        for e in events:
            fh.write(f"{{os.getpid()}} {{e.id}}\\n")
"""


def test_serve_runs_the_first_delivery_after_start_in_its_own_process(tmp_path: Path) -> None:
    """A delivery that arrives before serve has loaded its triggers is run once they
    are (it waited for the next delivery or the 10-minute catch-up), and event runs go
    in serve's process."""
    from serve_support import Serve

    out = tmp_path / "pids.txt"
    flows = tmp_path / "flows"
    flows.mkdir()
    (flows / "pids.py").write_text(TRIGGER_FILE.format(out=str(out)))
    serve = Serve(tmp_path / "data", flows, TRIGGERFLOW_GITHUB_SECRET=SECRET)
    try:
        serve.start(banner="GitHub webhooks:")  # the web app is up; triggers come next
        body = PUSH.read_bytes()
        signature = "sha256=" + hmac.new(SECRET.encode(), body, hashlib.sha256).hexdigest()
        headers = {
            "X-GitHub-Event": "push", "X-GitHub-Delivery": "first-after-start",
            "Content-Type": "application/json", "X-Hub-Signature-256": signature,
        }  # fmt: skip
        r = httpx.post(f"{serve.web}/hooks/github", content=body, headers=headers, timeout=10)
        assert r.status_code in (200, 202), r.text
        assert "Serving" in serve.wait_for("Serving", timeout=240)
        deadline = time.monotonic() + 90
        while time.monotonic() < deadline and not (out.exists() and out.read_text()):
            time.sleep(0.2)
        assert serve.proc is not None
        assert out.read_text().split() == [str(serve.proc.pid), "first-after-start"]
        serve.stop()
    finally:
        serve.kill()
