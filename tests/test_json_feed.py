"""JSON Feed in (issue 20, item 4): rss() reads JSON Feed 1.0 and 1.1 from a local server,
with the same items as the same content served as Atom."""

from __future__ import annotations

import json
from dataclasses import replace
from typing import Any
from xml.sax.saxutils import escape

from triggerflow.sources import rss
from triggerflow.types import RawJSON

JSON_FEED = {
    "version": "https://jsonfeed.org/version/1.1",
    "title": "Notes",
    "home_page_url": "https://example.org/",
    "feed_url": "https://example.org/feed.json",
    "items": [
        {
            "id": "urn:note:2",
            "url": "https://example.org/2",
            "external_url": "https://elsewhere.example/x",
            "title": "Second — with ünïcode & <angle> brackets",
            "summary": "short text",
            "content_html": '<p>Hi <a href="/about">me</a></p><script>alert(1)</script> 🎉',
            "date_published": "2026-11-30T10:00:00Z",
            "date_modified": "2026-11-30T11:30:00+01:00",
            "authors": [{"name": "Ann", "url": "https://example.org/ann"}],
            "tags": ["python", "feeds"],
            "attachments": [
                {
                    "url": "https://example.org/a.mp3",
                    "mime_type": "audio/mpeg",
                    "size_in_bytes": 1234,
                }
            ],
        },  # fmt: skip
        {
            "id": "urn:note:1",
            "url": "https://example.org/1",
            "title": "First",
            "content_text": "plain text, no HTML",
            "date_published": "2026-11-29T09:00:00Z",
        },
    ],
}

ATOM = """<?xml version="1.0" encoding="utf-8"?>
<feed xmlns="http://www.w3.org/2005/Atom">
  <title>Notes</title><id>https://example.org/feed.json</id>
  <link rel="alternate" href="https://example.org/"/>
  <link rel="self" href="https://example.org/feed.json"/>
  <entry>
    <id>urn:note:2</id>
    <title>Second — with ünïcode &amp; &lt;angle&gt; brackets</title>
    <link rel="alternate" href="https://example.org/2"/>
    <link rel="related" href="https://elsewhere.example/x"/>
    <link rel="enclosure" href="https://example.org/a.mp3" type="audio/mpeg" length="1234"/>
    <summary>short text</summary>
    <content type="html">{html}</content>
    <published>2026-11-30T10:00:00Z</published>
    <updated>2026-11-30T11:30:00+01:00</updated>
    <author><name>Ann</name><uri>https://example.org/ann</uri></author>
    <category term="python"/><category term="feeds"/>
  </entry>
  <entry>
    <id>urn:note:1</id><title>First</title>
    <link rel="alternate" href="https://example.org/1"/>
    <content type="text">plain text, no HTML</content>
    <published>2026-11-29T09:00:00Z</published><updated>2026-11-29T09:00:00Z</updated>
  </entry>
</feed>
""".format(html=escape(JSON_FEED["items"][0]["content_html"]))  # type: ignore[index]


def _without_raw(items: Any) -> list[Any]:
    return [replace(i, source="-", raw=RawJSON("")) for i in items]


def test_a_json_feed_gives_the_items_of_the_same_feed_as_atom(feeds: Any) -> None:
    feeds.raw("/notes.json", json.dumps(JSON_FEED).encode(), "application/feed+json")
    feeds.raw("/notes.atom", ATOM.encode(), "application/atom+xml")
    from_json = rss(feeds.url("/notes.json"))
    from_atom = rss(feeds.url("/notes.atom"))
    assert len(from_json) == 2
    assert _without_raw(from_json) == _without_raw(from_atom)
    second = from_json[0]
    assert second.id == "urn:note:2" and second.title.startswith("Second — with ünïcode & <angle>")
    assert (
        "<script>" not in second.content and "🎉" in second.content
    )  # sanitised as feedparser does
    assert 'href="http://127.0.0.1' in second.content  # the relative link against the feed's URL
    assert second.tags == ("python", "feeds") and second.author == "Ann"
    assert second.enclosures == ("https://example.org/a.mp3",)
    assert (
        second.published is not None and second.published.isoformat() == "2026-11-30T10:00:00+00:00"
    )
    assert (
        second.raw["external_url"] == "https://elsewhere.example/x"
    )  # raw: the JSON item as published


def test_json_feed_1_0_detected_by_its_body_and_bad_json_said_so(feeds: Any) -> None:
    old = {
        "version": "https://jsonfeed.org/version/1",
        "title": "Old",
        "author": {"name": "Bob"},
        "items": [{"id": 7, "content_text": "numbered id", "url": "https://example.org/7"}],
    }
    feeds.raw("/old", json.dumps(old).encode(), "text/plain")  # a server that does not know
    (item,) = rss(feeds.url("/old"))
    assert item.id == "7" and item.content == "numbered id" and item.link == "https://example.org/7"

    from triggerflow._feedparse import parse_one

    bad = parse_one(
        "s", "http://127.0.0.1/x", b'{"items": []}', {"content-type": "application/json"}
    )
    assert bad.error == 'not a valid JSON Feed (no "version": "https://jsonfeed.org/version/1.1")'
    broken = parse_one(
        "s", "http://127.0.0.1/x", b'{"version": ', {"content-type": "application/feed+json"}
    )
    assert broken.error and broken.error.startswith("not a valid JSON Feed (not JSON:")
