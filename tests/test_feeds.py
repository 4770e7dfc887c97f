"""Generated feeds: the feed sink, and its XML read back by feedparser."""

from __future__ import annotations

import json
import os
import re
import subprocess
import sys
import time
from html.parser import HTMLParser
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


# -- what readers see (issue 15, item 9) ---------------------------------------------------

WHEN = "Thu, 01 Jan 2026 10:30:00 +0000"


class _Shown(HTMLParser):
    """What a reader displays for an HTML text: its characters, without the markup."""

    def __init__(self) -> None:
        super().__init__(convert_charrefs=True)
        self.parts: list[str] = []

    def handle_data(self, data: str) -> None:
        self.parts.append(data)


def shown(detail: Any) -> str:
    """A feedparser text as a reader shows it: plain text as is, HTML rendered."""
    if detail.type == "text/plain":
        return str(detail.value)
    parser = _Shown()
    parser.feed(detail.value)
    return "".join(parser.parts)


def _untitled_feed(feeds: Any) -> str:
    """An RSS feed whose items have HTML descriptions, and two have no title (nor guid)."""
    url = feeds.url("/untitled.xml")
    items = (
        "<item><title>Fish &amp; chips 🐟</title><guid>tag:example.org,2026:fish</guid>"
        f"<link>{url}#fish</link><pubDate>{WHEN}</pubDate>"
        "<description>&lt;p&gt;Cod &amp;amp; &lt;b&gt;chips&lt;/b&gt;, ça va&lt;/p&gt;"
        "</description></item>"
        # No title, guid or link: feedparser has no id, the source makes one (sha256:…).
        "<item><pubDate>Thu, 01 Jan 2026 10:31:00 +0000</pubDate><description>&lt;p&gt;The "
        "&lt;em&gt;quick&lt;/em&gt; brown fox jumps over the lazy dog, then runs far away "
        "into the woods and is never seen again&lt;/p&gt;</description></item>"
        f"<item><link>{url}#only-a-link</link><description>&lt;p&gt;&lt;/p&gt;</description>"
        "<pubDate>Thu, 01 Jan 2026 10:32:00 +0000</pubDate></item>"
    )
    body = (
        '<?xml version="1.0" encoding="utf-8"?><rss version="2.0"><channel><title>t</title>'
        f"<link>{url}</link><description>d</description>{items}</channel></rss>"
    )
    feeds.raw("/untitled.xml", body.encode(), "application/rss+xml; charset=utf-8")
    return url


def test_html_summaries_and_untitled_entries_read_well_in_atom_and_rss(feeds: Any) -> None:
    """Readers render summaries as HTML (no literal <p>); untitled entries get a title."""
    url = _untitled_feed(feeds)

    @trigger
    def readable() -> None:
        feed(rss(url), name="readable")

    fox = "The quick brown fox jumps over the lazy dog, then runs far…"
    previewed = readable.preview().sinks[0].would_send
    assert sorted(previewed) == sorted(["Fish & chips 🐟", fox, f"{url}#only-a-link"])
    assert not any(t.startswith("sha256:") for t in previewed)
    assert readable().sinks[0].sent == 3

    for kind in ("atom", "rss"):
        parsed = feedparser.parse(generated.render("readable", kind))
        assert not parsed.bozo, parsed.get("bozo_exception")
        by_title = {e.title: e for e in parsed.entries}
        assert sorted(by_title) == sorted(previewed), kind  # the same titles as the preview
        fish = by_title["Fish & chips 🐟"]
        assert fish.summary_detail.type == "text/html", kind
        assert shown(fish.summary_detail) == "Cod & chips, ça va", kind
        assert shown(by_title[fox].summary_detail).startswith("The quick brown fox"), kind
        for e in parsed.entries:
            assert "<p>" not in shown(e.summary_detail), (kind, e.summary)
            assert not e.title.startswith(("sha256:", "urn:")), kind


def test_ids_dates_and_guids_follow_the_atom_and_rss_rules(feeds: Any) -> None:
    """RFC 4287 for Atom (ids are URIs, RFC 3339 dates, an author), RSS 2.0 guid/pubDate."""
    import xml.etree.ElementTree as ET
    from email.utils import parsedate_to_datetime

    url = _untitled_feed(feeds)

    @trigger
    def rules() -> None:
        feed(rss(url), name="rules")

    rules()
    atom_xml = generated.render("rules", "atom")
    atom = ET.fromstring(atom_xml)
    ns = {"a": "http://www.w3.org/2005/Atom"}
    entries = atom.findall("a:entry", ns)
    assert len(entries) == 3
    # atom:feed has an author unless every entry has one (RFC 4287 4.1.1).
    assert atom.find("a:author/a:name", ns) is not None
    rfc3339 = re.compile(r"^\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d(\.\d+)?(Z|[+-]\d\d:\d\d)$")
    for el in (atom, *entries):
        assert re.match(r"^(urn|tag):", el.findtext("a:id", "", ns)), el.findtext("a:id", "", ns)
        assert rfc3339.match(el.findtext("a:updated", "", ns))
    assert all(rfc3339.match(e.findtext("a:published", "", ns)) for e in entries)
    for e in entries:
        # Without an alternate link, an entry must have a content (RFC 4287 4.1.1.1).
        if e.find("a:link[@rel='alternate']", ns) is None and e.find("a:link", ns) is None:
            assert e.find("a:content", ns) is not None
        assert e.find("a:summary", ns).get("type") == "html"
    parsed = feedparser.parse(atom_xml)
    fish = next(e for e in parsed.entries if e.title.startswith("Fish"))
    assert fish.published == "2026-01-01T10:30:00+00:00"
    again = feedparser.parse(generated.render("rules", "atom"))
    assert [e.id for e in again.entries] == [e.id for e in parsed.entries]

    channel = ET.fromstring(generated.render("rules", "rss")).find("channel")
    assert channel is not None
    items = channel.findall("item")
    assert len(items) == 3
    for item in items:
        guid = item.find("guid")
        assert guid is not None and guid.get("isPermaLink") == "false"
        assert re.match(r"^(urn|tag):", guid.text or "")
        # RFC 822 (with a four-digit year, as RSS 2.0 asks): email.utils reads it back.
        when = parsedate_to_datetime(item.findtext("pubDate", ""))
        assert when.tzinfo is not None and when.year == 2026
    assert {i.findtext("guid") for i in items} == {e.id for e in parsed.entries}


