"""The GitHub webhook receiver, apart from the web framework (``_web.py`` mounts it).

Order matters: size, then signature (before anything is parsed or stored), then the
body, then the store, then the answer. A delivery is committed to the inbox before
the 2xx. When the store stays locked (a long trigger transaction) for longer than
``webhook_wait``, the delivery is written to the spool folder (fsync'ed, then renamed
into place) and answered 202; it moves into the inbox with the next delivery or the
next run of a GitHub trigger. Either way GitHub gets its answer well within its 10 s.
"""

from __future__ import annotations

import hashlib
import json
import logging
import os
import queue
import tempfile
import threading
import time
from collections.abc import Callable, Mapping
from concurrent.futures import Future
from concurrent.futures import TimeoutError as FutureTimeout
from dataclasses import dataclass
from datetime import datetime
from pathlib import Path

from . import _github
from ._files import fsync_path
from ._store import Store, now
from .config import Settings
from .exceptions import StoreBusyError, TriggerflowError

log = logging.getLogger("triggerflow.webhooks")

KIND = "github"

# A body over the cap is still read, and thrown away, up to this many bytes (or twice
# the cap if that is more): clients send the whole body before they read the answer,
# and one refused before its end sees a reset connection instead of the 413. Past it,
# the answer goes at once; reading gigabytes is not worth being polite.
DISCARD_BYTES = 100 * 1024 * 1024


@dataclass(frozen=True)
class Answer:
    """The HTTP answer: status and a one-line text."""

    status: int
    text: str


@dataclass(frozen=True)
class Stored:
    """A delivery that was accepted and is new: what wakes the triggers."""

    id: str
    event: str
    repo: str
    announced: bool


class GitHubReceiver:
    """Checks, stores and acknowledges GitHub webhook deliveries."""

    def __init__(
        self,
        s: Settings,
        secret: str | None,
        on_stored: Callable[[Stored], None] | None = None,
    ) -> None:
        self.settings = s
        self._secret = secret
        self.allow_unsigned = bool(s.github_allow_unsigned)
        self.max_bytes = s.webhook_max_bytes
        self.discard = max(DISCARD_BYTES, 2 * self.max_bytes)
        self.store = Store.default(s)
        self.on_stored = on_stored
        self.writer = _GroupCommit(self.store, s.spool_dir)

    def __repr__(self) -> str:  # never the secret
        return f"GitHubReceiver(store={self.store.path}, signed={self._secret is not None})"

    def too_large(self, length: int) -> Answer | None:
        """The answer for a body of ``length`` bytes if it is over the cap."""
        if length > self.max_bytes:
            log.warning("GitHub webhook refused: body of %d bytes is over the cap", length)
            return Answer(413, f"body over {self.max_bytes} bytes")
        return None

    def handle(self, headers: Mapping[str, str], body: bytes) -> Answer:
        """Check, store and answer one delivery (``headers`` with lower-case names)."""
        big = self.too_large(len(body))
        if big:
            return big
        if self._secret is None and not self.allow_unsigned:
            log.warning("GitHub webhook refused: no secret is configured on this server")
            return Answer(503, "webhook secret not configured on this server")
        if self._secret is not None:
            signature = headers.get("x-hub-signature-256")
            if not _github.signature_ok(self._secret, body, signature):
                why = "wrong signature" if signature else "no X-Hub-Signature-256 header"
                log.warning(
                    "GitHub webhook refused: %s (delivery %s, event %s)",
                    why, headers.get("x-github-delivery", "?"), headers.get("x-github-event", "?"),
                )  # fmt: skip
                return Answer(401, why)
        event = headers.get("x-github-event", "").strip()
        delivery = headers.get("x-github-delivery", "").strip()
        if not event or not delivery:
            return Answer(400, "X-GitHub-Event and X-GitHub-Delivery headers are required")
        try:
            payload = _github.parse_body(headers.get("content-type"), body)
        except _github.BadDelivery as e:
            log.warning("GitHub webhook %s (%s) refused: %s", delivery, event, e.reason)
            return Answer(e.status, e.reason)
        announced = _github.describe(event, payload) is not None
        repo = _github.repository_of(payload)
        entry = _Entry(delivery, event, repo, json.dumps(payload), now(), not announced)
        try:
            new = self.writer.commit(entry, self.settings.webhook_wait)
        except TriggerflowError as e:  # the store cannot be written at all
            log.error("GitHub webhook %s (%s) not stored: %s", delivery, event, e)
            return Answer(503, "cannot store the delivery now")
        if new is None:  # the store stayed locked: keep it on disk, answer in time
            if not spool(self.settings.spool_dir, entry):
                return Answer(200, "already received")
            log.info("GitHub webhook %s (%s) kept in the spool: the store is busy", delivery, event)
            self._stored(Stored(delivery, event, repo, announced))
            return Answer(202, "accepted (stored once the store is free)")
        if not new:
            log.info("GitHub webhook %s (%s): a redelivery, already stored", delivery, event)
            return Answer(200, "already received")
        what = "stored" if announced else "stored, ignored (not an event that is announced)"
        log.info("GitHub webhook %s (%s, %s): %s", delivery, event, repo or "-", what)
        self._stored(Stored(delivery, event, repo, announced))
        return Answer(200 if announced else 202, what)

    def _stored(self, stored: Stored) -> None:
        if self.on_stored is None or not stored.announced:
            return
        try:
            self.on_stored(stored)
        except Exception as e:  # the delivery is stored; a lost wake-up only delays it
            log.warning("GitHub webhook %s stored, but triggers not woken: %s", stored.id, e)


