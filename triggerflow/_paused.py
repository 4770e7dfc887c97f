"""Whether a trigger is held: paused by hand, or on vacation. Read-only.

``vacation.py`` changes these states (and needs the flows folder for that: which
triggers a vacation pauses); running a trigger, deploying it and the bot's ``list`` only
ask whether it is held. That question lives here, below both, so that the trigger
runtime does not depend on the module that discovers triggers (it was the circle
``_discovery -> _trigger -> vacation -> _discovery``).
"""

from __future__ import annotations

from collections.abc import Iterable

from ._store import Store, Vacation
from .config import Settings, settings

__all__ = ["paused_reasons", "vacation_state"]


def vacation_state(s: Settings | None = None) -> Vacation:
    """The vacation in progress (``active``, ``since``, ``note``) and the pauses by hand."""
    with Store.default(s or settings()).transaction(commit=False) as tx:
        return tx.vacation()


def paused_reasons(names: Iterable[str]) -> dict[str, str]:
    """Why each of ``names`` must stay paused, for those that must."""
    state = vacation_state()
    reasons: dict[str, str] = {}
    for n in names:
        if n in state.paused:
            reasons[n] = f"paused by hand since {state.paused[n]:%Y-%m-%d %H:%M}"
        elif state.active and state.since is not None:
            reasons[n] = f"on vacation since {state.since:%Y-%m-%d %H:%M}"
    return reasons
