"""``triggerflow run`` with a Prefect server: a run of the trigger's deployment.

The run is created on the server and executed where the trigger's runs always are
(serve's runner, or a worker), so it shows on the deployment's page in the UI like any
scheduled run; this process only follows it: its log lines as they arrive, then its
final state, which is the command's exit code.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from typing import Any

from ._async import run_sync
from .exceptions import TriggerflowError

Say = Callable[[str], None]

POLL = 0.5  # seconds between two looks at the run and its logs
LOG_GRACE = 5.0  # after the run ended, how long its last log lines may take to arrive


@contextmanager
def without_heartbeat() -> Iterator[None]:
    """Flow runs made in this block send no Prefect flow heartbeat.

    For runs in a process that is the run itself (``triggerflow run`` here) or is serve
    (event runs): Prefect's sync engine joins the heartbeat thread at the end of every
    run, and that thread sleeps in 1 s steps, so each run waited 0-1 s for nothing
    (shared notes, "1.0 s floor per sync flow run"). No automation of ours reads the
    heartbeats; the setting cannot be switched off from the environment, only like this.
    """
    from prefect.settings import PREFECT_FLOWS_HEARTBEAT_FREQUENCY, temporary_settings

    with temporary_settings(updates={PREFECT_FLOWS_HEARTBEAT_FREQUENCY: None}):
        yield


def run_deployment(name: str, say: Say, *, wait: float, debug: bool = False) -> int | None:
    """Run the deployment of trigger ``name`` and follow it to its end.

    Returns:
        0 if the run completed, 1 if not; None when there is no deployment to run
        (then the caller runs the trigger in its own process).

    Raises:
        TriggerflowError: nobody started the run within ``wait`` seconds (it is
            cancelled then), or the Prefect API could not be reached.
    """
    try:
        return run_sync(_follow(name, say, wait, debug))
    except TriggerflowError:
        raise
    except Exception as e:  # httpx/prefect errors: one readable line
        raise TriggerflowError(f"Prefect API not reachable: {type(e).__name__}: {e}") from e


async def _follow(name: str, say: Say, wait: float, debug: bool) -> int | None:
    from prefect.client.orchestration import get_client
    from prefect.exceptions import ObjectNotFound
    from prefect.settings import PREFECT_UI_URL
    from prefect.states import Cancelled

    async with get_client() as client:
        try:
            deployment = await client.read_deployment_by_name(f"{name}/{name}")
        except ObjectNotFound:
            say(f"{name} has no deployment on this server (serve deploys a new file within "
                "seconds): running it in this process.")  # fmt: skip
            return None
        if deployment.paused:  # not configured, or --force through a pause
            say(f"{name}'s deployment is paused: running it in this process.")
            return None
        run = await client.create_flow_run_from_deployment(
            deployment.id, tags=["triggerflow", "cli"]
        )
        ui = PREFECT_UI_URL.value() or str(client.api_url).removesuffix("/").removesuffix("/api")
        say(f"Started {name}, run {run.name}: {ui}/runs/flow-run/{run.id}")
        shown = 0
        start_by = time.monotonic() + wait
        ended_at: float | None = None
        last = ""
        while True:
            flow_run = await client.read_flow_run(run.id)
            for line in await _logs(client, run.id, shown):
                shown += 1
                text = line.message if debug else line.message.strip().splitlines()[0]
                if text != last:  # Prefect repeats a failure's reason at each level
                    mark = "!" if line.level >= 30 else " "
                    say(f"{mark} {text}")
                last = text
            state = flow_run.state
            if state is not None and state.is_final():
                ended_at = ended_at or time.monotonic()
                if last.startswith("Finished in state") or time.monotonic() - ended_at > LOG_GRACE:
                    break
            elif state is not None and state.type.value in ("SCHEDULED", "PENDING"):
                if time.monotonic() > start_by:
                    await client.set_flow_run_state(
                        run.id, Cancelled(message="not started in time"), force=True
                    )
                    raise TriggerflowError(
                        f"{name}: nobody started the run within {wait:g} s: is `triggerflow "
                        "serve` (or a worker of its pool) running? The run is cancelled; "
                        "`--here` runs the trigger in this process"
                    )
            await asyncio.sleep(POLL)
        assert state is not None
        say(f"{name}: {state.name}" + (f": {state.message}" if state.message else ""))
        return 0 if state.is_completed() else 1


async def _logs(client: Any, flow_run_id: Any, offset: int) -> list[Any]:
    from prefect.client.schemas.filters import LogFilter, LogFilterFlowRunId
    from prefect.client.schemas.sorting import LogSort

    return list(
        await client.read_logs(
            log_filter=LogFilter(flow_run_id=LogFilterFlowRunId(any_=[flow_run_id])),
            sort=LogSort.TIMESTAMP_ASC,
            offset=offset,
            limit=200,
        )  # fmt: skip
    )
