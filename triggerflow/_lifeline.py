"""Nothing outlives a killed ``triggerflow serve``, and what it left running is marked.

Prefect's runner starts every scheduled run as a child process of serve. A serve
killed with SIGKILL (or by the OOM killer) cannot stop them: they went on running,
holding the store and sending, while a restarted serve started new ones (issue 17).
So serve hands its identity down in the environment (:func:`hand_down`), and a
child that imports triggerflow (every run imports its trigger's file) asks the
kernel to kill it when serve dies (:func:`follow`, Linux's ``PR_SET_PDEATHSIG``).
SIGKILL, not SIGTERM: a run told to stop reports to the Prefect API, which went
with serve, and waits for it. What such a run claimed is taken over by the next run
(its owner is known dead); what it did not read stays in the inbox.

Its flow run still says *Running*. When serve starts again, :func:`mark_crashed`
makes the runs of its deployments that a dead serve left Running or Pending
*Crashed*, so the UI and ``list`` say what happened.
"""

from __future__ import annotations

import os
import signal
import sys
from collections.abc import Iterable
from datetime import datetime
from typing import Any
from uuid import UUID

ENV = "TRIGGERFLOW_SERVE_PROCESS"  # host:pid:start of the serve whose child this is
LABEL = "triggerflow.serve"  # the same, on the flow runs serve runs in its process

_PR_SET_PDEATHSIG = 1


def hand_down() -> None:
    """In serve, before it starts children: they die with this process."""
    from ._store._owners import this_process

    os.environ[ENV] = this_process()


def follow() -> None:
    """In a child of serve (``ENV`` set): die when serve dies; at once if it already has.

    Anything else that inherited the variable (a grandchild, started by a run's own
    code) is left alone while serve lives.
    """
    owner = os.environ.get(ENV)
    if not owner or sys.platform != "linux":
        return
    from ._store._owners import is_dead, pid_of  # only now: `import triggerflow` stays light

    serve_pid = pid_of(owner)
    if serve_pid is None:
        return
    if os.getppid() == serve_pid:
        try:
            import ctypes

            ctypes.CDLL(None, use_errno=True).prctl(_PR_SET_PDEATHSIG, signal.SIGKILL)
        except (OSError, AttributeError):
            return
        if os.getppid() == serve_pid:
            return  # from here on the kernel ends this process with serve
    if is_dead(owner):  # serve died before the kernel could be told
        sys.stderr.write(f"triggerflow: serve (pid {serve_pid}) is gone; stopping with it\n")
        sys.stderr.flush()
        os._exit(70)


async def mark_crashed(
    client: Any, deployment_ids: Iterable[UUID], before: datetime, *, own_server: bool
) -> list[Any]:
    """Runs of ``deployment_ids`` that a dead serve left going, set *Crashed*.

    A run counts when it was created before ``before`` (this serve's start) and is
    still Pending, Running or Cancelling, and either this serve owns the Prefect
    server (``own_server``: only a serve runs these deployments, and the one before
    it is gone), or the run names its serve (``LABEL``) and that process is dead. With
    a shared server the runs of processes we cannot know stay as they are.
    """
    from prefect.client.schemas.filters import (
        FlowRunFilter,
        FlowRunFilterDeploymentId,
        FlowRunFilterState,
        FlowRunFilterStateType,
    )
    from prefect.client.schemas.objects import StateType
    from prefect.states import Crashed

    from ._store._owners import is_dead, pid_of

    ids = list(deployment_ids)
    if not ids:
        return []
    going = [StateType.PENDING, StateType.RUNNING, StateType.CANCELLING]
    runs = await client.read_flow_runs(
        flow_run_filter=FlowRunFilter(
            deployment_id=FlowRunFilterDeploymentId(any_=ids),
            state=FlowRunFilterState(type=FlowRunFilterStateType(any_=going)),
        ),
        limit=200,
    )
    marked = []
    for run in runs:
        if run.created is not None and run.created >= before:
            continue
        owner = (run.labels or {}).get(LABEL)
        if not own_server and not (owner and is_dead(str(owner))):
            continue
        who = f" (pid {pid_of(str(owner))})" if owner else ""
        await client.set_flow_run_state(
            run.id,
            Crashed(message=f"triggerflow serve{who} stopped while this run was going "
                    "(killed); the next run sends what it had claimed"),
            force=True,
        )  # fmt: skip
        marked.append(run)
    return marked
