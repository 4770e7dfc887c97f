"""Sources: each returns :class:`~triggerflow.Items` (and stores them in a trigger run).

A source of your own: an object with ``kind``, ``key``, ``problem()`` and
``fetch(cursor)`` (the :class:`Source` protocol), read with :func:`collect`. An event
source for ``@trigger(on=...)`` follows :class:`EventSource` and reads its deliveries
with :func:`read_inbox`.

Names are loaded on first use: ``from triggerflow.sources import rss`` imports the RSS
source only, not the services' accounts (Prefect blocks) that the others need.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from .._lazy import lazy_names

# name -> the module (under triggerflow) that defines it
_HOME = {
    "Delivery": "_store",
    "ChatMessages": "sources._chat",
    "xmpp_message": "sources._chat",
    "GitHubWebhook": "sources._github",
    "github_webhook": "sources._github",
    "EventSource": "sources._inbox",
    "read_inbox": "sources._inbox",
    "mastodon_favourites": "sources._mastodon",
    "mastodon_hashtag": "sources._mastodon",
    "mastodon_home": "sources._mastodon",
    "mastodon_mentions": "sources._mastodon",
    "Source": "sources._own",
    "collect": "sources._own",
    "rss": "sources._rss",
    "trello_cards": "sources._trello",
    "wallabag_entries": "sources._wallabag",
}

__all__ = [
    "ChatMessages",
    "collect",
    "Delivery",
    "EventSource",
    "github_webhook",
    "GitHubWebhook",
    "mastodon_favourites",
    "mastodon_hashtag",
    "mastodon_home",
    "mastodon_mentions",
    "read_inbox",
    "rss",
    "Source",
    "trello_cards",
    "wallabag_entries",
    "xmpp_message",
]

if TYPE_CHECKING:
    from .._store import Delivery
    from ._chat import ChatMessages, xmpp_message
    from ._github import GitHubWebhook, github_webhook
    from ._inbox import EventSource, read_inbox
    from ._mastodon import (
        mastodon_favourites,
        mastodon_hashtag,
        mastodon_home,
        mastodon_mentions,
    )
    from ._own import Source, collect
    from ._rss import rss
    from ._trello import trello_cards
    from ._wallabag import wallabag_entries


__getattr__, __dir__ = lazy_names("triggerflow.sources", _HOME, globals())
