"""One duration grammar for schedules, limits and search ages (triggerflow._durations)."""

from __future__ import annotations

from datetime import timedelta

import pytest

from triggerflow._durations import parse_duration, parse_per, render_duration, render_per
from triggerflow.exceptions import ConfigurationError

S, M, H, D, W = 1, 60, 3600, 86400, 604800


@pytest.mark.parametrize(
    ("text", "seconds"),
    [("90s", 90), ("30 sec", 30), ("2 secs", 2), ("1 second", 1), ("45 seconds", 45),
     ("15m", 15 * M), ("5 min", 5 * M), ("10 mins", 10 * M), ("1 minute", M),
     ("10 minute", 10 * M), ("3 minutes", 3 * M),
     ("2h", 2 * H), ("1.5h", 1.5 * H), ("1 hr", H), ("4 hrs", 4 * H), ("1 hour", H),
     ("12 hours", 12 * H), ("7d", 7 * D), ("1 day", D), ("2 Days", 2 * D),
     ("1w", W), ("1 wk", W), ("3 wks", 3 * W), ("1 week", W), ("2 WEEKS", 2 * W),
     (" 15 M ", 15 * M), (".5h", 30 * M), ("0.25d", 6 * H)],
)  # fmt: skip
def test_every_spelling_of_every_unit(text: str, seconds: float) -> None:
    assert parse_duration(text, what="x") == timedelta(seconds=seconds)


@pytest.mark.parametrize(
    ("text", "says"),
    [("1fortnight", "x: unknown unit 'fortnight'; use s, m, h, d or w (e.g. 15m, 2h, 1w)"),
     ("15", "x: '15' needs a unit; use s, m, h, d or w"),
     ("abc", "x: 'abc' is not a number and a unit; use s, m, h, d or w"),
     ("-5m", "x: '-5m' is not a number and a unit"),
     ("5ms", "x: unknown unit 'ms'"),
     ("1h30m", "x: write one number and one unit, here '90m'; use s, m, h, d or w"),
     ("1d12h", "x: write one number and one unit, here '36h'")],
)  # fmt: skip
def test_a_bad_duration_names_the_text_and_the_units(text: str, says: str) -> None:
    with pytest.raises(ConfigurationError) as e:
        parse_duration(text, what="x")
    assert str(e.value).startswith(says), str(e.value)


@pytest.mark.parametrize(
    ("seconds", "short", "words"),
    [(90, "90s", "90 seconds"), (15 * M, "15m", "15 minutes"), (H, "1h", "1 hour"),
     (90 * M, "90m", "90 minutes"), (36 * H, "36h", "36 hours"), (D, "1d", "1 day"),
     (W, "1w", "1 week"), (14 * D, "2w", "2 weeks"), (1.5, "1.5s", "1.5 seconds"),
     (0, "0s", "0 seconds")],
)  # fmt: skip
def test_render_is_the_shortest_whole_form_and_reads_back(
    seconds: float, short: str, words: str
) -> None:
    delta = timedelta(seconds=seconds)
    assert render_duration(delta) == short
    assert render_duration(delta, words=True) == words
    assert parse_duration(short, what="x") == parse_duration(words, what="x") == delta


def test_a_window_may_leave_out_its_one() -> None:
    assert parse_per("w", what="x") == parse_per("week", what="x") == timedelta(weeks=1)
    assert parse_per("15m", what="x") == timedelta(minutes=15)
    assert render_per(timedelta(hours=1)) == "hour"
    assert render_per(timedelta(minutes=10)) == "10 minutes"
    with pytest.raises(ConfigurationError, match="longer than 0"):
        parse_per("0h", what="x")
