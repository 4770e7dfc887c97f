"""The RSS/Atom source: ``rss(url, ...)``.

Fetches every feed concurrently with conditional GET (a 304 costs no parsing),
parses with feedparser (on several cores when there is a lot), stores the items
before anything else happens, and returns them. A feed that fails fails alone:
the others of the same call still deliver.
"""

from __future__ import annotations

import xml.etree.ElementTree as ET
from functools import partial
from pathlib import Path

from .. import _runtime
from .._async import run_sync
from .._feedparse import Parser
from .._http import FeedRequest, FeedResponse, fetch_all
from .._steps import Fetched, Reading, run_source
from .._store import SourceState, Store, now
from ..config import settings
from ..exceptions import ConfigurationError, FeedUnavailable, TransientError
from ..types import Items, SourceReport

__all__ = ["rss"]

STORE_BATCH = 2000


def rss(*urls: str, opml: str | Path | None = None) -> Items:
    """Items of one or many RSS/Atom feeds.

    In a trigger run, new items are stored and the feed's ETag/Last-Modified are
    kept for the next conditional GET; a feed that has not changed returns the
    items it listed last time (they are already stored, so nothing is sent twice).
    Called outside a trigger (e.g. in a notebook), it just fetches and returns.

    Args:
        urls: feed URLs.
        opml: an OPML file (path) whose ``xmlUrl`` outlines are added to ``urls``.

    Returns:
        The items of every feed that answered, newest first per feed.

    Raises:
        ConfigurationError: no URL given, or the OPML file is unreadable.

    Example::

        items = rss("https://blog.python.org/feeds/posts/default", opml="subscriptions.opml")
    """
    feeds = list(dict.fromkeys([*urls, *(_read_opml(Path(opml)) if opml else [])]))
    if not feeds:
        raise ConfigurationError("rss(): give at least one feed URL (or an OPML file)")
    name = f"rss: {feeds[0]}" if len(feeds) == 1 else f"rss: {len(feeds)} feeds"
    return Items(run_source(name, "rss", partial(_fetch, tuple(feeds))).items)


def _read_opml(path: Path) -> list[str]:
    try:
        tree = ET.parse(path)
    except (OSError, ET.ParseError) as e:
        raise ConfigurationError(f"rss(opml={str(path)!r}): cannot read the OPML file: {e}") from e
    return [o.attrib["xmlUrl"] for o in tree.iter("outline") if o.attrib.get("xmlUrl")]


def _fetch(feeds: tuple[str, ...], reading: Reading, report: SourceReport) -> Fetched:
    trigger, use_store, write = reading.trigger, reading.use_store, reading.write
    s = settings()
    log = _runtime.logger()
    store = Store.default(s)
    states: dict[str, SourceState] = {}
    if use_store:
        with store.transaction(commit=False) as tx:
            states = tx.source_states(feeds)
    requests = [
        FeedRequest(f, states[f].url, states[f].etag, states[f].last_modified)
        if f in states
        else FeedRequest(f, f)
        for f in feeds
    ]
    with_body: list[FeedResponse] = []
    with Parser() as parser:

        def arrived(r: FeedResponse) -> None:  # parse while the other feeds are on the way
            if r.body is not None:
                with_body.append(r)
                parser.add((r.request.source, r.url, r.body, r.headers))

        responses = run_sync(
            fetch_all(
                requests,
                timeout=s.http_timeout,
                connections=s.http_connections,
                on_response=arrived,
            )
        )
        parsed = parser.results()

    out = Fetched()
    fresh: list[tuple[FeedResponse, str | None]] = []
    for r, p in zip(with_body, parsed, strict=True):
        if p.error:
            report.failures[r.request.source] = p.error
            continue
        if p.warning:
            report.warnings[r.request.source] = p.warning
        out.items.extend(p.items)
        fresh.append((r, p.title))
    for r in responses:
        if r.error is not None:
            report.failures[r.request.source] = r.error.reason
    unchanged = [r for r in responses if r.not_modified]

    for r in with_body:
        r.body = None  # parsed: let go of it before the store needs memory

    t = now()
    if use_store:
        # Items in transactions of a few thousand: DuckDB holds a transaction's rows in
        # memory until it commits (10,000 items at once took 230 MB more than this). The
        # feeds' validators are saved only afterwards, so a run that dies in between
        # fetches those feeds again and loses nothing.
        unique = list({i.key: i for i in out.items}.values())
        for start in range(0, len(unique), STORE_BATCH):
            with store.transaction(commit=write) as tx:
                report.new += tx.upsert_items(unique[start : start + STORE_BATCH], t)
        with store.transaction(commit=write) as tx:
            tx.save_source_successes(
                [(_state(r), title, True) for r, title in fresh]
                + [(_state(r), None, False) for r in unchanged],
                "rss",
                t,
            )
            for source, why in report.failures.items():
                url = states[source].url if source in states else source
                tx.save_source_error(source, url, "rss", why, t)
            out.items.extend(tx.items_of_last_fetch([r.request.source for r in unchanged]))
            if trigger:
                tx.link_trigger_sources(trigger, feeds)
    report.fetched = len(out.items)

    for source, why in report.failures.items():
        log.warning("feed %s: %s", source, why)
    for source, why in report.warnings.items():
        log.warning("feed %s: %s", source, why)
    log.info(
        "%d feeds: %d changed, %d unchanged, %d failed; %d items, %d new",
        len(feeds), len(fresh), len(unchanged), len(report.failures), report.fetched, report.new,
    )  # fmt: skip
    transient = [r.error for r in responses if isinstance(r.error, TransientError)]
    if len(report.failures) == len(feeds) and transient:
        # Nothing worked and waiting may help: let Prefect retry the task.
        err = FeedUnavailable(feeds[0], transient[0].reason)
        if len(feeds) > 1:
            err.args = (f"all {len(feeds)} feeds failed, e.g. {err}",)
        raise err
    return out


def _state(r: FeedResponse) -> SourceState:
    return SourceState(r.request.source, r.url, r.etag, r.last_modified)
