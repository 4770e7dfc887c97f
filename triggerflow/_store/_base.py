"""What the store's table families share: the connection of one open transaction."""

from __future__ import annotations

import duckdb


class TransactionBase:
    """A unit of work on the DuckDB file; its methods run inside the open transaction.

    Made only by :meth:`triggerflow._store.Store.transaction`, which commits it (or rolls
    it back) when the ``with`` block ends: a transaction object must not outlive it.
    """

    def __init__(self, con: duckdb.DuckDBPyConnection) -> None:
        # DuckDB-specific, for the store package and for tests; everything outside the
        # store uses the typed methods (the backend Protocol has no ``con``).
        self.con = con
