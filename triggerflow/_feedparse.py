"""feedparser results turned into :class:`Item`; safe to run in worker processes.

Parsing is the CPU cost of polling (~20 ms per 20-entry feed), so a source call
with a lot to parse spreads it over the machine's cores. This module imports
nothing heavy, so worker processes start fast.
"""

from __future__ import annotations

import hashlib
import json
import os
import pickle
import queue
import signal
import struct
import subprocess
import sys
import threading
import time
from collections.abc import Iterator, Mapping, Sequence
from dataclasses import dataclass, field, replace
from datetime import UTC, datetime
from pathlib import Path
from typing import Any, BinaryIO

from ._jsonfeed import json_feed_as_atom, looks_like_json
from .types import Item, RawJSON

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


def _raw_json(entry: Mapping[str, Any]) -> str:
    """``entry`` as JSON, its dates (``*_parsed``) as ISO text.

    feedparser's values are strings, numbers, dicts and lists except its dates
    (``struct_time``, a tuple json would write as a list): those are converted first,
    and json.dumps writes the rest as it is (walking every value in Python took half of
    this function's time); anything else json cannot write is walked as before.
    """
    kept = {
        k: _jsonable(v) if isinstance(v, time.struct_time | Mapping) else v
        for k, v in entry.items()
        if k not in _IN_ITEM
    }
    try:
        return json.dumps(kept, ensure_ascii=False)
    except (TypeError, ValueError):
        return json.dumps(_jsonable(kept), ensure_ascii=False)


# feedparser's copies of the texts an Item already has; left out of ``raw`` they would
# more than double what is stored and moved between processes.
_IN_ITEM = frozenset({"title", "title_detail", "summary", "summary_detail", "content"})


def entry_to_item(source: str, entry: Mapping[str, Any]) -> Item:
    """Normalise one feedparser entry. The id is stable: guid/id, else link, else a hash."""
    title = entry.get("title", "") or ""
    link = entry.get("link", "") or ""
    summary = entry.get("summary", "") or ""
    contents = entry.get("content") or []
    content = (contents[0].get("value") or "") if contents else ""
    if summary == content:
        # feedparser gives an Atom entry without a summary its content as summary: one
        # string for both, so it is pickled once and held once (10,000 items: 18 MB).
        summary = content
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
        raw=RawJSON(_raw_json(entry)),
    )


def parse_one(source: str, url: str, body: bytes, headers: Mapping[str, str]) -> ParsedFeed:
    """Parse one feed body; a body with no entries that feedparser calls malformed is an error."""
    json_items: list[Any] | None = None
    if looks_like_json(body, headers):
        try:
            body, json_items = json_feed_as_atom(body)
        except ValueError as e:
            return ParsedFeed(source, error=f"not a valid JSON Feed ({e})")
        headers = {**headers, "content-type": "application/atom+xml; charset=utf-8"}
    # Imported here: a caller whose feeds are parsed by the workers never needs it.
    import feedparser

    # content-location makes relative links resolve against the feed's real URL.
    d = feedparser.parse(body, response_headers={"content-location": url, **headers})
    entries = d.get("entries") or []
    problem = d.get("bozo_exception") if d.get("bozo") else None
    title = (d.get("feed") or {}).get("title")
    if not entries and (problem is not None or not d.get("version")):
        why = _describe(problem) if problem is not None else "no RSS or Atom elements found"
        return ParsedFeed(source, error=f"not a valid RSS/Atom feed ({why})")
    items = [entry_to_item(source, e) for e in entries]
    if json_items is not None:
        # The id as published (feedparser resolves an Atom id like "7" against the feed's
        # URL), and raw: the JSON Feed item itself, not our Atom of it.
        items = [
            replace(
                i,
                id=str(j["id"]) if j.get("id") not in (None, "") else i.id,
                raw=RawJSON(json.dumps(j, ensure_ascii=False)),
            )
            for i, j in zip(items, json_items, strict=True)
        ]
    parsed = ParsedFeed(source, title=title, items=items)
    if problem is not None:
        parsed.warning = f"malformed feed, kept {len(entries)} entries ({_describe(problem)})"
    return parsed


def _describe(problem: Any) -> str:
    text = str(getattr(problem, "getMessage", lambda: problem)()) or type(problem).__name__
    return " ".join(text.split())[:200]


Job = tuple[str, str, bytes, Mapping[str, str]]  # (source, url, body, headers)


def _parse_batch(jobs: Sequence[Job]) -> list[ParsedFeed]:
    return [parse_one(*job) for job in jobs]


