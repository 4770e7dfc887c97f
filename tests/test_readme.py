"""The README stays true: its commands are the ones CI and the CLI use, its example runs."""

from __future__ import annotations

import re
from pathlib import Path

from triggerflow import Trigger
from triggerflow.cli import build_parser

ROOT = Path(__file__).resolve().parent.parent
README = (ROOT / "README.md").read_text()


def _blocks(lang: str) -> list[str]:
    return re.findall(rf"```{lang}\n(.*?)```", README, flags=re.S)


def test_exactly_two_setup_commands_and_ci_runs_the_test_one() -> None:
    setup = [b.strip() for b in _blocks("sh") if b.strip().startswith("python3 -m venv")]
    assert len(setup) == 2
    serve, tests = setup
    assert serve.endswith("triggerflow serve")
    ci = (ROOT / ".ci" / "run").read_text().strip().splitlines()[-1]
    assert ci == tests


def test_the_first_example_defines_a_trigger() -> None:
    namespace: dict[str, object] = {}
    exec(compile(_blocks("python")[0], "README.md", "exec"), namespace)  # noqa: S102
    t = namespace["python_news"]
    assert isinstance(t, Trigger) and t.schedule is not None
    assert t.schedule.describe() == "every 15m"


def test_every_cli_command_is_documented() -> None:
    commands = build_parser()._subparsers._group_actions[0].choices  # type: ignore[union-attr]
    for name in commands:
        assert f"triggerflow {name}" in README, name


def test_the_webhook_example_defines_an_event_trigger() -> None:
    (block,) = [b for b in _blocks("python") if "github_webhook" in b]
    namespace: dict[str, object] = {}
    exec(compile(block, "README.md", "exec"), namespace)  # noqa: S102
    t = namespace["project_activity"]
    assert isinstance(t, Trigger) and t.on is not None
    assert t.on.events == ("push", "pull_request") and t.on.repos == ("me/project",)


def test_the_sample_serve_output_counts_the_example_triggers() -> None:
    """The README's sample banner is what a fresh clone prints (test_serve checks the
    names of the ten deployments themselves)."""
    from triggerflow._discovery import discover

    (count,) = re.findall(r"Serving (\d+) trigger\(s\)", README)
    assert int(count) == len(discover(ROOT / "flows").triggers)


def test_the_delivery_rules_say_what_the_first_run_cut_spares() -> None:
    """Issue 15, item 10: events and generated feeds are not cut; the README says so."""
    text = " ".join(README.split())
    assert "Events are no backlog" in text
    assert "is not replayed" in text
    assert "A generated feed takes every item it is given, also on its first run" in text


def test_the_own_sink_and_source_examples_follow_the_public_protocols() -> None:
    from triggerflow.sinks import Poster
    from triggerflow.sources import Source

    (sink_block,) = [b for b in _blocks("python") if "class WebhookPost" in b]
    namespace: dict[str, object] = {}
    exec(compile(sink_block, "README.md", "exec"), namespace)  # noqa: S102
    hook = namespace["WebhookPost"]("https://hooks.example.org/hooks/T0KEN")  # type: ignore[operator]
    assert isinstance(hook, Poster) and hook.problem() is None
    assert hook.target == "hooks.example.org"
    (source_block,) = [b for b in _blocks("python") if "collect(" in b]
    namespace = {}
    exec(compile(source_block, "README.md", "exec"), namespace)  # noqa: S102
    releases = namespace["Releases"]("duckdb/duckdb")  # type: ignore[operator]
    assert isinstance(releases, Source) and releases.problem() is None
    assert isinstance(namespace["duckdb_releases"], Trigger)
