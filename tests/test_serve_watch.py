"""A running serve keeps up with the flows folder; one bad trigger never stops it; restarts
keep interval schedules where they were and catch up an overdue trigger."""

from __future__ import annotations

import re
import sqlite3
import time
from datetime import UTC, datetime, timedelta
from pathlib import Path

from serve_support import Serve, prefect_api

HOURLY = '''from triggerflow import every, trigger


@trigger(schedule=every("{every}"))
def {name}():
    """Nothing to fetch: only its deployment matters here."""
'''


def _write(path: Path, text: str) -> None:
    path.write_text(text)


def _until(check, timeout: float = 30, what: str = "condition"):  # type: ignore[no-untyped-def]
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        got = check()
        if got:
            return got
        time.sleep(0.3)
    raise AssertionError(f"timed out waiting for {what}")


def test_bad_triggers_are_reported_and_the_folder_is_watched(tmp_path: Path) -> None:
    flows = tmp_path / "flows"
    flows.mkdir()
    _write(flows / "good.py", HOURLY.format(every="1h", name="good"))
    _write(flows / "bad_cron.py", HOURLY.format(every="1h", name="bad_cron").replace(
        'every("1h")', 'cron("61 25 * * *")').replace("import every", "import cron"))  # fmt: skip
    _write(flows / "bad_tz.py", HOURLY.format(every="1h", name="bad_tz").replace(
        'every("1h")', 'cron("0 7 * * *", timezone="Mars/Olympus")'
    ).replace("import every", "import cron"))  # fmt: skip
    serve = Serve(tmp_path / "data", flows)
    try:
        out = serve.start()
        # Each bad one names its file, field and range; the good one is served.
        assert "bad_cron.py" in out and "minute '61': 61 is not in 0-59" in out, out
        assert "hour '25': 25 is not in 0-23" in out
        assert "bad_tz.py" in out and "unknown time zone 'Mars/Olympus'" in out, out
        assert "✓ good (every 1h)" in out
        assert set(serve.deployments(1)) == {"good"}
        listed = serve.cli("list")
        assert "unknown time zone 'Mars/Olympus'" in listed.stdout, listed.stdout
        assert listed.returncode == 1  # a file that does not load is an error to report

        # A new file is deployed while serve runs.
        _write(flows / "newcomer.py", HOURLY.format(every="30m", name="newcomer"))
        assert "✓ newcomer (every 30m)" in serve.wait_for("newcomer", 30)
        _until(lambda: "newcomer" in serve.deployments(2, timeout=1), what="newcomer deployed")

        # A changed file updates its deployment.
        _write(flows / "newcomer.py", HOURLY.format(every="45m", name="newcomer"))
        assert "✓ newcomer (every 45m)" in serve.wait_for("newcomer (every 45m)", 30)

        def interval() -> float:
            d = serve.deployments(2, timeout=1)["newcomer"]
            return d["schedules"][0]["schedule"]["interval"]

        _until(lambda: interval() == 2700, what="the new schedule")

        # A file that breaks is reported; the others stay deployed.
        _write(flows / "broken.py", "x = (\n")
        out = serve.wait_for("broken.py", 30)
        assert "SyntaxError" in out and "(line 1)" in out, out
        # A bad cron fixed while serving is deployed.
        _write(flows / "bad_cron.py", HOURLY.format(every="2h", name="bad_cron"))
        serve.wait_for("✓ bad_cron (every 2h)", 30)

        # A removed file's trigger loses its deployment.
        (flows / "good.py").unlink()
        assert "good: no longer defined" in serve.wait_for("no longer defined", 30)
        _until(lambda: set(serve.deployments(2, timeout=1)) == {"newcomer", "bad_cron"},
               what="good's deployment removed")  # fmt: skip
        assert serve.proc is not None and serve.proc.poll() is None
        serve.stop()
    finally:
        serve.kill()


def _post(url: str, body: dict) -> dict:
    r = prefect_api("POST", url, body)
    r.raise_for_status()
    return r.json()


