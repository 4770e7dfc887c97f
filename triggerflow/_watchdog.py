"""Alerts that no run can send: a crashed run, a late trigger, a worker gone, serve down.

A trigger's own run alerts when it fails (``_alerts``), but a run that crashes, is
killed, or never starts says nothing (issue 17, item 5). So serve looks every
``TRIGGERFLOW_WATCHDOG`` seconds (30; 0: never) at what Prefect knows:

- a run of one of its deployments that became *Crashed* (killed, out of memory, its
  process gone; also those a killed serve left, marked at start): the trigger is failing;
- a scheduled trigger, not paused, whose last completed run is older than two of its
  scheduled times (plus a grace of one interval, at most 30 s): it is late, whether its
  runs hang or nothing runs them;
- a worker of a work pool (``prefect worker start``, the prefect.yaml way) that Prefect
  marks offline after it missed its heartbeats, and online again.

Each is an outage in the same record as a failing run's (``alerts`` in the store): one
message when it starts, one when it is back (a completed run of the trigger, the
worker online again), however many looks see it meanwhile.

Serve cannot tell anyone while it is down itself. It leaves a sign of life beside the
store at every look and removes it when it stops; at start, one found means the last
serve was killed or its machine went down: one alert says since when. For a message
during such an outage, watch serve from outside (a service manager's ``OnFailure``, or
a monitoring ping of the web port).

Why serve's own watchdog and not Prefect automations: an automation can only notify
through Prefect's notification blocks (none speaks XMPP), and it is evaluated by the
Prefect server, which is the one serve runs and which goes down with it.
"""

from __future__ import annotations

import logging
import threading
from collections.abc import Callable, Mapping
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import TYPE_CHECKING, Any
from uuid import UUID

from .config import Settings

if TYPE_CHECKING:
    from ._trigger import Trigger

log = logging.getLogger("triggerflow.watchdog")

GRACE = timedelta(seconds=30)  # at most this past the second missed scheduled time
ALIVE = "serve.alive"  # beside the store: serve's last sign of life (an ISO time)


def _now() -> datetime:
    return datetime.now(UTC)


