"""The CLI as a user meets it: read-only commands start no server, failures are one clear
line, a closed pipe is no traceback, a vacation is not run through by accident."""

from __future__ import annotations

import os
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest

from triggerflow import Item
from triggerflow._store import Store, now
from triggerflow.cli import main

ROOT = Path(__file__).resolve().parent.parent


def _env(data_dir: Path, flows: Path | None = None, **extra: str) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith(("PREFECT_", "TRIGGERFLOW_"))}
    env.update(TRIGGERFLOW_DATA_DIR=str(data_dir), TRIGGERFLOW_ALERTS="off", **extra)
    if flows is not None:
        env["TRIGGERFLOW_FLOWS_DIR"] = str(flows)
    return env


def _flows(tmp_path: Path, body: str) -> Path:
    flows = tmp_path / "flows"
    flows.mkdir(exist_ok=True)
    (flows / "mine.py").write_text(textwrap.dedent(body))
    return flows


def test_list_starts_no_server_and_says_what_it_could_not_check(tmp_path: Path) -> None:
    flows = _flows(
        tmp_path,
        """
        from triggerflow import every, trigger
        from triggerflow.sinks import mastodon
        from triggerflow.sources import rss

        @trigger(schedule=every("1h"))
        def toots():
            mastodon(rss("http://127.0.0.1:9/feed.xml"))
        """,
    )
    data = tmp_path / "data"
    r = subprocess.run(
        [sys.executable, "-m", "triggerflow", "list"],
        env=_env(data, flows), capture_output=True, text=True, timeout=120,
    )  # fmt: skip
    assert r.returncode == 0, r.stdout + r.stderr
    assert "toots" in r.stdout and "unchecked" in r.stdout, r.stdout
    assert "mastodon account 'default': not checked" in r.stdout
    assert "Starting temporary server" not in r.stdout + r.stderr
    # Prefect's temporary server would have made its database there.
    assert not (data / "prefect" / "prefect.db").exists()


def test_a_wrong_password_is_one_clear_line_and_exit_1(tmp_path: Path, prosody) -> None:  # type: ignore[no-untyped-def]
    flows = _flows(
        tmp_path,
        """
        from triggerflow import Item, Items, trigger
        from triggerflow.sinks import xmpp

        @trigger()
        def note():
            xmpp(Items([Item("test", "1", title="hello")]), to="alice@localhost")
        """,
    )
    account = prosody.env()
    account["TRIGGERFLOW_XMPP_DEFAULT_PASSWORD"] = "not-the-password"
    args = [sys.executable, "-m", "triggerflow", "run", "note", "--here"]
    env = _env(tmp_path / "data", flows, TRIGGERFLOW_RETRY_DELAY="0", **account)
    r = subprocess.run(args, env=env, capture_output=True, text=True, timeout=300)
    out = r.stdout + r.stderr
    assert r.returncode == 1, out
    assert "Traceback" not in out, out
    reason = [line for line in out.splitlines() if "not-authorized" in line or "password" in line]
    assert reason, out
    assert len(reason) <= 2, out  # the run's state, and the summary's failure line at most
    assert "not-the-password" not in out  # never the secret itself
    debug = subprocess.run(
        args[:3] + ["--debug"] + args[3:], env=env, capture_output=True, text=True, timeout=300
    )
    assert debug.returncode == 1 and "Traceback" in debug.stdout + debug.stderr


def test_a_closed_pipe_is_no_traceback(tmp_path: Path) -> None:
    data = tmp_path / "data"
    store = Store(data / "triggerflow.duckdb")
    items = [
        Item("https://example.org/feed", f"k{i}", title=f"kernel news {i}") for i in range(3000)
    ]
    with store.transaction() as tx:
        tx.upsert_items(items, now())
    proc = subprocess.Popen(
        [sys.executable, "-m", "triggerflow", "search", "kernel", "--limit", "3000"],
        env=_env(data), stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
    )  # fmt: skip
    assert proc.stdout is not None and proc.stderr is not None
    proc.stdout.readline()  # like `| head -1`: read a line, then go away
    proc.stdout.close()
    err = proc.stderr.read()
    proc.wait(120)
    assert "Traceback" not in err and "BrokenPipeError" not in err, err


def test_run_during_a_vacation_is_refused_unless_forced(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    flows = _flows(
        tmp_path,
        """
        from triggerflow import every, trigger

        @trigger(schedule=every("1h"))
        def quiet():
            print("quiet ran")
        """,
    )
    monkeypatch.setenv("TRIGGERFLOW_FLOWS_DIR", str(flows))
    monkeypatch.delenv("PREFECT_API_URL", raising=False)
    from triggerflow import vacation

    vacation.on(note="back on the 12th")
    assert main(["run", "quiet"]) == 1
    err = capsys.readouterr().err
    assert "quiet is not run: on vacation since" in err and "--force" in err, err
    vacation.off()
    vacation.pause("quiet")
    assert main(["run", "quiet"]) == 1
    assert "paused by hand" in capsys.readouterr().err


def test_serve_refuses_a_run_retention_prefect_would_not_start_with(tmp_path: Path) -> None:
    """Prefect's vacuum keeps runs at least an hour: a shorter setting is refused before
    any server starts, naming the setting (Prefect would fail in its own log)."""
    r = subprocess.run(
        [sys.executable, "-m", "triggerflow", "serve", "--no-runs"],
        env=_env(tmp_path / "data", TRIGGERFLOW_RUN_RETENTION="60"),
        capture_output=True, text=True, timeout=120,
    )  # fmt: skip
    assert r.returncode != 0
    assert "TRIGGERFLOW_RUN_RETENTION): 60 s is less than Prefect's shortest, 3600 s" in r.stderr
    assert "Starting a local Prefect server" not in r.stdout + r.stderr
