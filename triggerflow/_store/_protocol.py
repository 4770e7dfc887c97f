"""The store's narrow interface: what sources, sinks, the outbox and the CLI may ask.

:class:`Transaction` is one unit of work with a typed method per store operation;
:class:`StoreBackend` hands them out. The DuckDB file (``Store``) is the embedded
implementation, ``PostgresStore`` the shared one; both hand out the one
``StoreTransaction``, and nothing outside ``triggerflow._store`` changes.
``tests/test_style.py`` checks that the DuckDB transaction has exactly these methods,
with these signatures, so the two cannot drift apart.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from contextlib import AbstractContextManager
from datetime import datetime, timedelta
from typing import Any, Protocol

from ..limits import Limit
from ..types import Item, Route
from ._control import Vacation
from ._inbox import Delivery
from ._items import SourceState
from ._ledger import Claim, Key
from ._status import FailedDelivery, RouteStatus, SourceStatus

__all__ = ["StoreBackend", "Transaction", "TransactionSource"]


class StoreBackend(Protocol):
    """Where the store lives; cheap to make, connects only per transaction."""

    def transaction(self, *, commit: bool = True) -> AbstractContextManager[Transaction]:
        """A short unit of work; ``commit=False`` rolls it back (dry runs, reads)."""
        ...

    def burst(self) -> AbstractContextManager[TransactionSource]:
        """A connection kept for a quick series of transactions (the outbox's recorder)."""
        ...

    def exists(self) -> bool:
        """Whether the store was made: a read (``status``, ``feeds``) does not make it."""
        ...

    @property
    def location(self) -> str:
        """Where the store is, for messages (a URL without its password)."""
        ...

    def held(self, name: str, timeout: float, what: str) -> AbstractContextManager[None]:
        """A lock ``name`` for everyone sharing the store (this machine's processes for
        the DuckDB file, every host for PostgreSQL); ``TimeoutError`` after ``timeout``."""
        ...


class TransactionSource(Protocol):
    """Where transactions come from: an open connection of :meth:`StoreBackend.burst`."""

    def transaction(self, *, commit: bool = True) -> AbstractContextManager[Transaction]:
        """One unit of work, committed (or rolled back) at the end."""
        ...


class Transaction(Protocol):
    """One open unit of work on the store."""

    # -- items: Writing and reading items and source state (always inside ``Store.transaction``).

    def upsert_items(self, items: Sequence[Item], now: datetime, *, update: bool = True) -> int:
        """Store ``items`` (one statement) and return how many were not stored before."""
        ...

    def source_states(self, sources: Sequence[str]) -> dict[str, SourceState]:
        """The remembered state of each of ``sources`` that has one."""
        ...

    def save_source_success(
        self,
        state: SourceState,
        kind: str,
        title: str | None,
        now: datetime,
        *,
        modified: bool,
    ) -> None:
        """Record a successful fetch (``modified`` False for a 304)."""
        ...

    def save_source_successes(
        self,
        fetched: Sequence[tuple[SourceState, str | None, bool]],
        kind: str,
        now: datetime,
    ) -> None:
        """Record successful fetches, (state, title, modified) each, in one statement;
        each state's ``next_fetch`` and ``next_reason`` say when it is due again."""
        ...

    def source_cursor(self, source: str) -> str | None:
        """Where an API source stopped reading last time (None: it never read)."""
        ...

    def save_source_cursor(
        self,
        source: str,
        kind: str,
        url: str,
        cursor: str | None,
        now: datetime,
    ) -> None:
        """Record a successful read of an API source and where it stopped."""
        ...

    def save_source_error(
        self,
        source: str,
        url: str,
        kind: str,
        error: str,
        now: datetime,
        *,
        retry: SourceState | None = None,
    ) -> None:
        """Record a failed fetch; the previous ETag and items stay as they were.

        ``retry``: the source's next fetch after it (``next_fetch``, ``next_reason``,
        ``failures``, ``gone``); without it they stay as they were.
        """
        ...

    def make_sources_due(self, trigger: str) -> int:
        """Every feed ``trigger`` reads is fetched by its next run, whatever its next-fetch
        time, also one that answered 410 Gone (``triggerflow run NAME --all-feeds``);
        returns how many had to wait."""
        ...

    def note_silent(
        self, sources: Sequence[str], now: datetime, *, at_least: float, times: float = 10
    ) -> list[tuple[str, str]]:
        """Note the ``sources`` that went silent (no new item for ``times`` their median
        gap, and at least ``at_least`` seconds), once per silence; the newly silent."""
        ...

    def keys_of_last_fetch(self, sources: Sequence[str]) -> list[tuple[str, str]]:
        """The keys of the items each source listed when it last answered with content
        (for 304s), newest first per source."""
        ...

    def items_by_keys(self, keys: Sequence[tuple[str, str]]) -> list[Item]:
        """The stored items of ``keys``, in that order (keys not stored are left out)."""
        ...

    def link_trigger_sources(self, trigger: str, sources: Sequence[str]) -> None:
        """Remember that ``trigger`` reads ``sources`` (for ``status``)."""
        ...

    # -- ledger: Queueing, selecting and recording deliveries (inside ``Store.transaction``).

    def enqueue(
        self,
        route: Route,
        keys: Sequence[Key],
        first_run: int,
        now: datetime,
        *,
        live: frozenset[Key] = frozenset(),
    ) -> int:
        """Queue the ``keys`` this route has never seen; returns how many were skipped."""
        ...

    def owed(self, route: Route, *, have: Mapping[Key, Item] | None = None) -> list[Item]:
        """The items still owed on ``route``, oldest first (those in ``have`` not read)."""
        ...

    def owed_keys(self, route: Route) -> list[Key]:
        """The keys of the items still owed on ``route``, oldest first."""
        ...

    def claim(
        self,
        route: Route,
        now: datetime,
        *,
        limit: Limit | None = None,
        lease: timedelta = timedelta(minutes=5),
        owner: str | None = None,
        have: Mapping[Key, Item] | None = None,
        read: int | None = None,
    ) -> Claim:
        """Take the owed items this run may send (oldest first), within ``limit``; the
        first ``read`` of them read (all by default)."""
        ...

    def tried(self, route: Route, keys: Sequence[Key]) -> set[Key]:
        """Which of ``keys`` were sent before without an answer (a timeout, a dead run)."""
        ...

    def requeue(self, trigger: str | None, now: datetime, *, dead: bool = False) -> int:
        """Owe failed (and with ``dead``, dead) items again, with a fresh attempt count."""
        ...

    def allowance(
        self, sink: str, target: str, limit: Limit | None, now: datetime
    ) -> tuple[int, datetime | None]:
        """How many more ``target`` may get now under ``limit``, and when the next slot frees."""
        ...

    def record(
        self,
        route: Route,
        now: datetime,
        *,
        sent: Sequence[Key] = (),
        rejected: Mapping[Key, str] | None = None,
        unsent: Sequence[Key] = (),
        error: str | None = None,
        max_attempts: int = 5,
    ) -> int:
        """Record one send attempt; returns how many items became dead."""
        ...

    # -- status: Summaries over the ledger and the sources.

    def route_status(self) -> list[RouteStatus]:
        """Counts per (trigger, sink, target) with the latest error."""
        ...

    def failures(self, limit: int = 20, trigger: str | None = None) -> list[tuple[str, ...]]:
        """The latest failed or dead deliveries (of ``trigger``, else of all):"""
        ...

    def failed_deliveries(
        self, limit: int = 20, trigger: str | None = None, *, leave_out: Sequence[str] = ()
    ) -> list[FailedDelivery]:
        """The latest failed or dead deliveries, newest first (of ``trigger``, else all)."""
        ...

    def source_status(self) -> list[SourceStatus]:
        """Per source: items stored, last success, last error, triggers that read it."""
        ...

    def items_per_trigger(self) -> dict[str, int]:
        """How many stored items came from the sources each trigger reads."""
        ...

    def feed_names(self) -> list[tuple[str, int, datetime | None]]:
        """Generated feeds: name, entries, last added."""
        ...

    def feed_entries(self, name: str, limit: int) -> list[tuple[Item, datetime]]:
        """The newest ``limit`` entries of feed ``name``, newest first, with when added."""
        ...

    def unsettled(self, trigger: str) -> tuple[int, int, int]:
        """How many of ``trigger``'s deliveries are queued, failed and dead."""
        ...

    def triggers_with_sources(self) -> list[str]:
        """The triggers that have read a source (and so have items), by name."""
        ...

    def items(
        self,
        *,
        trigger: str | None = None,
        source: str | None = None,
        since: datetime | None = None,
        limit: int = 100,
    ) -> list[Item]:
        """Stored items, newest first: all, a trigger's, or of sources containing ``source``."""
        ...

    def take_request(self, bucket: str, count: int, period: float) -> float:
        """A place for one request of ``bucket`` in its window (0), or the seconds to wait."""
        ...

    def query(
        self, sql: str, params: Sequence[Any] | dict[str, Any] | None = None
    ) -> tuple[list[str], list[tuple[Any, ...]]]:
        """A user's own SQL on the store (``triggerflow.sql``): column names and rows."""
        ...

    # -- control: Reads and writes of pauses and vacation (inside ``Store.transaction``).

    def vacation(self) -> Vacation:
        """The current vacation and pauses."""
        ...

    def start_vacation(self, since: datetime, note: str | None, resume: Sequence[str]) -> None: ...

    def end_vacation(self) -> None: ...

    def set_paused(self, trigger: str, paused: bool, at: datetime, note: str | None) -> None: ...

    def skip_backlog(self, triggers: Sequence[str], until: datetime) -> int:
        """Mark what ``triggers`` still owe as skipped, and skip items published before ``until``"""
        ...

    # -- control: Which triggers are failing now (one alert per outage, one when it ends).

    def failing(self, trigger: str) -> tuple[datetime, str] | None: ...

    def set_failing(self, trigger: str, since: datetime | None, reason: str = "") -> None: ...

    # -- inbox: Inbox writes and reads (inside ``Store.transaction``).

    def inbox_add(
        self,
        kind: str,
        id_: str,
        event: str,
        repo: str | None,
        payload: str,
        received_at: datetime,
        ignored: bool,
    ) -> bool:
        """Store a delivery; False if one with this id is already there (a redelivery)."""
        ...

    def inbox_add_many(
        self,
        kind: str,
        rows: list[tuple[str, str, str | None, str, datetime, bool]],
    ) -> set[str]:
        """Store ``(id, event, repo, payload, received_at, ignored)`` rows in one"""
        ...

    def inbox_after(
        self,
        kind: str,
        after: int,
        limit: int = 1000,
        *,
        since: datetime | None = None,
    ) -> list[Delivery]:
        """The deliveries of ``kind`` after ``seq`` (and received at or after ``since``),"""
        ...

    def trigger_started(self, names: list[str], at: datetime) -> None:
        """Note that the triggers ``names`` exist from ``at`` on, unless known already"""
        ...

    def trigger_since(self, trigger: str) -> datetime | None:
        """When ``trigger`` first existed, if it was ever seen."""
        ...

    def inbox_cursor(self, trigger: str, kind: str) -> int: ...

    def set_inbox_cursor(self, trigger: str, kind: str, seq: int) -> None: ...

    def inbox_counts(self, kind: str) -> list[tuple[str, int, bool]]:
        """``(event, count, ignored)`` over the whole inbox of ``kind``, for ``status``."""
        ...
