"""What the sources of web services share: a cursor in the store, items stored first.

A service source is a small frozen object (a :class:`Reader`) that knows its service,
its key in the store and how to read what is newer than a cursor. :func:`read` runs it
as a Prefect task in a trigger run: the cursor comes from the store, the items go into
the store (new ones counted), then the new cursor is saved, all in one transaction, so
a run that dies before that reads the same items again and stores them once.
"""

from __future__ import annotations

from functools import partial
from typing import Protocol

from .. import _runtime
from .._steps import Fetched, Reading, run_source
from .._store import Store, now
from ..config import settings
from ..exceptions import ConfigurationError, ServiceError, TransientError
from ..types import Item, Items, SourceReport
from ._account import load_service_account
from ._client import ServiceClient

__all__ = ["Reader", "read", "title_of"]

MAX_PAGES = 10  # pages one read follows at most; the rest comes in the next run
TITLE_MAX = 120  # a post's first line as its title, cut beyond this


def title_of(text: str) -> str:
    """A post's title: its first line, at most ``TITLE_MAX`` characters."""
    first = text.strip().split("\n", 1)[0]
    return first if len(first) <= TITLE_MAX else first[: TITLE_MAX - 1] + "…"


class Reader(Protocol):
    """One service source: ``service``, a ``label`` for logs, and how to read."""

    service: str
    account: str
    label: str

    def key(self, client: ServiceClient) -> str:
        """The source's key in the store (stable for the same account and thing)."""
        ...

    def fetch(self, client: ServiceClient, cursor: str | None) -> tuple[list[Item], str | None]:
        """Items newer than ``cursor`` (None: the newest page), and the cursor to save."""
        ...


def read(reader: Reader) -> Items:
    """Run ``reader``: in a trigger run as a task with the store, else just fetch."""

    def problem() -> str | None:
        try:
            load_service_account(reader.service, reader.account)
        except ConfigurationError as e:
            return str(e)
        return None

    got = run_source(reader.label, reader.service, partial(_read, reader), problem=problem)
    return Items(got.items)


def _read(reader: Reader, reading: Reading, report: SourceReport) -> Fetched:
    s = settings()
    log = _runtime.logger()
    store = Store.default(s)
    use_store, write = reading.use_store, reading.write
    out = Fetched()
    with ServiceClient(
        reader.service, reader.account, timeout=s.http_timeout, max_wait=s.rate_limit_wait
    ) as client:
        source = reader.key(client)
        cursor = None
        if use_store:
            with store.transaction(commit=False) as tx:
                cursor = tx.source_cursor(source)
        try:
            items, new_cursor = reader.fetch(client, cursor)
        except ServiceError as e:
            report.failures[reader.label] = str(e)
            log.warning("%s: %s", reader.label, e)
            if use_store:
                with store.transaction(commit=write) as tx:
                    tx.save_source_error(source, client.base, reader.service, str(e), now())
            if isinstance(e, TransientError):
                raise
            return out
    out.items = items
    report.fetched = len(items)
    if use_store:
        with store.transaction(commit=write) as tx:
            t = now()
            report.new = tx.upsert_items(items, t)
            tx.save_source_cursor(source, reader.service, client.base, new_cursor, t)
            if reading.trigger:
                tx.link_trigger_sources(reading.trigger, [source])
    log.info("%s: %d items, %d new", reader.label, report.fetched, report.new)
    return out
