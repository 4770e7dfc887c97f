"""JSON Feed (1.0 and 1.1) read through feedparser, as the equivalent Atom document.

feedparser reads no JSON Feed; ``_feedparse`` hands it this module's Atom of one, so
the items get the same treatment as every other feed's. Light (json, ElementTree), as
the parse workers import it.
"""

from __future__ import annotations

import json
import xml.etree.ElementTree as ET
from collections.abc import Mapping
from typing import Any


def looks_like_json(body: bytes, headers: Mapping[str, str]) -> bool:
    """Whether a feed's answer is JSON (by its content type, else its first byte)."""
    ctype = (headers.get("content-type") or "").lower()
    return "json" in ctype or body.lstrip()[:1] == b"{"


_ATOM = "http://www.w3.org/2005/Atom"


def json_feed_as_atom(body: bytes) -> tuple[bytes, list[Any]]:
    """A JSON Feed (1.0 or 1.1, https://jsonfeed.org/version/1.1) as the equivalent Atom
    document, and its items as published.

    feedparser (6.0) reads no JSON Feed; given the same content as Atom it does what it
    does for every feed (sanitising HTML, resolving relative links, dates), so a JSON
    Feed's items equal those of the same feed served as Atom. Raises ValueError with the
    reason when the body is not a JSON Feed.
    """
    try:
        doc = json.loads(body)
    except (UnicodeDecodeError, json.JSONDecodeError) as e:
        raise ValueError(f"not JSON: {e}") from e
    if not isinstance(doc, dict) or not str(doc.get("version", "")).startswith(
        "https://jsonfeed.org/version/"
    ):
        raise ValueError('no "version": "https://jsonfeed.org/version/1.1"')
    raw_items = doc.get("items")
    if not isinstance(raw_items, list):
        raise ValueError('no "items" list')
    items = [i for i in raw_items if isinstance(i, dict)]

    def sub(parent: ET.Element, tag: str, text: Any = None, **attrib: str) -> ET.Element:
        el = ET.SubElement(parent, f"{{{_ATOM}}}{tag}", {k: v for k, v in attrib.items() if v})
        if text is not None:
            el.text = str(text)
        return el

    def authors(parent: ET.Element, obj: dict[str, Any]) -> None:
        found = obj.get("authors") or ([obj["author"]] if obj.get("author") else [])  # 1.1, 1.0
        for a in found if isinstance(found, list) else []:
            if isinstance(a, dict) and (a.get("name") or a.get("url")):
                el = sub(parent, "author")
                sub(el, "name", a.get("name") or a.get("url"))
                if a.get("url"):
                    sub(el, "uri", a["url"])

    feed = ET.Element(f"{{{_ATOM}}}feed")
    sub(feed, "title", doc.get("title") or "")
    sub(feed, "id", doc.get("feed_url") or doc.get("home_page_url") or "")
    if doc.get("home_page_url"):
        sub(feed, "link", rel="alternate", href=str(doc["home_page_url"]))
    if doc.get("feed_url"):
        sub(feed, "link", rel="self", href=str(doc["feed_url"]))
    if doc.get("description"):
        sub(feed, "subtitle", doc["description"])
    authors(feed, doc)
    for item in items:
        entry = sub(feed, "entry")
        if item.get("id") is not None:
            sub(entry, "id", item["id"])  # a string by the spec; some publish numbers
        if item.get("title"):
            sub(entry, "title", item["title"])
        if item.get("url"):
            sub(entry, "link", rel="alternate", href=str(item["url"]))
        if item.get("external_url"):
            sub(entry, "link", rel="related", href=str(item["external_url"]))
        for att in item.get("attachments") or []:
            if isinstance(att, dict) and att.get("url"):
                size = str(att.get("size_in_bytes") or "")
                kind = str(att.get("mime_type") or "")
                sub(entry, "link", rel="enclosure", href=str(att["url"]), type=kind, length=size)
        if item.get("summary"):
            sub(entry, "summary", item["summary"])
        if item.get("content_html"):
            sub(entry, "content", item["content_html"], type="html")
        elif item.get("content_text"):
            sub(entry, "content", item["content_text"], type="text")
        if item.get("date_published"):
            sub(entry, "published", item["date_published"])
        if item.get("date_modified") or item.get("date_published"):
            sub(entry, "updated", item.get("date_modified") or item["date_published"])
        authors(entry, item)
        for tag in item.get("tags") or []:
            sub(entry, "category", term=str(tag))
    return ET.tostring(feed, encoding="utf-8", xml_declaration=True), items
