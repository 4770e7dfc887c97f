"""When a trigger runs: ``every("15m")`` or ``cron("0 7 * * *")``.

Both become the schedule of the trigger's Prefect deployment.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from datetime import timedelta

from .exceptions import ConfigurationError

__all__ = ["Cron", "Every", "Schedule", "cron", "every"]

_UNITS = {"s": 1, "m": 60, "h": 3600, "d": 86400}
_DURATION = re.compile(r"^\s*(\d+)\s*([smhd])\s*$")


@dataclass(frozen=True)
class Every:
    """Run at a fixed interval."""

    interval: timedelta

    def describe(self) -> str:
        """Short human form, e.g. ``every 15m``."""
        seconds = int(self.interval.total_seconds())
        for unit, size in (("d", 86400), ("h", 3600), ("m", 60)):
            if seconds % size == 0:
                return f"every {seconds // size}{unit}"
        return f"every {seconds}s"


@dataclass(frozen=True)
class Cron:
    """Run on a cron expression (five fields) in a time zone."""

    expression: str
    timezone: str = "UTC"

    def describe(self) -> str:
        """Short human form, e.g. ``cron 0 7 * * * (UTC)``."""
        return f"cron {self.expression} ({self.timezone})"


Schedule = Every | Cron


def every(interval: str | int | float | timedelta) -> Every:
    """A fixed interval: ``every("15m")``, ``every("2h")``, ``every(90)`` (seconds).

    Raises:
        ConfigurationError: the interval is not understood or shorter than 10 seconds.
    """
    if isinstance(interval, timedelta):
        delta = interval
    elif isinstance(interval, int | float):
        delta = timedelta(seconds=interval)
    else:
        m = _DURATION.match(interval)
        if not m:
            raise ConfigurationError(
                f"schedule every({interval!r}): write a number and a unit: s, m, h or d "
                "(e.g. '15m')"
            )
        delta = timedelta(seconds=int(m.group(1)) * _UNITS[m.group(2)])
    if delta < timedelta(seconds=10):
        raise ConfigurationError(f"schedule every({interval!r}): shorter than 10 seconds")
    return Every(delta)


def cron(expression: str, timezone: str = "UTC") -> Cron:
    """A cron schedule: ``cron("*/30 7-22 * * *", timezone="Europe/Paris")``.

    Raises:
        ConfigurationError: the expression does not have five fields.
    """
    if len(expression.split()) != 5:
        raise ConfigurationError(
            f"schedule cron({expression!r}): a cron expression has five fields "
            "(minute hour day-of-month month day-of-week)"
        )
    return Cron(expression, timezone)


def to_prefect(schedule: Schedule, *, active: bool = True) -> object:
    """The Prefect schedule object for ``schedule``."""
    from prefect.schedules import Cron as PrefectCron
    from prefect.schedules import Interval

    if isinstance(schedule, Every):
        return Interval(schedule.interval, active=active)
    return PrefectCron(schedule.expression, timezone=schedule.timezone, active=active)
