"""The store's way of writing on the installed duckdb: ``python bench/duckdb_version.py``.

Plain DuckDB (and numpy), nothing of triggerflow, so the same file runs in a venv with
another duckdb beside this one (bench/README.md, "DuckDB 1.4.4 or 1.5.5")::

    python3 -m venv /tmp/duckdb155 && /tmp/duckdb155/bin/pip install duckdb==1.5.5 numpy
    /tmp/duckdb155/bin/python bench/duckdb_version.py --out /tmp/duckdb155.json

Measured, side by side in the same run:

* **checkpoints** the way a first run stores 10,000 items: 20 write transactions of 500
  rows of ~2 KB, each on a newly opened file and checkpointed before it closes (what
  ``_connection._checkpoint_if_due`` does once the WAL reaches 1 MiB), into a table with a
  primary key like the store's ``items``, and into the same table without a key;
* **one checkpoint** after 500 inserts of random keys into a table that already holds
  ``--rows`` keyed rows (a store that has been running for a while);
* **registering columns** (``_store/_bulk.columns``): 10,000 rows of 12 string columns as
  numpy object arrays, with DuckDB's type sampling and without it
  (``pandas_analyze_sample = 0``).
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import tempfile
import time
from collections.abc import Callable
from pathlib import Path

import duckdb
import numpy as np


def _median(runs: int, once: Callable[[], float]) -> float:
    return statistics.median(once() for _ in range(runs))


def checkpoints(key: str) -> tuple[float, float]:
    """Seconds spent in the 20 checkpoints, and the file's MB at the end."""
    path = Path(tempfile.mkdtemp()) / "f.duckdb"
    spent = 0.0
    for k in range(20):
        con = duckdb.connect(str(path))
        con.execute("PRAGMA disable_checkpoint_on_shutdown")
        if k == 0:
            con.execute(f"CREATE TABLE t (id VARCHAR {key}, body VARCHAR)")
        con.execute(
            "INSERT INTO t SELECT 'id' || (i + $1), repeat('word' || i || ' ', 300) "
            "FROM range(500) r(i)",
            [k * 500],
        )
        started = time.perf_counter()
        con.execute("CHECKPOINT")
        spent += time.perf_counter() - started
        con.close()
    return spent, path.stat().st_size / 1e6


def one_checkpoint(rows: int) -> float:
    path = Path(tempfile.mkdtemp()) / "f.duckdb"
    con = duckdb.connect(str(path))
    con.execute("CREATE TABLE t (id VARCHAR PRIMARY KEY, body VARCHAR)")
    con.execute("INSERT INTO t SELECT md5('old' || i), 'word' || i FROM range($1) r(i)", [rows])
    con.close()
    con = duckdb.connect(str(path))
    con.execute("PRAGMA disable_checkpoint_on_shutdown")
    con.execute("INSERT INTO t SELECT md5(i::VARCHAR), 'w' FROM range(500) r(i)")
    started = time.perf_counter()
    con.execute("CHECKPOINT")
    spent = time.perf_counter() - started
    con.close()
    return spent


def register(sample: bool) -> float:
    strings = np.array([f"text {i}" for i in range(10_000)], dtype=object)
    con = duckdb.connect()
    if not sample:
        con.execute("SET pandas_analyze_sample = 0")
    started = time.perf_counter()
    con.register("x", {f"c{k}": strings for k in range(12)})
    con.execute("SELECT count(*) FROM x").fetchone()
    return time.perf_counter() - started


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--runs", type=int, default=5, help="runs of each measurement (5)")
    ap.add_argument("--rows", type=int, default=100_000, help="rows before one checkpoint")
    ap.add_argument("--out", type=Path, help="also write the results as JSON here")
    args = ap.parse_args(argv)
    results: dict[str, float] = {}
    for key, label in (("PRIMARY KEY", "key"), ("", "no key")):
        runs = [checkpoints(key) for _ in range(args.runs)]
        results[f"20 checkpoints, {label}: s"] = statistics.median(r[0] for r in runs)
        results[f"20 checkpoints, {label}: file MB"] = statistics.median(r[1] for r in runs)
        print(f"  20 checkpoints, {label}: done", flush=True)
    results[f"1 checkpoint at {args.rows:,} keyed rows: s"] = _median(
        args.runs, lambda: one_checkpoint(args.rows)
    )
    results["register 10,000 x 12 object columns, sampled: s"] = _median(
        args.runs, lambda: register(True)
    )
    results["register 10,000 x 12 object columns, unsampled: s"] = _median(
        args.runs, lambda: register(False)
    )
    print(f"\nduckdb {duckdb.__version__}, medians of {args.runs} runs, {os.cpu_count()} cores\n")
    print("| what | value |\n|---|---|")
    for what, value in results.items():
        print(f"| {what} | {value:.3f} |")
    if args.out:
        args.out.write_text(
            json.dumps({"duckdb": duckdb.__version__, "runs": args.runs, **results}, indent=1)
        )
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
