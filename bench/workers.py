"""Runs per minute through Prefect workers on the PostgreSQL store: ``python bench/workers.py``.

The setup of the README's "Running on several machines", on one machine: a PostgreSQL
cluster of the benchmark's own (fsync on), ``triggerflow serve --no-runs`` with Prefect's
server on it, the trigger ``feed(rss(*urls), name="bench")`` deployed by
``prefect deploy`` to a process work pool, and 1 or 2 ``prefect worker start`` processes,
each a "host" of its own (HOME, data folder, Prefect home). ``--runs`` runs are asked
for at once; the time from the first asked to the last finished gives runs per minute.
Each worker runs one at a time (``--limit 1``). The first run of each setting stores the
feeds' items and is not timed; the timed ones find them unchanged (304s), so what is
measured is what a run costs: a worker's new process, Prefect's flow and task runs, the
conditional GETs and the store. ``--repeat`` batches per setting, the median shown.

Side by side, the same runs the plain way, one after another: ``triggerflow run bench
--here`` called ``--runs`` times in a row on the same store (no worker, no deployment).
"""

from __future__ import annotations

import argparse
import contextlib
import json
import os
import signal
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT / "tests"))

from postgres_support import running_cluster  # noqa: E402
from serve_support import Serve, prefect_api, prefect_cli  # noqa: E402

FLOW = """\
# Written by bench/workers.py
from triggerflow import every, trigger
from triggerflow.sinks import feed
from triggerflow.sources import rss

URLS = {urls!r}


@trigger(schedule=every("1d"))
def bench():
    feed(rss(*URLS), name="bench")
"""
PREFECT_YAML = """\
name: bench
prefect-version: 3.8.8
build: null
push: null
pull:
  - prefect.deployments.steps.set_working_directory:
      directory: "{{ $PWD }}"
deployments:
  - name: bench
    entrypoint: flows/bench.py:bench
    work_pool:
      name: triggerflow
"""
TERMINAL = ("COMPLETED", "FAILED", "CRASHED", "CANCELLED")


def _done(api: str, deployment: str) -> list[dict[str, Any]]:
    body = {"deployments": {"id": {"any_": [deployment]}}}
    runs = prefect_api("POST", f"{api}/flow_runs/filter", body).json()
    return [r for r in runs if r["state_type"] in TERMINAL]


def _batch(serve: Serve, deployment: str, runs: int, timeout: float) -> float:
    """Ask for ``runs`` runs at once; seconds until every one finished (all Completed)."""
    before = len(_done(serve.api, deployment))
    t = time.perf_counter()
    for _ in range(runs):
        serve.create_run(deployment)
    deadline = time.monotonic() + timeout
    while len(done := _done(serve.api, deployment)) < before + runs:
        if time.monotonic() > deadline:
            raise RuntimeError(f"{len(done) - before} of {runs} runs finished in {timeout:g} s")
        time.sleep(0.2)
    elapsed = time.perf_counter() - t
    bad = [r["state_name"] for r in done if r["state_type"] != "COMPLETED"]
    if bad:
        raise RuntimeError(f"runs that did not complete: {bad}")
    return elapsed


def through_workers(
    cluster: Any, workers: int, runs: int, repeat: int, urls: list[str], root: Path
) -> list[float]:
    """Runs per minute of each batch, ``workers`` workers."""
    where = Path(tempfile.mkdtemp(prefix=f"workers{workers}-", dir=root))
    project = where / "project"
    (project / "flows").mkdir(parents=True)
    (project / "flows" / "bench.py").write_text(FLOW.format(urls=urls))
    (project / "prefect.yaml").write_text(PREFECT_YAML)
    store = cluster.new_database()
    prefect_db = cluster.new_database().replace("postgresql://", "postgresql+asyncpg://", 1)
    serve = Serve(where / "serve", project / "flows", TRIGGERFLOW_STORE_URL=store,
                  PREFECT_SERVER_DATABASE_CONNECTION_URL=prefect_db)  # fmt: skip
    serve.start(300, "Running no triggers here", "--no-runs")
    procs: list[subprocess.Popen[str]] = []
    try:
        base = {**serve.env, "PREFECT_API_URL": serve.api, "TRIGGERFLOW_STORE_URL": store,
                "PWD": str(project), "PREFECT_WORKER_QUERY_SECONDS": "1",
                "PREFECT_WORKER_PREFETCH_SECONDS": "1"}  # fmt: skip
        hosts = []
        for n in range(workers):
            home = where / f"host{n}"
            (home / "prefect").mkdir(parents=True)
            hosts.append({**base, "HOME": str(home), "TRIGGERFLOW_DATA_DIR": str(home / "data"),
                          "PREFECT_HOME": str(home / "prefect")})  # fmt: skip
        prefect_cli(["work-pool", "create", "triggerflow", "--type", "process"], hosts[0], project)
        prefect_cli(["--no-prompt", "deploy", "--all"], hosts[0], project)
        deployment = prefect_api("GET", f"{serve.api}/deployments/name/bench/bench").json()["id"]
        for env in hosts:
            procs.append(subprocess.Popen(
                [sys.executable, "-m", "prefect", "worker", "start", "--pool", "triggerflow",
                 "--limit", "1"],
                env=env, cwd=project, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
                start_new_session=True,
            ))  # fmt: skip
        _batch(serve, deployment, 1, 600)  # stores the items: not timed
        per_minute = []
        for _ in range(repeat):
            per_minute.append(runs / _batch(serve, deployment, runs, 900) * 60)
            print(f"  {workers} worker(s): {per_minute[-1]:.1f} runs/min", file=sys.stderr)
        return per_minute
    finally:
        for p in procs:
            with contextlib.suppress(ProcessLookupError):
                os.killpg(p.pid, signal.SIGINT)
        for p in procs:
            try:
                p.wait(30)
            except subprocess.TimeoutExpired:
                os.killpg(p.pid, signal.SIGKILL)
        serve.stop()


