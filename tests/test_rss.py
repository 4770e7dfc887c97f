"""The RSS/Atom source against a real local HTTP server, with and without the store."""

from __future__ import annotations

import asyncio
import threading
import time
from dataclasses import FrozenInstanceError
from pathlib import Path
from typing import Any

import duckdb
import pytest
from feeds_support import run_rss

from triggerflow import Item, trigger
from triggerflow._feedparse import parse_many
from triggerflow._http import USER_AGENT, FeedRequest, fetch_all
from triggerflow.exceptions import FeedInvalid, FeedUnavailable, TriggerRunFailed
from triggerflow.sources import _rss as mod
from triggerflow.sources import rss
from triggerflow.types import SourceReport


def _fetch(requests: list[FeedRequest], timeout: float = 5, connections: int = 4) -> list[Any]:
    return asyncio.run(fetch_all(requests, timeout=timeout, connections=connections))


def test_items_are_normalised_and_ids_stable(feeds: Any) -> None:
    feeds.publish("/a.xml", ["first", "second <b>&</b>"])
    items = rss(feeds.url("/a.xml"))
    assert [i.title for i in items] == ["first", "second <b>&</b>"]
    first = items[0]
    assert isinstance(first, Item)
    assert first.id == feeds.url("/a.xml") + "#0"  # the guid
    assert first.link == feeds.url("/a.xml") + "#0"
    assert first.source == feeds.url("/a.xml")
    assert first.published is not None and first.summary == "about first"
    with pytest.raises(FrozenInstanceError):
        first.title = "changed"  # type: ignore[misc]
    assert [i.id for i in rss(feeds.url("/a.xml"))] == [i.id for i in items]


def test_ids_without_guid_fall_back_to_link_then_content(feeds: Any) -> None:
    body = (
        b'<rss version="2.0"><channel><title>t</title>'
        b"<item><title>with link</title><link>http://127.0.0.1/x</link></item>"
        b"<item><title>bare</title><description>only text</description></item>"
        b"</channel></rss>"
    )
    feeds.raw("/noguid.xml", body, "application/rss+xml")
    a, b = rss(feeds.url("/noguid.xml"))
    assert a.id == "http://127.0.0.1/x"
    assert b.id and b.id != a.id
    assert rss(feeds.url("/noguid.xml"))[1].id == b.id  # the hash is stable


def test_atom_feeds(feeds: Any) -> None:
    feeds.publish("/atom.xml", ["one", "two"], kind="atom")
    items = rss(feeds.url("/atom.xml"))
    assert [i.title for i in items] == ["one", "two"]
    assert items[0].id == feeds.url("/atom.xml") + "#0"


def test_requests_say_who_we_are_and_accept_gzip(feeds: Any) -> None:
    feeds.publish("/ua.xml", ["x"])
    (resp,) = _fetch([FeedRequest("ua", feeds.url("/ua.xml"))])
    sent = feeds.headers["/ua.xml"]
    assert sent["User-Agent"] == USER_AGENT and "triggerflow" in USER_AGENT
    assert "gzip" in sent["Accept-Encoding"]
    assert resp.headers.get("content-encoding") == "gzip"  # and it was decoded
    assert resp.body.startswith(b"<?xml")


def test_conditional_get_and_304(feeds: Any) -> None:
    feeds.publish("/c.xml", ["x"])
    (first,) = _fetch([FeedRequest("c", feeds.url("/c.xml"))])
    assert first.etag and first.last_modified
    again = FeedRequest("c", feeds.url("/c.xml"), first.etag, first.last_modified)
    (second,) = _fetch([again])
    assert second.not_modified and second.body is None
    assert feeds.headers["/c.xml"]["If-None-Match"] == first.etag
    assert feeds.not_modified["/c.xml"] == 1


