"""The one error tree of triggerflow.

Every error a user can meet is a :class:`TriggerflowError`. Messages read like
"what: which one: cause", and the foreign exception (httpx, slixmpp, duckdb,
feedparser) is chained with ``raise ... from``, translated at one boundary
module (``_http``, ``_xmpp``, ``_store``).

Whether a failure is worth retrying is part of its type: ``TransientError``
(a dead server, a timeout, a lock held too long) is retried by Prefect with
backoff, ``PermanentError`` (a wrong password, an unknown recipient, a broken
feed body) is not.

::

    TriggerflowError
    ├── ConfigurationError          (a setting or account is missing or wrong)
    │   └── AccountNotConfigured
    │       └── AccountNotChecked
    ├── TriggerNotFound
    ├── FlowsLoadError              (a file in flows/ could not be imported)
    ├── StoreError
    │   └── StoreBusyError          (+ TransientError)
    ├── SourceError
    │   └── FeedError
    │       ├── FeedUnavailable     (+ TransientError)
    │       └── FeedInvalid         (+ PermanentError)
    ├── SinkError
    │   ├── ItemRejected            (+ PermanentError: this one item, for good)
    │   ├── SinkUnavailable         (+ TransientError: down, no answer; retried)
    │   └── XMPPError
    │       ├── XMPPUnavailable     (+ TransientError)
    │       ├── XMPPAuthError       (+ PermanentError)
    │       ├── XMPPTLSError        (+ PermanentError)
    │       └── XMPPRejected        (+ PermanentError)
    ├── ServiceError                (a web service: Mastodon, Wallabag, Trello)
    │   ├── ServiceUnavailable      (+ TransientError: timeouts, 5xx)
    │   │   └── ServiceRateLimited  (+ TransientError: 429 beyond the wait we allow)
    │   ├── ServiceAuthError        (+ PermanentError: 401/403, reconnect the account)
    │   ├── ServiceNotFound         (+ PermanentError: 404, a list or board that is gone)
    │   └── ServiceRejected         (+ ItemRejected: 422 and other refusals of one request)
    ├── SearchError
    │   └── SearchUnavailable       (the fts extension is missing)
    ├── TriggerRunFailed            (a run that delivered what it could, then failed)
    ├── TransientError   (marker)
    └── PermanentError   (marker)
"""

from __future__ import annotations

__all__ = [
    "AccountNotChecked",
    "AccountNotConfigured",
    "ConfigurationError",
    "FeedError",
    "FeedInvalid",
    "FeedUnavailable",
    "FlowsLoadError",
    "ItemRejected",
    "PermanentError",
    "SearchError",
    "ServiceAuthError",
    "ServiceError",
    "ServiceNotFound",
    "ServiceRateLimited",
    "ServiceRejected",
    "ServiceUnavailable",
    "SearchUnavailable",
    "SinkError",
    "SinkUnavailable",
    "SourceError",
    "StoreBusyError",
    "StoreError",
    "TransientError",
    "TriggerNotFound",
    "TriggerRunFailed",
    "TriggerflowError",
    "XMPPAuthError",
    "XMPPError",
    "XMPPRejected",
    "XMPPTLSError",
    "XMPPUnavailable",
]


class TriggerflowError(Exception):
    """Base class of every error raised by triggerflow."""


class TransientError(TriggerflowError):
    """Marker: the same call may succeed later (retried with backoff)."""


class PermanentError(TriggerflowError):
    """Marker: retrying will not help until something is changed by a person."""


class ConfigurationError(TriggerflowError):
    """A setting, an account or an argument is missing or wrong."""


class AccountNotConfigured(ConfigurationError, PermanentError):
    """A sink or source names an account whose credentials are nowhere to be found."""


class AccountNotChecked(AccountNotConfigured):
    """An account saved as a Prefect block could not be looked for: no Prefect server
    runs, and a read-only command (``list``, ``status``…) starts none to find out."""


class TriggerNotFound(TriggerflowError):
    """No trigger of that name in the flows directory."""


class FlowsLoadError(TriggerflowError):
    """A file in the flows directory could not be imported."""


class StoreError(TriggerflowError):
    """The DuckDB store could not be read or written."""


class StoreBusyError(StoreError, TransientError):
    """Another process held the store's lock for longer than the configured wait."""


class SourceError(TriggerflowError):
    """A source could not fetch its items."""


class FeedError(SourceError):
    """An RSS/Atom feed could not be fetched or parsed."""

    def __init__(self, url: str, reason: str) -> None:
        self.url = url
        self.reason = reason
        super().__init__(f"feed {url}: {reason}")


class FeedUnavailable(FeedError, TransientError):
    """The feed's server did not answer, timed out or answered 5xx/429."""


class FeedInvalid(FeedError, PermanentError):
    """The feed answered with an error status or something that is not a feed, or its
    server's TLS certificate is not trusted."""


class SinkError(TriggerflowError):
    """A sink could not deliver."""


class ItemRejected(SinkError, PermanentError):
    """The other side refused this one item, for good; the next items may well go.

    A sink of your own raises it for an item that must not be sent again (the item is
    marked failed with the message as the reason; ``triggerflow retry`` owes it again).
    """


class SinkUnavailable(SinkError, TransientError):
    """The other side of a sink is down or did not answer in time: retried.

    A sink of your own raises it for a timeout, a refused connection, a 5xx or a 429;
    the items not confirmed stay owed and Prefect retries the step.
    """


class XMPPError(SinkError):
    """Sending over XMPP failed."""


class XMPPUnavailable(XMPPError, TransientError):
    """The XMPP server is down, unreachable, or did not answer in time."""


class XMPPAuthError(XMPPError, PermanentError):
    """The XMPP server refused the account's credentials."""


class XMPPTLSError(XMPPError, PermanentError):
    """TLS could not be set up or the server's certificate was not trusted."""


class XMPPRejected(XMPPError, PermanentError):
    """The server bounced a message or refused to let us into a room."""


class ServiceError(TriggerflowError):
    """A web service (Mastodon, Wallabag, Trello) could not be used.

    Raised by sources and sinks of web services alike; ``service`` is its name
    (``mastodon``), ``status`` the HTTP status when there was one.
    """

    def __init__(self, service: str, message: str, status: int | None = None) -> None:
        self.service = service
        self.status = status
        super().__init__(message)


class ServiceUnavailable(ServiceError, TransientError):
    """The service did not answer, timed out, or answered 5xx."""


class ServiceRateLimited(ServiceUnavailable):
    """The service's rate limit is used up for longer than we wait (``retry_at``)."""

    def __init__(self, service: str, message: str, retry_at: float | None = None) -> None:
        super().__init__(service, message, 429)
        self.retry_at = retry_at


class ServiceAuthError(ServiceError, PermanentError):
    """The service refused the account's token (401/403): reconnect the account."""


class ServiceNotFound(ServiceError, PermanentError):
    """What the trigger names (a list, a board, a hashtag) does not exist (404)."""


class ServiceRejected(ServiceError, ItemRejected):
    """The service refused one request (422, 400), in its own words."""


class SearchError(TriggerflowError):
    """A search could not be run (an empty query, an unreadable index)."""


class SearchUnavailable(SearchError):
    """DuckDB's fts extension is not installed and could not be downloaded."""


class TriggerRunFailed(TriggerflowError):
    """A trigger run did what it could (delivered items stay delivered), but a part failed."""
