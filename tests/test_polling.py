"""Polite polling (issue 20): per-feed next-fetch times, backoff, Retry-After, cache
headers, 410 Gone, per-host connections; against the local feed server, with a clock the
rss() source is told about instead of sleeps."""

from __future__ import annotations

import asyncio
from datetime import UTC, datetime, timedelta
from email.utils import format_datetime
from pathlib import Path
from typing import Any

import pytest
from feeds_support import run_rss

from triggerflow import _polling
from triggerflow._http import FeedRequest, fetch_all, fresh_for, retry_after
from triggerflow._store import SourceStatus, Store
from triggerflow.cli import main

T = datetime(2026, 12, 1, 12, 0, tzinfo=UTC)
DAY = 86400.0


def _status(data_dir: Path, url: str) -> SourceStatus:
    with Store(data_dir / "triggerflow.duckdb", wait=10).transaction(commit=False) as tx:
        (st,) = [s for s in tx.source_status() if s.source == url]
    return st


def _poll(url: str) -> Any:
    return run_rss("polite", (url,), True, True)


def test_the_rules_backoff_doubles_up_to_the_cap_and_retry_after_is_a_floor() -> None:
    waits = []
    failures = 0
    for _ in range(14):
        plan = _polling.after_failure(T, failures, status=500, retry_after=None, backoff_max=DAY)
        failures = plan.failures
        assert plan.next_fetch is not None and not plan.gone
        waits.append((plan.next_fetch - T).total_seconds())
    assert waits[:4] == [60, 120, 240, 480] and waits[-1] == DAY and max(waits) == DAY
    assert "14 failures in a row" in plan.reason  # type: ignore[operator]

    asked = _polling.after_failure(T, 0, status=503, retry_after=1800, backoff_max=DAY)
    assert asked.next_fetch == T + timedelta(minutes=30)
    assert asked.reason == "the server asked to retry after 30 minutes (Retry-After)"
    greedy = _polling.after_failure(T, 0, status=429, retry_after=30 * DAY, backoff_max=DAY)
    assert greedy.next_fetch == T + timedelta(days=1) and "capped at 1 day" in greedy.reason  # type: ignore[operator]
    short = _polling.after_failure(T, 5, status=429, retry_after=5, backoff_max=DAY)
    assert short.next_fetch == T + timedelta(minutes=32)  # the backoff is longer: it wins

    gone = _polling.after_failure(T, 0, status=410, retry_after=None, backoff_max=DAY)
    assert gone.gone and gone.next_fetch is None and "--all-feeds" in gone.reason  # type: ignore[operator]
    assert not _polling.is_due(None, True, T)

    assert _polling.after_answer(T, None, 4 * 3600) == _polling.Plan(None, None)
    fresh = _polling.after_answer(T, 600, 4 * 3600)
    assert fresh.next_fetch == T + timedelta(minutes=10) and fresh.reason == "fresh for 10 minutes"
    week = _polling.after_answer(T, 7 * DAY, 4 * 3600)
    assert week.next_fetch == T + timedelta(hours=4) and "capped at 4 hours" in week.reason  # type: ignore[operator]
    # due a little early (runs start late or early), not a minute early
    assert _polling.is_due(T + timedelta(seconds=20), False, T)
    assert not _polling.is_due(T + timedelta(seconds=60), False, T)


def test_headers_are_read_as_http_says() -> None:
    assert retry_after({"retry-after": "120"}) == 120
    later = format_datetime(datetime.now(UTC) + timedelta(hours=1), usegmt=True)
    assert 3500 < (retry_after({"retry-after": later}) or 0) <= 3600
    assert retry_after({"retry-after": "soon"}) is None and retry_after({}) is None
    assert fresh_for({"cache-control": "public, max-age=600"}) == 600
    assert fresh_for({"cache-control": "no-cache, max-age=600"}) == 0
    assert fresh_for({"cache-control": 'max-age="90"'}) == 90
    date = datetime(2026, 12, 1, 12, 0, tzinfo=UTC)
    expires = {
        "date": format_datetime(date, usegmt=True),
        "expires": format_datetime(date + timedelta(minutes=15), usegmt=True),
    }
    assert fresh_for(expires) == 900
    assert fresh_for({**expires, "cache-control": "max-age=60"}) == 60  # max-age wins
    assert fresh_for({"expires": "0"}) == 0  # invalid: already expired
    assert fresh_for({"content-type": "text/xml"}) is None


