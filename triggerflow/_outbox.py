"""The outbox: the one way anything is delivered, for every sink.

One mechanism, in this order, whatever the sink:

1. **claim**: in one transaction the items are stored (also ad-hoc ones a trigger made
   itself), the route owes the ones it never saw (a new target only the newest
   ``first_run``, plus every live event), and the owed items this run may send within
   the publication limit are claimed for this process (``_store._owners``);
2. **send**: the sink talks to its service and reports each item's final answer as soon
   as it knows it (:class:`Progress`);
3. **record**: each answer is written to the ledger right away, by a recorder thread
   that gathers what arrives while it writes (a batch sender never waits for the store);
4. **what is left**: items without an answer stay queued (with the error) until they
   have failed ``max_attempts`` times, then they are dead;
5. **limit and report**: when the limit frees the next slot, and a :class:`SinkReport`
   keyed by item.

A sink is small: a :class:`Sender` sends a batch (XMPP over one connection), a
:class:`Poster` one item per request (a web API). Neither knows the ledger.
"""

from __future__ import annotations

import hashlib
from collections.abc import Callable, Iterable, Mapping, Sequence
from contextlib import AbstractContextManager
from dataclasses import dataclass
from datetime import timedelta
from typing import NoReturn, Protocol, overload, runtime_checkable

from . import (
    _http,  # noqa: F401 - its filter keeps tokens in web hooks' URLs out of logs
    _runtime,
)
from ._recorder import KEEP_OPEN, Recorder
from ._store import QUEUED, Store, now
from ._store._owners import this_process
from .exceptions import ItemRejected, SinkError, StoreError, TransientError, TriggerflowError
from .limits import Limit
from .types import (
    Failure,
    Item,
    ItemKey,
    Items,
    Route,
    SinkReport,
    item_keys,
    items_at_hand,
    stored_keys,
)

__all__ = [
    "Attempt",
    "Poster",
    "Progress",
    "Sender",
    "deliver",
    "delivery_id",
    "keys_of",
]


@dataclass(frozen=True)
class Attempt:
    """What a sink knows of one item's delivery besides the item.

    Attributes:
        id: a stable id of delivering this item on this route, the same in a retry and
            a rerun: send it as an idempotency key where the service has one.
        retried: True if an earlier attempt got no answer (a timeout, a killed run): a
            service without idempotency keys should look whether the item arrived.
    """

    id: str
    retried: bool = False


class Progress(Protocol):
    """Where a sender reports each item's final answer, as soon as it knows it.

    Thread-safe and cheap: the answers are written to the ledger by another thread.
    Every item is reported at most once; an item never reported stays owed.
    """

    def sent(self, keys: Iterable[ItemKey]) -> None:
        """The other side confirmed these items."""
        ...

    def rejected(self, key: ItemKey, reason: str) -> None:
        """The other side refused this item for good (it is marked failed)."""
        ...


@runtime_checkable
class Sender(Protocol):
    """A sink that sends a batch at once (e.g. XMPP messages over one connection).

    ``sink`` is its name in the ledger and in messages, ``target`` whom it delivers to.
    """

    sink: str
    target: str

    def problem(self) -> str | None:
        """A configuration problem found without any I/O (None: fine)."""
        ...

    def preview(self, item: Item) -> str:
        """What would be sent for ``item``, for people (previews)."""
        ...

    def send(
        self, items: Sequence[Item], attempts: Mapping[ItemKey, Attempt], progress: Progress
    ) -> None:
        """Send ``items``, reporting each answer to ``progress`` as it arrives.

        ``items`` are read from the store a page at a time as the sender goes through
        them (in order is cheapest); :func:`keys_of` gives their keys without reading.
        A sender that only ever wants the keys says so with a class attribute
        ``keys_only = True``: then not even the first page is read with the claim.

        Raise what stopped the batch (a :class:`~triggerflow.TransientError` is
        retried): the items not reported stay owed.
        """
        ...


@runtime_checkable
class Poster(Protocol):
    """A sink that sends one item per request (e.g. a web API).

    ``open()`` prepares a run (a client, the service's limits) and yields the function
    that posts one item: it returns when the service confirmed the item, raises
    :class:`~triggerflow.ItemRejected` when the service refused that item for good, and
    anything else when the rest of the batch cannot go either (a
    :class:`~triggerflow.TransientError` is retried).
    """

    sink: str
    target: str

    def problem(self) -> str | None:
        """A configuration problem found without any I/O (None: fine)."""
        ...

    def preview(self, item: Item) -> str:
        """What would be sent for ``item``, for people (previews)."""
        ...

    def open(self) -> AbstractContextManager[Callable[[Item, Attempt], None]]:
        """The per-item post, for the time of one run."""
        ...


