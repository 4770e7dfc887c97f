"""How the store file grows with runs: ``python bench/store_growth.py [--runs 1000]``.

A 1-minute trigger, run after run: the rss source reads one local feed (20 entries, a new
entry every 5 runs, ETag/304 otherwise) and a ``feed()`` sink publishes what it got, then
the alerts check; the calls a run of ``feed(rss(url), name="minutely")`` makes, as plain
calls in one process. A run opens and closes the store for each of its transactions, like
Prefect's run processes do, so DuckDB opens the file anew each time (what the leak of
duckdb/duckdb#19468 needs: see bench/README.md, "Store size").

Variants, side by side:

* ``triggerflow``: the store as it is (16 KiB blocks, a checkpoint only when the WAL
  reaches ``CHECKPOINT_WAL``), with serve's compactor looking once an hour (every 60
  runs) and compacting when the store has doubled (``_backups.Compactor``);
* ``256k``: the same without the compactor and with DuckDB's default 256 KiB blocks
  (triggerflow 2026-12-01 to 12-03);
* ``naive``: DuckDB's defaults, 256 KiB blocks and a checkpoint at every close
  (``CHECKPOINT_WAL = 0``), which is what triggerflow did before.

For each: the file (and WAL) size after the runs, what ``EXPORT DATABASE`` writes (CSV, the
default, and Parquet), the size of a compact copy (``COPY FROM DATABASE``: what the same
data takes in a fresh DuckDB file), and the time per run. ``--repeat`` runs each variant
several times and reports medians.
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import sys
import tempfile
import threading
import time
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT / "bench"))
sys.path.insert(0, str(ROOT))

VARIANTS = ("triggerflow", "256k", "naive")


def _dir_size(path: Path) -> int:
    return sum(f.stat().st_size for f in path.iterdir())


def one(variant: str, runs: int, every: int) -> dict[str, Any]:
    """``runs`` runs of the trigger on a new data dir; sizes after."""
    import duckdb
    from feedserver import Feeds, serve

    from triggerflow import _alerts
    from triggerflow._outbox import Options, deliver
    from triggerflow._steps import Reading
    from triggerflow._store import Store, _connection
    from triggerflow.sinks._feed import _FeedSender
    from triggerflow.sources._rss import _fetch
    from triggerflow.types import Route, SinkReport, SourceReport

    data = Path(tempfile.mkdtemp(prefix="tf-growth-"))
    os.environ["TRIGGERFLOW_DATA_DIR"] = str(data)
    os.environ["TRIGGERFLOW_ALERTS"] = "off"
    from triggerflow import _backups
    from triggerflow.config import settings

    saved = _connection.CHECKPOINT_WAL, _connection.BLOCK_SIZE
    if variant != "triggerflow":
        _connection.BLOCK_SIZE = 256 * 1024
    if variant == "naive":
        _connection.CHECKPOINT_WAL = 0
    compactor = _backups.Compactor(settings(), print) if variant == "triggerflow" else None
    compactions = 0
    feeds = Feeds(1, seed=1)
    server = serve(feeds, 0.0, False)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    url = f"http://127.0.0.1:{server.server_address[1]}/feeds/0.xml"
    store_path = data / "triggerflow.duckdb"
    store = Store(store_path)
    samples: list[tuple[int, int]] = []
    t0 = time.perf_counter()
    try:
        for run in range(runs):
            if run and run % every == 0:
                feeds.bump(1.0, 1)
            reading = Reading("minutely", use_store=True, write=True)
            got = _fetch((url,), reading, SourceReport("rss"))
            deliver(
                _FeedSender("minutely"),
                Route("minutely", "feed", "minutely"),
                got.as_items(),  # what rss() hands a sink: the stored items by key
                Options(None),
                SinkReport("feed", "minutely"),
            )
            _alerts._check(store, "minutely", [])
            if compactor and (run + 1) % 60 == 0 and compactor.due():
                compactor.compacted = _backups.compact(compactor.settings)
                compactions += 1
            if (run + 1) % max(runs // 10, 1) == 0:
                samples.append((run + 1, store_path.stat().st_size))
    finally:
        _connection.CHECKPOINT_WAL, _connection.BLOCK_SIZE = saved
        server.shutdown()
        server.server_close()
    took = time.perf_counter() - t0
    wal = Path(f"{store_path}.wal")
    out: dict[str, Any] = {
        "file_mb": store_path.stat().st_size / 1e6,
        "wal_mb": (wal.stat().st_size if wal.exists() else 0) / 1e6,
        "ms_per_run": took / runs * 1000,
        "compactions": compactions,
        "growth": [(n, round(size / 1e6, 2)) for n, size in samples],
    }
    con = duckdb.connect(str(store_path), read_only=True)
    try:
        out["items"] = int(con.execute("SELECT count(*) FROM items").fetchone()[0])  # type: ignore[index]
        out["sent"] = int(con.execute("SELECT count(*) FROM deliveries").fetchone()[0])  # type: ignore[index]
        for fmt in ("csv", "parquet"):
            folder = data / f"export-{fmt}"
            con.execute(f"EXPORT DATABASE '{folder}' (FORMAT {fmt})")
            out[f"export_{fmt}_mb"] = _dir_size(folder) / 1e6
    finally:
        con.close()
    copy = data / "compact.duckdb"
    con = _connection.open_duckdb(":memory:", store=True)  # triggerflow's block size
    con.execute(f"ATTACH '{store_path}' AS live (READ_ONLY)")
    con.execute(f"ATTACH '{copy}' AS compact")
    con.execute("COPY FROM DATABASE live TO compact")
    con.execute("DETACH compact")
    con.close()
    out["compact_mb"] = copy.stat().st_size / 1e6
    t = time.perf_counter()
    duckdb.connect(str(store_path)).execute("SELECT count(*) FROM items").fetchall()
    out["open_ms"] = (time.perf_counter() - t) * 1000  # includes replaying the WAL
    return out


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--runs", type=int, default=1000, help="runs of the trigger (1000)")
    ap.add_argument("--repeat", type=int, default=3, help="times each variant runs (3)")
    ap.add_argument("--every", type=int, default=5, help="a new feed entry every N runs (5)")
    ap.add_argument("--variants", default=",".join(VARIANTS), help="comma-separated")
    ap.add_argument("--out", type=Path, help="also write the results as JSON here")
    args = ap.parse_args(argv)
    import duckdb

    report: dict[str, Any] = {"duckdb": duckdb.__version__, "runs": args.runs, "variants": {}}
    print(f"duckdb {duckdb.__version__}, {args.runs} runs, medians of {args.repeat}")
    header = (
        "| variant | file MB | WAL MB | compact copy MB | EXPORT csv MB | EXPORT parquet MB "
        "| (file + WAL) / compact | / EXPORT csv | compactions | ms per run | open ms |"
    )
    print(header)
    print("|---" * 11 + "|")
    for variant in args.variants.split(","):
        results = [one(variant, args.runs, args.every) for _ in range(args.repeat)]
        med = {
            k: statistics.median(r[k] for r in results)
            for k in results[0]
            if isinstance(results[0][k], int | float)
        }
        med["growth"] = results[0]["growth"]
        report["variants"][variant] = {"median": med, "runs": results}
        print(
            f"| {variant} | {med['file_mb']:.2f} | {med['wal_mb']:.2f} | {med['compact_mb']:.2f} "
            f"| {med['export_csv_mb']:.3f} | {med['export_parquet_mb']:.3f} "
            f"| {(med['file_mb'] + med['wal_mb']) / med['compact_mb']:.1f} "
            f"| {(med['file_mb'] + med['wal_mb']) / med['export_csv_mb']:.1f} "
            f"| {med['compactions']:.0f} | {med['ms_per_run']:.0f} | {med['open_ms']:.0f} |",
            flush=True,
        )
    for variant, r in report["variants"].items():
        print(f"{variant}: MB after n runs: {r['median']['growth']}")
    if args.out:
        args.out.write_text(json.dumps(report, indent=1))
    return 0


if __name__ == "__main__":
    sys.exit(main())
