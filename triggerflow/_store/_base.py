"""What the store's table families share: the connection of one open transaction."""

from __future__ import annotations

from typing import Any

import duckdb

# Advisory lock namespaces (the first of pg_advisory_xact_lock's two int4 keys); see
# ``_postgres`` for why each exists.
LOCK_MIGRATE, LOCK_TARGET, LOCK_INBOX = 0x7466_0001, 0x7466_0002, 0x7466_0003
LOCK_HELD = 0x7466_0004  # PostgresStore.held(name)
LOCK_RATE = 0x7466_0005  # a service token's request window (_rates)


def advisory_lock(con: Any, space: int, key: str) -> None:
    """Hold the lock ``(space, key)`` until this transaction ends, on PostgreSQL.

    On DuckDB nothing: one process writes the file at a time (``_turns``).
    """
    if not isinstance(con, duckdb.DuckDBPyConnection):
        con.raw.execute("SELECT pg_advisory_xact_lock(%s, hashtext(%s))", [space, key])


class TransactionBase:
    """A unit of work on the DuckDB file; its methods run inside the open transaction.

    Made only by :meth:`triggerflow._store.Store.transaction`, which commits it (or rolls
    it back) when the ``with`` block ends: a transaction object must not outlive it.
    """

    def __init__(self, con: duckdb.DuckDBPyConnection | Any) -> None:
        # DuckDB-specific, for the store package and for tests; everything outside the
        # store uses the typed methods (the backend Protocol has no ``con``).
        self.con = con