def delivery_id(route: Route, item: Item) -> str:
    """A stable id of delivering ``item`` on ``route``: the same in a retry and a rerun."""
    return _delivery_id(route, item.key)


def _delivery_id(route: Route, key: ItemKey) -> str:
    text = "\x1f".join((route.trigger, route.sink, route.target, *key))
    return hashlib.sha256(text.encode()).hexdigest()[:32]


def keys_of(items: Sequence[Item]) -> Sequence[ItemKey]:
    """The keys of the items a sink was handed, without reading any from the store.

    For a sink that needs no more than keys (a generated feed is its ledger rows).
    """
    return items.keys if isinstance(items, _Owed) else [i.key for i in items]


# A sink goes through what it sends this many items at a time: 10,000 owed items are
# not held at once (58 MB), and one read of 1,000 costs ~25 ms.
PAGE = 1000


class _Owed(Sequence[Item]):
    """The items a delivery claimed, oldest first, as a sink goes through them.

    Those at hand (what the trigger handed over) are not read; the others are read from
    the store a page at a time when first looked at, and only the current page is held.
    ``keys`` are all known without reading anything. The first page comes with the claim.
    """

    def __init__(self, keys: list[ItemKey], have: Mapping[ItemKey, Item], store: Store):
        self.keys = keys
        self._have, self._store = have, store
        self._page: tuple[int, dict[ItemKey, Item]] = (-1, {})
        self.reader: Callable[[Sequence[ItemKey]], list[Item]] | None = None  # while sending

    def _read(self, keys: Sequence[ItemKey]) -> list[Item]:
        if self.reader is not None:
            return self.reader(keys)
        with self._store.transaction(commit=False) as tx:
            return tx.items_by_keys(keys)

    def __len__(self) -> int:
        return len(self.keys)

    @overload
    def __getitem__(self, index: int) -> Item: ...
    @overload
    def __getitem__(self, index: slice) -> list[Item]: ...
    def __getitem__(self, index: int | slice) -> Item | list[Item]:
        if isinstance(index, slice):
            return [self[n] for n in range(*index.indices(len(self.keys)))]
        key = self.keys[index]  # IndexError ends an iteration
        if (item := self._have.get(key)) is not None:
            return item
        start = (index % len(self.keys)) // PAGE * PAGE
        if self._page[0] != start:
            need = [k for k in self.keys[start : start + PAGE] if k not in self._have]
            self._page = (start, {i.key: i for i in self._read(need)})
        return self._vanished(key) if key not in self._page[1] else self._page[1][key]

    def item(self, key: ItemKey) -> Item:
        """The item of ``key`` (one of ``keys``)."""
        if (item := self._have.get(key) or self._page[1].get(key)) is not None:
            return item
        return self[self.keys.index(key)]

    def _vanished(self, key: ItemKey) -> NoReturn:
        # The claim saw it stored; only a store replaced under the run (a restore) loses it.
        raise StoreError(
            f"item {key[1]!r} of {key[0]} is no longer in the store while it is being "
            "delivered (was the store restored during the run?)"
        )

    def __eq__(self, other: object) -> bool:
        if isinstance(other, Sequence):
            return list(self) == list(other)
        return NotImplemented

    __hash__ = None  # type: ignore[assignment]


@dataclass(frozen=True)
class Options:
    """How one route delivers (keyword options of a sink call)."""

    first_run: int | None  # None: no first-run cut (a feed keeps what it is given)
    limit: Limit | None = None
    lease: timedelta = timedelta(minutes=10)
    live: frozenset[ItemKey] = frozenset()