def test_the_web_app_answers_head_like_get_with_the_right_content_types() -> None:
    """HEAD /feeds/x.xml answers like GET, without the body (readers and proxies check)."""
    import httpx
    from serve_support import free_port

    from triggerflow import Item
    from triggerflow._web import WebServer

    @trigger
    def heads() -> None:
        feed([Item(source="notes", id="1", title="héllo", summary="<p>hi</p>")], name="heads")

    heads()
    web = WebServer(free_port())
    web.start()
    try:
        for ext, media in (
            ("xml", "application/atom+xml"),
            ("rss", "application/rss+xml"),
            ("json", "application/feed+json"),
        ):
            get = httpx.get(f"{web.url}/feeds/heads.{ext}", timeout=10)
            assert get.status_code == 200
            assert get.headers["content-type"] == f"{media}; charset=utf-8"
            head = httpx.head(f"{web.url}/feeds/heads.{ext}", timeout=10)
            assert head.status_code == 200, head.text
            assert head.content == b""
            for name in ("content-type", "etag", "last-modified", "cache-control"):
                assert head.headers[name] == get.headers[name], name
            assert head.headers["content-length"] == str(len(get.content))
            cached = {"If-None-Match": get.headers["etag"]}
            again = httpx.head(f"{web.url}/feeds/heads.{ext}", headers=cached, timeout=10)
            assert again.status_code == 304
        index = httpx.head(f"{web.url}/feeds/", timeout=10)
        assert index.status_code == 200 and index.content == b""
        assert index.headers["content-type"].startswith("text/html")
        assert httpx.head(f"{web.url}/feeds/nothing.xml", timeout=10).status_code == 404
    finally:
        web.stop()


def test_a_new_feed_takes_everything_on_its_first_run(feeds: Any) -> None:
    """No first-run cut for a generated feed (README: readers pull its newest 50)."""
    feeds.publish("/all.xml", [f"a{i}" for i in range(8)])
    url = feeds.url("/all.xml")

    @trigger
    def everything() -> None:
        feed(rss(url), name="all-of-it")

    report = everything().sinks[0]
    assert (report.sent, report.skipped) == (8, 0)
    parsed = feedparser.parse(generated.render("all-of-it"))
    assert sorted(e.title for e in parsed.entries) == [f"a{i}" for i in range(8)]


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


def test_a_generated_feed_as_json_feed_has_the_entries_of_its_atom(feeds: Any) -> None:
    """/feeds/NAME.json (issue 20, item 4): JSON Feed 1.1 with the Atom feed's ids, read
    back by rss() like any JSON Feed."""
    import httpx
    from serve_support import free_port

    from triggerflow import Item
    from triggerflow import feeds as generated
    from triggerflow._web import WebServer
    from triggerflow.sources import rss

    @trigger
    def both() -> None:
        feed(
            [
                Item(source="n", id="1", title="plain", summary="just text", content="<p>body</p>"),
                Item(source="n", id="2", title="", summary="<b>html</b> summary", author="Ann"),
            ],
            name="both",
        )

    both()
    doc = json.loads(generated.render("both", "json", base_url="http://127.0.0.1:1/feeds"))
    assert doc["version"] == "https://jsonfeed.org/version/1.1"
    assert doc["feed_url"] == "http://127.0.0.1:1/feeds/both.json"
    first = next(i for i in doc["items"] if i["title"] == "plain")
    assert first["content_html"] == "<p>body</p>" and first["summary"] == "just text"
    web = WebServer(free_port())
    web.start()
    try:
        got = httpx.get(f"{web.url}/feeds/both.json", timeout=10)
        assert got.headers["content-type"] == "application/feed+json; charset=utf-8"
        from_json = rss(f"{web.url}/feeds/both.json")
        from_atom = rss(f"{web.url}/feeds/both.xml")
        assert [i.id for i in from_json] == [i.id for i in from_atom] and len(from_json) == 2
        assert [i.title for i in from_json] == [i.title for i in from_atom]
        assert [i.author for i in from_json] == [i.author for i in from_atom]
        assert "both.json" in httpx.get(f"{web.url}/feeds/", timeout=10).text
    finally:
        web.stop()
