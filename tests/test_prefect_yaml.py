"""prefect.yaml describes the same triggers as flows/, and a process worker runs them."""

from __future__ import annotations

import os
import shutil
import signal
import subprocess
import sys
import textwrap
from pathlib import Path

import yaml
from serve_support import prefect_cli

from triggerflow._discovery import discover
from triggerflow.schedules import Cron, Every

ROOT = Path(__file__).resolve().parent.parent


def _deployments() -> dict[str, dict]:
    doc = yaml.safe_load((ROOT / "prefect.yaml").read_text())
    return {d["name"]: d for d in doc["deployments"]}


def test_prefect_yaml_matches_the_triggers_in_flows() -> None:
    found = discover(ROOT / "flows")
    assert not found.errors
    deployments = _deployments()
    assert set(deployments) == set(found.triggers)
    for name, t in found.triggers.items():
        d = deployments[name]
        path, _, attr = d["entrypoint"].partition(":")
        assert (ROOT / path).resolve() == found.files[name].resolve()
        assert attr == t.fn.__name__
        assert "triggerflow" in d["tags"]
        assert d["work_pool"]["name"] == "triggerflow"
        if t.on is not None:  # runs on deliveries: the same event trigger as serve's
            (event,) = d["triggers"]
            spec = t.on.prefect_trigger()
            assert set(event["expect"]) == set(spec.expect)
            assert event["match"] == spec.match.root
            assert "concurrency_limit" not in d
        (schedule,) = d["schedules"]
        if isinstance(t.schedule, Every):
            assert schedule["interval"] == t.schedule.interval.total_seconds()
        else:
            assert isinstance(t.schedule, Cron)
            assert (schedule["cron"], schedule["timezone"]) == (
                t.schedule.expression,
                t.schedule.timezone,
            )


def _drain(proc: subprocess.Popen[str]) -> str:
    """What the worker printed so far (for a failure message)."""
    os.killpg(proc.pid, signal.SIGINT)
    try:
        return proc.communicate(timeout=20)[0]
    except subprocess.TimeoutExpired:
        os.killpg(proc.pid, signal.SIGKILL)
        return proc.communicate()[0]


def test_a_process_worker_runs_a_deployed_trigger(
    prefect_api: str, prosody, receiver, feeds, tmp_path: Path
) -> None:
    """`prefect deploy --all` with our prefect.yaml, then `prefect worker start` runs it."""
    project = tmp_path / "project"
    (project / "flows").mkdir(parents=True)
    shutil.copy(ROOT / "prefect.yaml", project / "prefect.yaml")
    # The same trigger names and entrypoints as flows/, reading the local feed server.
    feeds.publish("/worker.xml", [f"worker item {i}" for i in range(3)])
    alice = receiver()
    for name, d in _deployments().items():
        path, _, attr = d["entrypoint"].partition(":")
        (project / path).write_text(
            textwrap.dedent(f"""
            from triggerflow import every, trigger
            from triggerflow.sinks import xmpp
            from triggerflow.sources import rss

            @trigger(name={name!r}, schedule=every("15m"))
            def {attr}():
                xmpp(rss({feeds.url("/worker.xml")!r}), to={alice.jid!r})
            """)
        )
    env = {
        **os.environ,
        **prosody.env(),
        "PREFECT_API_URL": prefect_api,
        "PREFECT_HOME": str(tmp_path / "prefect-home"),
        "PREFECT_WORKER_QUERY_SECONDS": "1",
        "PREFECT_WORKER_PREFETCH_SECONDS": "1",
        "PWD": str(project),  # what the pull step's {{ $PWD }} records
        "TRIGGERFLOW_DATA_DIR": str(tmp_path / "data"),
    }
    prefect_cli(["work-pool", "create", "triggerflow", "--type", "process"], env, project)
    prefect_cli(["--no-prompt", "deploy", "--all"], env, project)
    worker = subprocess.Popen(
        [sys.executable, "-m", "prefect", "worker", "start", "--pool", "triggerflow"],
        env=env, cwd=project, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True,
        start_new_session=True,
        preexec_fn=lambda: signal.signal(signal.SIGINT, signal.SIG_DFL),
    )  # fmt: skip
    try:
        from prefect.deployments import run_deployment

        # Created through the API, picked up by the worker, run in its subprocess.
        run = run_deployment("python_news/python_news", timeout=150, poll_interval=1)
        assert run.state is not None and run.state.is_completed(), f"{run.state}\n{_drain(worker)}"
        assert sorted(alice.wait_for(3)) == [
            f"worker item {i}\n{feeds.url('/worker.xml')}#{i}" for i in range(3)
        ]
    finally:
        if worker.poll() is None:
            _drain(worker)