def test_with_the_store_a_304_costs_no_parsing_and_keeps_the_items(
    feeds: Any, data_dir: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    feeds.publish("/t.xml", ["a", "b"])
    url = feeds.url("/t.xml")
    first = run_rss("watch", (url,), True, True)  # what the Prefect task runs
    assert first.report.new == 2

    parsed: list[str] = []
    monkeypatch.setattr(mod.Parser, "add", lambda self, job: parsed.append(job[0]))
    again = run_rss("watch", (url,), True, True)
    assert feeds.not_modified["/t.xml"] == 1
    assert parsed == []  # nothing handed to the parser
    assert sorted(i.title for i in again.items) == ["a", "b"]  # what it listed last time
    assert again.report.new == 0


def test_permanent_redirect_updates_the_stored_url_temporary_does_not(
    feeds: Any, data_dir: Path
) -> None:
    feeds.publish("/new.xml", ["moved"])
    feeds.redirect("/old.xml", "/new.xml", 301)
    feeds.redirect("/tmp.xml", "/new.xml", 302)
    got = run_rss(None, (feeds.url("/old.xml"), feeds.url("/tmp.xml")), True, True)
    assert [i.title for i in got.items] == ["moved", "moved"]
    con = duckdb.connect(str(data_dir / "triggerflow.duckdb"), read_only=True)
    urls = dict(con.execute("SELECT source, url FROM sources").fetchall())
    con.close()
    assert urls[feeds.url("/old.xml")] == feeds.url("/new.xml")
    assert urls[feeds.url("/tmp.xml")] == feeds.url("/tmp.xml")
    before = feeds.requests["/old.xml"]
    run_rss(None, (feeds.url("/old.xml"),), True, True)
    assert feeds.requests["/old.xml"] == before  # went straight to the new URL


@pytest.mark.parametrize(
    ("setup", "error", "reason"),
    [
        (lambda f: f.broken("/x.xml", 500), FeedUnavailable, "500"),
        (lambda f: f.broken("/x.xml", 404), FeedInvalid, "404"),
        (lambda f: f.raw("/x.xml", b"<html><body>hello</body></html>", "text/html"),
         None, "not a valid RSS/Atom feed"),
        (lambda f: f.slow("/x.xml", 3.0), FeedUnavailable, "no answer within 1 s"),
    ],
    ids=["http-500", "http-404", "not-a-feed", "timeout"],
)  # fmt: skip
def test_a_broken_feed_fails_alone_with_a_clear_reason(
    feeds: Any, setup: Any, error: type | None, reason: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("TRIGGERFLOW_HTTP_TIMEOUT", "1")
    setup(feeds)
    feeds.publish("/ok.xml", ["fine"])
    bad, ok = feeds.url("/x.xml"), feeds.url("/ok.xml")
    got = run_rss(None, (bad, ok), False, False)
    assert [i.title for i in got.items] == ["fine"]
    assert reason in got.report.failures[bad]
    assert "\n" not in got.report.failures[bad]
    if error is not None:
        (resp,) = _fetch([FeedRequest(bad, bad)], timeout=1)
        assert isinstance(resp.error, error)


def test_bozo_feed_with_entries_keeps_them_and_warns(feeds: Any) -> None:
    body = (
        b'<?xml version="1.0"?><rss version="2.0"><channel><title>t</title>'
        b"<item><title>kept &nbsp; anyway</title><guid>g1</guid></item></channel></rss>"
    )
    feeds.raw("/bozo.xml", body, "application/rss+xml")
    got = run_rss(None, (feeds.url("/bozo.xml"),), False, False)
    assert [i.title for i in got.items] == ["kept anyway"]
    assert "malformed feed, kept 1 entries" in got.report.warnings[feeds.url("/bozo.xml")]
    assert not got.report.failures


def test_many_feeds_concurrently_over_bounded_connections(feeds: Any) -> None:
    """50 slow feeds, 5 connections: never more than 5 requests at once, all answered."""
    active, peak, lock = 0, 0, threading.Lock()
    original = feeds._handle

    def counting(h: Any) -> None:
        nonlocal active, peak
        with lock:
            active += 1
            peak = max(peak, active)
        try:
            original(h)
        finally:
            with lock:
                active -= 1

    for i in range(50):
        feeds.slow(f"/f{i}.xml", 0.05, [f"item {i}"])
    feeds._handle = counting
    try:
        responses = _fetch(
            [FeedRequest(str(i), feeds.url(f"/f{i}.xml")) for i in range(50)], connections=5
        )
    finally:
        feeds._handle = original
    assert all(r.body for r in responses)
    assert 1 < peak <= 5


def test_parsing_a_lot_uses_worker_processes_and_keeps_order(feeds: Any) -> None:
    import os

    if (os.cpu_count() or 1) < 2:
        pytest.skip("one core: parsing stays in-process by design")
    bodies = []
    for n in range(4):
        titles = [f"feed {n} item {i} " + "x" * 2000 for i in range(150)]
        feeds.publish(f"/big{n}.xml", titles)
        (r,) = _fetch([FeedRequest(str(n), feeds.url(f"/big{n}.xml"))])
        bodies.append((str(n), r.url, r.body, r.headers))
    assert sum(len(b[2]) for b in bodies) > 1_000_000  # above the parallel threshold
    parsed = parse_many(bodies)
    assert [p.source for p in parsed] == ["0", "1", "2", "3"]
    assert [p.items[0].title.split(" x")[0] for p in parsed] == [
        f"feed {n} item 0" for n in range(4)
    ]


def _big_feeds(feeds: Any, count: int = 4) -> list[str]:
    for n in range(count):
        feeds.publish(f"/big{n}.xml", [f"feed {n} item {i} " + "x" * 2000 for i in range(150)])
    return [feeds.url(f"/big{n}.xml") for n in range(count)]


def test_a_plain_script_without_a_main_guard_can_call_rss(feeds: Any, tmp_path: Path) -> None:
    import os
    import subprocess
    import sys

    if (os.cpu_count() or 1) < 2:
        pytest.skip("one core: parsing stays in-process by design")
    urls = _big_feeds(feeds)  # 1.2 MB: parsed in worker processes
    script = tmp_path / "plain.py"
    script.write_text(
        "from triggerflow.sources import rss\n"
        "print('the script runs', flush=True)\n"
        f"print(len(rss(*{urls!r})), 'items', flush=True)\n"
    )
    r = subprocess.run(
        [sys.executable, str(script)], capture_output=True, text=True, timeout=120,
        cwd=tmp_path, env={**os.environ, "TRIGGERFLOW_DATA_DIR": str(tmp_path / "data")},
    )  # fmt: skip
    assert r.returncode == 0, r.stderr[-2000:]
    # The workers never import the script: it ran once, and every feed was fetched once.
    assert r.stdout.splitlines() == ["the script runs", "600 items"], r.stdout
    assert all(feeds.requests[f"/big{n}.xml"] == 1 for n in range(4)), feeds.requests


def test_a_parse_worker_that_dies_loses_no_feed(
    feeds: Any, monkeypatch: pytest.MonkeyPatch
) -> None:
    import os

    from triggerflow import _feedparse

    if (os.cpu_count() or 1) < 2:
        pytest.skip("one core: parsing stays in-process by design")
    # Workers that take their first chunk and are killed (as by the OOM killer).
    monkeypatch.setattr(
        _feedparse, "_WORKER",
        "import os, signal, sys; sys.stdin.buffer.read(8); os.kill(os.getpid(), signal.SIGKILL)",
    )  # fmt: skip
    bodies = []
    for n, url in enumerate(_big_feeds(feeds)):
        (r,) = _fetch([FeedRequest(str(n), url)])
        bodies.append((str(n), r.url, r.body, r.headers))
    parsed = parse_many(bodies)
    assert [p.source for p in parsed] == ["0", "1", "2", "3"]
    assert all(len(p.items) == 150 and p.error is None for p in parsed)


def test_opml_import(feeds: Any, tmp_path: Path) -> None:
    feeds.publish("/o1.xml", ["one"])
    feeds.publish("/o2.xml", ["two"])
    opml = tmp_path / "subs.opml"
    opml.write_text(
        '<opml version="2.0"><body><outline text="group">'
        f'<outline type="rss" xmlUrl="{feeds.url("/o1.xml")}"/>'
        f'<outline type="rss" xmlUrl="{feeds.url("/o2.xml")}"/>'
        "</outline></body></opml>"
    )
    assert sorted(i.title for i in rss(opml=opml)) == ["one", "two"]


def test_a_failing_feed_makes_the_run_fail_but_delivers_the_rest(
    feeds: Any, prefect_api: str, data_dir: Path
) -> None:
    """In a real run: the good feed's items are stored, the bad feed is named, in status."""
    feeds.publish("/good.xml", ["good"])
    feeds.broken("/bad.xml", 404)
    good, bad = feeds.url("/good.xml"), feeds.url("/bad.xml")

    @trigger
    def mixed() -> None:
        rss(good, bad)

    with pytest.raises(TriggerRunFailed, match="404"):
        mixed()
    con = duckdb.connect(str(data_dir / "triggerflow.duckdb"), read_only=True)
    titles = [r[0] for r in con.execute("SELECT title FROM items").fetchall()]
    errors = dict(con.execute("SELECT source, last_error FROM sources").fetchall())
    con.close()
    assert titles == ["good"]
    assert errors[good] is None and "404" in errors[bad]


def test_a_plain_call_outside_a_trigger_fetches_without_the_store(
    feeds: Any, data_dir: Path
) -> None:
    """In a notebook, ``rss(url)`` is a plain fetch: no file written, no validators kept."""
    feeds.publish("/plain.xml", ["x", "y"])
    for _ in range(2):
        assert [i.title for i in rss(feeds.url("/plain.xml"))] == ["x", "y"]
    assert feeds.requests["/plain.xml"] == 2
    assert feeds.not_modified["/plain.xml"] == 0  # nothing remembered, so a full GET each time
    assert "If-None-Match" not in feeds.headers["/plain.xml"]
    assert not (data_dir / "triggerflow.duckdb").exists()


def test_last_modified_alone_also_gets_a_304(feeds: Any) -> None:
    """Servers without ETags: If-Modified-Since is enough."""
    feeds.publish("/lm.xml", ["x"])
    (first,) = _fetch([FeedRequest("lm", feeds.url("/lm.xml"))])
    assert first.last_modified
    (second,) = _fetch([FeedRequest("lm", feeds.url("/lm.xml"), None, first.last_modified)])
    assert second.not_modified and second.body is None and second.error is None
    sent = feeds.headers["/lm.xml"]
    assert sent["If-Modified-Since"] == first.last_modified and "If-None-Match" not in sent


@pytest.mark.parametrize(
    ("hops", "moved"),
    [([301], True), ([308], True), ([302], False), ([307], False), ([301, 302], False),
     ([301, 308], True)],
    ids=["301", "308", "302", "307", "301-then-302", "301-then-308"],
)  # fmt: skip
def test_only_permanent_redirects_move_the_feed(feeds: Any, hops: list[int], moved: bool) -> None:
    feeds.publish("/final.xml", ["here"])
    paths = [f"/hop{n}.xml" for n in range(len(hops))] + ["/final.xml"]
    for n, status in enumerate(hops):
        feeds.redirect(paths[n], paths[n + 1], status)
    (resp,) = _fetch([FeedRequest("r", feeds.url(paths[0]))])
    assert resp.body is not None and b"here" in resp.body
    assert resp.url == feeds.url("/final.xml" if moved else paths[0])


@pytest.mark.parametrize(
    ("status", "error"),
    [(500, FeedUnavailable), (502, FeedUnavailable), (503, FeedUnavailable),
     (429, FeedUnavailable), (404, FeedInvalid), (410, FeedInvalid), (403, FeedInvalid)],
)  # fmt: skip
def test_error_statuses_are_transient_or_permanent(
    feeds: Any, status: int, error: type[Exception]
) -> None:
    feeds.broken("/s.xml", status)
    (resp,) = _fetch([FeedRequest("s", feeds.url("/s.xml"))])
    assert type(resp.error) is error
    assert resp.error is not None and f"server answered {status}" in str(resp.error)
    assert resp.body is None and resp.url == feeds.url("/s.xml")  # an error moves nothing


def test_connection_refused_is_transient_and_says_so() -> None:
    import socket

    with socket.socket() as s:  # a port that was free a moment ago and has no listener now
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    url = f"http://127.0.0.1:{port}/feed.xml"
    (resp,) = _fetch([FeedRequest(url, url)])
    assert isinstance(resp.error, FeedUnavailable)
    assert str(resp.error) == f"feed {url}: cannot connect (connection refused)"


def test_a_slow_feed_times_out_alone_within_the_timeout(feeds: Any) -> None:
    feeds.slow("/slow.xml", 3.0)
    feeds.publish("/quick.xml", ["quick"])
    started = time.monotonic()
    slow, quick = _fetch(
        [FeedRequest("slow", feeds.url("/slow.xml")), FeedRequest("q", feeds.url("/quick.xml"))],
        timeout=0.5,
    )
    assert time.monotonic() - started < 2  # bounded by our timeout, not by the server
    assert isinstance(slow.error, FeedUnavailable)
    assert str(slow.error) == "feed slow: no answer within 0.5 s"
    assert quick.body is not None and b"quick" in quick.body


def test_a_body_over_the_size_cap_is_not_read(feeds: Any, monkeypatch: pytest.MonkeyPatch) -> None:
    from triggerflow import _http

    monkeypatch.setattr(_http, "MAX_BODY", 2 * 2**20)
    feeds.publish("/huge.xml", [f"item {i} " + "x" * 1000 for i in range(3000)])  # ~3 MiB
    (resp,) = _fetch([FeedRequest("huge", feeds.url("/huge.xml"))])
    assert isinstance(resp.error, FeedInvalid) and "larger than 2 MiB" in str(resp.error)
    assert resp.body is None


def test_when_every_feed_fails_transiently_the_task_raises_for_a_retry(feeds: Any) -> None:
    """All down (5xx): raise, so that Prefect retries; all permanently broken: no retry."""
    feeds.broken("/down.xml", 503)
    feeds.broken("/gone.xml", 404)
    down, gone = feeds.url("/down.xml"), feeds.url("/gone.xml")
    report = SourceReport("rss")
    with pytest.raises(FeedUnavailable, match="503"):
        run_rss(None, (down,), False, False, report)
    assert set(report.failures) == {down}  # the step's report says which, not the exception
    got = run_rss(None, (gone,), False, False)
    assert got.items == [] and "404" in got.report.failures[gone]


def test_the_store_keeps_validators_and_the_last_success_and_error(
    feeds: Any, data_dir: Path, clock: Any
) -> None:
    """Through the store API: ETag/Last-Modified per feed, last_success and last_error."""
    from triggerflow._store import Store

    store = Store(data_dir / "triggerflow.duckdb", wait=10)
    feeds.publish("/s.xml", ["a", "b"])
    url = feeds.url("/s.xml")

    def remembered() -> tuple[Any, Any]:
        with store.transaction(commit=False) as tx:
            (status,) = tx.source_status()
            return tx.source_states([url])[url], status

    assert run_rss("watch", (url,), True, True).report.new == 2
    state, status = remembered()
    assert state.url == url and state.etag and state.last_modified and state.fetched_at
    assert status.last_success == state.fetched_at and status.last_error is None
    assert status.items == 2 and status.triggers == ("watch",)

    feeds.broken("/s.xml", 500)
    with pytest.raises(FeedUnavailable):  # the only feed, down: raised for Prefect to retry
        run_rss("watch", (url,), True, True)
    after_error, status = remembered()  # ... and recorded before raising
    assert status.last_error == "server answered 500 Internal Server Error"
    assert status.last_success == state.fetched_at and status.last_error_at is not None
    # the validators survive an error, so the recovery below can still be a 304
    assert (after_error.etag, after_error.last_modified) == (state.etag, state.last_modified)

    feeds.publish("/s.xml", ["a", "b"])  # back, unchanged: the kept ETag gets a 304
    clock.advance(60)  # ... once its backoff has passed (test_polling.py)
    again = run_rss("watch", (url,), True, True)
    assert feeds.not_modified["/s.xml"] == 1
    assert sorted(i.title for i in again.items) == ["a", "b"] and again.report.new == 0
    recovered, status = remembered()
    assert status.last_error is None and status.last_success > state.fetched_at
    assert recovered.fetched_at == state.fetched_at  # a 304 brought no new content


def test_items_stored_in_several_transactions_once_each_with_a_lean_raw(
    feeds: Any, data_dir: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(mod, "STORE_BATCH", 3)  # 10 items: four transactions
    feeds.publish("/many.xml", [f"entry {n}" for n in range(10)])
    url = feeds.url("/many.xml")
    first = run_rss("watch", (url,), True, True)
    assert first.report.new == 10
    again = run_rss("watch", (url,), True, True)  # a 304: the items it listed last time
    assert again.report.new == 0 and len(again.items) == 10
    raw = again.items[0].raw
    assert raw["link"] == again.items[0].link  # feedparser's record, read back from the store
    assert not {"summary_detail", "title_detail", "content"} & set(raw)  # kept once, in the Item
    con = duckdb.connect(str(data_dir / "triggerflow.duckdb"), read_only=True)
    try:
        assert con.execute("SELECT count(*), count(DISTINCT id) FROM items").fetchone() == (
            10,
            10,
        )
    finally:
        con.close()


def test_raw_has_feedparsers_record_with_every_date_as_iso_text() -> None:
    from triggerflow._feedparse import _IN_ITEM, _jsonable, parse_one

    body = (
        b'<feed xmlns="http://www.w3.org/2005/Atom"><title>t</title><id>urn:t</id>'
        b"<updated>2026-11-30T10:00:00Z</updated>"
        b"<entry><id>urn:e</id><title>e</title><updated>2026-11-30T10:00:00Z</updated>"
        b'<link rel="enclosure" href="http://127.0.0.1/a.mp3" length="3" type="audio/mpeg"/>'
        b'<category term="x"/><author><name>ann</name></author>'
        b"<source><id>urn:s</id><title>elsewhere</title>"
        b"<updated>2026-01-02T03:04:05Z</updated></source></entry></feed>"
    )
    parsed = parse_one(
        "s", "http://127.0.0.1/t.atom", body, {"content-type": "application/atom+xml"}
    )
    (item,) = parsed.items
    raw = dict(item.raw)
    assert raw["updated_parsed"] == "2026-11-30T10:00:00+00:00"
    # A date one level down (an Atom entry's <source>) is text too, not a list of numbers.
    assert raw["source"]["updated_parsed"] == "2026-01-02T03:04:05+00:00"
    assert raw["tags"][0]["term"] == "x" and raw["links"][0]["rel"] == "enclosure"

    # The same record as walking every value (how it was written before, kept as the
    # reference): the fast path only skips the walk, never changes a value.
    import feedparser

    (entry,) = feedparser.parse(
        body, response_headers={"content-location": "http://127.0.0.1/t.atom"}
    ).entries
    assert raw == _jsonable({k: v for k, v in entry.items() if k not in _IN_ITEM})
