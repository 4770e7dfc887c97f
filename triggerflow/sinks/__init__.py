"""Sinks: each sends what the delivery ledger says is owed and returns a report."""

from ._feed import feed
from ._mastodon import mastodon
from ._trello import trello
from ._wallabag import wallabag
from ._xmpp import xmpp

__all__ = ["feed", "mastodon", "trello", "wallabag", "xmpp"]
