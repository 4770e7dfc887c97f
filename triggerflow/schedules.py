"""When a trigger runs: ``every("15m")`` or ``cron("0 7 * * *")``.

Both become the schedule of the trigger's Prefect deployment.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta

from ._durations import parse_duration, render_duration
from .exceptions import ConfigurationError

__all__ = ["Cron", "Every", "Schedule", "cron", "every"]

# Where every interval schedule counts from: a fixed point, so that restarting serve
# does not move a trigger's runs (Prefect's default anchor is "now", at each deploy).
# "every 15m" runs at :00, :15, :30 and :45, "every 1d" at midnight UTC.
ANCHOR = datetime(2026, 1, 1, tzinfo=UTC)


@dataclass(frozen=True)
class Every:
    """Run at a fixed interval."""

    interval: timedelta

    def describe(self) -> str:
        """Short human form, e.g. ``every 15m``, ``every 1w``."""
        return f"every {render_duration(self.interval)}"


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
    """A fixed interval: ``every("15m")``, ``every("2h")``, ``every("1w")``, ``every(90)``
    (seconds).

    A string is one number and one unit, in any case, with or without a space:
    ``"90s"``, ``"1.5h"``, ``"1 week"``. The units are s (sec, second), m (min,
    minute), h (hr, hour), d (day) and w (wk, week), also in the plural. One unit
    only: ``"90m"``, not ``"1h30m"``.

    Raises:
        ConfigurationError: the interval is not understood (the message names the
            accepted units) or shorter than 10 seconds.
    """
    if isinstance(interval, timedelta):
        delta = interval
    elif isinstance(interval, int | float):
        delta = timedelta(seconds=interval)
    else:
        delta = parse_duration(interval, what=f"schedule every({interval!r})")
    if delta < timedelta(seconds=10):
        raise ConfigurationError(f"schedule every({interval!r}): shorter than 10 seconds")
    return Every(delta)


# (name, lowest, highest, names allowed instead of numbers) per field, in order.
_CRON_FIELDS = (
    ("minute", 0, 59, ()),
    ("hour", 0, 23, ()),
    ("day of month", 1, 31, ()),
    ("month", 1, 12, ("jan", "feb", "mar", "apr", "may", "jun",
                      "jul", "aug", "sep", "oct", "nov", "dec")),
    ("day of week", 0, 7, ("sun", "mon", "tue", "wed", "thu", "fri", "sat")),
)  # fmt: skip
_CRON_ALIASES = ("@yearly", "@annually", "@monthly", "@weekly", "@daily", "@midnight", "@hourly")
_CRON_PART = re.compile(r"^(?:(\*)|([0-9a-z]+)(?:-([0-9a-z]+))?)(?:/([0-9]+))?$", re.IGNORECASE)


def _cron_field_error(text: str, name: str, low: int, high: int, names: tuple[str, ...]) -> str:
    """Why one cron field is wrong, or "" when it is fine."""
    allowed = f"{low}-{high}" + (f" or {names[0]}-{names[-1]}" if names else "")
    if name == "day of week":
        allowed += " (0 and 7 are Sunday)"

    def value(v: str) -> int | None:
        if v.isdigit():
            return int(v)
        if v.lower() in names:
            return names.index(v.lower()) + (1 if name == "month" else 0)
        return None

    for part in text.split(","):
        m = _CRON_PART.match(part)
        if not m:
            return f"{name} {text!r}: {part!r} is not a number, a range a-b, * or a step /n"
        first, last, step = m.group(2), m.group(3), m.group(4)
        numbers = []
        for v in (first, last):
            if v is None:
                continue
            n = value(v)
            if n is None or not low <= n <= high:
                return f"{name} {text!r}: {v} is not in {allowed}"
            numbers.append(n)
        if len(numbers) == 2 and numbers[0] > numbers[1]:
            return f"{name} {text!r}: the range {first}-{last} runs backwards"
        if step is not None and not 1 <= int(step) <= high:
            return f"{name} {text!r}: the step /{step} must be 1-{high}"
    return ""


def cron(expression: str, timezone: str = "UTC") -> Cron:
    """A cron schedule: ``cron("*/30 7-22 * * *", timezone="Europe/Paris")``.

    Five fields (minute hour day-of-month month day-of-week), each ``*``, a number, a
    range ``a-b``, a list ``a,b`` and an optional step ``/n``; months and weekdays
    also by name (``jan``, ``mon-fri``); or one of ``@hourly``, ``@daily``,
    ``@weekly``, ``@monthly``, ``@yearly``. Checked here, when the trigger is
    defined, so that a typo is reported with its file and never reaches ``serve``.

    Raises:
        ConfigurationError: a field is outside its range (named, with the range), or
            the time zone is not an IANA name.
    """
    where = f"schedule cron({expression!r})"
    fields = expression.split()
    if not (len(fields) == 1 and fields[0].lower() in _CRON_ALIASES):
        if len(fields) != 5:
            raise ConfigurationError(
                f"{where}: a cron expression has five fields "
                "(minute hour day-of-month month day-of-week), "
                f"or is one of {', '.join(_CRON_ALIASES)}"
            )
        errors = [
            why for text, spec in zip(fields, _CRON_FIELDS, strict=True)
            if (why := _cron_field_error(text, *spec))
        ]  # fmt: skip
        if errors:
            raise ConfigurationError(f"{where}: " + "; ".join(errors))
    _check_timezone(where, timezone)
    from prefect.client.schemas.schedules import CronSchedule

    try:  # the backstop: whatever Prefect itself would refuse when deploying
        CronSchedule(cron=expression, timezone=timezone)
    except ValueError as e:
        raise ConfigurationError(f"{where}: Prefect cannot use it") from e
    return Cron(expression, timezone)


def _check_timezone(where: str, timezone: str) -> None:
    from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

    try:
        ZoneInfo(timezone)
    except (ZoneInfoNotFoundError, ValueError) as e:
        raise ConfigurationError(
            f"{where}: unknown time zone {timezone!r}: use an IANA name such as "
            "'Europe/Paris', 'America/New_York' or 'UTC'"
        ) from e


def to_prefect(schedule: Schedule, *, active: bool = True) -> object:
    """The Prefect schedule object for ``schedule``."""
    from prefect.schedules import Cron as PrefectCron
    from prefect.schedules import Interval

    if isinstance(schedule, Every):
        return Interval(schedule.interval, anchor_date=ANCHOR, active=active)
    return PrefectCron(schedule.expression, timezone=schedule.timezone, active=active)
