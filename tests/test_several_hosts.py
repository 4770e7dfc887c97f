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
import time
from pathlib import Path
from typing import Any

import httpx
from postgres_support import Cluster
from serve_support import Serve, prefect_api, prefect_cli

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


def _worker(env: dict[str, str], cwd: Path, hostname: str | None) -> subprocess.Popen[str]:
    # --limit 1: a worker takes the next run only when its last one ended, so the
    # runs spread over both hosts (one worker polling first cannot take them all).
    cmd = [sys.executable, "-m", "prefect", "worker", "start", "--pool", "triggerflow",
           "--limit", "1"]  # fmt: skip
    if hostname:  # unshare(1), then the worker itself; not root: in a user namespace too
        own = ["--uts"] if os.geteuid() == 0 else ["--user", "--map-root-user", "--uts"]
        cmd = ["unshare", *own, "sh", "-c", f'hostname {hostname} && exec "$@"', "-", *cmd]
    return subprocess.Popen(
        cmd,
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


NEWS = """
from triggerflow import every, trigger
from triggerflow.sinks import xmpp
from triggerflow.sources import rss

@trigger(name="news", schedule=every("1h"))
def news():
    items = rss({feed!r})
    xmpp(items, to={to!r})
    if {limited!r}:
        xmpp(items, to={limited!r}, limit="5/hour")
"""
HOOKS_FLOW = """
from triggerflow import trigger
from triggerflow.sinks import xmpp
from triggerflow.sources import github_webhook

@trigger(on=github_webhook(repo="Codertocat/Hello-World", events=["issues"]))
def hooks(events):
    xmpp(events, to={to!r})
"""


class _Hosts:
    """``serve --no-runs`` on the first host (Prefect's server and the store on the
    cluster), the deployments of ``prefect.yaml`` deployed, and the environments of two
    worker hosts, "one" and "two"."""

    def __init__(
        self, postgres: Cluster, prosody: Any, tmp_path: Path, feed: str, to: str,
        limited: str = "", **env: str,
    ) -> None:  # fmt: skip
        store_url = postgres.new_database()
        prefect_db = postgres.new_database().replace("postgresql://", "postgresql+asyncpg://", 1)
        self.project = tmp_path / "project"
        (self.project / "flows").mkdir(parents=True)
        (self.project / "prefect.yaml").write_text(PREFECT_YAML)
        news = NEWS.format(feed=feed, to=to, limited=limited)
        (self.project / "flows" / "news.py").write_text(news)
        (self.project / "flows" / "hooks.py").write_text(HOOKS_FLOW.format(to=to))
        self.serve = Serve(
            tmp_path / "serve", self.project / "flows", TRIGGERFLOW_STORE_URL=store_url,
            PREFECT_SERVER_DATABASE_CONNECTION_URL=prefect_db, TRIGGERFLOW_GITHUB_SECRET=SECRET,
        )  # fmt: skip
        self.serve.start(240, "Running no triggers here", "--no-runs")
        self.workers: list[subprocess.Popen[str]] = []
        base = {**self.serve.env, **prosody.env(), "PREFECT_API_URL": self.serve.api,
                "TRIGGERFLOW_STORE_URL": store_url, "PWD": str(self.project),
                "PREFECT_WORKER_QUERY_SECONDS": "1",
                "PREFECT_WORKER_PREFETCH_SECONDS": "1", **env}  # fmt: skip
        self.env: dict[str, dict[str, str]] = {}
        for name in ("one", "two"):
            home = tmp_path / name
            (home / "prefect").mkdir(parents=True)
            self.env[name] = {**base, "HOME": str(home), "TRIGGERFLOW_DATA_DIR": str(home / "data"),
                              "PREFECT_HOME": str(home / "prefect")}  # fmt: skip
        try:
            prefect_cli(["work-pool", "create", "triggerflow", "--type", "process"],
                     self.env["one"], self.project)  # fmt: skip
            prefect_cli(["--no-prompt", "deploy", "--all"], self.env["one"], self.project)
            got = prefect_api("GET", f"{self.serve.api}/deployments/name/news/news")
            self.deployment = got.json()["id"]
        except BaseException:
            self.serve.stop()
            raise

    def worker(self, name: str, hostname: str | None = None) -> subprocess.Popen[str]:
        """``prefect worker start`` on host ``name``; under ``hostname`` (a UTS namespace of
        its own) when given, so that the store sees its runs come from another machine."""
        w = _worker(self.env[name], self.project, hostname)
        self.workers.append(w)
        return w

    def finished(self) -> list[dict[str, Any]]:
        return _finished(self.serve.api, self.deployment)

    def wait_finished(self, count: int, timeout: float = 180) -> list[dict[str, Any]]:
        deadline = time.monotonic() + timeout
        while len(done := self.finished()) < count:
            assert time.monotonic() < deadline, [_stop(w) for w in self.workers]
            time.sleep(0.5)
        return done

    def stop(self) -> list[str]:
        outputs = [_stop(w) for w in self.workers]
        self.serve.stop()
        return outputs


def test_twenty_runs_over_two_workers_on_two_hosts_deliver_every_item_once(
    postgres: Cluster, prosody: Any, receiver: Any, feeds: Any, tmp_path: Path
) -> None:
    alice, bob = receiver(), receiver("bob")
    feed = feeds.url("/hosts.xml")
    titles = [f"item {i}" for i in range(8)]  # a backlog: the first run sends the newest 5
    feeds.publish("/hosts.xml", titles)
    # bob gets the same items with limit="5/hour": 5 in all, whichever host ran
    hosts = _Hosts(postgres, prosody, tmp_path, feed, alice.jid, limited=bob.jid)
    try:
        workers = [hosts.worker("one"), hosts.worker("two")]
        # Two runs at a time (one per worker), the feed growing by two items between.
        for wave in range(RUNS // 2):
            if wave:
                titles += [f"item {len(titles)}", f"item {len(titles) + 1}"]
                feeds.publish("/hosts.xml", titles)
            for _ in range(2):
                hosts.serve.create_run(hosts.deployment)
            done = hosts.wait_finished(2 * (wave + 1))
            assert all(w.poll() is None for w in workers), [_stop(w) for w in workers]
        assert {r["state_type"] for r in done} == {"COMPLETED"}, [
            (r["name"], r["state_name"]) for r in done
        ]
        expected = [f"item {i}\n{feed}#{i}" for i in range(3, len(titles))]
        alice.wait_for(len(expected), timeout=30)
        # (alice is also the owner: the feed's old dates earn an alert that it went silent)
        got = [m for m in alice.messages if not m.startswith("⚠")]
        assert sorted(got) == sorted(expected)  # each once: none twice, none lost
        assert len([m for m in bob.messages if not m.startswith("⚠")]) == 5, bob.messages

        # A delivery received by the first host, delivered by a worker on another.
        body = HOOKS.read_bytes()
        signature = "sha256=" + hmac.new(SECRET.encode(), body, hashlib.sha256).hexdigest()
        headers = {"X-GitHub-Event": "issues", "X-GitHub-Delivery": "across-hosts",
                   "Content-Type": "application/json",
                   "X-Hub-Signature-256": signature}  # fmt: skip
        url = f"{hosts.serve.web}/hooks/github"
        r = httpx.post(url, content=body, headers=headers, timeout=30)
        assert r.status_code in (200, 202), r.text
        deadline = time.monotonic() + 120
        while not any("opened issue #1" in m for m in alice.messages):
            assert time.monotonic() < deadline, ([_stop(w) for w in workers], alice.messages)
            time.sleep(0.2)

        # Prefect's server deletes finished runs after TRIGGERFLOW_RUN_RETENTION (30 days).
        api = hosts.serve.api
        vacuum = prefect_api("GET", f"{api}/admin/settings").json()["server"]["services"]
        assert set(vacuum["db_vacuum"]["enabled"]) >= {"events", "flow_runs"}, vacuum
        assert vacuum["db_vacuum"]["retention_period"] in (2592000, 2592000.0, "P30D"), vacuum
    finally:
        outputs = hosts.stop()
    ids = [r["id"] for r in done]
    ran = [sum(i in out for i in ids) for out in outputs]
    assert all(ran), ran  # both hosts ran some of them (a worker may name a run it lost)
    assert all(any(i in out for out in outputs) for i in ids)


def _kill_tree(pid: int) -> None:
    """SIGKILL ``pid`` and everything it started, as when its machine goes down."""
    children: dict[int, list[int]] = {}
    for stat in Path("/proc").glob("[0-9]*/stat"):
        try:
            ppid = int(stat.read_text().rsplit(")", 1)[1].split()[1])
        except (OSError, IndexError, ValueError):
            continue
        children.setdefault(ppid, []).append(int(stat.parent.name))
    todo, tree = [pid], []
    while todo:
        p = todo.pop()
        tree.append(p)
        todo += children.get(p, [])
    for p in tree:
        try:
            os.kill(p, signal.SIGKILL)
        except ProcessLookupError:
            pass


BURST = 600  # new items for the run that is killed
WINDOW = 400  # the README's bound on XMPP duplicates after a SIGKILL


def test_a_worker_host_killed_mid_run_loses_nothing_and_repeats_only_the_window(
    postgres: Cluster, prosody: Any, receiver: Any, feeds: Any, tmp_path: Path
) -> None:
    """Host one dies (SIGKILL of its worker and run) in the middle of 600 messages. Its
    claim is another machine's to host two: not known dead, held until its lease ends
    (TRIGGERFLOW_XMPP_TIMEOUT 1 s: 64 s), then sent by host two's runs. Every item
    arrives; repeated are at most the unacknowledged ones of the README's window."""
    alice = receiver()
    feed = feeds.url("/killed.xml")
    titles = [f"item {i}" for i in range(3)]
    feeds.publish("/killed.xml", titles)
    hosts = _Hosts(postgres, prosody, tmp_path, feed, alice.jid, TRIGGERFLOW_XMPP_TIMEOUT="1")
    try:
        one = hosts.worker("one", hostname="host-one")
        hosts.serve.create_run(hosts.deployment)
        hosts.wait_finished(1)
        alice.wait_for(3, timeout=30)
        titles += [f"item {i}" for i in range(3, 3 + BURST)]
        feeds.publish("/killed.xml", titles)
        killed_at = []
        alice.at_count(
            3 + BURST // 2, lambda: (_kill_tree(one.pid), killed_at.append(len(alice.messages)))
        )
        hosts.serve.create_run(hosts.deployment)
        deadline = time.monotonic() + 120
        while not killed_at:
            assert time.monotonic() < deadline, (_stop(one), len(alice.messages))
            time.sleep(0.2)
        # What host one had written to its socket still arrives after the kill (up to the
        # unacknowledged window, so often all 600): "mid-run" is that its run never ended,
        # not a count of messages.
        assert len(hosts.finished()) == 1, "the run completed before it could be killed"
        hosts.worker("two", hostname="host-two")
        # Runs on host two, one after another, until every item arrived.
        expected = {f"item {i}\n{feed}#{i}" for i in range(len(titles))}
        deadline = time.monotonic() + 300
        finished = len(hosts.finished())
        while not expected <= set(alice.messages):
            assert time.monotonic() < deadline, (
                len(expected - set(alice.messages)),
                [_stop(w) for w in hosts.workers],
            )
            hosts.serve.create_run(hosts.deployment)
            finished += 1
            hosts.wait_finished(finished, timeout=240)
    finally:
        hosts.stop()
    got = [m for m in alice.messages if not m.startswith("⚠")]
    repeated = len(got) - len(set(got))
    assert set(got) == expected  # nothing lost
    assert repeated <= WINDOW, repeated
    print(f"killed at {killed_at[0]} of {3 + BURST}; repeated {repeated}")
