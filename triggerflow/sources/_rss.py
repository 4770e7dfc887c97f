"""The RSS/Atom source: ``rss(url, ...)``.

Fetches every feed concurrently with conditional GET (a 304 costs no parsing),
parses with feedparser (on several cores when there is a lot), stores the items
before anything else happens, and returns them. A feed that fails fails alone:
the others of the same call still deliver.
"""

from __future__ import annotations

import contextvars
import ctypes
import ctypes.util
import xml.etree.ElementTree as ET
from concurrent.futures import ThreadPoolExecutor
from datetime import datetime
from functools import partial
from pathlib import Path
from typing import Any

from .. import _runtime
from .._async import run_sync
from .._durations import render_about
from .._feedparse import Parser
from .._http import FeedRequest, FeedResponse, fetch_all
from .._polling import Plan, after_answer, after_failure, is_due, silent_summary
from .._steps import Fetched, Reading, run_source
from .._store import SourceState, Store, now
from ..config import settings
from ..exceptions import ConfigurationError, FeedUnavailable, TransientError
from ..types import Item, ItemKey, Items, SourceReport

__all__ = ["rss"]

STORE_BATCH = 500


def rss(*urls: str, opml: str | Path | None = None) -> Items:
    """Items of one or many RSS/Atom feeds.

    In a trigger run, new items are stored and the feed's ETag/Last-Modified are
    kept for the next conditional GET; a feed that has not changed returns the
    items it listed last time (they are already stored, so nothing is sent twice;
    they are read from the store only if the trigger looks at them, not to be handed
    to a sink). Called outside a trigger (e.g. in a notebook or a plain script, with
    or without an ``if __name__ == "__main__":`` guard), it just fetches and returns.

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
    return run_source(name, "rss", partial(_fetch, tuple(feeds))).as_items()


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
    t = now()
    states: dict[str, SourceState] = {}
    if use_store:
        with store.transaction(commit=False) as tx:
            states = tx.source_states(feeds)
    # Only the feeds that are due (_polling): the others wait for their answer to go
    # stale, their backoff or Retry-After to pass; one that answered 410 is not fetched.
    # A preview (nothing written) fetches them all: it shows what the feeds say now.
    later = {f: st for f, st in states.items() if write and not is_due(st.next_fetch, st.gone, t)}
    requests = [
        FeedRequest(f, states[f].url, states[f].etag, states[f].last_modified)
        if f in states
        else FeedRequest(f, f)
        for f in feeds
        if f not in later
    ]
    out = Fetched()
    fresh: list[tuple[FeedResponse, str | None]] = []
    retries: dict[str, Plan] = {}  # per failed feed: when it is tried again

    def failed(source: str, why: str, status: int | None, retry_after: float | None) -> None:
        before = states[source].failures if source in states else 0
        plan = after_failure(
            t, before, trigger=trigger, status=status, retry_after=retry_after,
            backoff_max=s.feed_backoff_max,
        )  # fmt: skip
        retries[source] = plan
        report.failures[source] = why

    with_body: list[FeedResponse] = []
    storing = _Storing(store if use_store else None, t, write, report)

    def store_as_parsed() -> None:
        # Each feed as it is parsed, while the others are fetched and parsed: its items
        # are stored (in batches) instead of waiting in memory for the last feed (500
        # feeds: ~50 MB of parsed items held until fetching ended, and 2 s of store
        # writes after it).
        for n, p in parser.completed():
            r = with_body[n]
            if p.error:
                failed(r.request.source, p.error, None, None)
                continue
            if p.warning:
                report.warnings[r.request.source] = p.warning
            fresh.append((r, p.title))
            storing.add(p.items)
        storing.flush()

    with Parser() as parser, ThreadPoolExecutor(1, thread_name_prefix="feed store") as pool:

        def arrived(r: FeedResponse) -> None:  # parse while the other feeds are on the way
            if r.body is not None:
                with_body.append(r)  # before add(): the storer looks it up by index
                parser.add((r.request.source, r.url, r.body, r.headers))
                r.body = None  # the parser's now: it lets go of it once parsed

        # The storer runs in this run's context (its logger, its store).
        stored = pool.submit(contextvars.copy_context().run, store_as_parsed)
        try:
            responses = run_sync(
                fetch_all(
                    requests,
                    timeout=s.http_timeout,
                    connections=s.http_connections,
                    per_host=s.http_per_host,
                    on_response=arrived,
                )
            )
            parser.finish()
            stored.result()
        finally:
            parser.close()  # when the fetching failed: the storer stops after its batch
    _give_back_memory()  # the bodies and the workers' answers are freed: hand the pages back
    out.items, new_keys = storing.kept, storing.keys

    for r in responses:
        if r.error is not None:
            failed(r.request.source, r.error.reason, r.status, r.retry_after)
    unchanged = [r for r in responses if r.not_modified]
    # A feed that waits repeats its last outcome: a failing one still fails the run (so an
    # outage is one alert, not one per retry), a working one lists its last items.
    still_failing = {f: st for f, st in later.items() if st.failures or st.gone}
    for f, st in still_failing.items():
        report.failures[f] = f"{st.last_error or 'failing'} ({_waits(st, t, trigger)})"
    resting = [f for f in later if f not in still_failing]

    if use_store:
        with store.transaction(commit=write) as tx:
            cache_max = s.feed_cache_max
            tx.save_source_successes(
                [(_state(r, t, cache_max), title, True) for r, title in fresh]
                + [(_state(r, t, cache_max), None, False) for r in unchanged],
                "rss",
                t,
            )
            for source, plan in retries.items():
                url = states[source].url if source in states else source
                retry = SourceState(
                    source, url, next_fetch=plan.next_fetch, next_reason=plan.reason,
                    failures=plan.failures, gone=plan.gone,
                )  # fmt: skip
                tx.save_source_error(source, url, "rss", report.failures[source], t, retry=retry)
            # What was just stored and what unchanged feeds listed: their keys only (a
            # sink needs no more), the items read if the trigger looks at them.
            listed = tx.keys_of_last_fetch([r.request.source for r in unchanged] + resting)
            out.in_store = list(dict.fromkeys(new_keys + listed))
            if trigger:
                tx.link_trigger_sources(trigger, feeds)
            if write:  # silent feeds: how readers lose news without noticing
                answered = [r.request.source for r, _ in fresh] + [
                    r.request.source for r in unchanged
                ]
                report.silent.update(tx.note_silent(answered, t, at_least=s.feed_silent_min))
    report.fetched = len(out.items) + len(out.in_store)

    for source, why in report.failures.items():
        plan = retries.get(source)
        log.warning("feed %s: %s%s", source, why, f"; {_next(plan, t)}" if plan else "")
    for source, why in report.warnings.items():
        log.warning("feed %s: %s", source, why)
    if report.silent:  # one line, however many: 500 stale feeds are not 500 warnings
        log.warning("%s", silent_summary(report.silent))
    log.info(
        "%d feeds: %d changed, %d unchanged, %d failed, %d not due; %d items, %d new",
        len(feeds), len(fresh), len(unchanged), len(retries), len(later), report.fetched,
        report.new,
    )  # fmt: skip
    transient = [r.error for r in responses if isinstance(r.error, TransientError)]
    if requests and len(retries) == len(requests) and not later and transient:
        # Nothing worked and waiting may help: let Prefect retry the task.
        err = FeedUnavailable(feeds[0], transient[0].reason)
        if len(feeds) > 1:
            err.args = (f"all {len(feeds)} feeds failed, e.g. {err}",)
        raise err
    return out


class _Storing:
    """The items of a call, written as they are parsed, in transactions of STORE_BATCH.

    Each batch is its own transaction on its own connection: DuckDB holds a
    transaction's rows in memory until it commits, and a connection its buffers until it
    closes (10,000 items at once: +230 MB; in batches of 2,000 or over one connection:
    +35 MB; like this +15 MB, measured with bench/run.py). Written items are let go and
    handed on by key (``keys``): a sink needs no more, and the 10,000 items of a first
    round are not held in the trigger's process (58 MB). What is not kept in the store
    (outside a trigger, or a preview, which rolls its writes back) stays in ``kept``.
    The feeds' validators are saved only after every item, so a run that dies in
    between fetches those feeds again and loses nothing.
    """

    def __init__(self, store: Store | None, t: datetime, write: bool, report: SourceReport):
        self.store, self.t, self.write, self.report = store, t, write, report
        self.pending: list[Item] = []
        self.keys: list[ItemKey] = []
        self.kept: list[Item] = []

    def add(self, items: list[Item]) -> None:
        self.pending += items
        if len(self.pending) >= STORE_BATCH:
            self.flush()

    def flush(self) -> None:
        batch, self.pending = self.pending, []
        if self.store is not None and batch:
            with self.store.transaction(commit=self.write) as tx:
                self.report.new += tx.upsert_items(batch, self.t)
        if self.store is not None and self.write:
            self.keys += [i.key for i in batch]
        else:
            self.kept += batch


def _give_back_memory() -> None:
    """Return freed heap pages to the system (glibc's ``malloc_trim``; elsewhere nothing).

    500 feed bodies and their parsed answers, freed in the order they came, leave holes
    that glibc keeps mapped: ~50 MB of resident memory nothing uses, through the store
    writes that follow (measured in bench/run.py's peak RSS).
    """
    global _TRIM
    if _TRIM is None:
        try:
            _TRIM = ctypes.CDLL(ctypes.util.find_library("c") or "libc.so.6").malloc_trim
        except (OSError, AttributeError):
            _TRIM = False
    if _TRIM:
        _TRIM(0)


_TRIM: Any = None


def _state(r: FeedResponse, t: datetime, cache_max: float) -> SourceState:
    plan = after_answer(t, r.fresh_for, cache_max)
    return SourceState(
        r.request.source, r.url, r.etag, r.last_modified,
        next_fetch=plan.next_fetch, next_reason=plan.reason,
    )  # fmt: skip


def _next(plan: Plan, t: datetime) -> str:
    if plan.gone or plan.next_fetch is None:
        return plan.reason or "tried again by the next run"
    return f"next try in {render_about(plan.next_fetch - t)} ({plan.reason})"


def _waits(st: SourceState, t: datetime, trigger: str | None) -> str:
    if st.gone:
        return f"not fetched since; `triggerflow run {trigger or 'NAME'} --all-feeds` tries again"
    assert st.next_fetch is not None
    return f"not fetched this run, next try in {render_about(st.next_fetch - t)}"
