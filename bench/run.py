"""The polling path, measured: ``python bench/run.py [--feeds 500] [--runs 3]``.

A feed server (``bench/feedserver.py``, its own process) serves ``--feeds`` generated
feeds of 20 entries. Each variant runs three rounds on an empty data dir — round 1: every
item new; round 2: 10% of the feeds gained 2 items; round 3: nothing changed — each round
in a child process: the round's own wall and CPU time (the child's and its workers', after
its imports), the whole process's time, and the peak RSS of the child and everything it
starts (sampled from /proc). After each round the stored item count is checked.

Variants, side by side in the same run:

* ``poll``: triggerflow's poll path called from Python: what the rss task runs (conditional
  GET, parsing on all cores while the rest is fetched, storing) and what the ``feed()`` sink
  task runs (ledger: enqueue, claim, record), as plain calls;
* ``prefect``: the same trigger (``feed(rss(*urls), name="bench")``) as one Prefect flow
  run, ``triggerflow run bench``, against a local Prefect server started for the benchmark:
  its difference to ``poll`` is what Prefect costs;
* ``naive``: sequential fetch, no conditional GET, feedparser, one INSERT per item;
* ``raw``: the limit: concurrent fetch and feedparser on all cores (given each response's
  headers and URL, as feedparser has when it fetches itself), nothing stored;
* ``pg`` (not run unless named in ``--variants``): the ``poll`` path on the PostgreSQL
  store (issue 18), a database of its own per run on a cluster started for the benchmark
  (``initdb``, fsync on as in production; ``apt-get install -y postgresql``).

``--latency 0,0.1`` runs everything again with 100 ms added to every answer (the naive
variant is left out there: sequentially, 500 answers take 50 s of waiting alone).
"""

from __future__ import annotations

import argparse
import contextlib
import json
import os
import platform
import socket
import statistics
import subprocess
import sys
import tempfile
import threading
import time
from importlib.metadata import version
from pathlib import Path
from typing import Any

import httpx

ROOT = Path(__file__).resolve().parent.parent
VARIANTS = ("poll", "prefect", "naive", "raw", "pg")
DEFAULT_VARIANTS = ("poll", "prefect", "naive", "raw")
ROUNDS = ("1: all new", "2: 10% changed", "3: unchanged")


# -- the child side: one round of one variant ------------------------------------------------
def round_poll(urls: list[str], data: Path) -> int:
    from triggerflow._outbox import Options, deliver
    from triggerflow._steps import Reading
    from triggerflow.sinks._feed import _FeedSender
    from triggerflow.sources._rss import _fetch
    from triggerflow.types import Items, Route, SinkReport, SourceReport

    # What the rss() task runs, then what the feed() sink task runs (the outbox).
    got = _fetch(tuple(urls), Reading("bench", use_store=True, write=True), SourceReport("rss"))
    # What rss() returns (the unchanged feeds' items by key); older trees: a plain list.
    items = got.as_items() if hasattr(got, "as_items") else Items(got.items)
    route = Route("bench", "feed", "bench")
    deliver(_FeedSender("bench"), route, items, Options(None), SinkReport("feed", "bench"))
    return len(items)


def round_naive(urls: list[str], data: Path) -> int:
    import duckdb
    import feedparser

    data.mkdir(parents=True, exist_ok=True)
    con = duckdb.connect(str(data / "naive.duckdb"))
    con.execute(
        "CREATE TABLE IF NOT EXISTS items (feed VARCHAR, guid VARCHAR, title VARCHAR, "
        "summary VARCHAR, PRIMARY KEY (feed, guid))"
    )
    with httpx.Client(timeout=30) as client:
        for url in urls:
            parsed = feedparser.parse(client.get(url).content)
            for e in parsed.entries:
                con.execute(
                    "INSERT OR IGNORE INTO items VALUES (?, ?, ?, ?)",
                    [url, e.get("id") or e.get("link"), e.get("title"), e.get("summary")],
                )
    n = int(con.execute("SELECT count(*) FROM items").fetchone()[0])  # type: ignore[index]
    con.close()
    return n


def _parse(job: tuple[str, bytes, dict[str, str]]) -> int:
    import feedparser

    url, body, headers = job
    return len(
        feedparser.parse(body, response_headers={"content-location": url, **headers}).entries
    )


