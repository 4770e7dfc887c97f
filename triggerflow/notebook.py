"""Jupyter helpers: one set-up call, stored items and SQL over the store as tables.

::

    from triggerflow import notebook as nb
    nb.setup()                        # first cell: quiet Prefect, find a running serve
    nb.items(trigger="python_news")   # the newest stored items, as a table
    nb.sql("SELECT source, count(*) AS n FROM items GROUP BY ALL ORDER BY n DESC")

Every query opens the store for one short transaction and closes it again: a
connection kept open in a kernel would lock ``triggerflow serve`` and its runs out of
the file (shared notes/notebooks.md, rule 6).
"""

from __future__ import annotations

import atexit
import html
import logging
import os
import shutil
import sys
import tempfile
from collections.abc import Sequence
from datetime import date, datetime
from pathlib import Path
from typing import TYPE_CHECKING, Any

from ._store import Store
from .config import Settings, settings
from .exceptions import FlowsLoadError
from .types import Items, _cut

if TYPE_CHECKING:
    from ._trigger import Trigger

__all__ = ["Table", "items", "setup", "sql", "triggers"]


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


class Table:
    """Rows with named columns that render as a table in Jupyter (``.df()`` for pandas)."""

    def __init__(self, columns: Sequence[str], rows: Sequence[Sequence[Any]]) -> None:
        self.columns = list(columns)
        self.rows = [tuple(r) for r in rows]

    def __len__(self) -> int:
        return len(self.rows)

    def column(self, name: str) -> list[Any]:
        """One column's values, e.g. to plot them."""
        try:
            i = self.columns.index(name)
        except ValueError:
            raise KeyError(f"no column {name!r}; columns: {', '.join(self.columns)}") from None
        return [r[i] for r in self.rows]

    def df(self) -> Any:
        """A pandas DataFrame (needs pandas)."""
        try:
            import pandas as pd
        except ImportError as e:  # pragma: no cover - depends on the user's environment
            raise ImportError("Table.df() needs pandas: pip install pandas") from e
        return pd.DataFrame(self.rows, columns=self.columns)

    def __repr__(self) -> str:
        cells = [self.columns] + [[_text(v) for v in r] for r in self.rows[:50]]
        widths = [min(40, max(len(c[i]) for c in cells)) for i in range(len(self.columns))]
        lines = [
            "  ".join(_cut(c, w).ljust(w) for c, w in zip(r, widths, strict=True)) for r in cells
        ]
        lines.insert(1, "  ".join("-" * w for w in widths))
        if len(self.rows) > 50:
            lines.append(f"… {len(self.rows) - 50} more rows")
        return "\n".join(line.rstrip() for line in lines)

    def _repr_html_(self) -> str:
        head = "".join(f"<th>{html.escape(c)}</th>" for c in self.columns)
        body = "".join(
            "<tr>" + "".join(f"<td>{html.escape(_cut(_text(v), 100))}</td>" for v in r) + "</tr>"
            for r in self.rows[:500]
        )
        more = f"<p>… {len(self.rows) - 500} more rows</p>" if len(self.rows) > 500 else ""
        return (
            f"<p>{len(self.rows)} rows</p><table><thead><tr>{head}</tr></thead>"
            f"<tbody>{body}</tbody></table>{more}"
        )


def _text(v: Any) -> str:
    if v is None:
        return ""
    if isinstance(v, datetime):
        return v.isoformat(sep=" ", timespec="minutes")
    if isinstance(v, date):
        return v.isoformat()
    return str(v)


def sql(query: str, params: Sequence[Any] | dict[str, Any] | None = None) -> Table:
    """Run one SQL query on the store (tables ``items``, ``deliveries``, ``sources``…).

    The transaction is rolled back afterwards: this is for looking, not for changing.
    """
    store = Store.default()
    with store.transaction(commit=False) as tx:
        columns, rows = tx.query(query, params)
    return Table(columns, rows)


def items(
    *,
    trigger: str | None = None,
    source: str | None = None,
    since: str | datetime | date | None = None,
    limit: int = 100,
) -> Items:
    """Stored items, newest first: all, a trigger's, or those of sources matching ``source``."""
    from ._search import parse_time

    when = parse_time(since, "since") if since is not None else None
    with Store.default().transaction(commit=False) as tx:
        found = tx.items(trigger=trigger or None, source=source or None, since=when, limit=limit)
    return Items(found)


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
