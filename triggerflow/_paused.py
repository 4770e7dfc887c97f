"""Whether a trigger is held: paused by hand, or on vacation. Read-only.

``vacation.py`` changes these states (and needs the flows folder for that: which
triggers a vacation pauses); running a trigger, deploying it, ``status`` and ``list``
only ask whether it is held. That question lives here, below both, so that the trigger
runtime does not depend on the module that discovers triggers (it was the circle
``_discovery -> _trigger -> vacation -> _discovery``).

The answer is a :class:`Pause` record, not a sentence: front ends that need to tell a
vacation from a pause by hand read :attr:`Pause.why`.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass
from datetime import datetime
from typing import Literal

from ._store import Store, Vacation
from .config import Settings, settings

__all__ = ["Pause", "PauseReason", "held", "pause_of", "paused_reasons", "vacation_state"]

PauseReason = Literal["vacation", "by hand"]


@dataclass(frozen=True)
class Pause:
    """A trigger that must stay paused, and why.

    Attributes:
        trigger: the trigger's name.
        why: ``"by hand"`` (``triggerflow pause NAME``, until ``resume``; it outlasts a
            vacation) or ``"vacation"`` (until ``triggerflow vacation off``).
        since: when the pause (or the vacation) began.
        note: the note given with it, if any.
    """

    trigger: str
    why: PauseReason
    since: datetime
    note: str | None = None

    def __str__(self) -> str:
        when = f"{self.since.astimezone():%Y-%m-%d %H:%M}"
        return (
            f"paused by hand since {when}" if self.why == "by hand" else f"on vacation since {when}"
        )


def vacation_state(s: Settings | None = None) -> Vacation:
    """The vacation in progress (``active``, ``since``, ``note``) and the pauses by hand."""
    with Store.default(s or settings()).transaction(commit=False) as tx:
        return tx.vacation()


def pause_of(state: Vacation, name: str) -> Pause | None:
    """Why ``name`` is held in ``state``: a pause by hand outlasts a vacation, so it wins."""
    if name in state.paused:
        return Pause(name, "by hand", state.paused[name], state.notes.get(name))
    if state.active and state.since is not None:
        return Pause(name, "vacation", state.since, state.note)
    return None


def held(names: Iterable[str], state: Vacation | None = None) -> dict[str, Pause]:
    """The pause of each of ``names`` that must stay paused (``state``: read now if None)."""
    state = vacation_state() if state is None else state
    return {n: p for n in names if (p := pause_of(state, n)) is not None}


def paused_reasons(names: Iterable[str]) -> dict[str, str]:
    """Why each of ``names`` must stay paused, for those that must, as a sentence."""
    return {n: str(p) for n, p in held(names).items()}
