"""A source of your own: a small object that fetches, and :func:`collect` does the rest.

``collect(source)`` inside a trigger runs ``source.fetch(cursor)`` as a Prefect task
(retried when it raises a :class:`~triggerflow.TransientError`), stores the items, keeps
the cursor it returned for the next run, records success or the error for
``triggerflow status``, and links the source to the trigger (search, ``items()``).
Outside a trigger it only fetches; in a preview nothing it stores is kept.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import replace
from functools import partial
from typing import Protocol, runtime_checkable

from .. import _runtime
from .._steps import Fetched, Reading, run_source
from .._store import Store, now
from ..exceptions import SourceError, TransientError, TriggerflowError
from ..types import Item, Items, SourceReport

__all__ = ["Source", "collect"]


@runtime_checkable
class Source(Protocol):
    """What :func:`collect` needs of a source.

    Attributes:
        kind: what sort of source it is, e.g. ``"webpage"`` (shown in ``status``).
        key: the source's stable id in the store, e.g. its URL; every item it returns
            is stored under it (``Item.source``).
    """

    kind: str
    key: str

    def problem(self) -> str | None:
        """A configuration problem found without any I/O (None: fine)."""
        ...

    def fetch(self, cursor: str | None) -> tuple[Iterable[Item], str | None]:
        """The items newer than ``cursor`` (None: the first read), and the cursor to keep.

        Raise :class:`~triggerflow.TransientError` when trying again later may help
        (a timeout, a 5xx), any other error when it will not.
        """
        ...


def collect(source: Source) -> Items:
    """Fetch ``source`` in the trigger run in progress (see the module's doc)."""
    label = f"{source.kind}: {source.key}"
    return Items(
        run_source(label, source.kind, partial(_collect, source), problem=source.problem).items
    )


def _collect(source: Source, reading: Reading, report: SourceReport) -> Fetched:
    store = Store.default()
    log = _runtime.logger()
    key = source.key
    cursor = None
    if reading.use_store:
        with store.transaction(commit=False) as tx:
            cursor = tx.source_cursor(key)
    try:
        got, new_cursor = source.fetch(cursor)
        items = [i if i.source == key else replace(i, source=key) for i in got]
    except Exception as e:
        error = e if isinstance(e, TriggerflowError) else SourceError(f"{type(e).__name__}: {e}")
        report.failures[key] = str(error)
        log.warning("%s %s: %s", source.kind, key, error)
        if reading.use_store:
            with store.transaction(commit=reading.write) as tx:
                tx.save_source_error(key, key, source.kind, str(error), now())
        if isinstance(error, TransientError):
            raise  # Prefect retries the step
        return Fetched()
    report.fetched = len(items)
    if reading.use_store:
        with store.transaction(commit=reading.write) as tx:
            t = now()
            report.new = tx.upsert_items(items, t)
            tx.save_source_cursor(key, source.kind, key, new_cursor, t)
            if reading.trigger:
                tx.link_trigger_sources(reading.trigger, [key])
    log.info("%s %s: %d items, %d new", source.kind, key, report.fetched, report.new)
    return Fetched(items)