def in_one_process(runs: int, repeat: int, urls: list[str], root: Path) -> list[float]:
    """Runs per minute of ``triggerflow run bench --here`` one after another (DuckDB)."""
    where = Path(tempfile.mkdtemp(prefix="here-", dir=root))
    (where / "flows").mkdir()
    (where / "flows" / "bench.py").write_text(FLOW.format(urls=urls))
    env = {k: v for k, v in os.environ.items() if not k.startswith(("PREFECT_", "TRIGGERFLOW_"))}
    env.update(TRIGGERFLOW_DATA_DIR=str(where / "data"), TRIGGERFLOW_FLOWS_DIR=str(where / "flows"))
    cmd = [sys.executable, "-m", "triggerflow", "run", "bench", "--here"]

    def one() -> None:
        r = subprocess.run(cmd, env=env, cwd=ROOT, capture_output=True, text=True, timeout=600)
        if r.returncode:
            raise RuntimeError(f"triggerflow run failed: {r.stdout}{r.stderr}")

    one()  # stores the items: not timed
    per_minute = []
    for _ in range(repeat):
        t = time.perf_counter()
        for _ in range(runs):
            one()
        per_minute.append(runs / (time.perf_counter() - t) * 60)
        print(f"  run --here: {per_minute[-1]:.1f} runs/min", file=sys.stderr)
    return per_minute


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--runs", type=int, default=20, help="runs asked for at once (20)")
    ap.add_argument("--repeat", type=int, default=3, help="batches per setting (3)")
    ap.add_argument("--workers", default="1,2", help="worker counts, comma-separated (1,2)")
    ap.add_argument("--feeds", type=int, default=20, help="feeds the trigger reads (20)")
    ap.add_argument("--out", default=str(Path(__file__).parent / "results" / "workers.json"))
    args = ap.parse_args(argv)
    counts = [int(x) for x in args.workers.split(",")]
    results: dict[str, list[float]] = {}
    feeds = subprocess.Popen(
        [sys.executable, str(ROOT / "bench" / "feedserver.py"), "--feeds", str(args.feeds)],
        stdout=subprocess.PIPE, text=True,
    )  # fmt: skip
    try:
        assert feeds.stdout is not None
        base = feeds.stdout.readline().split()[1]
        urls = [f"{base}/feeds/{i}.xml" for i in range(args.feeds)]
        with tempfile.TemporaryDirectory(prefix="tf-bench-workers-") as tmp:
            results["run --here, one after another (DuckDB)"] = in_one_process(
                args.runs, args.repeat, urls, Path(tmp)
            )
            with running_cluster(durable=True) as cluster:
                for n in counts:
                    results[f"{n} worker(s), PostgreSQL"] = through_workers(
                        cluster, n, args.runs, args.repeat, urls, Path(tmp)
                    )
    finally:
        feeds.terminate()
        feeds.wait(10)
    Path(args.out).parent.mkdir(parents=True, exist_ok=True)
    Path(args.out).write_text(json.dumps({"runs": args.runs, "feeds": args.feeds,
                                          "cores": os.cpu_count(), "runs_per_minute": results},
                                         indent=2))  # fmt: skip
    print(f"\n{args.runs} runs of one trigger ({args.feeds} unchanged feeds -> feed()), "
          f"medians of {args.repeat} batches, {os.cpu_count()} cores\n")  # fmt: skip
    print("| how | runs/minute |")
    print("|---|---|")
    for how, rates in results.items():
        print(f"| {how} | {statistics.median(rates):.1f} |")
    print(f"\nJSON: {args.out}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