class _GroupCommit:
    """One thread that stores the deliveries of all pending requests in one transaction.

    A transaction per request would cap the receiver at what one DuckDB open + commit
    costs (~50 per second, then every request waits for the others); batched, hundreds.
    A request waits for its batch's commit, but no longer than it may (``commit``
    returns None then; the delivery may still be committed later, and the spool's
    copy is dropped as a redelivery when it is moved over).
    """

    def __init__(
        self, store: Store, spool_dir: Path, batch: int = 500, linger: float = 0.01
    ) -> None:
        self.store = store
        self.linger = linger
        self.spool_dir = spool_dir
        self.batch = batch
        self._queue: queue.Queue[tuple[_Entry, Future[bool]]] = queue.Queue()
        self._thread = threading.Thread(target=self._run, name="triggerflow-inbox", daemon=True)
        self._started = threading.Lock()
        self._last_drain = 0.0

    def commit(self, entry: _Entry, timeout: float) -> bool | None:
        """True if stored now, False if it was there already, None if not done in time."""
        with self._started:
            if not self._thread.is_alive():
                self._thread.start()
        done: Future[bool] = Future()
        self._queue.put((entry, done))
        try:
            return done.result(timeout)
        except (FutureTimeout, StoreBusyError):
            return None

    def _run(self) -> None:
        while True:
            pending = [self._queue.get()]
            # Linger a moment: requests of a burst arrive a little apart, and each
            # transaction costs the same (~35 ms) whether it stores one or a hundred.
            until = time.monotonic() + self.linger
            while len(pending) < self.batch:
                try:
                    pending.append(self._queue.get(timeout=max(0.0, until - time.monotonic())))
                except queue.Empty:
                    break
            self._write(pending)

    def _write(self, pending: list[tuple[_Entry, Future[bool]]]) -> None:
        first: dict[str, _Entry] = {}
        for entry, _ in pending:
            first.setdefault(entry.id, entry)
        try:
            with self.store.transaction() as tx:
                new = tx.inbox_add_many(KIND, [e.values() for e in first.values()])
        except Exception as e:  # each request answers with it (or has already spooled)
            for _, done in pending:
                done.set_exception(e)
            return
        for entry, done in pending:
            done.set_result(entry.id in new and first[entry.id] is entry)
        if time.monotonic() - self._last_drain > 1.0:  # what was spooled while it was busy
            self._last_drain = time.monotonic()
            try:
                drain_spool(self.spool_dir, self.store)
            except TriggerflowError as e:
                log.warning("spooled webhooks not moved to the store yet: %s", e)


@dataclass(frozen=True)
class _Entry:
    id: str
    event: str
    repo: str
    payload: str
    received_at: datetime
    ignored: bool

    def values(self) -> tuple[str, str, str, str, datetime, bool]:
        return (self.id, self.event, self.repo, self.payload, self.received_at, self.ignored)


