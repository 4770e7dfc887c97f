"""The DuckDB store: items, per-source state, the delivery ledger.

``Store`` is composed of mixins that each own one table family; every method
takes the connection of one short transaction opened by ``Store.transaction``.
"""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager
from datetime import UTC, datetime
from pathlib import Path

import duckdb

from ._connection import attach_read_only, connect, open_duckdb, quiet
from ._control import AlertsMixin, ControlMixin, Vacation
from ._inbox import Delivery, InboxMixin
from ._items import ITEM_SELECT, ItemsMixin, SourceState, row_to_item
from ._ledger import Claim, LedgerMixin
from ._schema import DEAD, FAILED, QUEUED, SENDING, SENT, SKIPPED, VERSION
from ._status import RouteStatus, SourceStatus, StatusMixin

__all__ = [
    "DEAD",
    "SENDING",
    "Claim",
    "Delivery",
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


class Store(ItemsMixin, LedgerMixin, StatusMixin, ControlMixin, AlertsMixin, InboxMixin):
    """One DuckDB file. Cheap to create; opens a connection only per transaction."""

    def __init__(self, path: Path, wait: float = 30.0) -> None:
        self.path = Path(path)
        self.wait = wait

    def __repr__(self) -> str:
        return f"Store({str(self.path)!r})"

    @contextmanager
    def transaction(self, *, commit: bool = True) -> Iterator[duckdb.DuckDBPyConnection]:
        """A short transaction; ``commit=False`` rolls back (dry runs)."""
        with connect(self.path, self.wait, commit=commit) as con:
            yield con

    @classmethod
    def default(cls) -> Store:
        """The store named by the current settings."""
        from ..config import settings

        s = settings()
        return cls(s.store_path, s.store_wait)
