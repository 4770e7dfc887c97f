"""Feed failures say their real cause, and a slow feed cannot hold the others (issue 15).

Everything goes through ``rss()``'s own path (``run_sync`` and the store), since that is
where the cause used to be lost: every failure read "cannot connect (no running event
loop)". Servers are real, on 127.0.0.1; the unknown host is under ``.invalid``, which
never resolves (RFC 6761), with or without a network.
"""

from __future__ import annotations

import re
import socket
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import duckdb
import pytest
from feeds_support import run_rss

from triggerflow import trigger
from triggerflow.exceptions import FeedInvalid, FeedUnavailable, TriggerRunFailed
from triggerflow.sources import rss


def _refused(feeds: Any) -> str:
    with socket.socket() as s:  # a port that was free a moment ago and has no listener now
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    return f"http://127.0.0.1:{port}/feed.xml"


def _unknown_host(feeds: Any) -> str:
    return "http://nonexistent.invalid/feed.xml"


def _untrusted(feeds: Any) -> str:
    feeds.tls.publish("/tls.xml", ["secret"])
    return str(feeds.tls.url("/tls.xml"))


def _cut_short(feeds: Any) -> str:
    feeds.cut_short("/cut.xml", ["cut"])
    return str(feeds.url("/cut.xml"))


@pytest.fixture
def both(feeds: Any, tls_feeds: Any) -> Any:
    feeds.tls = tls_feeds
    return feeds


@pytest.mark.parametrize(
    ("setup", "error", "reason"),
    [
        (_refused, FeedUnavailable, "cannot connect (connection refused)"),
        (_unknown_host, FeedUnavailable, "cannot connect (unknown host name)"),
        (_untrusted, FeedInvalid, "TLS certificate not trusted: self-signed certificate"),
        (_cut_short, FeedUnavailable,
         "server closed the connection before the whole answer arrived ({half} of {size} bytes)"),
    ],
    ids=["refused", "unknown-host", "tls-untrusted", "cut-short"],
)  # fmt: skip
def test_a_failure_says_its_real_cause(
    both: Any, setup: Callable[[Any], str], error: type, reason: str
) -> None:
    bad = setup(both)
    both.publish("/ok.xml", ["fine"])
    ok = both.url("/ok.xml")
    if "/cut.xml" in both.routes:
        size = len(both.routes["/cut.xml"].body)
        reason = reason.format(half=size // 2, size=size)
    got = run_rss(None, (bad, ok), False, False)
    assert [i.title for i in got.items] == ["fine"]
    assert got.report.failures[bad] == reason
    # Alone, the feed raises (every feed failed) only when a retry may help.
    if error is FeedUnavailable:
        with pytest.raises(FeedUnavailable) as raised:
            run_rss(None, (bad,), False, False)
        assert str(raised.value) == f"feed {bad}: {reason}"
        assert "event loop" not in _chain(raised.value)
    else:
        alone = run_rss(None, (bad,), False, False)
        assert alone.report.failures[bad] == reason


def _chain(e: BaseException | None) -> str:
    seen = []
    while e is not None and e not in seen:
        seen.append(e)
        e = e.__cause__ or e.__context__
    return " <- ".join(f"{type(x).__name__}: {x}" for x in seen)


def test_a_run_stores_the_real_cause_for_status(
    feeds: Any, prefect_api: str, data_dir: Path
) -> None:
    """What ``status``, the Prefect state and the alert show: the cause, not the event loop."""
    bad = _refused(feeds)

    @trigger
    def refused() -> None:
        rss(bad)

    with pytest.raises(TriggerRunFailed) as raised:
        refused()
    assert "connection refused" in str(raised.value)
    assert "event loop" not in str(raised.value)
    con = duckdb.connect(str(data_dir / "triggerflow.duckdb"), read_only=True)
    (error,) = con.execute("SELECT last_error FROM sources WHERE source = ?", [bad]).fetchone()
    con.close()
    assert error == "cannot connect (connection refused)"


def test_a_trickling_feed_meets_its_deadline_and_the_others_deliver(
    feeds: Any, prefect_api: str, data_dir: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """One byte every 0.2 s never trips a per-read timeout; the deadline is per feed.

    The trickled feed (382 bytes) would take over a minute; the run must end soon after
    the 2 s deadline, with the good feeds' items stored and the deadline named.
    """
    monkeypatch.setenv("TRIGGERFLOW_HTTP_TIMEOUT", "2")
    feeds.trickle("/trickle.xml", 0.2, ["slow"])
    feeds.publish("/a.xml", ["a"])
    feeds.publish("/b.xml", ["b"])
    slow, a, b = feeds.url("/trickle.xml"), feeds.url("/a.xml"), feeds.url("/b.xml")
    got: list[str] = []

    @trigger
    def trickled() -> None:
        got.extend(i.title for i in rss(slow, a, b))

    started = time.monotonic()
    with pytest.raises(TriggerRunFailed, match="deadline"):
        trickled()
    elapsed = time.monotonic() - started
    assert elapsed < 40  # generous; the trickle alone needs 76 s
    assert sorted(got) == ["a", "b"]
    con = duckdb.connect(str(data_dir / "triggerflow.duckdb"), read_only=True)
    titles = sorted(r[0] for r in con.execute("SELECT title FROM items").fetchall())
    errors = dict(con.execute("SELECT source, last_error FROM sources").fetchall())
    con.close()
    assert titles == ["a", "b"]
    assert errors[a] is None and errors[b] is None
    size = len(feeds.routes["/trickle.xml"].body)
    assert re.fullmatch(
        r"answer not complete within 2 s, the deadline for one feed \(TRIGGERFLOW_HTTP_TIMEOUT\): "
        rf"\d+ of {size} bytes had arrived",
        errors[slow],
    ), errors[slow]
    assert feeds.requests["/trickle.xml"] == 1  # the others did not fail: no retry