def _spool_name(delivery: str) -> str:
    return f"{KIND}-{hashlib.sha256(delivery.encode()).hexdigest()[:32]}.json"


TORN = "torn"  # the spool's sub-folder for files that cannot be read (reported by status)
STALE_TMP = 60.0  # seconds: a half-written file this old belongs to a killed process


def spool(folder: Path, entry: _Entry) -> bool:
    """Keep a delivery on disk; False if it is already there (a redelivery).

    The file is written under a name of its own (two requests for one delivery id may
    arrive at the same moment), made durable, then linked to the delivery's name: the
    link is atomic and fails if the name exists, so the name only ever holds a whole
    file, and of two copies exactly one is kept.
    """
    folder.mkdir(parents=True, exist_ok=True)
    path = folder / _spool_name(entry.id)
    if path.exists():
        return False
    record = {
        "id": entry.id, "event": entry.event, "repo": entry.repo, "payload": entry.payload,
        "received_at": entry.received_at.isoformat(), "ignored": entry.ignored,
    }  # fmt: skip
    fd, tmp = tempfile.mkstemp(dir=folder, prefix=f".{KIND}-", suffix=".tmp")
    try:
        with os.fdopen(fd, "w", encoding="utf-8") as fh:
            json.dump(record, fh)
            fh.flush()
            os.fsync(fh.fileno())
        try:
            os.link(tmp, path)
        except FileExistsError:
            return False
        fsync_path(folder)  # the new name survives a power cut before the 202
    finally:
        os.unlink(tmp)
    return True


@dataclass(frozen=True)
class SpoolState:
    """What the spool holds: deliveries waiting to be stored, and files that cannot be read.

    Attributes:
        waiting: deliveries answered 202 that are not in the store yet.
        torn: the unreadable files (moved to ``spool/torn/``), by path.
    """

    waiting: int = 0
    torn: tuple[str, ...] = ()


def spool_state(folder: Path) -> SpoolState:
    """What ``triggerflow status`` says of the spool."""
    if not folder.is_dir():
        return SpoolState()
    torn = sorted(str(p) for p in (folder / TORN).glob(f"{KIND}-*.json"))
    return SpoolState(len(list(folder.glob(f"{KIND}-*.json"))), tuple(torn))


def drain_spool(folder: Path, store: Store) -> int:
    """Move spooled deliveries into the inbox (redeliveries are dropped); how many moved.

    A file that cannot be read is moved to ``spool/torn/`` and logged as an error (and
    ``status`` shows it): never skipped silently, never retried for ever.
    """
    if not folder.is_dir():
        return 0
    moved = 0
    for path in sorted(folder.glob(f"{KIND}-*.json")):
        try:
            r = json.loads(path.read_text(encoding="utf-8"))
            values = (
                r["id"], r["event"], r["repo"], r["payload"],
                datetime.fromisoformat(r["received_at"]), bool(r["ignored"]),
            )  # fmt: skip
        except FileNotFoundError:
            continue  # moved over by another process meanwhile
        except (OSError, ValueError, KeyError, TypeError) as e:
            _set_aside(path, e)
            continue
        with store.transaction() as tx:
            moved += tx.inbox_add(KIND, *values)
        path.unlink(missing_ok=True)
    _remove_stale(folder)
    return moved


def _set_aside(path: Path, e: Exception) -> None:
    torn = path.parent / TORN
    torn.mkdir(exist_ok=True)
    try:
        path.replace(torn / path.name)
    except FileNotFoundError:
        return
    why = f"{type(e).__name__}: {e}" if not isinstance(e, ValueError) else f"not JSON ({e})"
    log.error(
        "spooled GitHub webhook delivery %s cannot be read (%s): moved to %s; it is not "
        "stored, and GitHub got a 202 for it (redeliver it from the hook's page)",
        path.name, why, torn,
    )  # fmt: skip


def _remove_stale(folder: Path) -> None:
    """Half-written files of a killed process (their request never got its answer)."""
    old = time.time() - STALE_TMP
    for tmp in folder.glob(f".{KIND}-*.tmp"):
        try:
            if tmp.stat().st_mtime < old:
                tmp.unlink()
        except FileNotFoundError:
            pass
