"""The public facade: what `import triggerflow` promises."""

from __future__ import annotations

import os
import subprocess
import sys
from datetime import timedelta
from pathlib import Path

import pytest

import triggerflow
from triggerflow.exceptions import TriggerflowError


def test_every_public_name_resolves() -> None:
    for name in triggerflow.__all__:
        assert getattr(triggerflow, name) is not None, name
    assert set(triggerflow.__all__) <= set(dir(triggerflow))
    assert triggerflow.__all__ == sorted(triggerflow.__all__)


def test_search_is_a_function_of_the_package() -> None:
    """`triggerflow.search(...)` stays the function, not a module of the same name."""
    import triggerflow._search  # noqa: F401

    assert callable(triggerflow.search) and triggerflow.search.__name__ == "search"


def test_importing_the_package_is_light() -> None:
    """`import triggerflow` must not import Prefect (the CLI sets Prefect's env first)."""
    code = "import sys, triggerflow; print('prefect' in sys.modules)"
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert out.stdout.strip() == "False"


def test_trigger_decorator_makes_a_prefect_flow_with_a_schedule() -> None:
    from prefect import Flow

    from triggerflow import Trigger, cron, every, trigger

    @trigger(schedule=every("15m"), tags=["news"])
    def news() -> None:
        """Doc line."""

    assert isinstance(news, Flow) and isinstance(news, Trigger)
    assert news.name == "news" and news.description == "Doc line."
    assert news.schedule == every(900)
    assert news.tags == ("triggerflow", "news")
    assert cron("0 7 * * *").describe() == "cron 0 7 * * * (UTC)"


@pytest.mark.parametrize("bad", ["15", "5s", "abc", 0, -60])
def test_bad_schedules_are_clear_errors(bad: object) -> None:
    from triggerflow import every

    with pytest.raises(TriggerflowError, match="every"):
        every(bad)  # type: ignore[arg-type]


def test_every_takes_weeks_and_the_units_of_limits_and_search() -> None:
    """Issue "one delivery core", item 7: one duration grammar (`every("1w")` was refused)."""
    from triggerflow import every

    assert every("1w") == every("7d") == every("1 week") == every(timedelta(weeks=1))
    assert every("1w").describe() == "every 1w"
    assert every("1.5h").describe() == "every 90m"
    assert every("90 S").describe() == "every 90s"
    assert every("30 minutes") == every("30m") == every(1800)


@pytest.mark.parametrize(
    ("bad", "says"),
    [("1fortnight", "unknown unit 'fortnight'; use s, m, h, d or w (e.g. 15m, 2h, 1w)"),
     ("1h30m", "write one number and one unit, here '90m'")],
)  # fmt: skip
def test_a_bad_unit_names_the_text_and_the_accepted_units(bad: str, says: str) -> None:
    from triggerflow import ConfigurationError, every

    with pytest.raises(ConfigurationError) as e:
        every(bad)
    assert str(e.value).startswith(f"schedule every({bad!r}): {says}"), str(e.value)


def test_the_whole_error_tree_and_limit_are_exported() -> None:
    import inspect

    from triggerflow import exceptions

    classes = {
        name for name, value in vars(exceptions).items()
        if inspect.isclass(value) and issubclass(value, BaseException)
        and value.__module__ == exceptions.__name__ and not name.startswith("_")
    }  # fmt: skip
    assert classes == set(exceptions.__all__)
    assert classes - set(triggerflow.__all__) == set()
    for name in classes:
        assert getattr(triggerflow, name) is getattr(exceptions, name), name
    from triggerflow.limits import Limit

    assert "Limit" in triggerflow.__all__ and triggerflow.Limit is Limit


def test_bad_cron_is_a_clear_error() -> None:
    from triggerflow import cron

    with pytest.raises(TriggerflowError, match="five fields"):
        cron("every day")


