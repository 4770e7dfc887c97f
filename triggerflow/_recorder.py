"""The outbox's recorder: each answer a sink reports goes to the ledger from one thread.

Split from ``_outbox`` (the order of a delivery) because it is its own concurrency: the
sender's thread hands answers over, this thread writes them (and serves the pages a
sender reads) over one open store file.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Iterable, Sequence
from contextlib import ExitStack
from dataclasses import dataclass

from ._store import Burst, Store, now
from .exceptions import StoreError
from .types import Item, ItemKey, Route, SinkReport

__all__ = ["KEEP_OPEN", "Recorder"]

# How long a batch sender's recorder keeps the store open without an answer to write. XMPP
# acknowledgements come every ~40 ms while a batch goes out; a second without one means
# the sender waits (a slow server, a timeout): the file goes back to other processes.
KEEP_OPEN = 1.0


class Recorder:
    """The :class:`Progress` of one delivery: answers go to the ledger from a thread.

    The sender's thread hands its answers over; the recorder writes whatever gathered
    in one transaction, then looks again, and the sender's next report waits until the
    previous one is written. So a burst of acknowledgements costs a few transactions, and
    what is confirmed but not in the ledger is never more than one report.

    ``keep_open``: how long the file stays open (``Store.burst``) without an answer to
    write; 0 opens it for each write. Opening costs tens of milliseconds (a few hundred on
    a busy machine: it replays the WAL), so a stream of acknowledgements is written over
    one open file; it is opened at the first answer, not before, so that the store is
    not held while the sender waits for a concurrency slot, connects or logs in (another
    run may need the store to finish its own batch and give the slot back).
    """

    def __init__(
        self,
        store: Store,
        route: Route,
        keys: Iterable[ItemKey],
        report: SinkReport,
        *,
        keep_open: float = 0.0,
    ) -> None:
        self.store, self.route, self.keys, self.report = store, route, set(keys), report
        self.keep_open = keep_open
        self.answered: set[ItemKey] = set()
        self.refused: dict[ItemKey, str] = {}  # recorded as failed, with the reason
        self._reads: list[_Read] = []
        self._sent: list[ItemKey] = []
        self._rejected: dict[ItemKey, str] = {}
        self._cond = threading.Condition()
        self._pending = 0  # answers reported but not yet written
        self._closing = False
        self.error: StoreError | None = None  # the ledger could not be written
        self._thread = threading.Thread(target=self._run, name=f"record {route}", daemon=True)
        self._thread.start()

    # -- Progress ------------------------------------------------------------------
    def sent(self, keys: Iterable[ItemKey]) -> None:
        with self._cond:
            self._wait_for_the_last()
            if self.error is not None:  # not recorded: stays owed
                return
            new = [k for k in keys if k in self.keys and k not in self.answered]
            self.answered.update(new)
            self._sent += new
            self._pending += len(new)
            self._cond.notify_all()

    def rejected(self, key: ItemKey, reason: str) -> None:
        with self._cond:
            self._wait_for_the_last()
            if self.error is not None or key not in self.keys or key in self.answered:
                return
            self.answered.add(key)
            self._rejected[key] = reason
            self._pending += 1
            self._cond.notify_all()

    def _wait_for_the_last(self) -> None:
        # Back-pressure: the sender goes on only once the previous answers are written, so
        # what is confirmed but not yet recorded is never more than one report (an ack's
        # worth: ~100 XMPP messages), however slow the store is on a busy machine.
        deadline = time.monotonic() + self.store.wait
        while self._pending and self.error is None and self._thread.is_alive():
            left = deadline - time.monotonic()
            if left <= 0:
                break  # the recorder is stuck: its own error will say why
            self._cond.wait(min(left, 0.5))

    # -- the writer ----------------------------------------------------------------
    def flush(self) -> None:
        """Wait until everything reported so far is in the ledger."""
        with self._cond:
            while self._pending and self.error is None and self._thread.is_alive():
                self._cond.wait(0.5)
        if self.error is not None:
            raise self.error

    def close(self) -> None:
        """Write what is left and stop the thread (a failure stays in :attr:`error`)."""
        with self._cond:
            self._closing = True
            self._cond.notify_all()
        self._thread.join()

    def _run(self) -> None:
        with ExitStack() as held:
            burst: Burst | None = None
            while True:
                with self._cond:
                    if not (self._sent or self._rejected or self._reads or self._closing):
                        self._cond.wait(self.keep_open if burst is not None else None)
                    if not (self._sent or self._rejected or self._reads):
                        if self._closing:
                            return
                        held.close()  # nothing came for a while: other processes' turn
                        burst = None
                        continue
                    sent, self._sent = self._sent, []
                    rejected, self._rejected = self._rejected, {}
                    reads, self._reads = self._reads, []
                try:
                    if burst is None and self.keep_open:
                        burst = held.enter_context(self.store.burst())
                    if sent or rejected:
                        with (burst or self.store).transaction() as tx:
                            tx.record(self.route, now(), sent=sent, rejected=rejected)
                except StoreError as e:
                    # The store stayed busy past its wait: these stay claimed, and are owed
                    # again once this run is gone (a rerun sees it dead, or its lease ends).
                    with self._cond:
                        self.error = e
                        for lost in (sent, rejected, self._sent, self._rejected):
                            self.answered.difference_update(lost)
                        self._sent, self._rejected = [], {}
                        for r in reads + self._reads:
                            r.error, r.done = e, True
                        self._cond.notify_all()
                    return
                with self._cond:
                    self.report.sent += len(sent)
                    self.refused.update(rejected)  # the report names them once it is over
                    self._pending -= len(sent) + len(rejected)
                    self._cond.notify_all()
                if reads:
                    self._serve(reads, burst)

    # -- reads for the sender --------------------------------------------------------
    def read(self, keys: Sequence[ItemKey]) -> list[Item]:
        """The stored items of ``keys``, read by this thread over the file it holds open.

        A sender that reads its next page while it reports answers would otherwise wait
        for this thread to let go of the store (``keep_open``) before every page.
        """
        request = _Read(keys)
        with self._cond:
            if self.error is not None or self._closing or not self._thread.is_alive():
                request.done = True  # read as any other reader would, below
            else:
                self._reads.append(request)
                self._cond.notify_all()
                while not request.done and self._thread.is_alive():
                    self._cond.wait(0.5)
        if request.error is not None:
            raise request.error
        if request.items is None:
            with self.store.transaction(commit=False) as tx:
                return tx.items_by_keys(keys)
        return request.items

    def _serve(self, reads: list[_Read], burst: Burst | None) -> None:
        try:
            with (burst or self.store).transaction(commit=False) as tx:
                for r in reads:
                    r.items = tx.items_by_keys(r.keys)
        except StoreError as e:
            for r in reads:
                r.error = e
        with self._cond:
            for r in reads:
                r.done = True
            self._cond.notify_all()


@dataclass
class _Read:
    """A sender's request for stored items, served by the recorder's thread."""

    keys: Sequence[ItemKey]
    items: list[Item] | None = None
    error: StoreError | None = None
    done: bool = False
