"""The polling path, measured: ``python bench/run.py [--feeds 500] [--runs 3]``.

A feed server (``bench/feedserver.py``, its own process) serves ``--feeds`` generated
feeds of 20 entries. Each variant runs three rounds on an empty data dir — round 1: every
item new; round 2: 10% of the feeds gained 2 items; round 3: nothing changed — each round
in a child process: the round's own wall and CPU time (the child's and its workers', after
its imports), the whole process's time, and the peak RSS of the child and everything it
starts (sampled from /proc). After each round the stored item count is checked.

Variants, side by side in the same run:

* ``poll``: triggerflow's poll path called from Python: the rss source (conditional GET,
  parse on several cores, store) and the ledger for a null target;
* ``naive``: sequential fetch, no conditional GET, feedparser, one INSERT per item;
* ``raw``: the limit: concurrent fetch and feedparser on all cores, nothing stored.

Not yet here (issue 7): the same as one Prefect flow run, and the latency option's rounds.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import resource
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
VARIANTS = ("poll", "naive", "raw")
ROUNDS = ("1: all new", "2: 10% changed", "3: unchanged")


# -- the child side: one round of one variant ------------------------------------------------
def round_poll(urls: list[str], data: Path) -> int:
    os.environ["TRIGGERFLOW_DATA_DIR"] = str(data)
    from triggerflow._store import Store, now
    from triggerflow.config import settings
    from triggerflow.sources._rss import _fetch

    got = _fetch("bench", tuple(urls), True, True)
    s = settings()
    store = Store(s.store_path, s.store_wait)
    with store.transaction() as con:
        store.enqueue(con, ("bench", "null", "null"), [i.key for i in got.items], 10**9, now())
        return int(con.execute("SELECT count(*) FROM items").fetchone()[0])  # type: ignore[index]


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


def _parse(body: bytes) -> int:
    import feedparser

    return len(feedparser.parse(body).entries)


def round_raw(urls: list[str], data: Path) -> int:
    from concurrent.futures import ProcessPoolExecutor, ThreadPoolExecutor

    with httpx.Client(timeout=30, limits=httpx.Limits(max_connections=20)) as client:
        with ThreadPoolExecutor(20) as pool:
            bodies = list(pool.map(lambda u: client.get(u).content, urls))
    with ProcessPoolExecutor(os.cpu_count() or 1) as pool:
        return sum(pool.map(_parse, bodies, chunksize=16))


def _cpu() -> float:
    own = resource.getrusage(resource.RUSAGE_SELF)
    kids = resource.getrusage(resource.RUSAGE_CHILDREN)
    return own.ru_utime + own.ru_stime + kids.ru_utime + kids.ru_stime


def worker(variant: str, base: str, feeds: int, data: Path) -> None:
    """One round, timed without the interpreter's start and imports (reported apart)."""
    os.environ["TRIGGERFLOW_DATA_DIR"] = str(data)
    import duckdb  # noqa: F401 - imported before the clock starts, like a running service
    import feedparser  # noqa: F401

    import triggerflow.sources._rss  # noqa: F401

    urls = [f"{base}/feeds/{i}.xml" for i in range(feeds)]
    t, cpu = time.perf_counter(), _cpu()
    n = {"poll": round_poll, "naive": round_naive, "raw": round_raw}[variant](urls, data)
    wall, cpu = time.perf_counter() - t, _cpu() - cpu
    print(json.dumps({"items": n, "wall_s": wall, "cpu_s": cpu}), flush=True)


# -- the parent side -----------------------------------------------------------------------
def _tree_rss(pid: int) -> int:
    """Resident memory of ``pid`` and its descendants, in bytes (from /proc)."""
    parents: dict[int, list[int]] = {}
    for stat in Path("/proc").glob("[0-9]*/stat"):
        try:
            ppid = int(stat.read_text().rsplit(")", 1)[1].split()[1])
        except (OSError, IndexError, ValueError):
            continue
        parents.setdefault(ppid, []).append(int(stat.parent.name))
    total, todo = 0, [pid]
    while todo:
        p = todo.pop()
        todo += parents.get(p, [])
        try:
            for line in Path(f"/proc/{p}/status").read_text().splitlines():
                if line.startswith("VmRSS:"):
                    total += int(line.split()[1]) * 1024
        except OSError:
            pass
    return total