# Jobs are sent to the workers in chunks of about this many bytes: fewer round trips
# than one feed each, small enough to keep both cores busy until the end.
_CHUNK = 512 * 1024

# A parse worker is ``python -c`` this: it imports this module (feedparser, the item
# types) and nothing of the caller. multiprocessing's spawn and forkserver start their
# workers by importing the caller's ``__main__`` again: a plain script that called
# ``rss()`` without an ``if __name__ == "__main__":`` guard ran again in every worker.
_WORKER = "from triggerflow._feedparse import _work; _work()"

_SIZE = struct.Struct("!Q")
_DONE: Job = ("", "", b"", {})  # in place of a parsed job


def _send(stream: BinaryIO, value: object) -> None:
    data = pickle.dumps(value, protocol=pickle.HIGHEST_PROTOCOL)
    stream.write(_SIZE.pack(len(data)))
    stream.write(data)
    stream.flush()


def _receive(stream: BinaryIO) -> Any:
    head = stream.read(_SIZE.size)
    if len(head) < _SIZE.size:
        raise EOFError("the parse worker ended")
    size = _SIZE.unpack(head)[0]
    data = stream.read(size)
    if len(data) < size:
        raise EOFError("the parse worker ended mid-answer")
    return pickle.loads(data)


def _work() -> None:
    """A parse worker's loop: chunks of jobs in on stdin, their results out on stdout,
    until stdin ends (the caller finished, or died)."""
    signal.signal(signal.SIGINT, signal.SIG_IGN)  # Ctrl-C is the caller's to handle
    stdin, stdout = sys.stdin.buffer, sys.stdout.buffer
    sys.stdout = sys.stderr  # nothing else may write into the answers
    while True:
        try:
            jobs = _receive(stdin)
        except EOFError:
            return
        _send(stdout, _parse_batch(jobs))


class _Worker:
    """One parse worker process and the thread that feeds it, one chunk at a time."""

    def __init__(self, chunks: queue.Queue[list[int] | None], parser: Parser) -> None:
        import triggerflow

        home = str(Path(triggerflow.__file__).resolve().parent.parent)
        path = os.environ.get("PYTHONPATH")
        env = {**os.environ, "PYTHONPATH": home + (os.pathsep + path if path else "")}
        self.proc = subprocess.Popen(
            [sys.executable, "-c", _WORKER], stdin=subprocess.PIPE, stdout=subprocess.PIPE,
            env=env, close_fds=True,
        )  # fmt: skip
        self.chunks, self.parser = chunks, parser
        self.thread = threading.Thread(target=self._run, name="feed parser", daemon=True)
        self.thread.start()

    def _run(self) -> None:
        assert self.proc.stdin is not None and self.proc.stdout is not None
        while (chunk := self.chunks.get()) is not None:
            try:
                _send(self.proc.stdin, [self.parser.jobs[n] for n in chunk])
                parsed: list[ParsedFeed] = _receive(self.proc.stdout)
            except (OSError, EOFError, pickle.PickleError):
                # The worker died (killed, out of memory): this chunk and the ones left
                # are parsed in the caller's process; nothing is lost.
                self.parser.orphans.append(chunk)
                self.parser.done.put(None)  # wakes the caller to look at what is left
                return
            for n, result in zip(chunk, parsed, strict=True):
                self.parser.jobs[n] = _DONE  # the body is let go as soon as it is parsed
                self.parser.done.put((n, result))

    def stop(self) -> None:
        for stream in (self.proc.stdin, self.proc.stdout):
            if stream is not None:
                try:
                    stream.close()
                except OSError:
                    pass
        try:
            self.proc.wait(5)
        except subprocess.TimeoutExpired:
            self.proc.kill()
            self.proc.wait()


