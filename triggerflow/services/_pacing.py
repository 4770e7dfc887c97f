"""A service's request window (``Service.window``): counted where every sender sees it.

One concept, two places to count: in this process (the DuckDB store: one machine, and a
window per process as before), or in the PostgreSQL store, which every host shares
(``_store/_rates.py``), so workers on several hosts together keep one token's limit.
"""

from __future__ import annotations

import time
from collections import deque
from typing import TYPE_CHECKING, Protocol

if TYPE_CHECKING:
    from .._store._protocol import StoreBackend

__all__ = ["RequestWindow", "request_window"]

# A place taken at T reaches the service a little later, and from a busy host later
# than one taken after it elsewhere; the service counts arrivals. Keeping the window a
# little longer than the service's leaves room for that way (on one machine the tests
# see no 429 without it; between hosts the way is longer and varies more).
IN_FLIGHT = 0.25  # seconds


class RequestWindow(Protocol):
    """``take()``: a place for one request now (0), or the seconds until there is one."""

    def take(self) -> float: ...


class _LocalWindow:
    """Requests of this process in the last ``period`` s."""

    def __init__(self, count: int, period: float) -> None:
        self.count, self.period = count, period
        self._recent: deque[float] = deque()

    def take(self) -> float:
        now = time.monotonic()
        while self._recent and self._recent[0] <= now - self.period:
            self._recent.popleft()
        if len(self._recent) >= self.count:  # the oldest leaves the window at ...
            return self._recent[0] + self.period - now
        self._recent.append(now)
        return 0.0


class _SharedWindow:
    """Requests of every host with this token, counted in the PostgreSQL store."""

    def __init__(self, store: StoreBackend, bucket: str, count: int, period: float) -> None:
        self.store, self.bucket, self.count, self.period = store, bucket, count, period

    def take(self) -> float:
        with self.store.transaction() as tx:
            return tx.take_request(self.bucket, self.count, self.period)


def request_window(bucket: str, window: tuple[int, float]) -> RequestWindow:
    """The window of ``bucket`` (a service account: its token), shared by every host when
    the store is PostgreSQL."""
    from .._store import PostgresStore, Store

    count, period = window[0], window[1] + IN_FLIGHT
    store = Store.default()
    if isinstance(store, PostgresStore):
        return _SharedWindow(store, bucket, count, period)
    return _LocalWindow(count, period)