def _runs(serve: Serve, name: str) -> list[dict]:
    body = {"flows": {"name": {"any_": [name]}}}
    return prefect_api("POST", f"{serve.api}/flow_runs/filter", body).json()


def _shift_runs_back(prefect_db: Path, hours: float) -> int:
    """Move every started run ``hours`` into the past, as if serve had been stopped that
    long (the API lets nobody set a run's start time; the server is stopped here)."""
    with sqlite3.connect(prefect_db) as db:
        rows = db.execute(
            "SELECT id, start_time FROM flow_run WHERE start_time IS NOT NULL"
        ).fetchall()
        for run_id, start in rows:
            moved = datetime.fromisoformat(start) - timedelta(hours=hours)
            db.execute(
                "UPDATE flow_run SET start_time = ? WHERE id = ?",
                (moved.strftime("%Y-%m-%d %H:%M:%S.%f"), run_id),
            )
    return len(rows)


def test_restarts_keep_the_anchor_list_shows_runs_and_an_overdue_trigger_runs(
    tmp_path: Path,
) -> None:
    flows = tmp_path / "flows"
    flows.mkdir()
    _write(flows / "hourly.py", HOURLY.format(every="1h", name="hourly"))
    serve = Serve(tmp_path / "data", flows)
    try:
        serve.start()
        d = serve.deployments(1)["hourly"]
        anchor = d["schedules"][0]["schedule"]["anchor_date"]
        run = _post(f"{serve.api}/deployments/{d['id']}/create_flow_run", {})
        _until(
            lambda: prefect_api("GET", f"{serve.api}/flow_runs/{run['id']}").json()[
                "state_type"] == "COMPLETED",
            timeout=120, what="the run to complete",
        )  # fmt: skip
        # Prefect's scheduler keeps up to 100 runs ahead (how many by now depends on its
        # loop): these make sure the newest runs by expected time are all future ones.
        for hours in range(1, 7):
            when = (datetime.now(UTC) + timedelta(hours=hours, minutes=30)).isoformat()
            state = {"type": "SCHEDULED", "state_details": {"scheduled_time": when}}
            _post(f"{serve.api}/deployments/{d['id']}/create_flow_run", {"state": state})
        # list: the run that finished, and the next one of the schedule.
        listed = serve.cli("list").stdout
        row = next(line for line in listed.splitlines() if line.startswith("hourly"))
        assert "Completed" in row, listed
        assert "LAST RUN" in listed and "NEXT RUN" in listed
        assert re.search(r"\d{4}-\d\d-\d\d \d\d:\d\d$", row.rstrip()), row  # a time, not "-"
        serve.stop()
        assert _shift_runs_back(tmp_path / "data" / "prefect" / "prefect.db", 2) >= 1

        again = Serve(tmp_path / "data", flows)
        serve = again
        out = again.start()
        # Same anchor as before the restart: the schedule did not move.
        d = again.deployments(1)["hourly"]
        assert d["schedules"][0]["schedule"]["anchor_date"] == anchor
        assert "hourly: overdue" in out + again.wait_for("overdue", 30), out

        def caught_up() -> bool:
            return any(
                "catch-up" in r["tags"] and r["state_type"] == "COMPLETED"
                for r in _runs(again, "hourly")
            )

        _until(caught_up, timeout=120, what="the catch-up run")

        # `triggerflow run` is a run of the deployment (on its page in the UI), executed
        # by serve, its log followed here, its state the exit code.
        ran = again.cli("run", "hourly")
        assert ran.returncode == 0, ran.stdout + ran.stderr
        assert "Started hourly, run " in ran.stdout, ran.stdout
        assert "hourly: 0 items" in ran.stdout  # the run's own summary, from its log
        assert ran.stdout.rstrip().endswith("hourly: Completed"), ran.stdout
        by_cli = [r for r in _runs(again, "hourly") if "cli" in r["tags"]]
        assert len(by_cli) == 1 and by_cli[0]["deployment_id"] == d["id"]
        again.stop()
    finally:
        serve.kill()
