"""One slot of a Prefect global concurrency limit, given back when its holder died.

An account sends over one connection at a time, across every process (a Prefect global
concurrency limit per account, DESIGN §3.4). A held slot is a Prefect *lease* (we ask
for Prefect's shortest, 60 s, renewed while we hold it). When the holder is SIGKILLed, a
server with its services running takes the slot back once the lease ends; but
``triggerflow run --here`` talks to a temporary server that dies with the run.

So, two things (issue 16):

- Leases are kept in files in Prefect's home (Prefect's own filesystem lease storage,
  set by ``_prefect_server.prefect_environment``), not in one server's memory: the next
  temporary server still knows the dead run's lease.
- The holder leaves a mark in Prefect's home, named by its lease and holding its name
  (``_store._owners``), from just after it got the slot until just after it gave it
  back. Whoever wants the slot next and finds a mark whose holder is dead on this host
  ends that lease first: at once, not a lease later. Ending a lease that was already
  ended does nothing, so a mark left by a kill between the two steps is harmless (an
  earlier version decremented the count instead, and a kill just after the holder's
  mark was gone but before its release kept the slot taken for good). A holder on
  another machine is left to its lease.

The marks sit beside the database that counts the slot, not beside the data dir: two
data dirs that share one Prefect home share its slots.
"""

from __future__ import annotations

import logging
import os
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from uuid import UUID

from ._deployments import ensure_concurrency_limit
from ._store._owners import is_dead, this_process

__all__ = ["LEASE_SECONDS", "account_slot"]

LEASE_SECONDS = 60  # Prefect's shortest lease (renewed at 3/4 of it while held)

log = logging.getLogger(__name__)


def _marks() -> Path:
    from prefect.settings import get_current_settings

    return Path(get_current_settings().home) / "triggerflow-slots"


@contextmanager
def account_slot(name: str, *, timeout: float) -> Iterator[None]:
    """Hold one slot of the limit ``name`` (made if missing) for the ``with`` block.

    Raises:
        TimeoutError: (Prefect's ``AcquireConcurrencySlotTimeoutError``) not acquired
            within ``timeout`` seconds: a live holder kept it.
    """
    # Prefect's own acquire/renew/release, as its concurrency() does, but with the
    # lease's id in our hands (concurrency() does not give it out). Pinned to prefect<3.9.
    from prefect.concurrency._leases import maintain_concurrency_lease
    from prefect.concurrency._sync import (
        acquire_concurrency_slots_with_lease,
        release_concurrency_slots_with_lease,
    )

    ensure_concurrency_limit(name)
    folder = _marks()
    # names are made of [A-Za-z0-9_.@-] (sinks/_xmpp.py); a lease id is hex and dashes
    for mark in folder.glob(f"{name}.*.holder"):
        try:
            holder = mark.read_text().strip()
            lease = UUID(mark.name.removeprefix(f"{name}.").removesuffix(".holder"))
        except (OSError, ValueError):
            continue
        if is_dead(holder):
            release_concurrency_slots_with_lease(lease)
            mark.unlink(missing_ok=True)
    got = acquire_concurrency_slots_with_lease(
        [name], 1, timeout_seconds=timeout, lease_duration=LEASE_SECONDS, strict=True
    )
    mark = folder / f"{name}.{got.lease_id}.holder"
    folder.mkdir(parents=True, exist_ok=True)
    tmp = mark.with_name(f"{mark.name}.{os.getpid()}.tmp")
    tmp.write_text(this_process())
    tmp.replace(mark)
    try:
        with maintain_concurrency_lease(
            got.lease_id, LEASE_SECONDS, raise_on_lease_renewal_failure=True
        ):
            yield
    finally:
        try:
            release_concurrency_slots_with_lease(got.lease_id)
        except Exception as e:  # noqa: BLE001 - the block's own outcome comes first
            # The mark stays: once we are gone, the next holder ends the lease.
            log.warning("could not give back the slot of %s (%s): its lease ends it", name, e)
        else:
            mark.unlink(missing_ok=True)
