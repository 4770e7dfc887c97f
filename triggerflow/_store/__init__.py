"""The store: items, per-source state, the delivery ledger.

A unit of work: ``with store.transaction() as tx: tx.upsert_items(...)``. The
transaction object is composed of mixins that each own one table family; it is the
only place SQL on the store is written. The store is a DuckDB file (:class:`Store`, the
default) or a PostgreSQL database (:class:`PostgresStore`, ``TRIGGERFLOW_STORE_URL``);
both run the same transaction class and SQL.
"""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager
from datetime import UTC, datetime
from pathlib import Path
from typing import TYPE_CHECKING

import duckdb

from ._connection import attach_read_only, connect, open_duckdb, quiet, session
from ._control import Vacation
from ._inbox import Delivery
from ._items import ITEM_SELECT, SourceState, row_to_item
from ._ledger import Claim
from ._postgres import PostgresStore
from ._schema import DEAD, FAILED, QUEUED, SENDING, SENT, SKIPPED, VERSION
from ._status import FailedDelivery, RouteStatus, SourceStatus
from ._transaction import StoreTransaction

if TYPE_CHECKING:
    from ..config import Settings

__all__ = [
    "DEAD",
    "Burst",
    "SENDING",
    "Claim",
    "Delivery",
    "DuckDBTransaction",
    "PostgresStore",
    "StoreTransaction",
    "FailedDelivery",
    "ITEM_SELECT",
    "FAILED",
    "QUEUED",
    "SENT",
    "SKIPPED",
    "VERSION",
    "attach_read_only",
    "RouteStatus",
    "SourceState",
    "SourceStatus",
    "Store",
    "Vacation",
    "now",
    "open_duckdb",
    "quiet",
    "row_to_item",
]


def now() -> datetime:
    """The current time, timezone-aware (UTC)."""
    return datetime.now(UTC)


# The name the DuckDB store's callers and tests know it by.
DuckDBTransaction = StoreTransaction


class Burst:
    """An open file for several transactions in a row (see :meth:`Store.burst`)."""

    def __init__(self, con: duckdb.DuckDBPyConnection) -> None:
        self._con = con

    @contextmanager
    def transaction(self, *, commit: bool = True) -> Iterator[DuckDBTransaction]:
        """One unit of work on the open file, committed (or rolled back) at the end."""
        self._con.execute("BEGIN")
        try:
            yield DuckDBTransaction(self._con)
        except BaseException:
            self._con.execute("ROLLBACK")
            raise
        self._con.execute("COMMIT" if commit else "ROLLBACK")


class Store:
    """One DuckDB file. Cheap to create; opens a connection only per transaction."""

    def __init__(self, path: Path, wait: float = 30.0) -> None:
        self.path = Path(path)
        self.wait = wait

    def __repr__(self) -> str:
        return f"Store({str(self.path)!r})"

    @contextmanager
    def transaction(self, *, commit: bool = True) -> Iterator[DuckDBTransaction]:
        """A short unit of work; ``commit=False`` rolls it back (dry runs, reads)."""
        with connect(self.path, self.wait, commit=commit) as con:
            yield DuckDBTransaction(con)

    @contextmanager
    def burst(self) -> Iterator[Burst]:
        """The file kept open for a quick series of short transactions (``burst.transaction()``).

        For the outbox's recorder while acknowledgements stream in: opening the file costs
        tens of milliseconds (up to 300 ms on a busy machine: it replays the WAL), which
        would let the unrecorded window grow with the load. The file is locked against
        other processes meanwhile, so a burst is kept short (the recorder closes it once
        no answer came for a moment).
        """
        with session(self.path, self.wait) as con:
            yield Burst(con)

    def exists(self) -> bool:
        """Whether the file was made: a read does not make it."""
        return self.path.exists()

    @property
    def location(self) -> str:
        """Where the store is, for messages."""
        return str(self.path)

    @contextmanager
    def held(self, name: str, timeout: float, what: str) -> Iterator[None]:
        """Hold the lock ``name`` for everyone who shares this store: here the processes
        of this machine (a file lock next to the store file). ``TimeoutError`` after
        ``timeout`` s of waiting for another holder (``what`` names the wait)."""
        from .._files import locked

        with locked(self.path.parent / "locks" / f"{name}.lock", timeout, what):
            yield

    @classmethod
    def default(cls, s: Settings | None = None) -> Store | PostgresStore:
        """The store named by ``s`` (default: the current settings): the one way to get it.

        ``TRIGGERFLOW_STORE_URL`` set: the PostgreSQL store it names, which has the
        same transactions (see ``_postgres``).
        """
        if s is None:
            from ..config import settings

            s = settings()
        if s.store_url:
            return PostgresStore(s.store_url, s.store_wait, s.data_dir)
        return cls(s.store_path, s.store_wait)