def measure(variant: str, base: str, feeds: int, data: Path) -> dict[str, float]:
    before = resource.getrusage(resource.RUSAGE_CHILDREN)
    t = time.perf_counter()
    proc = subprocess.Popen(
        [sys.executable, __file__, "--worker", variant, "--base", base, "--feeds", str(feeds),
         "--data", str(data)],
        stdout=subprocess.PIPE, text=True, cwd=ROOT,
    )  # fmt: skip
    peak = 0
    done = threading.Event()

    def sample() -> None:
        nonlocal peak
        while not done.wait(0.05):
            peak = max(peak, _tree_rss(proc.pid))

    sampler = threading.Thread(target=sample, daemon=True)
    sampler.start()
    out, _ = proc.communicate(timeout=900)
    wall = time.perf_counter() - t
    done.set()
    sampler.join()
    after = resource.getrusage(resource.RUSAGE_CHILDREN)
    if proc.returncode != 0:
        raise RuntimeError(f"{variant} failed with code {proc.returncode}")
    process_cpu = (after.ru_utime - before.ru_utime) + (after.ru_stime - before.ru_stime)
    got = json.loads(out.strip().splitlines()[-1])
    return {"wall_s": got["wall_s"], "cpu_s": got["cpu_s"], "process_s": wall,
            "process_cpu_s": process_cpu, "peak_rss_mb": peak / 2**20,
            "items": got["items"]}  # fmt: skip


def one_run(variant: str, feeds: int, root: Path, extra: list[str]) -> list[dict[str, float]]:
    server = subprocess.Popen(
        [sys.executable, str(ROOT / "bench" / "feedserver.py"), "--feeds", str(feeds), *extra],
        stdout=subprocess.PIPE, text=True,
    )  # fmt: skip
    try:
        assert server.stdout is not None
        base = server.stdout.readline().split()[1]
        data = Path(tempfile.mkdtemp(prefix=f"{variant}-", dir=root))
        rounds = [measure(variant, base, feeds, data)]
        httpx.post(f"{base}/bump?share=0.1&items=2", timeout=10)
        rounds.append(measure(variant, base, feeds, data))
        rounds.append(measure(variant, base, feeds, data))
    finally:
        server.terminate()
        server.wait(10)
    if variant != "raw":  # nothing lost, nothing doubled
        bumped = len(range(0, feeds, 10))
        expected = [feeds * 20, feeds * 20 + 2 * bumped, feeds * 20 + 2 * bumped]
        got = [int(r["items"]) for r in rounds]
        assert got == expected, f"{variant}: stored {got}, expected {expected}"
    return rounds


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--feeds", type=int, default=500, help="feeds served (500)")
    ap.add_argument("--runs", type=int, default=3, help="runs of each variant (3)")
    ap.add_argument("--gzip", action="store_true", help="the server gzips its answers")
    ap.add_argument("--variants", default=",".join(VARIANTS), help="which (all)")
    ap.add_argument("--out", default=str(Path(__file__).parent / "results" / "poll.json"))
    ap.add_argument("--worker", help=argparse.SUPPRESS)
    ap.add_argument("--base", help=argparse.SUPPRESS)
    ap.add_argument("--data", help=argparse.SUPPRESS)
    args = ap.parse_args(argv)
    if args.worker:
        worker(args.worker, args.base, args.feeds, Path(args.data))
        return 0
    extra = ["--gzip"] if args.gzip else []
    results: dict[str, list[list[dict[str, float]]]] = {}
    with tempfile.TemporaryDirectory(prefix="tf-bench-poll-") as tmp:
        for variant in args.variants.split(","):
            results[variant] = []
            for run in range(args.runs):
                results[variant].append(one_run(variant, args.feeds, Path(tmp), extra))
                print(f"  {variant} run {run + 1}/{args.runs}", file=sys.stderr, flush=True)
    report: dict[str, Any] = {
        "machine": {
            "cores": os.cpu_count(), "python": platform.python_version(),
            "packages": {p: version(p) for p in ("feedparser", "httpx", "duckdb", "triggerflow")},
        },
        "feeds": args.feeds, "gzip": args.gzip, "runs": results,
    }  # fmt: skip
    Path(args.out).parent.mkdir(parents=True, exist_ok=True)
    Path(args.out).write_text(json.dumps(report, indent=2))
    print(f"\nPolling {args.feeds} feeds x 20 items, medians of {args.runs} runs, "
          f"{os.cpu_count()} cores\n")  # fmt: skip
    print("| variant | round | wall s | CPU s | process s (start + imports + round) "
          "| peak RSS MB | items stored |")  # fmt: skip
    print("|---|---|---|---|---|---|---|")
    for variant, runs in results.items():
        for r, name in enumerate(ROUNDS):
            rows = [run[r] for run in runs]
            med = {k: statistics.median(x[k] for x in rows) for k in rows[0]}
            stored = "-" if variant == "raw" else f"{med['items']:.0f}"
            print(f"| {variant} | {name} | {med['wall_s']:.2f} | {med['cpu_s']:.2f} | "
                  f"{med['process_s']:.2f} | {med['peak_rss_mb']:.0f} | {stored} |")  # fmt: skip
    print(f"\nJSON: {args.out}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
