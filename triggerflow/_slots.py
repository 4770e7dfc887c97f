"""One slot of a Prefect global concurrency limit, given back when its holder died.

An account sends over one connection at a time, across every process (a Prefect global
concurrency limit per account, DESIGN §3.4). Prefect keeps the lease of a held slot in
its server's memory: when the holder is SIGKILLed, a server with its services running
takes the slot back once the lease ends (we ask for Prefect's shortest, 60 s, renewed
while we hold it), but ``triggerflow run --here`` talks to a temporary server that dies
with the run, and its successor knows no lease to end: the slot stayed taken for good,
and every later run timed out waiting for it (issue 16).

So the holder writes its name (``_store._owners``) beside the data dir while it holds the
slot; whoever wants the slot next and finds that holder dead on this host gives the slot
back first. A holder on another machine is left to its lease.
"""

from __future__ import annotations

import os
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

from ._async import run_sync
from ._deployments import ensure_concurrency_limit
from ._store._owners import is_dead, this_process

__all__ = ["LEASE_SECONDS", "account_slot"]

LEASE_SECONDS = 60  # Prefect's shortest lease (renewed at 3/4 of it while held)


@contextmanager
def account_slot(name: str, *, folder: Path, timeout: float) -> Iterator[None]:
    """Hold one slot of the limit ``name`` (made if missing) for the ``with`` block.

    Raises:
        TimeoutError: (Prefect's ``AcquireConcurrencySlotTimeoutError``) not acquired
            within ``timeout`` seconds: a live holder kept it.
    """
    from prefect.concurrency.sync import concurrency

    ensure_concurrency_limit(name)
    mark = folder / f"{name}.holder"  # names are made of [A-Za-z0-9_.@-] (sinks/_xmpp.py)
    try:
        holder: str | None = mark.read_text().strip()
    except OSError:
        holder = None
    if holder and is_dead(holder):
        run_sync(_give_back(name))
        mark.unlink(missing_ok=True)
    with concurrency(
        name, occupy=1, strict=True, timeout_seconds=timeout, lease_duration=LEASE_SECONDS
    ):
        folder.mkdir(parents=True, exist_ok=True)
        tmp = mark.with_name(f"{mark.name}.{os.getpid()}.tmp")
        tmp.write_text(this_process())
        tmp.replace(mark)
        try:
            yield
        finally:
            mark.unlink(missing_ok=True)


async def _give_back(name: str) -> None:
    from prefect.client.orchestration import get_client
    from prefect.client.schemas.actions import GlobalConcurrencyLimitUpdate

    async with get_client() as client:
        limit = await client.read_global_concurrency_limit_by_name(name)
        if limit.active_slots:
            await client.update_global_concurrency_limit(
                name, GlobalConcurrencyLimitUpdate(active_slots=limit.active_slots - 1)
            )