def test_retry_after_is_honoured_and_a_waiting_feed_keeps_failing_the_run(
    feeds: Any, data_dir: Path, clock: Any
) -> None:
    url = feeds.url("/busy.xml")
    feeds.broken("/busy.xml", 503, headers={"Retry-After": "600"})
    with pytest.raises(Exception, match="503"):  # the only feed: Prefect may retry the task
        _poll(url)
    assert feeds.requests["/busy.xml"] == 1
    st = _status(data_dir, url)
    assert st.next_fetch == clock.t + timedelta(minutes=10) and st.failures == 1
    assert st.next_reason == "the server asked to retry after 10 minutes (Retry-After)"

    feeds.publish("/busy.xml", ["back"])
    clock.advance(300)  # a run five minutes later: not fetched, still reported as failing
    early = _poll(url)
    assert feeds.requests["/busy.xml"] == 1
    assert (
        "503" in early.report.failures[url]
        and "next try in 5 minutes" in early.report.failures[url]
    )
    assert early.items == []

    clock.advance(300)
    back = _poll(url)
    assert feeds.requests["/busy.xml"] == 2 and back.report.new == 1 and not back.report.failures
    st = _status(data_dir, url)
    assert st.failures == 0 and st.next_fetch is None and st.last_error is None


def test_a_404_backs_off_exponentially_is_reported_and_recovers(
    feeds: Any, data_dir: Path, clock: Any
) -> None:
    url = feeds.url("/moved.xml")
    feeds.publish("/other.xml", ["x"])
    other = feeds.url("/other.xml")
    tries = []
    for _ in range(16):  # a trigger every minute for a quarter of an hour
        got = run_rss("polite", (url, other), True, True)  # 404: the route is unknown
        assert url in got.report.failures and "404" in got.report.failures[url]
        tries.append(feeds.requests["/moved.xml"])
        clock.advance(60)
    # fetched at minutes 0, 1, 3, 7, 15: 1, 2, 4, 8 minutes apart
    assert [m for m in range(16) if tries[m] > (tries[m - 1] if m else 0)] == [0, 1, 3, 7, 15]
    assert feeds.requests["/other.xml"] == 16  # the good feed of the same trigger: every run
    st = _status(data_dir, url)
    assert st.failures == 5 and st.next_reason == "backing off after 5 failures in a row"
    assert st.next_fetch == clock.t - timedelta(minutes=1) + timedelta(minutes=16)

    out = _status_cli(data_dir)
    assert f"✗ {url}" in out and "404" in out
    assert "backing off after 5 failures in a row" in out

    feeds.publish("/moved.xml", ["found"])
    clock.advance(16 * 60)
    assert _poll(url).report.new == 1
    assert _status(data_dir, url).failures == 0


def _status_cli(data_dir: Path) -> str:
    import contextlib
    import io

    buf = io.StringIO()
    with contextlib.redirect_stdout(buf):
        main(["status", "--sources"])
    return buf.getvalue()


def test_410_gone_stops_fetching_until_all_feeds(feeds: Any, data_dir: Path, clock: Any) -> None:
    url = feeds.url("/gone.xml")
    feeds.broken("/gone.xml", 410)
    first = _poll(url)  # permanent: no retry by Prefect, a failure of the run
    assert first.report.failures[url] == "server answered 410 Gone"
    for _ in range(3):
        clock.advance(2 * DAY)
        got = _poll(url)  # no request, and still a failure the user sees
        assert "410 Gone" in got.report.failures[url]
    assert feeds.requests["/gone.xml"] == 1
    st = _status(data_dir, url)
    assert st.gone_at is not None and "410 Gone" in (st.next_reason or "")
    assert "never (410 Gone)" in _status_cli(data_dir)
    preview = run_rss("polite", (url,), True, False)  # a preview shows what it says now
    assert feeds.requests["/gone.xml"] == 2 and "410" in preview.report.failures[url]
    assert _status(data_dir, url).gone_at is not None  # and writes nothing

    # `triggerflow run polite --all-feeds` makes it due again (here: the store part only)
    with Store(data_dir / "triggerflow.duckdb", wait=10).transaction() as tx:
        assert tx.make_sources_due("polite") == 1
    feeds.publish("/gone.xml", ["alive after all"])
    assert _poll(url).report.new == 1 and feeds.requests["/gone.xml"] == 3
    assert _status(data_dir, url).gone_at is None