def round_raw(urls: list[str], data: Path) -> int:
    """The limit: 20 threads doing the same conditional GETs, feedparser on all cores for
    the feeds that changed, the validators kept in a JSON file; nothing else."""
    from concurrent.futures import ProcessPoolExecutor, ThreadPoolExecutor

    kept = data / "raw-validators.json"
    validators: dict[str, dict[str, str]] = json.loads(kept.read_text()) if kept.exists() else {}

    with httpx.Client(timeout=30, limits=httpx.Limits(max_connections=20)) as client:

        def get(url: str) -> httpx.Response:
            v = validators.get(url, {})
            headers = {"If-None-Match": v["etag"]} if "etag" in v else {}
            if "modified" in v:
                headers["If-Modified-Since"] = v["modified"]
            return client.get(url, headers=headers)

        with ThreadPoolExecutor(20) as pool:
            responses = list(pool.map(get, urls))
    jobs = [(str(r.url), r.content, dict(r.headers)) for r in responses if r.status_code == 200]
    with ProcessPoolExecutor(os.cpu_count() or 1) as pool:
        n = sum(pool.map(_parse, jobs, chunksize=16))
    for r in responses:
        if r.status_code == 200:
            validators[str(r.url)] = {
                k: r.headers[h] for k, h in (("etag", "etag"), ("modified", "last-modified"))
                if h in r.headers
            }  # fmt: skip
    data.mkdir(parents=True, exist_ok=True)
    kept.write_text(json.dumps(validators))
    return n


def worker(variant: str, base: str, feeds: int, data: Path, profile: str | None) -> None:
    """One round; ``wall_s`` is the round after the imports it needs (the parent times the
    whole process). With ``profile``, cProfile covers the whole process, imports included."""
    profiler = None
    if profile:
        import cProfile

        profiler = cProfile.Profile()
        profiler.enable()
    os.environ["TRIGGERFLOW_DATA_DIR"] = str(data)
    rounds = {"poll": round_poll, "pg": round_poll, "naive": round_naive, "raw": round_raw}
    urls = [f"{base}/feeds/{i}.xml" for i in range(feeds)]
    t = time.perf_counter()
    n = rounds[variant](urls, data)
    wall = time.perf_counter() - t
    if profiler is not None:
        profiler.disable()
        profiler.dump_stats(profile)
    print(json.dumps({"items": n, "wall_s": wall}), flush=True)


# -- the parent side -----------------------------------------------------------------------
def _tree(pid: int) -> list[int]:
    """``pid`` and its descendants (from /proc)."""
    children: dict[int, list[int]] = {}
    for stat in Path("/proc").glob("[0-9]*/stat"):
        try:
            ppid = int(stat.read_text().rsplit(")", 1)[1].split()[1])
        except (OSError, IndexError, ValueError):
            continue
        children.setdefault(ppid, []).append(int(stat.parent.name))
    found, todo = [], [pid]
    while todo:
        p = todo.pop()
        found.append(p)
        todo += children.get(p, [])
    return found


