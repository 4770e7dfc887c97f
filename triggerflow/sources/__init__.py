"""Sources: each returns :class:`~triggerflow.Items` (and stores them in a trigger run).

A source of your own: an object with ``kind``, ``key``, ``problem()`` and
``fetch(cursor)`` (the :class:`Source` protocol), read with :func:`collect`. An event
source for ``@trigger(on=...)`` follows :class:`EventSource` and reads its deliveries
with :func:`read_inbox`.

Names are loaded on first use: ``from triggerflow.sources import rss`` imports the RSS
source only, not the services' accounts (Prefect blocks) that the others need. The web
services' sources (``mastodon_home``, ``trello_cards``, ...) live in their service's
folder, ``triggerflow/services/<name>/source.py``.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from .._lazy import lazy_names
from ..services import public_names

# name -> the module (under triggerflow) that defines it, or (that module, its name there);
# each service's sources come from its folder (triggerflow/services/<name>/source.py)
_HOME: dict[str, str | tuple[str, str]] = {
    "Delivery": "_store",
    "ChatMessages": "sources._chat",
    "xmpp_message": "sources._chat",
    "GitHubWebhook": "sources._github",
    "github_webhook": "sources._github",
    "EventSource": "sources._inbox",
    "read_inbox": "sources._inbox",
    "Source": "sources._own",
    "collect": "sources._own",
    "rss": "sources._rss",
    **public_names("sources"),
}

__all__ = [
    "ChatMessages",
    "collect",
    "Delivery",
    "EventSource",
    "github_webhook",
    "GitHubWebhook",
    "read_inbox",
    "rss",
    "Source",
    "xmpp_message",
    *public_names("sources"),
]

if TYPE_CHECKING:
    from .._store import Delivery
    from ._chat import ChatMessages, xmpp_message
    from ._github import GitHubWebhook, github_webhook
    from ._inbox import EventSource, read_inbox
    from ._own import Source, collect
    from ._rss import rss


__getattr__, __dir__ = lazy_names("triggerflow.sources", _HOME, globals())
