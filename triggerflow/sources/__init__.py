"""Sources: each returns :class:`~triggerflow.Items` (and stores them in a trigger run)."""

from ._chat import ChatMessages, xmpp_message
from ._github import GitHubWebhook, github_webhook
from ._rss import rss

__all__ = ["ChatMessages", "GitHubWebhook", "github_webhook", "rss", "xmpp_message"]
