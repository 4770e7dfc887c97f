"""The benchmark harnesses in bench/ still run (small sizes; no time is asserted)."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent


def test_search_bench_smoke(tmp_path: Path) -> None:
    out = tmp_path / "search.json"
    r = subprocess.run(
        [sys.executable, "bench/search.py", "--sizes", "3000", "--runs", "1", "--out", str(out)],
        cwd=ROOT, capture_output=True, text=True, timeout=600,
    )  # fmt: skip
    assert r.returncode == 0, r.stdout + r.stderr
    assert "| 3,000 | triggerflow search |" in r.stdout
    report = json.loads(out.read_text())
    size = report["sizes"][0]
    assert size["items"] == 3000 and report["machine"]["cores"]
    hits = size["hits_per_query"]
    # The index and the scan of waiting items agree with the raw extension on what matches.
    assert hits["triggerflow search"] == hits["raw match_bm25"]
    assert sum(hits["triggerflow search"]) > 0


def test_webhooks_bench_smoke(tmp_path: Path) -> None:
    out = tmp_path / "webhooks.json"
    r = subprocess.run(
        [sys.executable, "bench/webhooks.py", "--deliveries", "2", "--rounds", "1",
         "--burst", "40", "--burst-runs", "1", "--out", str(out)],
        cwd=ROOT, capture_output=True, text=True, timeout=900,
    )  # fmt: skip
    assert r.returncode == 0, r.stdout + r.stderr[-3000:]
    report = json.loads(out.read_text())
    assert len(report["latency_s"]["ours"]["samples"]) == 2
    burst = report["bursts"]["burst"]
    assert burst["posts"] == 40 and burst["unique_ids"] == 36
    # none lost, stored once, delivered
    assert burst["stored_rows"] == burst["stored_ids"] == burst["delivered_ids"] == 36
    assert "| burst | 1 | 40 (36) |" in r.stdout


def test_xmpp_bench_smoke(tmp_path: Path) -> None:
    out = tmp_path / "xmpp.json"
    r = subprocess.run(
        [sys.executable, "bench/xmpp.py", "--messages", "50", "--per-connection", "3",
         "--runs", "1", "--out", str(out)],
        cwd=ROOT, capture_output=True, text=True, timeout=300,
    )  # fmt: skip
    assert r.returncode == 0, r.stdout + r.stderr[-3000:]
    report = json.loads(out.read_text())
    assert report["messages"] == 50 and set(report["messages_per_s"]) == {
        "ours",
        "raw",
        "per_connection",
    }
    assert "| triggerflow (connect, STARTTLS, send, acks) | 50 |" in r.stdout


def test_the_benchmark_feed_server_serves_valid_feeds_and_304s() -> None:
    import feedparser
    import httpx

    proc = subprocess.Popen(
        [sys.executable, "bench/feedserver.py", "--feeds", "4", "--gzip"],
        cwd=ROOT, stdout=subprocess.PIPE, text=True,
    )  # fmt: skip
    try:
        assert proc.stdout is not None
        base = proc.stdout.readline().split()[1]
        first = [httpx.get(f"{base}/feeds/{i}.xml", timeout=10) for i in range(2)]  # RSS, Atom
        for r in first:
            parsed = feedparser.parse(r.content)
            assert r.headers["content-encoding"] == "gzip"
            assert not parsed.bozo and len(parsed.entries) == 20
            assert all(1000 <= len(e.summary) <= 4000 for e in parsed.entries)
        etag = first[0].headers["etag"]
        assert httpx.get(f"{base}/feeds/0.xml", headers={"If-None-Match": etag}).status_code == 304
        assert httpx.post(f"{base}/bump?share=0.5&items=2").text == "bumped 2"
        again = httpx.get(f"{base}/feeds/0.xml", headers={"If-None-Match": etag})
        assert again.status_code == 200
        new = {e.link for e in feedparser.parse(again.content).entries}
        old = {e.link for e in feedparser.parse(first[0].content).entries}
        assert len(new - old) == 2
    finally:
        proc.terminate()
        assert proc.wait(10) == 0
        if proc.stdout:
            proc.stdout.close()


def test_poll_bench_smoke(tmp_path: Path) -> None:
    out = tmp_path / "poll.json"
    r = subprocess.run(
        [sys.executable, "bench/run.py", "--feeds", "10", "--runs", "1", "--latency", "0,0.02",
         "--out", str(out)],
        cwd=ROOT, capture_output=True, text=True, timeout=600,
    )  # fmt: skip
    assert r.returncode == 0, r.stdout + r.stderr[-3000:]
    runs = json.loads(out.read_text())["runs"]
    assert set(runs) == {
        "poll@0",
        "prefect@0",
        "naive@0",
        "raw@0",
        "poll@0.02",
        "prefect@0.02",
        "raw@0.02",
    }
    # 10 feeds x 20 items; round 2 adds 2 items to every 10th feed (one here); every item
    # stored once and delivered once to the benchmark's feed, also through Prefect
    for variant in ("poll@0", "prefect@0", "poll@0.02", "prefect@0.02"):
        assert [x["items"] for x in runs[variant][0]] == [200, 202, 202], variant
        assert [x["delivered"] for x in runs[variant][0]] == [200, 202, 202], variant
    assert all(x["peak_rss_mb"] > 10 and x["cpu_s"] > 0 for x in runs["prefect@0"][0])
    assert "| 0 s | poll | 3: unchanged |" in r.stdout
    assert "Prefect flow run vs the same poll path" in r.stdout


def test_poll_bench_with_the_postgresql_store_smoke(tmp_path: Path) -> None:
    out = tmp_path / "pg.json"
    r = subprocess.run(
        [sys.executable, "bench/run.py", "--feeds", "10", "--runs", "1", "--latency", "0",
         "--variants", "poll,pg", "--out", str(out)],
        cwd=ROOT, capture_output=True, text=True, timeout=600,
    )  # fmt: skip
    assert r.returncode == 0, r.stdout + r.stderr[-3000:]
    runs = json.loads(out.read_text())["runs"]
    # stored once and delivered once, checked in PostgreSQL itself
    assert [x["delivered"] for x in runs["pg@0"][0]] == [200, 202, 202]
    assert "PostgreSQL store vs the DuckDB file" in r.stdout


def test_store_growth_bench_smoke(tmp_path: Path) -> None:
    out = tmp_path / "growth.json"
    r = subprocess.run(
        [sys.executable, "bench/store_growth.py", "--runs", "10", "--repeat", "1",
         "--out", str(out)],
        cwd=ROOT, capture_output=True, text=True, timeout=600,
    )  # fmt: skip
    assert r.returncode == 0, r.stdout + r.stderr[-3000:]
    report = json.loads(out.read_text())
    for variant in ("triggerflow", "naive"):
        med = report["variants"][variant]["median"]
        assert med["items"] == 21 and med["sent"] == 21  # 20 entries, 1 new after 5 runs


def test_duckdb_version_bench_smoke(tmp_path: Path) -> None:
    out = tmp_path / "duckdb.json"
    r = subprocess.run(
        [sys.executable, "bench/duckdb_version.py", "--runs", "1", "--rows", "1000",
         "--out", str(out)],
        cwd=ROOT, capture_output=True, text=True, timeout=300,
    )  # fmt: skip
    assert r.returncode == 0, r.stdout + r.stderr[-3000:]
    report = json.loads(out.read_text())
    assert report["duckdb"] and report["20 checkpoints, key: file MB"] > 1  # 10,000 rows of ~2 KB
    assert "| 1 checkpoint at 1,000 keyed rows: s |" in r.stdout
