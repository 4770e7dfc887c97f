"""The public facade: what `import triggerflow` promises."""

from __future__ import annotations

import subprocess
import sys

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


def test_bad_cron_is_a_clear_error() -> None:
    from triggerflow import cron

    with pytest.raises(TriggerflowError, match="five fields"):
        cron("every day")


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
