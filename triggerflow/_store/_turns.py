"""Turns at the store: one first-come, first-served queue of every triggerflow opener.

DuckDB lets one process at a time open the file, and a process that finds it locked
can only try again: with backoff, a short transaction in a loop (serve's event runs
in a burst) left other processes' retries landing in its busy moments, and a
scheduled run gave up with :class:`StoreBusyError` after 30 s although the store was
never stuck, only never free when it looked (issue 17, item 3). So before opening the
file every triggerflow transaction, in any process or thread, takes a turn:

- A small file beside the store (``<store>.turns``) lists the waiting, one line each,
  in arrival order; the first line holds the store. Changes to it are made under an
  ``flock`` of that file, held for microseconds.
- A waiter gives up only when the *same* turn has lasted longer than ``wait``
  (``TRIGGERFLOW_STORE_WAIT``): a queue that moves is waited for however long it is.
- A line of a process that died is dropped by the next look (owner ``host:pid:start``,
  so a reused PID does not pass for it): a killed run never blocks the others.
- Threads of one process queue like processes (DuckDB shares one database instance in
  a process, so its threads conflict too); a thread that already has its turn opens
  again at once (a transaction inside another one on the same thread).

Openers outside triggerflow (a ``duckdb`` shell, an old version) are not in the queue:
DuckDB's own lock stops them, and the holder of the turn retries against it up to
``wait`` as before, then names that process.

Without a writable folder (a store read from a read-only place) there is no queue and
only DuckDB's lock applies.
"""

from __future__ import annotations

import fcntl
import itertools
import os
import threading
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

from ..exceptions import StoreBusyError
from ._owners import is_dead, pid_of, this_process

SUFFIX = ".turns"

_POLL_FIRST, _POLL_MAX = 0.001, 0.02  # seconds between two looks at the queue


class _Queue:
    """The turns of one store file, as this process sees them."""

    def __init__(self, path: Path) -> None:
        self.file = path.with_name(path.name + SUFFIX)
        self.guard = threading.Lock()  # flock is per open file: our threads share one
        self.moved = threading.Condition(threading.Lock())  # our own releases wake ours
        self.fd: int | None = None
        self.depth = threading.local()
        self.owner = this_process()
        self.pid = os.getpid()
        self.numbers = itertools.count(1)

    def _open(self) -> int | None:
        if self.fd is None:
            try:
                self.fd = os.open(self.file, os.O_RDWR | os.O_CREAT | os.O_CLOEXEC, 0o600)
            except OSError:
                return None
        return self.fd

    def _edit(self, add: str | None = None, remove: str | None = None) -> list[str] | None:
        """The queue after appending ``add`` / removing ``remove`` and the dead's lines."""
        with self.guard:
            fd = self._open()
            if fd is None:
                return None
            fcntl.flock(fd, fcntl.LOCK_EX)
            try:
                data = os.pread(fd, 1 << 20, 0).decode(errors="replace")
                lines = [ln for ln in data.splitlines() if ln]
                kept = [ln for ln in lines if ln != remove and not self._dead(ln)]
                if add is not None:
                    kept.append(add)
                if kept != lines:
                    body = "".join(f"{ln}\n" for ln in kept).encode()
                    os.pwrite(fd, body, 0)
                    os.ftruncate(fd, len(body))
                return kept
            finally:
                fcntl.flock(fd, fcntl.LOCK_UN)

    def _dead(self, line: str) -> bool:
        owner = line.split(" ")[0]
        return owner != self.owner and is_dead(owner)

    @contextmanager
    def turn(self, wait: float) -> Iterator[None]:
        depth = getattr(self.depth, "n", 0)
        if depth:
            self.depth.n = depth + 1
            try:
                yield
            finally:
                self.depth.n = depth
            return
        me = f"{self.owner} {threading.get_ident()} {next(self.numbers)}"
        lines = self._edit(add=me)
        if lines is None:
            yield  # no queue here: DuckDB's lock alone
            return
        try:
            self._wait_for_turn(me, lines, wait)
            self.depth.n = 1
            yield
        finally:
            self.depth.n = 0
            self._edit(remove=me)
            with self.moved:
                self.moved.notify_all()

    def _wait_for_turn(self, me: str, lines: list[str] | None, wait: float) -> None:
        head, since, poll = None, time.monotonic(), _POLL_FIRST
        while True:
            if lines and lines[0] == me:
                return
            first = lines[0] if lines else None
            if first != head:  # the queue moved: a new turn, a new wait
                head, since, poll = first, time.monotonic(), _POLL_FIRST
            elif time.monotonic() - since > wait:
                raise StoreBusyError(self._busy(head or "", wait))
            with self.moved:
                self.moved.wait(poll)
            poll = min(poll * 1.5, _POLL_MAX)
            lines = self._edit()

    def _busy(self, head: str, wait: float) -> str:
        owner = head.split(" ")[0]
        pid = pid_of(owner)
        store = self.file.with_name(self.file.name.removesuffix(SUFFIX))
        if owner == self.owner:
            return (
                f"store {store}: another thread of this process has held it for more than "
                f"{wait:g} s; raise TRIGGERFLOW_STORE_WAIT if its transactions are that long"
            )
        return (
            f"store {store}: process {pid} ({_command(pid)}) has held it for more than "
            f"{wait:g} s; close notebooks or tools that keep it open, or raise "
            "TRIGGERFLOW_STORE_WAIT"
        )


def _command(pid: int | None) -> str:
    try:
        with open(f"/proc/{pid}/cmdline", "rb") as fh:
            words = fh.read().split(b"\0")
    except OSError:
        return "unknown command"
    text = " ".join(w.decode(errors="replace") for w in words if w)
    return text[:120] or "unknown command"


_QUEUES: dict[Path, _Queue] = {}
_QUEUES_GUARD = threading.Lock()


@contextmanager
def turn(path: Path, wait: float) -> Iterator[None]:
    """This thread's turn at the store ``path``, after those that came first.

    Raises:
        StoreBusyError: one turn (another process's or thread's) lasted longer than
            ``wait`` seconds while this one waited.
    """
    key = path.resolve()
    with _QUEUES_GUARD:
        queue = _QUEUES.get(key)
        if queue is None or queue.pid != os.getpid():  # new, or a forked child's
            queue = _QUEUES[key] = _Queue(key)
    with queue.turn(wait):
        yield
