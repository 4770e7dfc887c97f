"""The store's unit of work: one class for both backends, composed of the table families."""

from __future__ import annotations

from ._control import AlertsMixin, ControlMixin
from ._inbox import InboxMixin
from ._items import ItemsMixin
from ._ledger import LedgerMixin
from ._rates import RatesMixin
from ._status import StatusMixin

__all__ = ["StoreTransaction"]


class StoreTransaction(
    ItemsMixin, LedgerMixin, StatusMixin, ControlMixin, AlertsMixin, InboxMixin, RatesMixin
):
    """One open transaction on the store (a DuckDB file, or PostgreSQL through
    ``_postgres.PgConnection``), with a typed method per store operation."""
