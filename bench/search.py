"""Search speed on generated stores: ``python bench/search.py [--sizes 100000,1000000]``.

For each size, a fresh store of generated items (deterministic: the same words every
run) is indexed, then a fixed set of 1-2 word queries is run ``--runs`` times each:

* ``triggerflow.search`` with every item indexed, and again with 1,000 items waiting
  for the index (stored after the rebuild, found by the scan of waiting items);
* the raw fts extension: ``match_bm25`` over the same documents indexed by
  ``create_fts_index`` alone (its own table layout), top 20, no filters, no store, a
  connection kept open;
* ``ILIKE`` over the store, no index: what a search without fts costs.

Prints a markdown table (median and p95 per query, rebuild times) and writes
``bench/results/search.json`` with the machine's facts. Everything stays in a
temporary folder (removed at the end) and on this machine.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import shutil
import statistics
import sys
import tempfile
import time
from collections.abc import Callable
from importlib.metadata import version
from pathlib import Path

import duckdb

from triggerflow import _search as tf_search
from triggerflow._store import Store, now
from triggerflow._store._fts import index_path, load_fts

VOCABULARY = 30_000
# Ranks in the (Zipf-like) vocabulary of the query words: common, middling, rare.
QUERIES: tuple[tuple[int, ...], ...] = (
    (3,), (40,), (400,), (4_000,), (20_000,),
    (10, 200), (50, 3_000), (300, 3_001), (5, 15_000), (1_000, 2_000),
)  # fmt: skip
WAITING = 1_000


def words() -> list[str]:
    """A fixed vocabulary of pronounceable made-up words (no English stop words)."""
    onsets = ["b", "d", "f", "g", "k", "l", "m", "n", "p", "r", "s", "t", "v", "z", "br", "st"]
    vowels = ["a", "e", "i", "o", "u", "ai", "ou"]
    codas = ["", "n", "r", "s", "l", "x"]
    out = []
    for o1 in onsets:
        for v1 in vowels:
            for o2 in onsets:
                for v2 in vowels:
                    for c in codas:
                        out.append(o1 + v1 + o2 + v2 + c)
    return out[:VOCABULARY]


VOCAB = words()


def generate(store: Store, n: int, *, offset: int = 0, collected_now: bool = False) -> None:
    """Insert ``n`` items: 8-word titles, 60-word summaries.

    Items are stamped as collected when they were published (a store filled over
    months), or now with ``collected_now``.

    Words follow a Zipf-Mandelbrot law, p(rank) ~ 1 / (rank + 100), drawn by inverting
    its CDF from a hash of (item, position): the shape of text once stop words are gone.
    """
    u = "((hash(n, x, '{f}') % 1000003) / 1000003.0)"
    c = 100
    pick = (
        f"ws[1 + least({VOCABULARY - 1}, floor({c} * pow({(VOCABULARY + c) / c}, {u}) - {c}))::INT]"
    )
    title = f"array_to_string(list_transform(range(8), x -> {pick.format(f='t')}), ' ')"
    summary = f"array_to_string(list_transform(range(60), x -> {pick.format(f='s')}), ' ')"
    stamp = "now()" if collected_now else "published"
    with store.transaction() as tx:
        tx.con.execute("CREATE TEMP TABLE vocab AS SELECT ?::VARCHAR[] AS ws", [VOCAB])
        tx.con.execute(
            f"""
            INSERT INTO items
            SELECT 'https://feeds.example.org/' || (n % 500) || '.xml', 'item-' || n,
                   {title}, 'https://example.org/post/' || n, {summary}, NULL,
                   'author ' || (n % 97), published, [], [], NULL, md5(n::VARCHAR),
                   {stamp}, {stamp}
            FROM (SELECT n, TIMESTAMPTZ '2025-01-01' + to_seconds(n * 7) AS published
                  FROM range(?, ?) r(n)), vocab
            """,
            [offset, offset + n],
        )


def timed(fn: Callable[[], object], runs: int) -> list[float]:
    out = []
    for _ in range(runs):
        t = time.perf_counter()
        fn()
        out.append(time.perf_counter() - t)
    return out


def p95(xs: list[float]) -> float:
    xs = sorted(xs)
    return xs[min(len(xs) - 1, round(0.95 * (len(xs) - 1)))]


def bench_size(n: int, runs: int, root: Path) -> dict[str, object]:
    store = Store(root / f"items-{n}" / "triggerflow.duckdb")
    t = time.perf_counter()
    generate(store, n)
    gen_s = time.perf_counter() - t
    print(f"  {n:,} items generated in {gen_s:.1f} s", file=sys.stderr, flush=True)

    t = time.perf_counter()
    tf_search.rebuild_search_index(store)
    rebuild_s = time.perf_counter() - t
    print(f"  index rebuilt in {rebuild_s:.1f} s", file=sys.stderr, flush=True)

    # The extension on its own: the same documents, indexed by create_fts_index alone
    # (its own table layout), in a copy of the index file.
    raw_path = root / f"raw-{n}.duckdb"
    shutil.copy(index_path(store), raw_path)
    con = duckdb.connect(str(raw_path))
    load_fts(con)
    t = time.perf_counter()
    con.execute(
        "PRAGMA create_fts_index('docs', 'docid', 'title', 'title2', 'body', 'author', "
        "stemmer='porter', stopwords='english', overwrite=1)"
    )
    raw_build_s = time.perf_counter() - t
    con.close()

    queries = [" ".join(VOCAB[r] for r in q) for q in QUERIES]
    results: dict[str, list[float]] = {}
    hits: dict[str, list[int]] = {}

    def run_all(name: str, fn: Callable[[str], int]) -> None:
        times: list[float] = []
        counts = []
        for q in queries:
            counts.append(fn(q))  # warm-up, and the hit count
            times += timed(lambda q=q: fn(q), runs)
        results[name], hits[name] = times, counts
        print(
            f"  {name}: p50 {statistics.median(times) * 1000:.0f} ms", file=sys.stderr, flush=True
        )

    run_all(
        "triggerflow search",
        lambda q: len(tf_search.search(q, store=store, limit=20, reindex="never")),
    )

    raw_con = duckdb.connect(str(raw_path), read_only=True)
    load_fts(raw_con)

    def raw(q: str) -> int:  # a kept connection: no open/load cost per query
        return len(
            raw_con.execute(
                "SELECT * FROM (SELECT docid, fts_main_docs.match_bm25(docid, ?, "
                "conjunctive := 1) AS s FROM docs) WHERE s IS NOT NULL "
                "ORDER BY s DESC LIMIT 20",
                [q],
            ).fetchall()
        )

    run_all("raw match_bm25", raw)
    raw_con.close()
    raw_path.unlink()

    def scan(q: str) -> int:
        cond = " AND ".join(["(title || ' ' || summary) ILIKE ?"] * len(q.split()))
        with store.transaction(commit=False) as tx:
            return len(
                tx.con.execute(
                    f"SELECT id FROM items WHERE {cond} LIMIT 20",
                    [f"%{w}%" for w in q.split()],
                ).fetchall()
            )

    run_all("ILIKE scan, no index", scan)

    generate(
        store, WAITING, offset=n, collected_now=True
    )  # stored after the rebuild: waiting for the index
    status = tf_search.search_index_status(store)
    run_all(
        f"triggerflow search, {status.waiting:,} waiting",
        lambda q: len(tf_search.search(q, store=store, limit=20, reindex="never")),
    )
    shutil.rmtree(store.path.parent)
    return {
        "items": n,
        "generate_s": gen_s,
        "rebuild_s": rebuild_s,
        "fts_build_alone_s": raw_build_s,
        "latency_s": {
            k: {"p50": statistics.median(v), "p95": p95(v), "samples": len(v)}
            for k, v in results.items()
        },
        "hits_per_query": hits,
    }


def machine() -> dict[str, object]:
    return {
        "cores": os.cpu_count(),
        "python": platform.python_version(),
        "platform": platform.platform(),
        "packages": {p: version(p) for p in ("duckdb", "duckdb-ext-fts", "triggerflow")},
        "when": now().isoformat(timespec="seconds"),
    }


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--sizes", default="100000,1000000", help="item counts (100000,1000000)")
    ap.add_argument("--runs", type=int, default=5, help="runs of each query (5)")
    ap.add_argument("--out", default=str(Path(__file__).parent / "results" / "search.json"))
    args = ap.parse_args(argv)
    sizes = [int(s) for s in args.sizes.split(",")]
    root = Path(tempfile.mkdtemp(prefix="tf-bench-search-"))
    report = {"machine": machine(), "queries": [" ".join(VOCAB[r] for r in q) for q in QUERIES]}
    rows = []
    try:
        for n in sizes:
            print(f"{n:,} items:", file=sys.stderr, flush=True)
            r = bench_size(n, args.runs, root)
            rows.append(r)
    finally:
        shutil.rmtree(root, ignore_errors=True)
    report["sizes"] = rows
    Path(args.out).parent.mkdir(parents=True, exist_ok=True)
    Path(args.out).write_text(json.dumps(report, indent=2))

    print(
        f"\nSearch, {len(QUERIES)} queries x {args.runs} runs (top 20), {machine()['cores']} cores"
    )
    print("\n| items | what | p50 ms | p95 ms |\n|---|---|---|---|")
    for r in rows:
        for name, lat in r["latency_s"].items():  # type: ignore[union-attr]
            print(
                f"| {r['items']:,} | {name} | {lat['p50'] * 1000:.0f} | {lat['p95'] * 1000:.0f} |"
            )
    print("\n| items | rebuild (copy + index) s | fts index build alone s |\n|---|---|---|")
    for r in rows:
        print(f"| {r['items']:,} | {r['rebuild_s']:.1f} | {r['fts_build_alone_s']:.1f} |")
    print(f"\nJSON: {args.out}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
