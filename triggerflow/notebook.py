"""Jupyter helpers: one set-up call; the store's items, status and SQL as tables.

::

    from triggerflow import notebook as nb
    nb.setup()                        # first cell: quiet Prefect, find a running serve
    nb.items(trigger="python_news")   # the newest stored items, as a table
    nb.status()                       # what `triggerflow status` shows, as values
    nb.sql("SELECT source, count(*) AS n FROM items GROUP BY ALL ORDER BY n DESC")

``items``, ``status`` and ``sql`` are :func:`triggerflow.items`, :func:`triggerflow.status`
and :func:`triggerflow.sql` (the read model that the CLI and the bot show too), here
for one import. Every query opens the store for one short transaction and closes it
again: a connection kept open in a kernel would lock ``triggerflow serve`` and its runs
out of the file (shared notes/notebooks.md, rule 6).
"""

from __future__ import annotations

import atexit
import logging
import os
import shutil
import sys
import tempfile
from pathlib import Path
from typing import TYPE_CHECKING

from ._read import items, sql, status
from .config import Settings, settings
from .exceptions import FlowsLoadError
from .types import Table

if TYPE_CHECKING:
    from ._trigger import Trigger

__all__ = ["Table", "items", "setup", "sql", "status", "triggers"]


def setup(
    data_dir: str | Path | None = None,
    *,
    scratch: bool = False,
    flows_dir: str | Path | None = None,
    quiet: bool = True,
) -> Settings:
    """Prepare this kernel for triggerflow; call it before anything imports Prefect.

    Args:
        data_dir: the data dir (store, Prefect home) to use; default: the configured one.
        scratch: use a new temporary data dir (and flows dir) instead, for trying things
            out without touching your store. It is removed when the kernel exits or
            ``setup`` is called again.
        flows_dir: where triggers are saved and found (default: the configured one, or
            ``<scratch>/flows``).
        quiet: keep Prefect's INFO log lines out of the cells (warnings still show).

    Prefect is used through the server of a running ``triggerflow serve`` (or
    ``PREFECT_API_URL``); without one, Prefect's ephemeral mode starts a temporary
    server with the first run (~20-30 s once per kernel).
    """
    _remove_scratch()  # a new setup replaces the last scratch dir: nothing uses it any more
    if scratch:
        root = Path(tempfile.mkdtemp(prefix="triggerflow-notebook-"))
        atexit.unregister(_remove_scratch)  # registered once, however often setup runs
        atexit.register(_remove_scratch)
        _scratch.append(root)
        data_dir = data_dir or root / "data"
        flows_dir = flows_dir or root / "flows"
        Path(flows_dir).mkdir(parents=True, exist_ok=True)
    if data_dir is not None:
        os.environ["TRIGGERFLOW_DATA_DIR"] = str(Path(data_dir).expanduser())
    if flows_dir is not None:
        os.environ["TRIGGERFLOW_FLOWS_DIR"] = str(Path(flows_dir).expanduser())
    if quiet:
        # Only read when Prefect is first imported; the logger level covers a later call.
        os.environ.setdefault("PREFECT_LOGGING_LEVEL", "WARNING")
        if "prefect" in sys.modules:
            logging.getLogger("prefect").setLevel(logging.WARNING)
    s = settings()
    from ._serve import prepare_environment

    api = prepare_environment(s)
    where = f"the Prefect server at {api}" if api else "Prefect's ephemeral mode"
    print(f"triggerflow: data in {s.data_dir}, triggers in {s.flows_dir}, runs through {where}")
    return s


_scratch: list[Path] = []  # this kernel's scratch dirs, removed by the next setup or at exit


def _remove_scratch() -> None:
    while _scratch:
        # ignore_errors: a file still open (a DuckDB file on some systems) must not turn
        # the kernel's exit into a traceback; /tmp is cleaned some day anyway.
        shutil.rmtree(_scratch.pop(), ignore_errors=True)


def triggers() -> dict[str, Trigger]:
    """The triggers in the flows folder, by name (as ``serve`` would deploy them).

    Raises:
        FlowsLoadError: a file in the folder could not be imported (with its error).
    """
    from ._discovery import discover

    found = discover(settings().flows_dir)
    if found.errors:
        lines = "; ".join(f"{path}: {why}" for path, why in found.errors.items())
        raise FlowsLoadError(f"flows folder: {lines}")
    return dict(found.triggers)
