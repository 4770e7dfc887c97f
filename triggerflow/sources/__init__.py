"""Sources: each returns :class:`~triggerflow.Items` (and stores them in a trigger run)."""

from ._rss import rss

__all__ = ["rss"]
