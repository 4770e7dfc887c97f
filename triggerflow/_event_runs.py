"""Event triggers run inside ``triggerflow serve``: at once, one at a time, bounded.

Prefect's process runner starts a new interpreter for every run: ~2-2.5 s of imports
before the first task, after the runner's next poll, and a burst of webhooks started
up to 71 of them at once, which then failed each other on the store (issue 17). Here:

- Each event trigger has at most one run going and one more owed: wake-ups while it
  runs fold into that one (it reads everything that arrived until it starts).
- At most ``TRIGGERFLOW_EVENT_RUNS`` runs go at once, in threads of serve's process; a
  trigger woken while all are busy waits its turn in order.
- A run is still a Prefect flow run of the trigger's deployment (created *Pending*, so
  that no runner or worker takes it, then run here by Prefect's flow engine), with its
  task runs, logs and artifact in the UI.
- What starts one: a wake-up (the webhook receiver or the bot stored something, in
  this process: no event round trip through Prefect), serve's start (what arrived while
  it was down, or was woken before the triggers were loaded), a full batch read (the
  rest of a backlog), and the deployment's own scheduled runs: the catch-up schedule, a
  run asked for in the UI or by ``triggerflow run`` (picked up here, as the runner would).

Scheduled triggers keep Prefect's process runner: their runs are rare, and user code on
a schedule may be heavy or leak; a process keeps it from harming serve and its webhooks.

Prefect's flow heartbeat is off for these runs: the sync engine waits up to a second
for its thread at the end of every run, and the process a heartbeat would watch is
serve itself.
"""

from __future__ import annotations

import logging
import queue
import threading
import time
from collections.abc import Callable, Mapping
from datetime import UTC, datetime
from typing import TYPE_CHECKING, Any
from uuid import UUID

from ._lifeline import LABEL
from ._runs import without_heartbeat
from ._store._owners import this_process

if TYPE_CHECKING:
    from ._trigger import Trigger

log = logging.getLogger("triggerflow.events")

POLL = 1.0  # seconds between two looks for scheduled runs of the event deployments

_QUEUED, _RUNNING, _OWED = "queued", "running", "running, one more owed"