def test_cache_control_is_a_floor_capped_by_the_setting(
    feeds: Any, data_dir: Path, clock: Any, monkeypatch: pytest.MonkeyPatch
) -> None:
    feeds.publish("/cached.xml", ["a"])
    feeds.with_headers("/cached.xml", Cache_Control="max-age=600")
    url = feeds.url("/cached.xml")
    assert _poll(url).report.new == 1
    clock.advance(300)
    unchanged = _poll(url)  # fresh: not asked, its last items listed as after a 304
    assert feeds.requests["/cached.xml"] == 1 and [i.title for i in unchanged.items] == ["a"]
    assert not unchanged.report.failures
    clock.advance(300)
    _poll(url)
    assert feeds.requests["/cached.xml"] == 2 and feeds.not_modified["/cached.xml"] == 1
    st = _status(data_dir, url)  # a 304 carries the header too: fresh again
    assert st.next_fetch == clock.t + timedelta(minutes=10)
    assert st.next_reason == "fresh for 10 minutes"

    feeds.with_headers("/cached.xml", Cache_Control="max-age=2592000")  # 30 days
    monkeypatch.setenv("TRIGGERFLOW_FEED_CACHE_MAX", "3600")
    clock.advance(600)
    _poll(url)
    st = _status(data_dir, url)
    assert st.next_fetch == clock.t + timedelta(hours=1)
    assert st.next_reason == "fresh for 30 days, capped at 1 hour (TRIGGERFLOW_FEED_CACHE_MAX)"


def test_at_most_a_few_connections_per_host(feeds: Any) -> None:
    for n in range(8):
        feeds.slow(f"/slow{n}.xml", 0.3)
    requests = [FeedRequest(str(n), feeds.url(f"/slow{n}.xml")) for n in range(8)]

    def most_at_once(per_host: int | None) -> int:
        feeds.most_in_flight = 0
        got = asyncio.run(fetch_all(requests, timeout=10, connections=8, per_host=per_host))
        assert [r.error for r in got] == [None] * 8
        return feeds.most_in_flight

    assert most_at_once(2) == 2
    assert most_at_once(None) > 2  # the bound is the per-host limit, not the total


def test_run_all_feeds_fetches_what_waits(
    feeds: Any,
    data_dir: Path,
    tmp_path: Path,
    prefect_api: str,
    monkeypatch: pytest.MonkeyPatch,
    capsys: pytest.CaptureFixture[str],
) -> None:
    """`triggerflow run NAME --all-feeds`: a feed that answered 410 (and one that backs
    off) is fetched by that run, through the CLI as a user types it."""
    feeds.broken("/gone.xml", 410)
    feeds.broken("/down.xml", 500)
    flows = tmp_path / "flows"
    flows.mkdir()
    (flows / "polite.py").write_text(
        "from triggerflow import trigger\nfrom triggerflow.sinks import feed\n"
        "from triggerflow.sources import rss\n\n@trigger\ndef polite():\n"
        f"    feed(rss({feeds.url('/gone.xml')!r}, {feeds.url('/down.xml')!r}), name='polite')\n"
    )
    monkeypatch.setenv("TRIGGERFLOW_FLOWS_DIR", str(flows))
    monkeypatch.setenv("PREFECT_API_URL", prefect_api)
    assert main(["run", "polite", "--here"]) == 1
    assert main(["run", "polite", "--here"]) == 1  # both wait now: not asked again
    assert (feeds.requests["/gone.xml"], feeds.requests["/down.xml"]) == (1, 1)
    capsys.readouterr()
    feeds.publish("/gone.xml", ["back from the dead"])
    feeds.publish("/down.xml", ["up again"])
    assert main(["run", "polite", "--here", "--all-feeds"]) == 0
    out = capsys.readouterr().out
    assert "2 feed(s) that were waiting" in out, out
    assert (feeds.requests["/gone.xml"], feeds.requests["/down.xml"]) == (2, 2)


def test_silence_is_ten_times_the_usual_gap_but_at_least_a_week(
    feeds: Any, data_dir: Path, clock: Any
) -> None:
    hourly = feeds.publish_every("/hourly.xml", clock.t, timedelta(hours=1), 30)
    young = feeds.publish_every("/young.xml", clock.t, timedelta(hours=1), 3)  # no rhythm yet
    both = (hourly, young)
    assert not run_rss("polite", both, True, True).report.silent
    clock.advance(2 * DAY)  # 48 times its hourly gap, but not a week
    assert not run_rss("polite", both, True, True).report.silent
    assert _status(data_dir, hourly).silent_since is None
    clock.advance(6 * DAY)
    silent = run_rss("polite", both, True, True).report.silent
    assert list(silent) == [hourly] and "usually one every 1 hour" in silent[hourly]
    assert _status(data_dir, hourly).silent_since == clock.t
    assert not run_rss("polite", both, True, True).report.silent  # noted once
    preview = run_rss("polite", both, True, False)  # a preview notes nothing
    assert not preview.report.silent
    feeds.publish_every("/hourly.xml", clock.t, timedelta(hours=1), 31)
    assert not run_rss("polite", both, True, True).report.silent
    assert _status(data_dir, hourly).silent_since is None  # its next item ends the silence
