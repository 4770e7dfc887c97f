"""triggerflow: self-hosted, code-first "if this then that".

A trigger is a decorated function that is a Prefect flow; sources fetch items,
sinks publish the new ones, and DuckDB remembers what each target already got::

    from triggerflow import trigger, every
    from triggerflow.sources import rss
    from triggerflow.sinks import xmpp

    @trigger(schedule=every("15m"))
    def python_news():
        '''New posts from the Python blog, to me.'''
        xmpp(rss("https://blog.python.org/feeds/posts/default"))

What the store knows is read through ``status()`` (what was sent, queued, failed and
why; who is paused), ``items(trigger=...)`` and ``sql("SELECT ...")``: the same values
that ``triggerflow status``, the bot and the notebooks show.

Names are loaded on first use, so that ``import triggerflow`` (and the worker
processes that parse feeds) do not pay for importing Prefect until needed.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from . import exceptions as _exceptions  # light: no Prefect, no I/O
from ._lazy import lazy_names

__version__ = "0.1.0"

__all__ = [
    "AccountNotChecked",
    "AccountNotConfigured",
    "ConfigurationError",
    "FailedDelivery",
    "FeedError",
    "FeedInvalid",
    "FeedUnavailable",
    "FlowsLoadError",
    "Item",
    "ItemRejected",
    "Items",
    "Limit",
    "Pause",
    "PermanentError",
    "RouteStatus",
    "RunResult",
    "SearchError",
    "SearchResults",
    "SearchUnavailable",
    "ServiceAuthError",
    "ServiceError",
    "ServiceNotFound",
    "ServiceRateLimited",
    "ServiceRejected",
    "ServiceUnavailable",
    "Settings",
    "SinkError",
    "SinkReport",
    "SinkUnavailable",
    "SourceError",
    "SourceReport",
    "SourceStatus",
    "Status",
    "StoreBusyError",
    "StoreError",
    "Table",
    "TransientError",
    "Trigger",
    "TriggerNotFound",
    "TriggerRunFailed",
    "TriggerflowError",
    "XMPPAuthError",
    "XMPPError",
    "XMPPRejected",
    "XMPPTLSError",
    "XMPPUnavailable",
    "cron",
    "every",
    "items",
    "rebuild_search_index",
    "search",
    "search_index_status",
    "settings",
    "sql",
    "status",
    "trigger",
]

_HOME = {
    "Item": "types",
    "Items": "types",
    "SinkReport": "types",
    "SourceReport": "types",
    "Table": "types",
    # The read model: what `triggerflow status`, the bot and the notebooks show.
    "FailedDelivery": "_read",
    "Pause": "_read",
    "RouteStatus": "_read",
    "SourceStatus": "_read",
    "Status": "_read",
    "items": "_read",
    "sql": "_read",
    "status": "_read",
    "RunResult": "_trigger",
    "Trigger": "_trigger",
    "trigger": "_trigger",
    "SearchResults": "_search",
    "search": "_search",
    "rebuild_search_index": "_search",
    "search_index_status": "_search",
    "cron": "schedules",
    "every": "schedules",
    "Settings": "config",
    "settings": "config",
    "Limit": "limits",
    # The whole error tree, so that `except triggerflow.FeedUnavailable` needs no second import.
    **dict.fromkeys(_exceptions.__all__, "exceptions"),
}

if TYPE_CHECKING:
    from ._read import (
        FailedDelivery,
        Pause,
        RouteStatus,
        SourceStatus,
        Status,
        items,
        sql,
        status,
    )
    from ._search import SearchResults, rebuild_search_index, search, search_index_status
    from ._trigger import RunResult, Trigger, trigger
    from .config import Settings, settings
    from .exceptions import (
        AccountNotChecked,
        AccountNotConfigured,
        ConfigurationError,
        FeedError,
        FeedInvalid,
        FeedUnavailable,
        FlowsLoadError,
        ItemRejected,
        PermanentError,
        SearchError,
        SearchUnavailable,
        ServiceAuthError,
        ServiceError,
        ServiceNotFound,
        ServiceRateLimited,
        ServiceRejected,
        ServiceUnavailable,
        SinkError,
        SinkUnavailable,
        SourceError,
        StoreBusyError,
        StoreError,
        TransientError,
        TriggerflowError,
        TriggerNotFound,
        TriggerRunFailed,
        XMPPAuthError,
        XMPPError,
        XMPPRejected,
        XMPPTLSError,
        XMPPUnavailable,
    )
    from .limits import Limit
    from .schedules import cron, every
    from .types import Item, Items, SinkReport, SourceReport, Table


__getattr__, __dir__ = lazy_names("triggerflow", _HOME, globals())


def _follow_serve() -> None:
    # A run that serve's runner started (or another child of serve): it must not outlive
    # a killed serve (triggerflow._lifeline). One environment lookup for everyone else.
    import os

    if os.environ.get("TRIGGERFLOW_SERVE_PROCESS"):
        from ._lifeline import follow

        follow()


_follow_serve()
