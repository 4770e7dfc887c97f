"""The one way to write a length of time: ``every("15m")``, ``limit="5/w"``, ``--since 30s``.

Schedules, publication limits and search ages all read and show durations here, so
that what one accepts the others accept too.

The grammar (case does not matter, spaces around and between are optional)::

    duration := number unit            15m   1.5h   90 s   1 week   2 Days
    per      := [number] unit          w     week   15m    10 minutes   (limit windows)
    number   := digits [. digits]      (no sign: a duration is never negative)

    unit     seconds  s sec secs second seconds
             minutes  m min mins minute minutes
             hours    h hr hrs hour hours
             days     d day days
             weeks    w wk wks week weeks

One number and one unit: ``1h30m`` is refused with the one-unit spelling to use
instead (``90m``), so that every duration has one obvious form, and it is the one
:func:`render_duration` shows. A bare number is refused too (``"15"``: minutes or
seconds?); the callers that take seconds take an ``int`` or ``float``, not a string.
"""

from __future__ import annotations

import re
from datetime import timedelta

from .exceptions import ConfigurationError

__all__ = [
    "UNITS_HELP", "parse_duration", "parse_per", "render_about", "render_duration", "render_per",
]  # fmt: skip

_SECONDS = {
    "s": 1, "sec": 1, "secs": 1, "second": 1, "seconds": 1,
    "m": 60, "min": 60, "mins": 60, "minute": 60, "minutes": 60,
    "h": 3600, "hr": 3600, "hrs": 3600, "hour": 3600, "hours": 3600,
    "d": 86400, "day": 86400, "days": 86400,
    "w": 604800, "wk": 604800, "wks": 604800, "week": 604800, "weeks": 604800,
}  # fmt: skip
# Largest first: what render_duration tries, short and long names.
_RENDER = (("w", "week", 604800), ("d", "day", 86400), ("h", "hour", 3600),
           ("m", "minute", 60), ("s", "second", 1))  # fmt: skip

UNITS_HELP = "use s, m, h, d or w"
_NUMBER = r"(\d+(?:\.\d+)?|\.\d+)"
_ONE = re.compile(rf"^\s*{_NUMBER}?\s*([a-z]*)\s*$", re.IGNORECASE)
_COMPOUND = re.compile(rf"^\s*(?:{_NUMBER}\s*([a-z]+)\s*){{2,}}$", re.IGNORECASE)
_PART = re.compile(rf"{_NUMBER}\s*([a-z]+)", re.IGNORECASE)


def parse_duration(text: str, *, what: str, examples: str = "15m, 2h, 1w") -> timedelta:
    """``"15m"``, ``"1.5h"``, ``"1 week"`` → :class:`~datetime.timedelta`.

    Args:
        text: the duration as written (see the module's grammar).
        what: the thing being set, for the message: ``"schedule every('1x')"``.
        examples: correct forms shown in the message.

    Raises:
        ConfigurationError: ``what: why; use s, m, h, d or w (e.g. examples)``.
    """
    return _parse(text, what=what, examples=examples, number_needed=True)


def parse_per(text: str, *, what: str, examples: str = "5/hour, 5/w, 3/10 minutes") -> timedelta:
    """The window of a rate: ``"hour"``, ``"w"``, ``"15m"``, ``"10 minutes"``; no number is 1.

    Raises:
        ConfigurationError: as :func:`parse_duration`, or the window is zero.
    """
    delta = _parse(text, what=what, examples=examples, number_needed=False)
    if not delta:
        raise ConfigurationError(f"{what}: the window must be longer than 0 (e.g. {examples})")
    return delta


def _parse(text: str, *, what: str, examples: str, number_needed: bool) -> timedelta:
    hint = f"{UNITS_HELP} (e.g. {examples})"
    m = _ONE.match(text)
    if m is None:
        if _COMPOUND.match(text):
            total = sum(float(n) * _SECONDS.get(u.lower(), 0) for n, u in _PART.findall(text))
            if all(u.lower() in _SECONDS for _, u in _PART.findall(text)):
                one = render_duration(timedelta(seconds=total))
                raise ConfigurationError(
                    f"{what}: write one number and one unit, here {one!r}; {hint}"
                )
        raise ConfigurationError(f"{what}: {text!r} is not a number and a unit; {hint}")
    number, unit = m.group(1), m.group(2).lower()
    if not unit:
        raise ConfigurationError(f"{what}: {text.strip()!r} needs a unit; {hint}")
    if number is None and number_needed:
        raise ConfigurationError(f"{what}: {text.strip()!r} is not a number and a unit; {hint}")
    if unit not in _SECONDS:
        raise ConfigurationError(f"{what}: unknown unit {m.group(2)!r}; {hint}")
    return timedelta(seconds=float(number or 1) * _SECONDS[unit])


def render_duration(delta: timedelta, *, words: bool = False) -> str:
    """The shortest natural form, the largest unit that counts it whole: ``15m``, ``1h``,
    ``1w``, ``90s`` (``1.5s`` below a second); ``words=True``: ``15 minutes``, ``1 hour``.

    What it returns for a ``delta`` of 0 or more, :func:`parse_duration` reads back to
    ``delta``.
    """
    micro = abs(delta) // timedelta(microseconds=1)
    sign = "-" if delta < timedelta(0) else ""
    whole, part = divmod(micro, 1_000_000)  # not a whole second: 1.5s, never 1.5e-06s
    number, short, long = f"{whole}.{part:06d}".rstrip("0"), "s", "second"
    for unit, name, seconds in _RENDER:
        if micro and micro % (seconds * 1_000_000) == 0:
            number, short, long = str(micro // (seconds * 1_000_000)), unit, name
            break
    if micro == 0:
        number = "0"
    if words:
        return f"{sign}{number} {long}{'' if number == '1' else 's'}"
    return f"{sign}{number}{short}"


def render_per(delta: timedelta) -> str:
    """The window of a rate in words, without a 1: ``hour``, ``week``, ``10 minutes``."""
    text = render_duration(delta, words=True)
    return text[2:] if text.startswith("1 ") else text


def render_about(delta: timedelta) -> str:
    """A wait for people, rounded: ``45 seconds``, ``20 minutes``, ``3 hours``, ``2 days``
    (for "next try in …", where the exact second does not matter)."""
    seconds = max(0.0, delta.total_seconds())
    for unit, limit in ((1, 120), (60, 2 * 3600), (3600, 2 * 86400), (86400, float("inf"))):
        if seconds < limit:
            return render_duration(timedelta(seconds=round(seconds / unit) * unit), words=True)
    raise AssertionError("unreachable")
