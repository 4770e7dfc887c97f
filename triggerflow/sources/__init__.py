"""Sources: each returns :class:`~triggerflow.Items` (and stores them in a trigger run).

A source of your own: an object with ``kind``, ``key``, ``problem()`` and
``fetch(cursor)`` (the :class:`Source` protocol), read with :func:`collect`. An event
source for ``@trigger(on=...)`` follows :class:`EventSource` and reads its deliveries
with :func:`read_inbox`.
"""

from .._store import Delivery
from ._chat import ChatMessages, xmpp_message
from ._github import GitHubWebhook, github_webhook
from ._inbox import EventSource, read_inbox
from ._mastodon import mastodon_favourites, mastodon_hashtag, mastodon_home, mastodon_mentions
from ._own import Source, collect
from ._rss import rss
from ._trello import trello_cards
from ._wallabag import wallabag_entries

__all__ = [
    "ChatMessages",
    "Delivery",
    "EventSource",
    "GitHubWebhook",
    "Source",
    "collect",
    "github_webhook",
    "mastodon_favourites",
    "mastodon_hashtag",
    "mastodon_home",
    "mastodon_mentions",
    "read_inbox",
    "rss",
    "trello_cards",
    "wallabag_entries",
    "xmpp_message",
]
