"""The context of one trigger run, shared by its sources and sinks.

A trigger body runs in one of three modes:

- ``run``: inside a Prefect flow run; sources and sinks are Prefect tasks, the
  store is written, messages are sent;
- ``preview``: a dry run without Prefect; sources fetch (without updating the
  store), sinks compute what they would send in a transaction that is rolled back;
- ``check``: nothing is fetched or sent; sources return no items and sinks only
  check that their account and target are configured (used by ``serve`` and
  ``list`` to show triggers that are not configured yet).
"""

from __future__ import annotations

import logging
import sys
from contextvars import ContextVar
from dataclasses import dataclass, field
from datetime import datetime
from typing import Literal

from ._store import Store
from .config import Settings
from .types import Items, SinkReport, SourceReport, item_keys

Mode = Literal["run", "preview", "check"]


@dataclass
class RunContext:
    """State of the trigger run in progress."""

    trigger: str
    mode: Mode
    settings: Settings
    store: Store
    # when the trigger object was made in this process (its start, if serve never saw it)
    defined_at: datetime | None = None
    sources: list[SourceReport] = field(default_factory=list)
    sinks: list[SinkReport] = field(default_factory=list)
    items: list[Items] = field(default_factory=list)  # what each source call returned
    problems: list[str] = field(default_factory=list)
    # inbox kind -> the last seq read; saved once the trigger function has returned
    cursors: dict[str, int] = field(default_factory=dict)
    # keys of the items read from the inbox: live events, which no first-run cut skips
    live: set[tuple[str, str]] = field(default_factory=set)
    # more deliveries wait in the inbox than this run read: another run goes on
    more: bool = False

    def live_keys(self, items: Items) -> frozenset[tuple[str, str]]:
        """Which of ``items`` are live events (for a sink's claim step)."""
        if not self.live:
            return frozenset()
        return frozenset(k for k in item_keys(items) if k in self.live)


_current: ContextVar[RunContext | None] = ContextVar("triggerflow_run", default=None)


def current() -> RunContext | None:
    """The run in progress in this context, if any."""
    return _current.get()


def logger() -> logging.Logger | logging.LoggerAdapter[logging.Logger]:
    """Prefect's run logger inside a flow/task run (shown in the UI), else ``triggerflow``."""
    if "prefect.context" not in sys.modules:  # no Prefect run without it: not imported for this
        return logging.getLogger("triggerflow")
    try:
        from prefect.context import FlowRunContext, TaskRunContext
        from prefect.logging import get_run_logger

        if TaskRunContext.get() or FlowRunContext.get():
            return get_run_logger()
    except ImportError:  # pragma: no cover - prefect is a dependency
        pass
    return logging.getLogger("triggerflow")