def _usage(pid: int) -> tuple[int, float]:
    """(resident bytes, CPU seconds so far) of one process, or zeros once it is gone."""
    try:
        rss = 0
        for line in Path(f"/proc/{pid}/status").read_text().splitlines():
            if line.startswith("VmRSS:"):
                rss = int(line.split()[1]) * 1024
        fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
        return rss, (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")
    except (OSError, IndexError, ValueError):
        return 0, 0.0


def _command(variant: str, base: str, feeds: int, data: Path, profile: str | None) -> list[str]:
    if variant == "prefect":
        return [sys.executable, "-m", "triggerflow", "run", "bench"]
    return [sys.executable, __file__, "--worker", variant, "--base", base, "--feeds", str(feeds),
            "--data", str(data), *(["--profile-to", profile] if profile else [])]  # fmt: skip


def measure(
    variant: str,
    base: str,
    feeds: int,
    data: Path,
    env: dict[str, str],
    profile: str | None = None,
) -> dict[str, float]:
    """One round in a child process: its timings, peak RSS and CPU of its whole tree."""
    t = time.perf_counter()
    proc = subprocess.Popen(
        _command(variant, base, feeds, data, profile), stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True, cwd=ROOT, env={**env, "TRIGGERFLOW_DATA_DIR": str(data)},
    )  # fmt: skip
    peak, cpu = 0, {}  # cpu: per pid, the last figure seen (a pid's CPU only grows)
    done = threading.Event()

    def sample() -> None:
        nonlocal peak
        while not done.wait(0.05):
            rss = 0
            for pid in _tree(proc.pid):
                r, c = _usage(pid)
                rss += r
                cpu[pid] = max(cpu.get(pid, 0.0), c)
            peak = max(peak, rss)

    sampler = threading.Thread(target=sample, daemon=True)
    sampler.start()
    out, err = proc.communicate(timeout=900)
    wall = time.perf_counter() - t
    done.set()
    sampler.join()
    if proc.returncode != 0:
        raise RuntimeError(f"{variant} failed with code {proc.returncode}:\n{err[-3000:]}")
    got = json.loads(out.strip().splitlines()[-1]) if variant != "prefect" else {}
    return {"wall_s": got.get("wall_s", wall), "process_s": wall,
            "cpu_s": sum(cpu.values()), "peak_rss_mb": peak / 2**20,
            "items": got.get("items", 0)}  # fmt: skip


def _check_store(variant: str, data: Path, store_url: str = "") -> tuple[int, int]:
    """(items stored, items delivered to the bench feed) read from the round's store."""
    import duckdb

    if store_url:
        import psycopg

        with psycopg.connect(store_url) as pg:
            return _counts(variant, pg)
    path = data / ("naive.duckdb" if variant == "naive" else "triggerflow.duckdb")
    con = duckdb.connect(str(path), read_only=True)
    try:
        return _counts(variant, con)
    finally:
        con.close()


def _counts(variant: str, con: Any) -> tuple[int, int]:
    items = con.execute("SELECT count(*) FROM items").fetchone()[0]
    if variant == "naive":
        return int(items), int(items)
    sent = con.execute(
        "SELECT count(*), count(DISTINCT (source, item_id)) FROM deliveries "
        "WHERE trigger = 'bench' AND sink = 'feed' AND state = 'sent'"
    ).fetchone()
    assert sent is not None and sent[0] == sent[1], f"{variant}: a delivery twice: {sent}"
    return int(items), int(sent[0])


FLOW = """\
# Written by bench/run.py: the polling benchmark's trigger.
from triggerflow import every, trigger
from triggerflow.sinks import feed
from triggerflow.sources import rss

URLS = {urls!r}


@trigger(schedule=every("1d"))
def bench():
    feed(rss(*URLS), name="bench")
"""


def one_run(
    variant: str,
    feeds: int,
    root: Path,
    server_args: list[str],
    env: dict[str, str],
    profile: Path | None = None,
) -> list[dict[str, float]]:
    server = subprocess.Popen(
        [sys.executable, str(ROOT / "bench" / "feedserver.py"), "--feeds", str(feeds),
         *server_args],
        stdout=subprocess.PIPE, text=True,
    )  # fmt: skip
    try:
        assert server.stdout is not None
        base = server.stdout.readline().split()[1]
        data = Path(tempfile.mkdtemp(prefix=f"{variant}-", dir=root))
        flows = data / "flows"
        flows.mkdir()
        urls = [f"{base}/feeds/{i}.xml" for i in range(feeds)]
        (flows / "bench.py").write_text(FLOW.format(urls=urls))
        env = {**env, "TRIGGERFLOW_FLOWS_DIR": str(flows)}
        rounds = []
        for r in range(3):
            if r == 1:
                httpx.post(f"{base}/bump?share=0.1&items=2", timeout=10)
            prof = str(profile / f"{variant}-round{r + 1}.pstats") if profile else None
            rounds.append(measure(variant, base, feeds, data, env, prof))
            if variant != "raw":
                rounds[-1]["items"], rounds[-1]["delivered"] = _check_store(
                    variant, data, env.get("TRIGGERFLOW_STORE_URL", "")
                )
    finally:
        server.terminate()
        server.wait(10)
    bumped = len(range(0, feeds, 10))
    expected = [feeds * 20, feeds * 20 + 2 * bumped, feeds * 20 + 2 * bumped]
    if variant == "raw":  # what was parsed: the entries of the feeds that changed
        expected = [feeds * 20, bumped * 20, 0]  # a feed lists its newest 20
    got = [int(r["items"]) for r in rounds]
    assert variant != "raw" or got == expected, f"raw: parsed {got}, expected {expected}"
    if variant != "raw":  # nothing lost, nothing doubled, in the store and in the ledger
        assert got == expected, f"{variant}: stored {got}, expected {expected}"
        delivered = [int(r["delivered"]) for r in rounds]
        assert delivered == expected, f"{variant}: delivered {delivered}, expected {expected}"
    return rounds


def _prefect_server(root: Path) -> Any:
    """A local Prefect server for the ``prefect`` variant (like ``serve`` starts one)."""
    from triggerflow._prefect_server import LocalPrefectServer, _port_free
    from triggerflow.config import settings

    port = os.environ.get("TRIGGERFLOW_PREFECT_PORT")
    if port and not _port_free(int(port)):
        sys.exit(f"TRIGGERFLOW_PREFECT_PORT={port} is in use; set a free port or unset it")
    if not port:  # a port the system says is free, not a guess from a fixed range
        with socket.socket() as sock:
            sock.bind(("127.0.0.1", 0))
            port = str(sock.getsockname()[1])
    os.environ.update(TRIGGERFLOW_DATA_DIR=str(root / "prefect"), TRIGGERFLOW_PREFECT_PORT=port)
    server = LocalPrefectServer(settings())
    server.start(lambda msg: print(msg, file=sys.stderr))
    return server


def _postgres(stack: contextlib.ExitStack) -> Any:
    """A PostgreSQL cluster of the benchmark's own (the tests' helper), with fsync on."""
    sys.path.insert(0, str(ROOT / "tests"))
    from postgres_support import running_cluster

    return stack.enter_context(running_cluster(durable=True))


def _median(rows: list[dict[str, float]], key: str) -> float:
    return statistics.median(x[key] for x in rows)


# The aims (issue 20): whole processes against the raw limit of the same run.
AIM_ROUND1, AIM_LATER, AIM_RSS_MB, AIM_PREFECT_S = 1.15, 1.5, 200, 1.0
AIM_PG = 1.5  # the PostgreSQL store against the DuckDB file (issue 18)


def _profile_lines(path: Path, top: int, order: str) -> list[str]:
    """The top lines of a cProfile dump by ``order`` (``cumulative``, ``tottime``)."""
    import io
    import pstats

    out = io.StringIO()
    stats = pstats.Stats(str(path), stream=out)
    stats.sort_stats(order).print_stats(top)
    lines = out.getvalue().splitlines()
    start = next((n for n, line in enumerate(lines) if "ncalls" in line), 0)
    site = str(Path(httpx.__file__).parent.parent) + "/"
    return [
        line.replace(str(ROOT) + "/", "").replace(site, "")
        for line in lines[start:]
        if line.strip()
    ]


def _print_aims(results: dict[str, list[list[dict[str, float]]]], latencies: list[float]) -> None:
    """Each aim against this run's figures: met or not, with the numbers."""
    lines = []
    for latency in latencies:
        poll, raw = results.get(f"poll@{latency:g}"), results.get(f"raw@{latency:g}")
        prefect = results.get(f"prefect@{latency:g}")
        for r, name in enumerate(ROUNDS):
            if poll and raw:
                ours = _median([run[r] for run in poll], "process_s")
                limit = _median([run[r] for run in raw], "process_s")
                aim = AIM_ROUND1 if r == 0 else AIM_LATER
                ok = "met" if ours <= aim * limit else "NOT met"
                lines.append(f"latency {latency:g} s, round {name}: poll {ours:.2f} s = "
                             f"{ours / limit:.2f}x raw {limit:.2f} s (aim <= {aim}x): "
                             f"{ok}")  # fmt: skip
            for variant, runs in (("poll", poll), ("prefect", prefect)):
                if runs:
                    peak = _median([run[r] for run in runs], "peak_rss_mb")
                    ok = "met" if peak <= AIM_RSS_MB else "NOT met"
                    lines.append(f"latency {latency:g} s, round {name}: {variant} peak RSS "
                                 f"{peak:.0f} MB (aim <= {AIM_RSS_MB}): {ok}")  # fmt: skip
            if poll and prefect:
                extra = _median([run[r] for run in prefect], "process_s") - _median(
                    [run[r] for run in poll], "process_s"
                )
                ok = "met" if extra <= AIM_PREFECT_S else "NOT met"
                lines.append(f"latency {latency:g} s, round {name}: Prefect adds {extra:+.2f} s "
                             f"(aim <= +{AIM_PREFECT_S:g} s): {ok}")  # fmt: skip
    if lines:
        print("\nAims (whole processes, medians):")
        print("\n".join(f"- {line}" for line in lines))


def profile(feeds: int, top: int, gzip: bool) -> int:
    """One run of the poll variant, each round's process under cProfile; the top lines."""
    with tempfile.TemporaryDirectory(prefix="tf-bench-profile-") as tmp:
        env = {"TRIGGERFLOW_HTTP_PER_HOST": "50", **os.environ}
        where = Path(tmp) / "profiles"
        where.mkdir()
        rounds = one_run("poll", feeds, Path(tmp), ["--gzip"] if gzip else [], env, where)
        for r, name in enumerate(ROUNDS):
            print(f"\n### Round {name}: {rounds[r]['process_s']:.2f} s whole process "
                  f"(cProfile on: slower than unprofiled)\n")  # fmt: skip
            for order, what in (("cumulative", "cumulative time"), ("tottime", "own time")):
                print(f"By {what}:\n\n```")
                print("\n".join(_profile_lines(where / f"poll-round{r + 1}.pstats", top, order)))
                print("```\n")
    return 0


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--feeds", type=int, default=500, help="feeds served (500)")
    ap.add_argument("--runs", type=int, default=3, help="runs of each variant (3)")
    ap.add_argument("--gzip", action="store_true", help="the server gzips its answers")
    ap.add_argument(
        "--latency",
        default="0,0.1",
        help="seconds added to every answer, comma-separated settings (0,0.1)",
    )
    ap.add_argument(
        "--variants", default=",".join(DEFAULT_VARIANTS),
        help=f"which, of {','.join(VARIANTS)} ({','.join(DEFAULT_VARIANTS)})",
    )  # fmt: skip
    ap.add_argument("--out", default=str(Path(__file__).parent / "results" / "poll.json"))
    ap.add_argument(
        "--profile", type=int, metavar="LINES", default=0,
        help="cProfile the poll variant's processes (imports included) and print the top "
        "LINES of each round by cumulative time (one run, no latency)",
    )  # fmt: skip
    ap.add_argument("--worker", help=argparse.SUPPRESS)
    ap.add_argument("--base", help=argparse.SUPPRESS)
    ap.add_argument("--data", help=argparse.SUPPRESS)
    ap.add_argument("--profile-to", dest="profile_to", help=argparse.SUPPRESS)
    args = ap.parse_args(argv)  # fmt: skip
    if args.worker:
        worker(args.worker, args.base, args.feeds, Path(args.data), args.profile_to)
        return 0
    if args.profile:
        return profile(args.feeds, args.profile, args.gzip)
    variants = args.variants.split(",")
    unknown = set(variants) - set(VARIANTS)
    if unknown:
        ap.error(f"unknown variant(s) {', '.join(sorted(unknown))}; choose from {VARIANTS}")
    latencies = [float(x) for x in args.latency.split(",")]
    results: dict[str, list[list[dict[str, float]]]] = {}
    with tempfile.TemporaryDirectory(prefix="tf-bench-poll-") as tmp:
        # One local server stands for 500 sites: triggerflow's per-host politeness limit
        # (TRIGGERFLOW_HTTP_PER_HOST, 4) would measure that limit, not the poll path, and
        # the raw variants use every connection too.
        env = {"TRIGGERFLOW_HTTP_PER_HOST": "50", **os.environ}
        server = _prefect_server(Path(tmp)) if "prefect" in variants else None
        if server is not None:
            env["PREFECT_API_URL"] = server.api_url
        cluster = _postgres(stack := contextlib.ExitStack()) if "pg" in variants else None
        try:
            for latency in latencies:
                extra = ["--gzip"] if args.gzip else []
                extra += ["--latency", str(latency)] if latency else []
                for variant in variants:
                    if latency and variant == "naive":
                        continue
                    key = f"{variant}@{latency:g}"
                    results[key] = []
                    for run in range(args.runs):
                        run_env = env
                        if variant == "pg" and cluster is not None:  # a store of its own
                            run_env = {**env, "TRIGGERFLOW_STORE_URL": cluster.new_database()}
                        results[key].append(one_run(variant, args.feeds, Path(tmp), extra, run_env))
                        print(f"  {variant}, latency {latency:g} s: run {run + 1}/{args.runs}",
                              file=sys.stderr, flush=True)  # fmt: skip
        finally:
            if server is not None:
                server.stop()
            if cluster is not None:
                stack.close()
    packages = ("feedparser", "httpx", "duckdb", "numpy", "prefect", "triggerflow")
    report: dict[str, Any] = {
        "machine": {
            "cores": os.cpu_count(), "python": platform.python_version(),
            "memory_gb": round(os.sysconf("SC_PAGE_SIZE") * os.sysconf("SC_PHYS_PAGES") / 2**30, 1),
            "packages": {p: version(p) for p in packages},
        },
        "feeds": args.feeds, "gzip": args.gzip, "runs": results,
    }  # fmt: skip
    Path(args.out).parent.mkdir(parents=True, exist_ok=True)
    Path(args.out).write_text(json.dumps(report, indent=2))
    print(f"\nPolling {args.feeds} feeds x 20 items, medians of {args.runs} runs, "
          f"{os.cpu_count()} cores\n")  # fmt: skip
    print("| latency | variant | round | process s | x raw | round s | CPU s (tree) "
          "| peak RSS MB (tree) | stored / delivered |")  # fmt: skip
    print("|---|---|---|---|---|---|---|---|---|")
    for key, runs in results.items():
        variant, latency = key.split("@")
        raw = results.get(f"raw@{latency}")
        for r, name in enumerate(ROUNDS):
            rows = [run[r] for run in runs]
            stored = (
                "-"
                if variant == "raw"
                else (f"{_median(rows, 'items'):.0f} / {_median(rows, 'delivered'):.0f}")
            )
            ratio = "-"
            if raw:
                limit = _median([run[r] for run in raw], "process_s")
                ratio = f"{_median(rows, 'process_s') / limit:.2f}"
            print(f"| {latency} s | {variant} | {name} | {_median(rows, 'process_s'):.2f} | "
                  f"{ratio} | {_median(rows, 'wall_s'):.2f} | {_median(rows, 'cpu_s'):.2f} | "
                  f"{_median(rows, 'peak_rss_mb'):.0f} | {stored} |")  # fmt: skip
    for latency in latencies:
        a, b = results.get(f"poll@{latency:g}"), results.get(f"prefect@{latency:g}")
        if a and b:
            extra_s = [
                _median([run[r] for run in b], "process_s")
                - _median([run[r] for run in a], "process_s")
                for r in range(3)
            ]
            added = ", ".join(f"+{x:.2f} s" for x in extra_s)
            print(f"\nPrefect flow run vs the same poll path called from Python, latency "
                  f"{latency:g} s (whole processes), rounds 1-3: {added}")  # fmt: skip
    for latency in latencies:
        duck, pg = results.get(f"poll@{latency:g}"), results.get(f"pg@{latency:g}")
        if duck and pg:
            ratios = [
                _median([run[r] for run in pg], "process_s")
                / _median([run[r] for run in duck], "process_s")
                for r in range(3)
            ]
            said = ", ".join(f"{x:.2f}x" for x in ratios)
            met = "met" if ratios[0] <= AIM_PG and ratios[2] <= AIM_PG else "NOT met"
            print(f"\nPostgreSQL store vs the DuckDB file (poll path, whole processes), latency "
                  f"{latency:g} s, rounds 1-3: {said} (aim <= {AIM_PG}x on rounds 1 and 3: "
                  f"{met})")  # fmt: skip
    _print_aims(results, latencies)
    print(f"\nJSON: {args.out}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
