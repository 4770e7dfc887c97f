"""Sources: each returns :class:`~triggerflow.Items` (and stores them in a trigger run)."""

from ._chat import ChatMessages, xmpp_message
from ._github import GitHubWebhook, github_webhook
from ._mastodon import mastodon_favourites, mastodon_hashtag, mastodon_home, mastodon_mentions
from ._rss import rss
from ._trello import trello_cards
from ._wallabag import wallabag_entries

__all__ = [
    "ChatMessages",
    "GitHubWebhook",
    "github_webhook",
    "mastodon_favourites",
    "mastodon_hashtag",
    "mastodon_home",
    "mastodon_mentions",
    "rss",
    "trello_cards",
    "wallabag_entries",
    "xmpp_message",
]
