"""Waking event triggers without a run per delivery.

Each stored delivery could emit its own Prefect event, and each event start a run: a
burst of 2,000 webhooks would queue 2,000 runs of a trigger that handles them all in
its first run. So wake-ups are coalesced per key (the Prefect event and resource): the
first one goes out at once, later ones within ``window`` seconds are folded into one
more at the end of the window. That trailing one matters: a run that started before
the last deliveries may have read the inbox before them.
"""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Callable, Hashable

log = logging.getLogger("triggerflow.wakeup")


class Coalescer:
    """Calls ``emit(key)`` at most once per ``window`` seconds per key, never dropping
    the last call of a burst."""

    def __init__(self, emit: Callable[[Hashable], None], window: float = 1.0) -> None:
        self.emit = emit
        self.window = window
        self._lock = threading.Lock()
        self._last: dict[Hashable, float] = {}
        self._pending: dict[Hashable, threading.Timer] = {}

    def __call__(self, key: Hashable) -> None:
        with self._lock:
            if key in self._pending:
                return  # a trailing wake-up is already due
            since = time.monotonic() - self._last.get(key, -self.window)
            if since >= self.window:
                self._last[key] = time.monotonic()
                fire_now = True
            else:
                timer = threading.Timer(self.window - since, self._trailing, (key,))
                timer.daemon = True
                self._pending[key] = timer
                timer.start()
                fire_now = False
        if fire_now:
            self._send(key)

    def _trailing(self, key: Hashable) -> None:
        with self._lock:
            self._pending.pop(key, None)
            self._last[key] = time.monotonic()
        self._send(key)

    def _send(self, key: Hashable) -> None:
        try:
            self.emit(key)
        except Exception as e:  # stored anyway: the catch-up schedule runs the trigger
            log.warning("triggers not woken (%s): %s", key, e)
