"""Sources: each returns :class:`~triggerflow.Items` (and stores them in a trigger run)."""

from ._github import GitHubWebhook, github_webhook
from ._rss import rss

__all__ = ["GitHubWebhook", "github_webhook", "rss"]
