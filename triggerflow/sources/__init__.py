"""Sources: each returns :class:`~triggerflow.Items` (and stores them in a trigger run)."""

from .rss import rss

__all__ = ["rss"]
