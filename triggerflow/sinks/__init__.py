"""Sinks: each sends what the delivery ledger says is owed and returns a report.

A sink of your own is a small object: a :class:`Poster` (one request per item) or a
:class:`Sender` (a batch at once) that only talks to its service; :func:`deliver` runs
it through the one outbox, which gives it the ledger (nothing sent twice), the
first-run cut, publication limits, retries, previews and ``triggerflow status``.
See the README, "Write your own source or sink", and ``flows/webhook_post.py``.

Names are loaded on first use: ``from triggerflow.sinks import feed`` imports neither
the XMPP client nor the services' accounts (Prefect blocks). The web services' sinks
(``mastodon``, ``trello``, ...) live in their service's folder,
``triggerflow/services/<name>/sink.py``.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from .._lazy import lazy_names
from ..services import public_names

# name -> (the module under triggerflow that defines it, its name there); each service's
# sinks come from its folder (triggerflow/services/<name>/sink.py)
_HOME = {
    "ALL": ("_steps", "ALL"),
    "Attempt": ("_outbox", "Attempt"),
    "Poster": ("_outbox", "Poster"),
    "Progress": ("_outbox", "Progress"),
    "Sender": ("_outbox", "Sender"),
    "delivery_id": ("_outbox", "delivery_id"),
    "deliver": ("_steps", "run_sink"),
    "keys_of": ("_outbox", "keys_of"),
    "Failure": ("types", "Failure"),
    "Route": ("types", "Route"),
    "feed": ("sinks._feed", "feed"),
    "xmpp": ("sinks._xmpp", "xmpp"),
    **public_names("sinks"),
}

__all__ = [
    "ALL",
    "Attempt",
    "deliver",
    "delivery_id",
    "Failure",
    "feed",
    "keys_of",
    "Poster",
    "Progress",
    "Route",
    "Sender",
    "xmpp",
    *public_names("sinks"),
]

if TYPE_CHECKING:
    from .._outbox import Attempt, Poster, Progress, Sender, delivery_id, keys_of
    from .._steps import ALL
    from .._steps import run_sink as deliver
    from ..types import Failure, Route
    from ._feed import feed
    from ._xmpp import xmpp


__getattr__, __dir__ = lazy_names("triggerflow.sinks", _HOME, globals())
