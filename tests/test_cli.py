"""The CLI: every command has useful help; list/preview/status/config on real files."""

from __future__ import annotations

import os
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest

from triggerflow.cli import build_parser, main

ROOT = Path(__file__).resolve().parent.parent
COMMANDS = ["serve", "list", "run", "preview", "status", "config"]


@pytest.mark.parametrize("command", COMMANDS)
def test_every_command_has_help(command: str, capsys: pytest.CaptureFixture[str]) -> None:
    with pytest.raises(SystemExit) as exit_:
        main([command, "--help"])
    assert exit_.value.code == 0
    out = capsys.readouterr().out
    assert f"usage: triggerflow {command}" in out
    # A description of what it does, beyond the usage line, and where settings come from.
    sub = build_parser()._subparsers._group_actions[0].choices[command]  # type: ignore[union-attr]
    assert sub.description and sub.description.split("\n")[0] in out
    assert "TRIGGERFLOW_" in out


def test_help_without_arguments_lists_the_commands() -> None:
    r = subprocess.run(
        [sys.executable, "-m", "triggerflow"], capture_output=True, text=True, timeout=60
    )
    assert r.returncode == 2
    assert "COMMAND" in r.stderr and "required" in r.stderr


def _flows(tmp_path: Path, body: str) -> Path:
    flows = tmp_path / "flows"
    flows.mkdir()
    (flows / "mine.py").write_text(textwrap.dedent(body))
    return flows


def test_list_shows_schedules_and_not_configured_reasons(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    flows = _flows(
        tmp_path,
        """
        from triggerflow import cron, every, trigger
        from triggerflow.sinks import xmpp
        from triggerflow.sources import rss

        @trigger(schedule=every("2h"))
        def hourly_news():
            xmpp(rss("http://127.0.0.1:9/feed.xml"))

        @trigger(schedule=cron("30 6 * * *", timezone="Europe/Berlin"))
        def early():
            xmpp(rss("http://127.0.0.1:9/feed.xml"), account="work")
        """,
    )
    (flows / "broken.py").write_text("import does_not_exist\n")
    assert main(["--flows", str(flows), "list"]) == 1  # a file failed to load
    out = capsys.readouterr().out
    assert "hourly_news" in out and "every 2h" in out
    assert "early" in out and "cron 30 6 * * * (Europe/Berlin)" in out
    assert "not configured" in out
    assert "TRIGGERFLOW_XMPP_WORK_JID" in out  # the fix, named per account
    assert "broken.py" in out and "ModuleNotFoundError" in out


def test_unknown_trigger_names_the_known_ones(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    flows = _flows(
        tmp_path,
        """
        from triggerflow import trigger

        @trigger
        def only_one():
            pass
        """,
    )
    assert main(["--flows", str(flows), "preview", "nope"]) == 1
    err = capsys.readouterr().err
    assert "no trigger named 'nope'" in err and "only_one" in err


def test_status_on_an_empty_data_dir(capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["status"]) == 0
    assert "no trigger has run" in capsys.readouterr().out


def test_config_shows_environment_over_defaults(
    monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    monkeypatch.setenv("TRIGGERFLOW_FIRST_RUN", "12")
    assert main(["config"]) == 0
    out = capsys.readouterr().out
    assert "first_run" in out and "12" in out and "TRIGGERFLOW_FIRST_RUN" in out


def test_a_bad_setting_is_a_clear_error(
    monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    monkeypatch.setenv("TRIGGERFLOW_RETRIES", "many")
    assert main(["config"]) == 1
    assert "TRIGGERFLOW_RETRIES" in capsys.readouterr().err


SLOW_MODULE = """
import os
with open(os.environ["TF_MARK"], "a") as fh:
    fh.write("imported\\n")


def is_valid_syntax(*args, **kwargs):
    return True
"""


def test_commands_skip_the_grammar_that_jupyter_brings(tmp_path: Path) -> None:
    """With the notebooks extra, jsonschema (imported by Prefect) imports rfc3987-syntax,
    which compiles a grammar at import: 1.5 s of every command (issue 15). A stand-in
    package records being imported: plain Prefect imports it, the CLI does not."""
    (tmp_path / "rfc3987_syntax").mkdir()
    (tmp_path / "rfc3987_syntax" / "__init__.py").write_text(SLOW_MODULE)
    mark = tmp_path / "mark"
    env = {
        **os.environ, "PYTHONPATH": str(tmp_path), "TF_MARK": str(mark),
        "TRIGGERFLOW_DATA_DIR": str(tmp_path / "data"),
    }  # fmt: skip
    plain = subprocess.run(
        [sys.executable, "-c", "import prefect"], env=env, capture_output=True, timeout=120
    )
    assert plain.returncode == 0 and mark.read_text() == "imported\n"  # the stand-in works
    mark.unlink()
    for command in (["list"], ["accounts"]):
        r = subprocess.run(
            [sys.executable, "-m", "triggerflow", "--flows", str(ROOT / "flows"), *command],
            env=env, capture_output=True, text=True, timeout=300, cwd=ROOT,
        )  # fmt: skip
        assert r.returncode == 0, r.stdout[-500:] + r.stderr[-2000:]
        assert not mark.exists(), command
