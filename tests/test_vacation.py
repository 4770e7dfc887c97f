"""Vacation and pauses against a real `triggerflow serve` (real Prefect server, restarts)."""

from __future__ import annotations

import textwrap
import time
from pathlib import Path
from typing import Any

import pytest
from serve_support import Serve

TRIGGERS = """
from triggerflow import every, trigger

@trigger(schedule=every("10s"))
def {name}():
    print("{name} ran")
"""


def _flows(tmp_path: Path, names: list[str]) -> Path:
    flows = tmp_path / "flows"
    flows.mkdir()
    for name in names:
        (flows / f"{name}.py").write_text(textwrap.dedent(TRIGGERS.format(name=name)))
    return flows


def _wait_for_runs(
    serve: Serve, names: list[str], more_than: dict[str, int], timeout: float
) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if all(len(serve.runs(n)) > more_than.get(n, 0) for n in names):
            return
        time.sleep(1)
    counts = {n: len(serve.runs(n)) for n in names}
    raise AssertionError(f"no new runs of {names} in {timeout:g} s: {counts} (before {more_than})")


def test_vacation_survives_a_restart_and_resumes_only_what_was_active(tmp_path: Path) -> None:
    flows = _flows(tmp_path, ["alpha", "beta", "gamma"])
    serve = Serve(tmp_path / "data", flows, PREFECT_RUNNER_POLL_FREQUENCY="1")
    assert serve.cli("pause", "gamma").returncode == 0  # by hand, before anything runs
    try:
        out = serve.start()
        assert "gamma (every 10s): paused by hand" in out
        deps = serve.deployments(3)
        assert {n: d["paused"] for n, d in deps.items()} == {
            "alpha": False, "beta": False, "gamma": True,
        }  # fmt: skip
        assert [n for n, d in deps.items() if "paused" in d["tags"]] == ["gamma"]
        _wait_for_runs(serve, ["alpha", "beta"], {}, timeout=60)

        on = serve.cli("vacation", "on", "--note", "hiking")
        assert on.returncode == 0, on.stderr
        assert "Paused: alpha, beta." in on.stdout
        deps = serve.deployments(3)
        assert all(d["paused"] for d in deps.values())
        # Visible in the UI's lists: its status badge only says whether serve polls.
        assert all("paused" in d["tags"] for d in deps.values()), deps
        status = serve.cli("vacation", "status").stdout
        assert "On vacation since" in status and "hiking" in status

        # A restart of serve re-deploys everything: the vacation must hold.
        serve.stop()
        out = serve.start()
        assert "alpha (every 10s): on vacation since" in out
        assert all(d["paused"] for d in serve.deployments(3).values())
        before = {n: len(serve.runs(n)) for n in ("alpha", "beta", "gamma")}
        time.sleep(15)  # longer than the interval plus the runner's poll
        assert {n: len(serve.runs(n)) for n in before} == before

        off = serve.cli("vacation", "off")
        assert off.returncode == 0, off.stderr
        assert "Resumed: alpha, beta." in off.stdout and "Still paused by hand: gamma" in off.stdout
        deps = serve.deployments(3)
        assert {n: d["paused"] for n, d in deps.items()} == {
            "alpha": False, "beta": False, "gamma": True,
        }  # fmt: skip
        assert {n: "paused" in d["tags"] for n, d in deps.items()} == {
            "alpha": False, "beta": False, "gamma": True,
        }  # fmt: skip
        _wait_for_runs(serve, ["alpha", "beta"], before, timeout=60)
        assert len(serve.runs("gamma")) == before["gamma"] == 0
        listing = serve.cli("list").stdout
        assert "gamma" in listing and "paused" in listing
    finally:
        serve.kill()


def test_vacation_rules_without_a_server(monkeypatch: pytest.MonkeyPatch) -> None:
    """Recorded in the store (serve applies it at start); misuse gets a clear error."""
    from triggerflow import vacation
    from triggerflow.exceptions import ConfigurationError

    monkeypatch.delenv("PREFECT_API_URL", raising=False)  # no server: nothing to apply now

    vacation.pause("b")
    change = vacation.on(note="away", names=["a", "b", "c"])
    assert not change.applied and change.vacation.resume == ("a", "c")
    assert vacation.paused_reasons(["a", "b", "x"]).keys() == {"a", "b", "x"}
    assert vacation.paused_reasons(["a"])["a"].startswith("on vacation since")
    assert vacation.paused_reasons(["b"])["b"].startswith("paused by hand since")
    with pytest.raises(ConfigurationError, match="already on vacation"):
        vacation.on()
    vacation.pause("c")  # paused by hand during the vacation: stays paused after it
    back = vacation.off()
    assert not back.vacation.active and sorted(back.vacation.paused) == ["b", "c"]
    assert vacation.paused_reasons(["a", "b", "c"]).keys() == {"b", "c"}
    with pytest.raises(ConfigurationError, match="not on vacation"):
        vacation.off()
    vacation.resume("b")
    with pytest.raises(ConfigurationError, match="not paused"):
        vacation.resume("b")


@pytest.mark.parametrize("skip_backlog", [False, True], ids=["deliver", "skip"])
def test_the_backlog_after_a_vacation_respects_limits_or_is_skipped(
    prefect_api: str,
    feeds: Any,
    prosody: Any,
    receiver: Any,
    data_dir: Path,
    monkeypatch: pytest.MonkeyPatch,
    skip_backlog: bool,
) -> None:
    from triggerflow import trigger, vacation
    from triggerflow.sinks import xmpp
    from triggerflow.sources import rss

    jid, password = prosody.new_user("traveller")
    reader = receiver(jid, password)
    for key, value in prosody.env(owner=jid).items():
        monkeypatch.setenv(key, value)
    feeds.publish("/trip.xml", ["before"])
    url = feeds.url("/trip.xml")

    @trigger
    def back() -> None:
        xmpp(rss(url), format="{title}", limit="5/hour")

    assert back().sinks[0].sent == 1
    vacation.on(names=["back"])
    titles = ["before"] + [f"while away {i}" for i in range(7)]
    feeds.publish("/trip.xml", titles)
    vacation.off(skip_backlog=skip_backlog)
    report = back().sinks[0]
    if skip_backlog:
        assert (report.sent, report.skipped, report.queued) == (0, 7, 0)
        time.sleep(1.5)
        assert reader.messages == ["before"]
    else:
        assert (report.sent, report.queued) == (4, 3)  # 5 an hour, one went before
        assert reader.wait_for(5) == titles[:5]
