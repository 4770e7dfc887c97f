"""Workers on two hosts (issue 18): Prefect's server and the store on PostgreSQL, the
commands of the README's "Running on several machines".

A "host" is a worker process with its own HOME, data folder and PREFECT_HOME; the hosts
share nothing but the PostgreSQL cluster (the store, Prefect's database) and the Prefect
API of ``triggerflow serve --no-runs``. Everything is real: ``initdb``'s cluster, Prefect's
server migrated onto it, ``prefect deploy``, ``prefect worker start``, Prosody.
"""

from __future__ import annotations

import hashlib
import hmac
import os
import signal
import subprocess
import sys
import textwrap
import time
from pathlib import Path
from typing import Any

import httpx
from postgres_support import Cluster
from serve_support import Serve, prefect_api

RUNS = 20  # runs of one deployment, spread over the two workers

PREFECT_YAML = """\
name: hosts
prefect-version: 3.8.8
build: null
push: null
pull:
  - prefect.deployments.steps.set_working_directory:
      directory: "{{ $PWD }}"
deployments:
  # No concurrency limit: two runs at once on two hosts is what this is about.
  - name: news
    entrypoint: flows/news.py:news
    tags: [triggerflow]
    work_pool:
      name: triggerflow
  # Run by a delivery: serve's receiver stores it and says so by a Prefect event.
  - name: hooks
    entrypoint: flows/hooks.py:hooks
    tags: [triggerflow]
    work_pool:
      name: triggerflow
    triggers:
      - type: event
        enabled: true
        expect: [triggerflow.github.issues]
        match:
          prefect.resource.id: github.repo.codertocat/hello-world
"""
HOOKS = Path(__file__).parent / "fixtures" / "github-webhooks" / "issues" / "opened.payload.json"
SECRET = "several hosts"


def _prefect(args: list[str], env: dict[str, str], cwd: Path) -> None:
    r = subprocess.run(
        [sys.executable, "-m", "prefect", *args],
        env=env, cwd=cwd, capture_output=True, text=True, timeout=180,
    )  # fmt: skip
    assert r.returncode == 0, f"prefect {' '.join(args)} failed:\n{r.stdout}\n{r.stderr}"


def _worker(env: dict[str, str], cwd: Path) -> subprocess.Popen[str]:
    # --limit 1: a worker takes the next run only when its last one ended, so the
    # runs spread over both hosts (one worker polling first cannot take them all).
    return subprocess.Popen(
        [sys.executable, "-m", "prefect", "worker", "start", "--pool", "triggerflow",
         "--limit", "1"],
        env=env, cwd=cwd, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True,
        start_new_session=True, preexec_fn=lambda: signal.signal(signal.SIGINT, signal.SIG_DFL),
    )  # fmt: skip


def _stop(proc: subprocess.Popen[str]) -> str:
    if proc.poll() is None:
        os.killpg(proc.pid, signal.SIGINT)
    try:
        return proc.communicate(timeout=30)[0]
    except subprocess.TimeoutExpired:
        os.killpg(proc.pid, signal.SIGKILL)
        return proc.communicate()[0]


def _finished(api: str, deployment: str) -> list[dict[str, Any]]:
    body = {"deployments": {"id": {"any_": [deployment]}}}
    runs = prefect_api("POST", f"{api}/flow_runs/filter", body).json()
    return [r for r in runs if r["state_type"] in ("COMPLETED", "FAILED", "CRASHED", "CANCELLED")]