class Watchdog:
    """Serve's look at what Prefect knows, every ``interval`` seconds (see the module)."""

    def __init__(
        self,
        s: Settings,
        triggers: Mapping[str, Trigger],
        ids: Mapping[str, UUID],
        started: datetime,
        say: Callable[[str], None],
    ) -> None:
        self.settings = s
        self.interval = s.watchdog
        self.triggers, self.ids = triggers, ids
        self.say = say
        self.started = started
        self._crashed_since = started - timedelta(seconds=1)
        self._seen: set[UUID] = set()
        self._halt = threading.Event()
        self._thread = threading.Thread(target=self._loop, name="triggerflow-watchdog", daemon=True)
        self.looks = 0  # for tests

    @property
    def alive_file(self) -> Path:
        return self.settings.data_dir / ALIVE

    def start(self) -> None:
        """Report a serve that was killed before this one (its sign of life is there),
        then look every ``interval`` seconds."""
        try:
            self._report_unclean_stop()
        except Exception as e:  # never a reason not to serve
            log.warning("last serve's stop not checked: %s", e)
        if self.interval > 0:
            self._thread.start()

    def stop(self) -> None:
        """No more looks; a clean stop leaves no sign of life behind."""
        self._halt.set()
        if self._thread.is_alive():
            self._thread.join(5)
        self.alive_file.unlink(missing_ok=True)

    def _loop(self) -> None:
        while True:
            try:
                self.look()
            except Exception as e:  # the API away for a moment: look again
                log.warning("watchdog: %s: %s", type(e).__name__, e)
            if self._halt.wait(self.interval):
                return

    def look(self) -> None:
        """One look: crashed runs, late triggers, workers (each never stops the others)."""
        from prefect.client.orchestration import get_client

        self.alive_file.write_text(_now().isoformat())
        with get_client(sync_client=True) as client:
            for check in (self._crashed, self._late, self._workers):
                try:
                    check(client)
                except Exception as e:
                    log.warning(
                        "watchdog: %s not checked: %s: %s", check.__name__, type(e).__name__, e
                    )
        self.looks += 1

    # -- the checks ----------------------------------------------------------------------

    def _crashed(self, client: Any) -> None:
        from prefect.client.schemas.filters import (
            FlowRunFilter,
            FlowRunFilterDeploymentId,
            FlowRunFilterState,
            FlowRunFilterStateType,
        )
        from prefect.client.schemas.objects import StateType

        names = {v: k for k, v in dict(self.ids).items()}
        if not names:
            return
        runs = client.read_flow_runs(
            flow_run_filter=FlowRunFilter(
                deployment_id=FlowRunFilterDeploymentId(any_=list(names)),
                state=FlowRunFilterState(type=FlowRunFilterStateType(any_=[StateType.CRASHED])),
            ),
            limit=200,
        )
        for run in sorted(runs, key=lambda r: r.state.timestamp if r.state else _now()):
            at = run.state.timestamp if run.state else None
            if run.id in self._seen or at is None or at < self._crashed_since:
                continue
            self._seen.add(run.id)
            name = names.get(run.deployment_id)
            if name is None:
                continue
            why = (run.state.message or "no reason given").strip()
            self._alert(name, f"its run {run.name} crashed: {why}")

    def _late(self, client: Any) -> None:
        from prefect.client.schemas.filters import (
            FlowRunFilter,
            FlowRunFilterDeploymentId,
            FlowRunFilterState,
            FlowRunFilterStateType,
        )
        from prefect.client.schemas.objects import StateType
        from prefect.client.schemas.sorting import FlowRunSort

        now = _now()
        for name, t in list(self.triggers.items()):
            deployment_id = self.ids.get(name)
            if t.schedule is None or t.on is not None or deployment_id is None:
                continue  # event triggers run when something arrives, not on time
            deployment = client.read_deployment(deployment_id)
            if deployment.paused:
                continue  # vacation, paused by hand, not configured: nothing is owed
            done = client.read_flow_runs(
                flow_run_filter=FlowRunFilter(
                    deployment_id=FlowRunFilterDeploymentId(any_=[deployment_id]),
                    state=FlowRunFilterState(
                        type=FlowRunFilterStateType(any_=[StateType.COMPLETED])
                    ),
                ),
                sort=FlowRunSort.START_TIME_DESC,
                limit=1,
            )
            last = (done[0].start_time if done else None) or deployment.created or now
            # Counted from this serve's start at the earliest: while no serve ran, nothing
            # could (that outage has its own alert), and its catch-up run comes first.
            due = second_time_after(t.schedule, max(last, self.started))
            if due is None or now <= due:
                continue
            self._alert(
                name,
                f"no completed run since {last:%Y-%m-%d %H:%M} UTC, and it runs "
                f"{t.schedule.describe()}: its runs hang, or nothing runs them "
                "(is `triggerflow serve` or its worker running?)",
            )

    def _workers(self, client: Any) -> None:
        for pool in client.read_work_pools():
            for worker in client.read_workers_for_work_pool(pool.name):
                key = f"worker {worker.name} of pool {pool.name}"
                status = str(getattr(worker.status, "value", worker.status) or "").upper()
                if status == "OFFLINE":
                    seen = worker.last_heartbeat_time
                    when = f"{seen:%Y-%m-%d %H:%M:%S} UTC" if seen else "a while"
                    self._alert(key, f"not heard from since {when}: it is down")
                elif status == "ONLINE":
                    self._back(key)

    # -- alerts --------------------------------------------------------------------------

    def _alert(self, what: str, why: str) -> None:
        from . import _alerts
        from ._store import Store

        store = Store.default(self.settings)
        with store.transaction(commit=False) as tx:
            already = tx.failing(what) is not None
        if not already:
            self.say(f"  ⚠ {what}: {why}")
        _alerts.check(store, what, [why])

    def _back(self, what: str) -> None:
        from . import _alerts
        from ._store import Store

        store = Store.default(self.settings)
        with store.transaction(commit=False) as tx:
            if tx.failing(what) is None:
                return
        self.say(f"  ✓ {what}: back")
        _alerts.check(store, what, [])

    def _report_unclean_stop(self) -> None:
        try:
            last = datetime.fromisoformat(self.alive_file.read_text().strip())
        except (OSError, ValueError):
            return
        from . import _alerts
        from ._store import Store

        text = (
            f"⚠ triggerflow: serve was down: it stopped without saying so (killed, or "
            f"its machine went down) after {last:%Y-%m-%d %H:%M:%S} UTC, and is back now"
        )
        self.say(f"  {text}")
        _alerts.send_now(Store.default(self.settings), f"serve:{last.isoformat()}:down", text)
        self.alive_file.unlink(missing_ok=True)


def second_time_after(schedule: Any, start: datetime) -> datetime | None:
    """The second scheduled time after ``start``, plus the grace (see the module)."""
    from .schedules import Cron, Every

    if isinstance(schedule, Every):
        return start + 2 * schedule.interval + min(GRACE, schedule.interval)
    if isinstance(schedule, Cron):
        from prefect.server.schemas.schedules import CronSchedule

        dates = CronSchedule(cron=schedule.expression, timezone=schedule.timezone).get_dates(
            n=2, start=start
        )
        if len(dates) < 2:
            return None
        return dates[1] + min(GRACE, dates[1] - dates[0])
    return None