class EventRuns:
    """The event triggers' runs of one serve (see the module's docstring)."""

    def __init__(self, workers: int) -> None:
        self.workers = max(1, workers)
        # Our own daemon threads, not a ThreadPoolExecutor: Python joins an executor's
        # threads at exit, so a run that does not end would keep a stopped serve alive.
        self._queue: queue.Queue[str | None] = queue.Queue()
        self._threads = [
            threading.Thread(target=self._work, name=f"triggerflow-event-{i}", daemon=True)
            for i in range(self.workers)
        ]
        self._lock = threading.Lock()
        self._state: dict[str, str] = {}
        self._given: dict[str, list[Any]] = {}  # scheduled runs taken, to run in turn
        self._triggers: Mapping[str, Trigger] | None = None
        self._ids: Mapping[str, UUID] = {}
        self._halt = threading.Event()
        self._poller = threading.Thread(target=self._poll, name="triggerflow-events", daemon=True)
        self.started = 0  # runs started, for tests and the bench
        self._owner = this_process()

    # -- what serve calls ------------------------------------------------------------

    def attach(self, triggers: Mapping[str, Trigger], ids: Mapping[str, UUID]) -> None:
        """Start: ``triggers`` and their deployment ids are kept up to date by serve.

        Every event trigger runs once now: what arrived while serve was down, and what
        woke it before the triggers were loaded.
        """
        with self._lock:
            self._triggers, self._ids = triggers, ids
        for thread in self._threads:
            thread.start()
        for name, t in sorted(triggers.items()):
            if t.on is not None:
                self.wake_trigger(name)
        self._poller.start()

    def wake(self, kind: str, wanted: Callable[[Any], bool] = lambda on: True) -> None:
        """Something arrived in the inbox ``kind``: wake the triggers whose ``on=`` is
        of that kind and ``wanted(on)`` (never raises: the delivery is stored anyway)."""
        with self._lock:
            if self._triggers is None:  # before serve loaded the triggers: attach() runs all
                return
            names = []
            for name, t in list(self._triggers.items()):
                on = t.on
                if on is None or getattr(on, "kind", None) != kind:
                    continue
                try:
                    if wanted(on):
                        names.append(name)
                except Exception as e:  # a filter's fault wakes it rather than lose it
                    log.warning("%s: woken anyway (its filter failed: %s)", name, e)
                    names.append(name)
        for name in names:
            self.wake_trigger(name)

    def wake_trigger(self, name: str, flow_run: Any = None) -> bool:
        """Owe ``name`` a run; False if one is owed already (folded into it).

        ``flow_run``: a scheduled run of the deployment, already set *Pending*: it is
        run (in turn) rather than a new one made.
        """
        with self._lock:
            if flow_run is not None:
                self._given.setdefault(name, []).append(flow_run)
            state = self._state.get(name)
            if state in (_QUEUED, _OWED):
                return False
            if state == _RUNNING:
                self._state[name] = _OWED
                return True
            self._state[name] = _QUEUED
        self._queue.put(name)
        return True

    def busy(self, name: str) -> bool:
        """Whether ``name`` has a run queued or going."""
        with self._lock:
            return name in self._state

    def stop(self, timeout: float = 5.0) -> None:
        """No new runs; wait up to ``timeout`` seconds for those going.

        A run still going then dies with the process: what it claimed is taken over by
        the next run (its owner is known dead), what it did not read stays in the inbox.
        """
        self._halt.set()
        for _ in self._threads:
            self._queue.put(None)
        deadline = time.monotonic() + timeout
        for thread in [*self._threads, self._poller]:
            if thread.is_alive():
                thread.join(max(0.0, deadline - time.monotonic()))

    def _work(self) -> None:
        while (name := self._queue.get()) is not None:
            if self._halt.is_set():
                return
            self._run(name)

    # -- the runs ----------------------------------------------------------------------

    def _run(self, name: str) -> None:
        with self._lock:
            self._state[name] = _RUNNING
            given = self._given.get(name)
            flow_run = given.pop(0) if given else None
        more = False
        try:
            if not self._halt.is_set():
                more = self._run_once(name, flow_run)
        except Exception as e:  # never take the pool down; the inbox keeps what came
            log.error("%s: event run not started: %s: %s", name, type(e).__name__, e)
        finally:
            with self._lock:
                again = self._state.pop(name, None) == _OWED or more or bool(given)
        if again and not self._halt.is_set():
            self.wake_trigger(name)

    def _run_once(self, name: str, flow_run: Any) -> bool:
        """One flow run of ``name``'s deployment, here; whether more waits in its inbox."""
        from prefect.client.orchestration import get_client
        from prefect.flow_engine import run_flow
        from prefect.states import Pending

        triggers = self._triggers or {}
        t, deployment_id = triggers.get(name), self._ids.get(name)
        if t is None or deployment_id is None:
            return False  # removed, or not deployed (broken): nothing to run
        if flow_run is None:
            with get_client(sync_client=True) as client:
                if client.read_deployment(deployment_id).paused:
                    # Not configured, on vacation or paused by hand: what arrives waits
                    # in the inbox; the first wake-up after `resume` delivers it all.
                    return False
                flow_run = client.create_flow_run_from_deployment(
                    deployment_id, state=Pending(), tags=[*t.tags, "event"],
                    labels={LABEL: self._owner},  # which serve ran it (_lifeline)
                )  # fmt: skip
        self.started += 1
        with without_heartbeat():
            state = run_flow(t, flow_run=flow_run, return_type="state")
        if not state.is_completed():
            return False  # failed: its reason is in the run; the next wake-up tries again
        result = state.result(raise_on_failure=False)
        return bool(getattr(result, "more", False))

    def _poll(self) -> None:
        """Scheduled runs of the event deployments that are due, taken like a runner."""
        while not self._halt.wait(POLL):
            try:
                self._take_scheduled()
            except Exception as e:  # the API away for a moment: look again
                log.debug("scheduled event runs not read: %s", e)

    def _take_scheduled(self) -> None:
        from prefect.client.orchestration import get_client
        from prefect.client.schemas.objects import StateType
        from prefect.states import Pending

        triggers = self._triggers or {}
        ids = self._ids
        by_id = {ids[n]: n for n, t in list(triggers.items()) if t.on is not None and n in ids}
        if not by_id:
            return
        with get_client(sync_client=True) as client:
            due = client.get_scheduled_flow_runs_for_deployments(
                list(by_id), scheduled_before=datetime.now(UTC)
            )
            for run in sorted(due, key=lambda r: r.expected_start_time or datetime.now(UTC)):
                name = by_id.get(run.deployment_id) if run.deployment_id else None
                if name is None or self.busy(name):
                    continue  # its turn comes at a later look
                answer = client.set_flow_run_state(run.id, Pending())
                if answer.state is None or answer.state.type != StateType.PENDING:
                    continue  # taken by someone else, or cancelled meanwhile
                self.wake_trigger(name, run)
