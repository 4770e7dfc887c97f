"""Sinks: each sends what the delivery ledger says is owed and returns a report."""

from ._feed import feed
from ._xmpp import xmpp

__all__ = ["feed", "xmpp"]
