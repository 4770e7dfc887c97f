"""Publication limits: ``limit="5/hour"`` on a sink, "5 an hour, the rest later".

A limit counts what a sink target was sent in a sliding window: ``"5/hour"`` lets
at most 5 messages go out in any 60 minutes. ``"20/day, burst 5"`` adds a shorter
window in proportion (5 per 6 hours), so a day's allowance is not spent at once.
What is over the limit stays queued in the ledger and goes out in later runs,
oldest first.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from datetime import timedelta

from ._durations import parse_per, render_per
from .exceptions import ConfigurationError

__all__ = ["Limit", "parse_limit"]

# "5/hour", "5 / 15m", "100/day, burst 10": the count, the window (parse_per), the burst.
_SPEC = re.compile(r"^\s*(\d+)\s*/\s*(.*?)\s*(?:,\s*burst\s+(\d+))?\s*$", re.IGNORECASE)
_HOW = "'5/hour', '5/w', '3/15m' or '100/day, burst 10'"


@dataclass(frozen=True)
class Limit:
    """At most ``count`` per ``period``; at most ``burst`` per the same share of it."""

    count: int
    period: timedelta
    burst: int | None = None

    def windows(self) -> list[tuple[int, timedelta]]:
        """(how many, within how long) pairs that must all hold."""
        out = [(self.count, self.period)]
        if self.burst is not None and self.burst < self.count:
            out.append((self.burst, self.period * self.burst / self.count))
        return out

    def __str__(self) -> str:
        """``5/hour``, ``3/10 minutes``, ``20/day, burst 5``: what :func:`parse_limit` reads."""
        burst = f", burst {self.burst}" if self.burst else ""
        return f"{self.count}/{render_per(self.period)}{burst}"


def parse_limit(spec: str | Limit | None) -> Limit | None:
    """``"5/hour"``, ``"5/w"``, ``"3/15m"``, ``"100/day, burst 10"`` → :class:`Limit`.

    The window after the ``/`` is a unit, or a number and a unit, written as for
    ``every()``: ``hour``, ``h``, ``15m``, ``10 minutes``, ``1.5h``, ``week``, ``w``.

    Raises:
        ConfigurationError: the text is not a limit (the message names the accepted
            units and shows how to write one).
    """
    if spec is None or isinstance(spec, Limit):
        return spec
    where = f"limit {spec!r}"
    m = _SPEC.match(spec)
    if not m:
        raise ConfigurationError(f"{where}: write it like {_HOW}")
    period = parse_per(m.group(2), what=where, examples=_HOW)
    count = int(m.group(1))
    burst = int(m.group(3)) if m.group(3) else None
    if count < 1 or (burst is not None and burst < 1):
        raise ConfigurationError(f"{where}: counts must be at least 1, as in '5/hour'")
    return Limit(count, period, burst)
