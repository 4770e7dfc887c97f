"""What the sinks of web services share: a connected account and one request per item.

A service sink is a small :class:`ServicePoster` that knows its service, its target and
how to send one item; the outbox (``triggerflow._outbox``) does the rest like for every
sink: items are stored, queued on the route, claimed within the publication limit,
sent one at a time, and each is recorded as sent right after the service confirmed
it, so a run that dies halfway does not send the confirmed ones again.

What a retry may repeat is covered per service: Mastodon's ``Idempotency-Key`` (the
delivery's id), Wallabag's "this URL is already saved" answer, and for Trello a look at
the list for items whose earlier attempt got no answer.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Iterator
from contextlib import contextmanager

from .. import _runtime
from .._outbox import Attempt
from .._steps import run_sink
from ..config import settings
from ..exceptions import ConfigurationError
from ..limits import Limit
from ..types import Item, SinkReport
from ._account import load_service_account
from ._client import ServiceClient

__all__ = ["Send", "ServicePoster", "deliver"]

# Sends one item: (item, the delivery's id, True if an earlier attempt got no answer).
Send = Callable[[Item, str, bool], None]


class ServicePoster:
    """The half of a service sink that is the same for every service (a ``Poster``).

    Subclasses (frozen dataclasses) have ``service``, ``account`` and ``target``, and
    define ``problem()``, ``preview(item)`` and ``start(client) -> Send``.
    """

    service: str
    account: str
    target: str

    @property
    def sink(self) -> str:
        return self.service

    def problem(self) -> str | None:
        """A configuration problem found without any I/O (None: fine)."""
        return None

    def preview(self, item: Item) -> str:
        """What would be sent for ``item``, for people (dry runs)."""
        raise NotImplementedError

    def start(self, client: ServiceClient) -> Send:
        """Prepare a run (e.g. read the instance's limits); return the per-item send."""
        raise NotImplementedError

    @contextmanager
    def open(self) -> Iterator[Callable[[Item, Attempt], None]]:
        s = settings()
        with ServiceClient(
            self.service, self.account, timeout=s.http_timeout, max_wait=s.rate_limit_wait
        ) as client:
            send = self.start(client)
            yield lambda item, attempt: send(item, attempt.id, attempt.retried)


def deliver(
    poster: ServicePoster,
    items: Iterable[Item],
    *,
    first_run: int | None = None,
    limit: str | Limit | None = None,
) -> SinkReport:
    """Send ``items`` with ``poster`` inside a trigger; the service sinks' common half."""
    problem = poster.problem()
    if problem is None and _runtime.current() is not None:
        try:
            load_service_account(poster.service, poster.account)  # a preview says it, too
        except ConfigurationError as e:
            problem = str(e)
    return run_sink(poster, items, first_run=first_run, limit=limit, problem=problem)
