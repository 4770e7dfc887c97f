"""Generated feeds: the feed sink, and its XML read back by feedparser."""

from __future__ import annotations

import os
import subprocess
import sys
import time
from typing import Any

import feedparser
import pytest

from triggerflow import feeds as generated
from triggerflow import trigger
from triggerflow.exceptions import ConfigurationError
from triggerflow.sinks import feed
from triggerflow.sources import rss

pytestmark = pytest.mark.usefixtures("prefect_api")

TRICKY = ["Fish & Chips", "a < b > c", "Ünïcödé — ça va", "rocket 🚀 launch", 'say "hi"']


def test_merge_filter_and_round_trip_through_feedparser(feeds: Any) -> None:
    """'Merge these feeds, keep what matches, give me one feed', read back by a reader."""
    feeds.publish("/one.xml", TRICKY[:3])
    feeds.publish("/two.xml", TRICKY[3:])
    urls = [feeds.url("/one.xml"), feeds.url("/two.xml")]

    @trigger
    def merged() -> None:
        items = rss(*urls)
        feed(items.filter(lambda i: "launch" in i.title or "&" in i.title), name="picked")
        feed(items, name="everything")

    result = merged()
    assert {s.target: s.sent for s in result.sinks} == {"picked": 2, "everything": 5}
    assert merged().sinks[1].sent == 0  # nothing twice

    for kind in ("atom", "rss"):
        parsed = feedparser.parse(generated.render("everything", kind))
        assert not parsed.bozo, parsed.get("bozo_exception")
        assert sorted(e.title for e in parsed.entries) == sorted(TRICKY)
        ids = [e.id for e in parsed.entries]
        assert len(set(ids)) == 5
        again = feedparser.parse(generated.render("everything", kind))
        assert [e.id for e in again.entries] == ids  # stable across regenerations
        assert all(e.get("published_parsed") for e in parsed.entries)
    picked = feedparser.parse(generated.render("picked"))
    assert sorted(e.title for e in picked.entries) == ["Fish & Chips", "rocket 🚀 launch"]


def test_newest_first_and_limited(feeds: Any) -> None:
    feeds.publish("/n.xml", [f"n{i}" for i in range(8)])
    url = feeds.url("/n.xml")

    @trigger
    def numbers() -> None:
        feed(rss(url), name="numbers")

    numbers()
    parsed = feedparser.parse(generated.render("numbers", limit=3))
    assert [e.title for e in parsed.entries] == ["n7", "n6", "n5"]


def test_preview_adds_nothing_and_the_cli_exports(feeds: Any) -> None:
    feeds.publish("/p.xml", ["only"])
    url = feeds.url("/p.xml")

    @trigger
    def pv() -> None:
        feed(rss(url), name="pv")

    assert pv.preview().sinks[0].would_send == ["only"]
    with pytest.raises(ConfigurationError, match="no feed named 'pv'"):
        generated.render("pv")
    pv()
    env = dict(os.environ)
    out = subprocess.run(
        [sys.executable, "-m", "triggerflow", "feeds", "export", "pv", "--rss"],
        capture_output=True, timeout=60, env=env,
    )  # fmt: skip
    assert out.returncode == 0, out.stderr
    assert feedparser.parse(out.stdout).entries[0].title == "only"
    listing = subprocess.run(
        [sys.executable, "-m", "triggerflow", "feeds", "list"],
        capture_output=True, text=True, timeout=60, env=env,
    ).stdout  # fmt: skip
    assert "pv" in listing


def test_bad_feed_names_are_refused() -> None:
    with pytest.raises(ConfigurationError, match="letters, digits"):
        feed([], name="../etc/passwd")


def test_serve_serves_the_feeds_with_304(feeds: Any, tmp_path: Any) -> None:
    import httpx
    from serve_support import Serve

    feeds.publish("/s.xml", ["served & fresh"])
    flows = tmp_path / "flows"
    flows.mkdir()
    (flows / "served.py").write_text(
        "from triggerflow import trigger\nfrom triggerflow.sinks import feed\n"
        "from triggerflow.sources import rss\n\n@trigger\ndef served():\n"
        f"    feed(rss({feeds.url('/s.xml')!r}), name='served')\n"
    )
    # Reindex check every second: serve's background rebuild of the search index.
    serve = Serve(tmp_path / "data", flows, TRIGGERFLOW_SEARCH_REINDEX="1")
    try:
        out = serve.start()
        assert f"Generated feeds: {serve.web}/feeds/" in out
        assert httpx.get(f"{serve.web}/feeds/served.xml", timeout=10).status_code == 404
        run = serve.cli("run", "served")
        assert run.returncode == 0, run.stdout + run.stderr
        first = httpx.get(f"{serve.web}/feeds/served.xml", timeout=10)
        assert first.status_code == 200
        assert first.headers["content-type"].startswith("application/atom+xml")
        assert feedparser.parse(first.content).entries[0].title == "served & fresh"
        again = httpx.get(
            f"{serve.web}/feeds/served.xml",
            headers={"If-None-Match": first.headers["etag"]}, timeout=10,
        )  # fmt: skip
        assert again.status_code == 304 and again.content == b""
        by_date = httpx.get(
            f"{serve.web}/feeds/served.rss",
            headers={"If-Modified-Since": first.headers["last-modified"]}, timeout=10,
        )  # fmt: skip
        assert by_date.status_code == 304
        assert "served.rss" in httpx.get(f"{serve.web}/feeds/", timeout=10).text

        status = ""
        for _ in range(60):  # serve notices the waiting item and rebuilds the index
            status = serve.cli("search", "--status").stdout
            if "items in the index:  1 " in status:
                break
            time.sleep(1)
        assert "items in the index:  1 " in status and "waiting for it:      0" in status
        serve.stop()
    finally:
        serve.kill()


def test_items_without_link_or_content_still_make_valid_atom() -> None:
    from triggerflow import Item

    @trigger
    def bare() -> None:
        feed([Item(source="notes", id="1", title="a thought, no link")], name="bare")

    bare()
    parsed = feedparser.parse(generated.render("bare"))
    assert not parsed.bozo and parsed.entries[0].title == "a thought, no link"


def test_status_of_one_trigger_by_name(feeds: Any) -> None:
    feeds.publish("/one.xml", ["apple", "pear"])
    feeds.publish("/two.xml", ["plum"])
    one_url, two_url = feeds.url("/one.xml"), feeds.url("/two.xml")

    @trigger
    def fruit_one() -> None:
        feed(rss(one_url), name="fruit-one")

    @trigger
    def fruit_two() -> None:
        feed(rss(two_url), name="fruit-two")

    fruit_one()
    fruit_two()
    one = _cli("status", "fruit-one")  # the name as `list` shows it, or with _
    assert one.returncode == 0, one.stderr
    assert "feed:fruit-one" in one.stdout
    assert "fruit_two" not in one.stdout and "fruit-two" not in one.stdout
    assert "Sources: 1, failing: 0" in one.stdout  # only the sources this trigger reads
    assert "Sources: 2, failing: 0" in _cli("status").stdout

    nope = _cli("status", "nope")
    assert nope.returncode == 1
    assert "no trigger named 'nope'" in nope.stderr
    assert "fruit_one" in nope.stderr and "fruit_two" in nope.stderr


def _cli(*args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "triggerflow", *args],
        capture_output=True, text=True, timeout=120, env=dict(os.environ),
    )  # fmt: skip