class Parser:
    """Parses feed bodies as they arrive, on several cores once there is enough to parse.

    ``add`` may be called from the thread that fetches (it only queues), so parsing
    overlaps the fetching of the other feeds; ``completed`` yields each result as it is
    ready, in another thread while the fetching goes on (so the results are stored as
    they come instead of waiting in memory for the last feed), and ``finish`` says that
    every job is in. ``results`` waits for all of them in the order they were added.
    Used as a context manager, so the worker processes end even when the fetching fails
    halfway.
    """

    def __init__(self) -> None:
        self._cores = os.cpu_count() or 1
        self.jobs: list[Job] = []
        self.done: queue.Queue[tuple[int, ParsedFeed] | None] = queue.Queue()
        self.orphans: list[list[int]] = []  # chunks a dead worker left
        self._waiting: list[int] = []  # indexes of jobs not yet handed to a worker
        self._waiting_bytes = 0
        self._total = 0
        self._chunks: queue.Queue[list[int] | None] = queue.Queue()
        self._workers: list[_Worker] = []
        # add() runs in the fetching thread, completed() in the storing one.
        self._lock = threading.RLock()
        self._finished = False
        self._closed = False

    def __enter__(self) -> Parser:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def close(self) -> None:
        """Stop the worker processes (if any) and drop the bodies; ``completed`` ends."""
        with self._lock:
            self._closed = True
            while not self._chunks.empty():  # what no worker took yet is not parsed now
                self._chunks.get_nowait()
            for _ in self._workers:
                self._chunks.put(None)
            workers, self._workers = self._workers, []
        self.done.put(None)  # wakes a completed() that waits
        for w in workers:
            w.thread.join(60)
            w.stop()
        self.jobs = []

    def add(self, job: Job) -> None:
        with self._lock:
            if self._closed:  # the caller stopped reading the results (it failed)
                return
            if self._finished:
                raise RuntimeError("feed parser: a job added after finish()")
            self.jobs.append(job)
            self._waiting.append(len(self.jobs) - 1)
            self._waiting_bytes += len(job[2])
            self._total += len(job[2])
            if not self._workers and self._cores >= 2 and self._total >= PARALLEL_THRESHOLD:
                self._workers = [_Worker(self._chunks, self) for _ in range(self._cores)]
            if self._workers and self._waiting_bytes >= _CHUNK:
                self._submit()

    def finish(self) -> None:
        """Every job is in: the last ones go to the workers, which stop once they are done."""
        with self._lock:
            if self._finished:
                return
            self._finished = True
            if self._workers and self._waiting:
                self._submit()
            for _ in self._workers:
                self._chunks.put(None)
        self.done.put(None)  # wakes a completed() that waits for the next result

    def _submit(self) -> None:
        chunk, self._waiting, self._waiting_bytes = self._waiting, [], 0
        self._chunks.put(chunk)

    def _here(self, n: int) -> tuple[int, ParsedFeed]:
        parsed = parse_one(*self.jobs[n])
        self.jobs[n] = _DONE
        return n, parsed

    def completed(self) -> Iterator[tuple[int, ParsedFeed]]:
        """Each job's result, ``(index in the order added, result)``, as it is ready.

        May run while jobs are still added (in another thread); ends once ``finish`` was
        called and every job is answered, or when the parser is closed. The workers stop
        at the end.
        """
        answered = 0
        try:
            while True:
                with self._lock:
                    closed, finished, total = self._closed, self._finished, len(self.jobs)
                    workers = list(self._workers)
                if closed or (finished and answered == total):
                    return
                if finished and not workers:  # too little to be worth a worker
                    for n in self._waiting:
                        answered += 1
                        yield self._here(n)
                    return
                try:
                    got = self.done.get(timeout=0.5)
                except queue.Empty:
                    got = None
                if got is not None:
                    answered += 1
                    yield got
                elif workers and not any(w.thread.is_alive() for w in workers):
                    # Every worker is gone (dead or done) with jobs left: what they
                    # answered is in the queue, the rest is parsed here (and so is what
                    # is added from now on, as finish() or add() queues it).
                    while (taken := self._take_answer()) is not None:
                        answered += 1
                        yield taken
                    with self._lock:
                        orphans, self.orphans = self.orphans, []
                        while not self._chunks.empty():
                            if (chunk := self._chunks.get_nowait()) is not None:
                                orphans.append(chunk)
                    for chunk in orphans:
                        for n in chunk:
                            answered += 1
                            yield self._here(n)
                    with self._lock:
                        if self._finished and answered < len(self.jobs) and self._chunks.empty():
                            # cannot happen: a job is answered, orphaned or queued
                            raise RuntimeError(
                                f"feed parser: {len(self.jobs) - answered} feed(s) lost"
                            )
        finally:
            self.close()

    def _take_answer(self) -> tuple[int, ParsedFeed] | None:
        while True:
            try:
                got = self.done.get_nowait()
            except queue.Empty:
                return None
            if got is not None:
                return got

    def results(self) -> list[ParsedFeed]:
        """Every result, in the order the jobs were added."""
        self.finish()
        out: list[ParsedFeed | None] = [None] * len(self.jobs)
        for n, parsed in self.completed():
            out[n] = parsed
        return [p for p in out if p is not None]


def parse_many(jobs: Sequence[Job]) -> list[ParsedFeed]:
    """Parse many feeds, on several cores when there is enough to parse.

    ``jobs`` are (source, url, body, headers); results come back in the same order.
    """
    with Parser() as parser:
        for job in jobs:
            parser.add(job)
        return parser.results()