def deliver(
    sink: Sender | Poster,
    route: Route,
    items: Items,
    options: Options,
    report: SinkReport,
    *,
    store: Store | None = None,
    max_attempts: int = 5,
) -> SinkReport:
    """Deliver what the ledger owes on ``route`` (``items`` and what earlier runs left).

    ``report`` is filled in as the delivery goes (also when this raises: what was sent
    stays counted). A dry run (``report.dry_run``) changes nothing and fills
    ``would_send``.

    Raises:
        TransientError: what stopped the batch is worth a retry (the rest stays owed).
    """
    store = store or Store.default()
    log = _runtime.logger()
    report.error = None  # a retry starts afresh; what earlier attempts sent stays counted
    owed, tried = _claim(store, route, items, options, report, read=_first_page(sink))
    if report.dry_run:
        report.would_send = [sink.preview(i) for i in owed]
        report.queued = len(owed) + report.held
        return report
    if not owed:
        log.info("%s: nothing to send now", route)
        report.queued = report.held
        return report
    attempts = {k: Attempt(_delivery_id(route, k), k in tried) for k in owed.keys}
    # A poster waits for each request anyway: each answer is written with a file open of
    # its own. A batch sender streams answers: the file stays open while they come.
    keep_open = 0.0 if isinstance(sink, Poster) else KEEP_OPEN
    recorder = Recorder(store, route, owed.keys, report, keep_open=keep_open)
    owed.reader = recorder.read  # the pages a sender reads come over the recorder's file
    error: TriggerflowError | None = None
    try:
        if isinstance(sink, Poster):
            _post_each(sink, owed, attempts, recorder)
        else:
            sink.send(owed, attempts, recorder)
    except TriggerflowError as e:
        error = e
    except Exception as e:  # a sink of a user's own: its error, in its words
        # The route is named where the error is logged and reported: not in it too.
        error = SinkError(f"{type(e).__name__}: {e}")
        error.__cause__ = e
    finally:
        recorder.close()
        owed.reader = None
    if recorder.error is not None and error is None:
        error = recorder.error
    for key, reason in recorder.refused.items():
        item = owed.item(key)
        report.failed[key] = Failure(item.title or item.id, reason)
    answered = recorder.answered
    unsent = [k for k in owed.keys if k not in answered]
    dead = 0
    if unsent:
        why = str(error) if error else "no answer from the other side"
        with store.transaction() as tx:
            dead = tx.record(route, now(), unsent=unsent, error=why, max_attempts=max_attempts)
        report.dead += dead
        report.max_attempts = max_attempts
    if report.held:  # what was just sent decides when the limit frees a slot
        with store.transaction() as tx:
            report.next_at = tx.allowance(route.sink, route.target, options.limit, now())[1]
    report.queued = len(unsent) - dead + report.held
    for f in report.failed.values():
        log.warning("%s: %r not delivered: %s", route, f.title, f.reason)
    if error is not None:
        report.error = str(error)
        log.error("%s: %s; %d item(s) stay %s", route, error, report.queued, QUEUED)
        if isinstance(error, TransientError):
            raise error
    log.info("%s: %d sent", route, report.sent)
    return report


def _first_page(sink: Sender | Poster) -> int:
    """How many claimed items to read with the claim: a page, none for keys-only senders
    (the feed sink: reading 1,000 items it does not look at took ~0.1 s a run)."""
    return 0 if getattr(sink, "keys_only", False) else PAGE


def _claim(
    store: Store,
    route: Route,
    items: Items,
    options: Options,
    report: SinkReport,
    *,
    read: int = PAGE,
) -> tuple[_Owed, set[ItemKey]]:
    """Store, queue and claim (one transaction); the claimed items, and which were tried."""
    with store.transaction(commit=not report.dry_run) as tx:
        t = now()
        keys = item_keys(items)
        # What the source stored in this run, or had stored, is not written again (it
        # would be left as it is anyway), and what is at hand is not read back.
        at_hand = {i.key: i for i in items_at_hand(items)}
        stored = stored_keys(items)
        tx.upsert_items([i for k, i in at_hand.items() if k not in stored], t, update=False)
        keep = len(keys) if options.first_run is None else options.first_run
        report.skipped += tx.enqueue(route, keys, keep, t, live=options.live)
        claim = tx.claim(
            route, t, limit=options.limit, lease=options.lease, owner=this_process(),
            have=at_hand, read=read,
        )  # fmt: skip
        tried = tx.tried(route, claim.keys)
    report.held, report.next_at = claim.waiting, claim.next_at
    if claim.waiting:
        _runtime.logger().info(
            "%s: %d item(s) wait for the limit %s (next at %s)", route, claim.waiting,
            options.limit, f"{claim.next_at:%H:%M}" if claim.next_at else "-",
        )  # fmt: skip
    owed = _Owed(claim.keys, at_hand, store)
    if read:  # else the first page is read when first looked at, like the others
        owed._page = (0, {i.key: i for i in claim.items})
    return owed, tried


def _post_each(
    poster: Poster,
    items: Sequence[Item],
    attempts: Mapping[ItemKey, Attempt],
    recorder: Recorder,
) -> None:
    with poster.open() as post:
        for item in items:
            try:
                post(item, attempts[item.key])
            except ItemRejected as e:  # this item only: the next may well go
                recorder.rejected(item.key, str(e))
            else:
                recorder.sent([item.key])
            # A web API is slow next to a store write: each item is in the ledger before
            # the next request, so a run killed now repeats none that were confirmed.
            recorder.flush()
