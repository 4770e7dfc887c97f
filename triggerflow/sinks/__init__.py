"""Sinks: each sends what the delivery ledger says is owed and returns a report.

A sink of your own is a small object: a :class:`Poster` (one request per item) or a
:class:`Sender` (a batch at once) that only talks to its service; :func:`deliver` runs
it through the one outbox, which gives it the ledger (nothing sent twice), the
first-run cut, publication limits, retries, previews and ``triggerflow status``.
See the README, "Write your own source or sink", and ``flows/webhook_post.py``.
"""

from .._outbox import Attempt, Poster, Progress, Sender, delivery_id
from .._steps import ALL
from .._steps import run_sink as deliver
from ..types import Failure, Route
from ._feed import feed
from ._mastodon import mastodon
from ._trello import trello
from ._wallabag import wallabag
from ._xmpp import xmpp

__all__ = [
    "ALL",
    "Attempt",
    "Failure",
    "Poster",
    "Progress",
    "Route",
    "Sender",
    "deliver",
    "delivery_id",
    "feed",
    "mastodon",
    "trello",
    "wallabag",
    "xmpp",
]