@pytest.mark.parametrize(
    ("expression", "timezone", "says"),
    [
        ("61 25 * * *", "UTC", "minute '61': 61 is not in 0-59; hour '25': 25 is not in 0-23"),
        ("0 24 * * *", "UTC", "hour '24': 24 is not in 0-23"),
        ("*/15 * * * 8", "UTC", "day of week '8': 8 is not in 0-7 or sun-sat"),
        ("0 0 32 * *", "UTC", "day of month '32': 32 is not in 1-31"),
        ("0 0 * 13 *", "UTC", "month '13': 13 is not in 1-12 or jan-dec"),
        ("30-10 * * * *", "UTC", "the range 30-10 runs backwards"),
        ("*/0 * * * *", "UTC", "the step /0 must be 1-59"),
        ("0 7 * * *", "Mars/Olympus", "unknown time zone 'Mars/Olympus'"),
    ],
)
def test_each_cron_field_and_the_timezone_are_checked_when_defined(
    expression: str, timezone: str, says: str
) -> None:
    """Found when the trigger is defined, with the field and its range, not at deploy."""
    from triggerflow import cron

    with pytest.raises(TriggerflowError) as e:
        cron(expression, timezone=timezone)
    assert says in str(e.value)


@pytest.mark.parametrize(
    "expression", ["0 8 * * 1-5", "*/30 7-22 * * *", "0 8 1,15 jan-jun mon-fri", "@daily",
                   "0 8 * * 7", "0 9 * * SUN"],
)  # fmt: skip
def test_good_cron_expressions_pass(expression: str) -> None:
    from triggerflow import cron

    assert cron(expression, timezone="Europe/Paris").expression == expression


def test_interval_schedules_have_a_fixed_anchor() -> None:
    """Restarting serve must not move an interval trigger's runs (Prefect's default
    anchor is the moment of deploying)."""
    from triggerflow import every
    from triggerflow.schedules import ANCHOR, to_prefect

    first, again = to_prefect(every("1h")), to_prefect(every("1h"))
    assert first.anchor_date == again.anchor_date == ANCHOR  # type: ignore[attr-defined]


def test_sinks_outside_a_trigger_say_how_to_use_them() -> None:
    from triggerflow.sinks import xmpp

    with pytest.raises(TriggerflowError, match="inside a trigger"):
        xmpp([], to="me@example.org")


def test_items_render_as_a_table_in_jupyter() -> None:
    from datetime import UTC, datetime

    from triggerflow import Item, Items

    items = Items(
        [
            Item(source="s", id="1", title="<script>x</script>", link="http://127.0.0.1/1",
                 published=datetime(2026, 1, 2, tzinfo=UTC)),
            Item(source="s", id="2", title="second"),
        ]
    )  # fmt: skip
    html = items._repr_html_()
    assert html.count("<tr>") == 3  # header + 2 rows
    assert "&lt;script&gt;" in html and "<script>" not in html
    assert "2026-01-02" in html
    assert isinstance(items[:1], Items) and len(items[:1]) == 1
    assert "second" in repr(items)


def test_preview_works_inside_a_running_event_loop(feeds) -> None:  # type: ignore[no-untyped-def]
    """Jupyter runs cells inside an event loop: preview must not call asyncio.run there."""
    import asyncio

    from triggerflow import trigger
    from triggerflow.sources import rss

    feeds.publish("/nb.xml", ["from a notebook"])

    @trigger
    def nb() -> None:
        rss(feeds.url("/nb.xml"))

    async def cell() -> list[str]:
        return [i.title for i in nb.preview()]

    assert asyncio.run(cell()) == ["from a notebook"]


def test_notebook_scratch_dirs_are_removed(tmp_path: Path) -> None:
    """Each scratch setup replaces the last one's folder; the kernel's exit removes the rest."""
    code = (
        "from pathlib import Path\n"
        "from triggerflow import notebook as nb\n"
        "first = nb.setup(scratch=True).data_dir.parent\n"
        "(first / 'data').mkdir(exist_ok=True)\n"
        "(first / 'data' / 'x').write_text('x')\n"
        "second = nb.setup(scratch=True).data_dir.parent\n"
        "assert not first.exists() and second.exists(), (first, second)\n"
    )
    env = {k: v for k, v in os.environ.items() if not k.startswith("TRIGGERFLOW_")}
    env["TMPDIR"] = str(tmp_path)  # the folders are made here, and nothing else is
    r = subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, timeout=120, env=env
    )
    assert r.returncode == 0, r.stderr
    assert list(tmp_path.glob("triggerflow-notebook-*")) == []
