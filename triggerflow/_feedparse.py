"""feedparser results turned into :class:`Item`; safe to run in worker processes.

Parsing is the CPU cost of polling (~20 ms per 20-entry feed), so a source call
with a lot to parse spreads it over the machine's cores. This module imports
nothing heavy, so worker processes start fast.
"""

from __future__ import annotations

import hashlib
import os
import time
from collections.abc import Mapping, Sequence
from concurrent.futures import ProcessPoolExecutor
from dataclasses import dataclass, field
from datetime import UTC, datetime
from multiprocessing import get_context
from typing import Any

import feedparser

from .types import Item

# Below this much content, starting worker processes costs more than it saves.
PARALLEL_THRESHOLD = 1024 * 1024


@dataclass
class ParsedFeed:
    """One parsed feed: its items, its title, a warning or the reason it is not a feed."""

    source: str
    title: str | None = None
    items: list[Item] = field(default_factory=list)
    warning: str | None = None
    error: str | None = None


def _when(entry: Mapping[str, Any]) -> datetime | None:
    for key in ("published_parsed", "updated_parsed", "created_parsed"):
        t = entry.get(key)
        if t:
            return datetime(*t[:6], tzinfo=UTC)
    return None


def _jsonable(value: Any) -> Any:
    if isinstance(value, time.struct_time):
        return datetime(*value[:6], tzinfo=UTC).isoformat()
    if isinstance(value, Mapping):
        return {str(k): _jsonable(v) for k, v in value.items()}
    if isinstance(value, list | tuple):
        return [_jsonable(v) for v in value]
    if isinstance(value, str | int | float | bool) or value is None:
        return value
    return str(value)


def entry_to_item(source: str, entry: Mapping[str, Any]) -> Item:
    """Normalise one feedparser entry. The id is stable: guid/id, else link, else a hash."""
    title = entry.get("title", "") or ""
    link = entry.get("link", "") or ""
    summary = entry.get("summary", "") or ""
    contents = entry.get("content") or []
    content = (contents[0].get("value") or "") if contents else ""
    item_id = entry.get("id") or link
    if not item_id:
        digest = hashlib.sha256("\x1f".join((title, summary, content)).encode()).hexdigest()
        item_id = "sha256:" + digest[:32]
    return Item(
        source=source,
        id=item_id,
        title=" ".join(title.split()),
        link=link,
        summary=summary,
        content=content,
        author=entry.get("author", "") or "",
        published=_when(entry),
        tags=tuple(t["term"] for t in entry.get("tags") or () if t.get("term")),
        enclosures=tuple(
            link_["href"]
            for link_ in entry.get("links") or ()
            if link_.get("rel") == "enclosure" and link_.get("href")
        ),
        raw=_jsonable(dict(entry)),
    )


def parse_one(source: str, url: str, body: bytes, headers: Mapping[str, str]) -> ParsedFeed:
    """Parse one feed body; a body with no entries that feedparser calls malformed is an error."""
    # content-location makes relative links resolve against the feed's real URL.
    d = feedparser.parse(body, response_headers={"content-location": url, **headers})
    entries = d.get("entries") or []
    problem = d.get("bozo_exception") if d.get("bozo") else None
    title = (d.get("feed") or {}).get("title")
    if not entries and (problem is not None or not d.get("version")):
        why = _describe(problem) if problem is not None else "no RSS or Atom elements found"
        return ParsedFeed(source, error=f"not a valid RSS/Atom feed ({why})")
    parsed = ParsedFeed(source, title=title, items=[entry_to_item(source, e) for e in entries])
    if problem is not None:
        parsed.warning = f"malformed feed, kept {len(entries)} entries ({_describe(problem)})"
    return parsed


def _describe(problem: Any) -> str:
    text = str(getattr(problem, "getMessage", lambda: problem)()) or type(problem).__name__
    return " ".join(text.split())[:200]


def _parse_batch(jobs: Sequence[tuple[str, str, bytes, Mapping[str, str]]]) -> list[ParsedFeed]:
    return [parse_one(*job) for job in jobs]


def parse_many(jobs: Sequence[tuple[str, str, bytes, Mapping[str, str]]]) -> list[ParsedFeed]:
    """Parse many feeds, on several cores when there is enough to parse.

    ``jobs`` are (source, url, body, headers); results come back in the same order.
    """
    cores = os.cpu_count() or 1
    total = sum(len(job[2]) for job in jobs)
    if cores < 2 or len(jobs) < 2 or total < PARALLEL_THRESHOLD:
        return _parse_batch(jobs)
    workers = min(cores, len(jobs))
    # Contiguous chunks, one per worker: fewer pickling round trips than one job each.
    size = -(-len(jobs) // workers)
    chunks = [jobs[i : i + size] for i in range(0, len(jobs), size)]
    # forkserver: the calling process (a Prefect run) has threads, so plain fork is unsafe.
    with ProcessPoolExecutor(workers, mp_context=get_context("forkserver")) as pool:
        return [p for chunk in pool.map(_parse_batch, chunks) for p in chunk]
