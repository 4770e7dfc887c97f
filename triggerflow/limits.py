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

from .exceptions import ConfigurationError

__all__ = ["Limit", "parse_limit"]

_PERIODS = {
    "second": 1, "sec": 1, "s": 1,
    "minute": 60, "min": 60, "m": 60,
    "hour": 3600, "h": 3600,
    "day": 86400, "d": 86400,
    "week": 604800,
}  # fmt: skip
_SPEC = re.compile(
    r"^\s*(\d+)\s*/\s*(\d+\s*)?([a-z]+?)s?\s*(?:,\s*burst\s+(\d+))?\s*$", re.IGNORECASE
)


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
        seconds = int(self.period.total_seconds())
        unit = next(
            (f"{seconds // n} {name}" if seconds // n > 1 else name)
            for name, n in (("week", 604800), ("day", 86400), ("hour", 3600), ("minute", 60))
            if seconds % n == 0
        ) if seconds >= 60 else f"{seconds} second"  # fmt: skip
        return f"{self.count}/{unit}" + (f", burst {self.burst}" if self.burst else "")


def parse_limit(spec: str | Limit | None) -> Limit | None:
    """``"5/hour"``, ``"100/day, burst 10"``, ``"3/10 minutes"`` → :class:`Limit`.

    Raises:
        ConfigurationError: the text is not a limit.
    """
    if spec is None or isinstance(spec, Limit):
        return spec
    m = _SPEC.match(spec)
    if not m or m.group(3).lower() not in _PERIODS:
        raise ConfigurationError(
            f"limit {spec!r}: write it like '5/hour', '100/day, burst 10' or '3/10 minutes'"
        )
    count = int(m.group(1))
    times = int(m.group(2)) if m.group(2) else 1
    burst = int(m.group(4)) if m.group(4) else None
    if count < 1 or times < 1 or (burst is not None and burst < 1):
        raise ConfigurationError(f"limit {spec!r}: counts must be at least 1, as in '5/hour'")
    return Limit(count, timedelta(seconds=times * _PERIODS[m.group(3).lower()]), burst)