def test_twenty_runs_over_two_workers_on_two_hosts_deliver_every_item_once(
    postgres: Cluster, prosody: Any, receiver: Any, feeds: Any, tmp_path: Path
) -> None:
    store_url = postgres.new_database()
    prefect_db = postgres.new_database().replace("postgresql://", "postgresql+asyncpg://", 1)
    project = tmp_path / "project"
    (project / "flows").mkdir(parents=True)
    (project / "prefect.yaml").write_text(PREFECT_YAML)
    alice = receiver()
    feed = feeds.url("/hosts.xml")
    titles = [f"item {i}" for i in range(8)]  # a backlog: the first run sends the newest 5
    feeds.publish("/hosts.xml", titles)
    (project / "flows" / "news.py").write_text(
        textwrap.dedent(f"""
        from triggerflow import every, trigger
        from triggerflow.sinks import xmpp
        from triggerflow.sources import rss

        @trigger(name="news", schedule=every("1h"))
        def news():
            xmpp(rss({feed!r}), to={alice.jid!r})
        """)
    )
    (project / "flows" / "hooks.py").write_text(
        textwrap.dedent(f"""
        from triggerflow import trigger
        from triggerflow.sinks import xmpp
        from triggerflow.sources import github_webhook

        @trigger(on=github_webhook(repo="Codertocat/Hello-World", events=["issues"]))
        def hooks(events):
            xmpp(events, to={alice.jid!r})
        """)
    )
    # The first host: Prefect's server on PostgreSQL, the web app, no runs of its own.
    serve = Serve(
        tmp_path / "serve", project / "flows", TRIGGERFLOW_STORE_URL=store_url,
        PREFECT_SERVER_DATABASE_CONNECTION_URL=prefect_db, TRIGGERFLOW_GITHUB_SECRET=SECRET,
    )  # fmt: skip
    serve.start(240, "Running no triggers here", "--no-runs")
    workers: list[subprocess.Popen[str]] = []
    try:
        base = {**serve.env, **prosody.env(), "PREFECT_API_URL": serve.api,
                "TRIGGERFLOW_STORE_URL": store_url, "PWD": str(project),
                "PREFECT_WORKER_QUERY_SECONDS": "1",
                "PREFECT_WORKER_PREFETCH_SECONDS": "1"}  # fmt: skip
        hosts = {}
        for name in ("one", "two"):
            home = tmp_path / name
            (home / "prefect").mkdir(parents=True)
            hosts[name] = {**base, "HOME": str(home), "TRIGGERFLOW_DATA_DIR": str(home / "data"),
                           "PREFECT_HOME": str(home / "prefect")}  # fmt: skip
        _prefect(["work-pool", "create", "triggerflow", "--type", "process"], hosts["one"], project)
        _prefect(["--no-prompt", "deploy", "--all"], hosts["one"], project)
        workers = [_worker(env, project) for env in hosts.values()]
        deployment = prefect_api("GET", f"{serve.api}/deployments/name/news/news").json()["id"]
        # Two runs at a time (one per worker), the feed growing by two items between.
        for wave in range(RUNS // 2):
            if wave:
                titles += [f"item {len(titles)}", f"item {len(titles) + 1}"]
                feeds.publish("/hosts.xml", titles)
            for _ in range(2):
                serve.create_run(deployment)
            deadline = time.monotonic() + 180
            while len(done := _finished(serve.api, deployment)) < 2 * (wave + 1):
                assert time.monotonic() < deadline, [_stop(w) for w in workers]
                assert all(w.poll() is None for w in workers), [_stop(w) for w in workers]
                time.sleep(0.5)
        assert {r["state_type"] for r in done} == {"COMPLETED"}, [
            (r["name"], r["state_name"]) for r in done
        ]
        expected = [f"item {i}\n{feed}#{i}" for i in range(3, len(titles))]
        alice.wait_for(len(expected), timeout=30)
        # (alice is also the owner: the feed's old dates earn an alert that it went silent)
        got = [m for m in alice.messages if not m.startswith("⚠")]
        assert sorted(got) == sorted(expected)  # each once: none twice, none lost

        # A delivery received by the first host, delivered by a worker on another.
        body = HOOKS.read_bytes()
        signature = "sha256=" + hmac.new(SECRET.encode(), body, hashlib.sha256).hexdigest()
        headers = {"X-GitHub-Event": "issues", "X-GitHub-Delivery": "across-hosts",
                   "Content-Type": "application/json",
                   "X-Hub-Signature-256": signature}  # fmt: skip
        r = httpx.post(f"{serve.web}/hooks/github", content=body, headers=headers, timeout=30)
        assert r.status_code in (200, 202), r.text
        deadline = time.monotonic() + 120
        while not any("opened issue #1" in m for m in alice.messages):
            assert time.monotonic() < deadline, ([_stop(w) for w in workers], alice.messages)
            time.sleep(0.2)

        # Prefect's server deletes finished runs after TRIGGERFLOW_RUN_RETENTION (30 days).
        vacuum = prefect_api("GET", f"{serve.api}/admin/settings").json()["server"]["services"]
        assert set(vacuum["db_vacuum"]["enabled"]) >= {"events", "flow_runs"}, vacuum
        assert vacuum["db_vacuum"]["retention_period"] in (2592000, 2592000.0, "P30D"), vacuum
    finally:
        outputs = [_stop(w) for w in workers]
        serve.stop()
    ids = [r["id"] for r in done]
    ran = [sum(i in out for i in ids) for out in outputs]
    assert all(ran), ran  # both hosts ran some of them (a worker may name a run it lost)
    assert all(any(i in out for out in outputs) for i in ids)
