"""Vacation and pauses: stop triggers without losing them, and come back without a flood.

``on()`` remembers which triggers were active, then pauses their deployments;
``off()`` resumes exactly those (a trigger paused by hand stays paused). The state
lives in the store, because Prefect un-pauses every deployment that ``serve`` or
``prefect deploy`` applies again: ``triggerflow serve`` re-applies it at each start.

With no Prefect server reachable the change is recorded and takes effect when
``triggerflow serve`` starts. Example::

    from triggerflow import vacation
    vacation.on(note="hiking, back on the 12th")
    vacation.status()
    vacation.off(skip_backlog=True)   # what piled up is marked skipped, not sent
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass

from ._paused import paused_reasons, vacation_state
from ._store import Store, Vacation, now
from .config import Settings, settings
from .exceptions import ConfigurationError, TriggerflowError

__all__ = ["Change", "Vacation", "off", "on", "pause", "paused_reasons", "resume", "status"]


@dataclass(frozen=True)
class Change:
    """What a vacation or pause command did.

    Attributes:
        vacation: the state afterwards.
        changed: the triggers whose Prefect deployment was paused or resumed now.
        applied: False when no Prefect server was reachable: ``serve`` applies it at start.
        skipped: deliveries marked skipped (``off(skip_backlog=True)``).
    """

    vacation: Vacation
    changed: tuple[str, ...] = ()
    applied: bool = False
    skipped: int = 0


def _trigger_names(s: Settings, names: Iterable[str] | None) -> list[str]:
    """The given names, or every trigger in the flows folder that is configured."""
    if names is not None:
        return sorted(set(names))
    # Lazy for the weight, not for a circle: discovery imports Prefect (through _trigger),
    # and the CLI imports this module for `vacation status`, which needs neither.
    from ._discovery import discover

    return sorted(n for n, t in discover(s.flows_dir).triggers.items() if not t.check())


def _apply(wanted: dict[str, bool]) -> tuple[tuple[str, ...], bool]:
    """Pause/resume deployments when a Prefect API is configured; else leave it to serve."""
    import os

    if not os.environ.get("PREFECT_API_URL"):
        return (), False
    from ._deployments import set_paused

    try:
        return tuple(sorted(set_paused(wanted))), True
    except TriggerflowError:
        return (), False  # recorded; serve applies it at its next start


def status() -> Vacation:
    """The vacation in progress (``active``, ``since``, ``note``) and the pauses by hand."""
    return vacation_state(settings())


def on(note: str | None = None, *, names: Iterable[str] | None = None) -> Change:
    """Pause every active trigger, remembering which ones to resume.

    Args:
        note: shown by ``status`` (e.g. where you are, when you are back).
        names: the triggers to consider (default: every trigger in the flows folder).

    Raises:
        ConfigurationError: a vacation is already on.
    """
    s = settings()
    store = Store.default(s)
    candidates = _trigger_names(s, names)
    deployed = _deployed_paused(candidates)
    with store.transaction() as tx:
        current = tx.vacation()
        if current.active:
            raise ConfigurationError(
                f"already on vacation since {current.since:%Y-%m-%d %H:%M}; "
                "`triggerflow vacation off` first"
            )
        active = [
            n
            for n in candidates
            if n not in current.paused and not deployed.get(n, False)  # not paused already
        ]
        tx.start_vacation(now(), note, active)
        state = tx.vacation()
    changed, applied = _apply(dict.fromkeys(active, True))
    return Change(state, changed, applied)


def off(*, skip_backlog: bool = False) -> Change:
    """Resume the triggers that were active when the vacation began.

    Args:
        skip_backlog: mark what they still owe as skipped, and skip items published
            before now that their next runs find, instead of sending them.

    Raises:
        ConfigurationError: no vacation is on.
    """
    s = settings()
    store = Store.default(s)
    with store.transaction() as tx:
        current = tx.vacation()
        if not current.active:
            raise ConfigurationError("not on vacation")
        resume = [n for n in current.resume if n not in current.paused]
        skipped = tx.skip_backlog(resume, now()) if skip_backlog else 0
        tx.end_vacation()
        state = tx.vacation()
    changed, applied = _apply(dict.fromkeys(resume, False))
    return Change(state, changed, applied, skipped)


def pause(name: str, note: str | None = None) -> Change:
    """Pause one trigger until :func:`resume` (it stays paused across vacations and restarts)."""
    s = settings()
    store = Store.default(s)
    with store.transaction() as tx:
        tx.set_paused(name, True, now(), note)
        state = tx.vacation()
    changed, applied = _apply({name: True})
    return Change(state, changed, applied)


def resume(name: str) -> Change:
    """Resume a trigger paused by hand (during a vacation it resumes when the vacation ends)."""
    s = settings()
    store = Store.default(s)
    with store.transaction() as tx:
        current = tx.vacation()
        if name not in current.paused:
            raise ConfigurationError(f"trigger {name!r} is not paused")
        tx.set_paused(name, False, now(), None)
        state = tx.vacation()
    if state.active:
        return Change(state)  # vacation keeps it paused; off() will not resume it either
    changed, applied = _apply({name: False})
    return Change(state, changed, applied)


def _deployed_paused(names: list[str]) -> dict[str, bool]:
    """Which deployments are paused in Prefect right now (by hand in the UI, say)."""
    import os

    if not os.environ.get("PREFECT_API_URL"):
        return {}
    from ._deployments import deployment_info

    try:
        return {n: bool(d.paused) for n, d in deployment_info(names).items() if d.deployed}
    except TriggerflowError:
        return {}
