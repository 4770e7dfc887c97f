"""What the sources of web services share: a cursor in the store, items stored first.

A service source is a small frozen object (a :class:`Reader`) that knows its service,
its key in the store and how to read what is newer than a cursor. :func:`read` runs it
as a Prefect task in a trigger run: the cursor comes from the store, the items go into
the store (new ones counted), then the new cursor is saved, all in one transaction, so
a run that dies before that reads the same items again and stores them once.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Protocol

from prefect import task
from prefect.cache_policies import NO_CACHE

from .. import _runtime
from .._service_client import ServiceClient
from .._store import Store, now
from ..blocks import load_service_account
from ..config import settings
from ..exceptions import ConfigurationError, ServiceError, TransientError, TriggerflowError
from ..types import Item, Items, SourceReport

__all__ = ["Reader", "read"]

MAX_PAGES = 10  # pages one read follows at most; the rest comes in the next run


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


@dataclass
class _Read:
    items: list[Item] = field(default_factory=list)
    report: SourceReport = field(default_factory=lambda: SourceReport("service"))


def read(reader: Reader) -> Items:
    """Run ``reader``: in a trigger run as a task with the store, else just fetch."""
    ctx = _runtime.current()
    if ctx is None:  # a notebook exploring: the newest items, nothing stored
        return Items(_read(None, reader, use_store=False, write=False).items)
    if ctx.mode == "check":
        try:
            load_service_account(reader.service, reader.account)
        except ConfigurationError as e:
            ctx.problems.append(str(e))
        return Items()
    try:
        got: _Read = _runtime.call_step(
            _read_task, _read, reader.label, ctx.trigger, reader, True, ctx.mode == "run"
        )
    except TriggerflowError as e:  # still failing after Prefect's retries
        got = _Read(report=SourceReport(reader.service, failures={reader.label: str(e)}))
    ctx.sources.append(got.report)
    ctx.items.extend(got.items)
    return Items(got.items)


def _read(trigger: str | None, reader: Reader, use_store: bool, write: bool) -> _Read:
    s = settings()
    log = _runtime.logger()
    store = Store.default(s)
    out = _Read(report=SourceReport(reader.service))
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
            out.report.failures[reader.label] = str(e)
            log.warning("%s: %s", reader.label, e)
            if use_store:
                with store.transaction(commit=write) as tx:
                    tx.save_source_error(source, client.base, reader.service, str(e), now())
            if isinstance(e, TransientError):
                e.failures = dict(out.report.failures)  # type: ignore[attr-defined]
                raise
            return out
    out.items = items
    out.report.fetched = len(items)
    if use_store:
        with store.transaction(commit=write) as tx:
            t = now()
            out.report.new = tx.upsert_items(items, t)
            tx.save_source_cursor(source, reader.service, client.base, new_cursor, t)
            if trigger:
                tx.link_trigger_sources(trigger, [source])
    log.info("%s: %d items, %d new", reader.label, out.report.fetched, out.report.new)
    return out


_read_task = task(_read, name="service source", cache_policy=NO_CACHE, persist_result=False,
                  retry_condition_fn=_runtime.only_transient)  # fmt: skip
