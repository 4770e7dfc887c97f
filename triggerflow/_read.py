"""The read model: what ``triggerflow status`` and ``list``, the bot and the notebooks show.

Each view is computed here, once, as frozen values (defined, with their text, in
``_show.py``); the CLI, the bot's chat commands (``_commands.py``) and the notebook
helpers only render them, so they cannot disagree (DESIGN §2.1). Every read of the store
is one short transaction that is rolled back; ``status()`` on a data dir where nothing
ran yet does not create the store.

::

    import triggerflow as tf
    st = tf.status()                     # every trigger; tf.status("python_news"): one
    [r for r in st.routes if r.dead]     # routes with items given up
    st.pause_of("python_news")           # Pause(why="by hand" | "vacation", since, note)
    tf.items(trigger="python_news")      # the stored items, newest first
    tf.sql("SELECT state, count(*) FROM deliveries GROUP BY ALL")
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from datetime import date, datetime
from typing import TYPE_CHECKING, Any

from ._paused import Pause, pause_of
from ._show import Listing, Status, TriggerLine, TriggerState, Waiting, Webhooks
from ._store import FailedDelivery, RouteStatus, SourceStatus, Store, Vacation, now
from ._webhooks import SpoolState, spool_state
from .config import Settings, settings
from .exceptions import TriggerNotFound
from .limits import parse_limit
from .types import Items, Table

if TYPE_CHECKING:
    from ._trigger import Trigger

__all__ = [
    "ALERTS",
    "FailedDelivery",
    "Listing",
    "Pause",
    "RouteStatus",
    "SourceStatus",
    "Status",
    "TriggerLine",
    "Waiting",
    "Webhooks",
    "items",
    "listing",
    "sql",
    "status",
]

# _alerts.ALERTS, the failure alerts' pseudo-trigger (importing _alerts loads Prefect)
ALERTS = "_alerts"


def status(
    trigger: str | None = None,
    *,
    failures: int = 10,
    alerts: bool = False,
    store: Store | None = None,
) -> Status:
    """What was collected, sent, queued and failed, and why (``triggerflow status``).

    Args:
        trigger: only this trigger (``fruit-one`` or ``fruit_one``): its routes, items,
            failures and pause, and the sources it reads.
        failures: how many of the latest failed or dead deliveries to include.
        alerts: also the failure alerts' own deliveries (the pseudo-trigger ``_alerts``,
            left out otherwise; ``status("_alerts")`` shows only them).
        store: the store to read (default: the configured one).

    Returns:
        A :class:`Status`; ``print()`` it for what ``triggerflow status`` says.

    Raises:
        TriggerNotFound: no trigger named ``trigger`` has run.
        StoreBusyError: another process kept the store locked for too long.

    Example::

        st = triggerflow.status("python_news")
        {(r.target, r.queued) for r in st.routes if r.queued}
    """
    store = store or Store.default()
    name = trigger.replace("-", "_") if trigger else None
    spooled = SpoolState() if name else spool_state(settings().spool_dir)
    where = store.path if isinstance(store, Store) else store.location
    if not store.exists():  # nothing ran: a read does not create the store
        if name:
            raise TriggerNotFound(_not_found(trigger or name, []))
        return Status(where, name, spool=spooled)
    leave_out = () if alerts or name else (ALERTS,)
    with store.transaction(commit=False) as tx:
        routes = [r for r in tx.route_status() if r.trigger not in leave_out]
        collected = {t: n for t, n in tx.items_per_trigger().items() if t not in leave_out}
        sources = tx.source_status()
        if name:
            known = {r.trigger for r in routes} | set(collected)
            if name not in known:
                raise TriggerNotFound(_not_found(trigger or name, known))
            routes = [r for r in routes if r.trigger == name]
            collected = {t: n for t, n in collected.items() if t == name}
            sources = [src for src in sources if name in src.triggers]
        failed = tx.failed_deliveries(failures, name, leave_out=leave_out) if failures else []
        at = now()
        waiting = []
        for r in routes:
            if r.limit and r.queued:
                limit = parse_limit(r.limit)
                if limit is None:  # pragma: no cover - r.limit is a spec the sink ran with
                    continue
                allowed, next_at = tx.allowance(r.sink, r.target, limit, at)
                route = (r.trigger, r.sink, r.target)
                waiting.append(Waiting(*route, r.queued, limit, allowed, next_at))
        webhooks = [] if name else [Webhooks(*w) for w in tx.inbox_counts("github")]
        away = tx.vacation()
    return Status(
        store=where,
        trigger=name,
        routes=tuple(routes),
        collected=dict(sorted(collected.items())),
        sources=tuple(sources),
        failures=tuple(failed),
        waiting=tuple(waiting),
        pauses=_pauses(away, name),
        vacation=away,
        webhooks=tuple(webhooks),
        spool=spooled,
    )


def _not_found(asked: str, known: Sequence[str] | set[str]) -> str:
    names = ", ".join(sorted(known)) or "none yet"
    return f"status: no trigger named {asked!r} has run (triggers that ran: {names})"


def _pauses(state: Vacation, name: str | None) -> tuple[Pause, ...]:
    """Who is held: ``name``, or every trigger paused by hand and those the vacation paused."""
    held = [name] if name else sorted(set(state.paused) | set(state.resume if state.active else ()))
    found = (pause_of(state, n) for n in held)
    return tuple(p for p in found if p is not None)


# -- the triggers, as `list` shows them -------------------------------------------------


def listing(
    triggers: Mapping[str, Trigger], *, api_url: str | None, s: Settings | None = None
) -> Listing:
    """The state of each of ``triggers``: configured, held, deployed, last and next run.

    ``api_url``: the Prefect API of a running serve (None: deployments are not asked
    about, and unheld triggers are ``unknown``). Never raises for an unreachable API:
    ``prefect_error`` says why.
    """
    from ._prefect_server import serve_problems

    s = s or settings()
    names = sorted(triggers)
    info: dict[str, Any] = {}
    asked, error = None, None
    if api_url and names:
        from ._deployments import deployment_info
        from .exceptions import TriggerflowError

        try:
            info, asked = deployment_info(names), api_url
        except TriggerflowError as e:
            error = str(e)
    with Store.default(s).transaction(commit=False) as tx:
        away = tx.vacation()
    broken = serve_problems(s)  # what the running serve could not deploy, and why
    lines = []
    for name in names:
        t = triggers[name]
        problems = ([broken[name]] if name in broken else []) + t.check()
        d = info.get(name)
        pause = pause_of(away, name)
        state: TriggerState
        if name in broken:
            state = "broken"
        elif problems and all("not checked" in p for p in problems):
            state = "unchecked"
        elif problems:
            state = "not configured"
        elif pause is not None:
            state = "paused"
        elif d is None:
            state = "unknown"
        elif not d.deployed:
            state = "not deployed"
        else:
            state = "paused" if d.paused else "active"
        lines.append(
            TriggerLine(
                name,
                t.when,
                state,
                pause if state == "paused" else None,
                tuple(problems),
                d.last_state if d else None,
                d.last_run_at if d else None,
                d.next_run_at if d else None,
            )  # fmt: skip
        )
    return Listing(tuple(lines), away, asked, error)


# -- items and SQL, for notebooks ---------------------------------------------------------


def items(
    *,
    trigger: str | None = None,
    source: str | None = None,
    since: str | datetime | date | None = None,
    limit: int = 100,
) -> Items:
    """Stored items, newest first: all, a trigger's, or those of sources matching ``source``.

    Args:
        trigger: only the items of the sources this trigger reads.
        source: only sources whose key (a feed's URL) contains this text.
        since: only items published (or first seen) from then on: a datetime, a date, an
            ISO date or an age (``12h``, ``7d``).
        limit: at most this many.

    Raises:
        SearchError: ``since`` is neither an age nor a date.

    Example::

        triggerflow.items(trigger="python_news", since="7d")
    """
    from ._search import parse_time

    when = parse_time(since, "since") if since is not None else None
    with Store.default().transaction(commit=False) as tx:
        found = tx.items(trigger=trigger or None, source=source or None, since=when, limit=limit)
    return Items(found)


def sql(query: str, params: Sequence[Any] | dict[str, Any] | None = None) -> Table:
    """Run one SQL query on the store (tables ``items``, ``deliveries``, ``sources``…).

    The transaction is rolled back afterwards: this is for looking, not for changing.

    Args:
        query: DuckDB SQL, with ``$1`` or ``$name`` parameters.
        params: their values.

    Returns:
        A :class:`Table` (renders in Jupyter; ``.column(name)``, ``.df()``).

    Example::

        triggerflow.sql("SELECT state, count(*) AS n FROM deliveries GROUP BY ALL")
    """
    with Store.default().transaction(commit=False) as tx:
        columns, rows = tx.query(query, params)
    return Table(columns, rows)
