"""One bridge from synchronous code to coroutines that works everywhere.

``asyncio.run`` fails inside a Jupyter kernel (a loop is already running on the
main thread), so library code never calls it directly: ``run_sync`` runs the
coroutine on a fresh loop in a worker thread when the current thread already has
a running loop (see shared notes/notebooks.md §2).
"""

from __future__ import annotations

import asyncio
import concurrent.futures
from collections.abc import Coroutine
from typing import Any, TypeVar

T = TypeVar("T")


def run_sync(coro: Coroutine[Any, Any, T]) -> T:
    """Run ``coro`` to completion from synchronous code and return its result."""
    try:
        asyncio.get_running_loop()
    except RuntimeError:
        running = False
    else:
        running = True
    # Never run the coroutine inside the ``except`` above: every exception raised in it
    # would get that RuntimeError as its ``__context__``, and every feed failure read
    # "no running event loop" (issue 15).
    if not running:
        return asyncio.run(coro)
    with concurrent.futures.ThreadPoolExecutor(1, thread_name_prefix="triggerflow-async") as ex:
        return ex.submit(asyncio.run, coro).result()
