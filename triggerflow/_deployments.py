"""What the Prefect API knows about the triggers' deployments and runs."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime

from ._async import run_sync
from .exceptions import TriggerflowError


@dataclass(frozen=True)
class DeploymentInfo:
    """One trigger's deployment, its last finished run and its next scheduled one."""

    name: str
    deployed: bool
    paused: bool | None = None
    last_state: str | None = None
    last_run_at: datetime | None = None
    last_message: str | None = None
    next_run_at: datetime | None = None


# A run that is over, whatever its outcome (Prefect's terminal state types).
_FINISHED = ("COMPLETED", "FAILED", "CRASHED", "CANCELLED")


async def _fetch(names: list[str]) -> dict[str, DeploymentInfo]:
    from prefect.client.orchestration import get_client
    from prefect.client.schemas.filters import (
        FlowFilter,
        FlowFilterName,
        FlowRunFilter,
        FlowRunFilterState,
        FlowRunFilterStateType,
    )
    from prefect.client.schemas.objects import StateType
    from prefect.client.schemas.sorting import FlowRunSort

    def in_states(*types: str) -> FlowRunFilter:
        kinds = [StateType(t) for t in types]
        return FlowRunFilter(state=FlowRunFilterState(type=FlowRunFilterStateType(any_=kinds)))

    out: dict[str, DeploymentInfo] = {}
    async with get_client() as client:
        deployments = {
            d.name: d
            for d in await client.read_deployments(
                flow_filter=FlowFilter(name=FlowFilterName(any_=names))
            )
        }
        for name in names:
            flow = FlowFilter(name=FlowFilterName(any_=[name]))
            # Asked for separately: the newest runs of a scheduled deployment are its
            # future ones (the server keeps up to 100 ahead), so "the newest five"
            # rarely holds a finished one.
            done = await client.read_flow_runs(
                flow_filter=flow, flow_run_filter=in_states(*_FINISHED),
                sort=FlowRunSort.END_TIME_DESC, limit=1,
            )  # fmt: skip
            ahead = await client.read_flow_runs(
                flow_filter=flow, flow_run_filter=in_states("SCHEDULED"),
                sort=FlowRunSort.EXPECTED_START_TIME_ASC, limit=1,
            )  # fmt: skip
            last = done[0] if done else None
            d = deployments.get(name)
            out[name] = DeploymentInfo(
                name=name,
                deployed=d is not None,
                paused=d.paused if d is not None else None,
                last_state=last.state.name if last and last.state else None,
                last_run_at=(last.end_time or last.start_time) if last else None,
                last_message=last.state.message if last and last.state else None,
                next_run_at=(
                    ahead[0].expected_start_time
                    if ahead and d is not None and not d.paused
                    else None
                ),
            )
    return out


def deployment_info(names: list[str]) -> dict[str, DeploymentInfo]:
    """Deployment and last-run info per trigger name from the configured Prefect API.

    Raises:
        TriggerflowError: the API could not be reached.
    """
    try:
        return run_sync(_fetch(names))
    except Exception as e:  # httpx/prefect errors: one readable line
        raise TriggerflowError(f"Prefect API not reachable: {type(e).__name__}: {e}") from e


# The tag a paused trigger's deployment carries. Prefect's own status badge says whether
# serve polls for the deployment ("Ready"), not whether it is paused; the UI's list only
# greys a paused one. The tag names it, and the UI's tag filter finds them all.
PAUSED_TAG = "paused"


def tags_for(tags: list[str], paused: bool) -> list[str]:
    """The deployment's tags: the trigger's own, and :data:`PAUSED_TAG` while paused."""
    kept = [t for t in tags if t != PAUSED_TAG]
    return [*kept, PAUSED_TAG] if paused else kept


async def _set_paused(wanted: dict[str, bool]) -> dict[str, bool]:
    from prefect.client.orchestration import get_client
    from prefect.client.schemas.actions import DeploymentUpdate
    from prefect.client.schemas.filters import FlowFilter, FlowFilterName

    changed: dict[str, bool] = {}
    async with get_client() as client:
        deployments = await client.read_deployments(
            flow_filter=FlowFilter(name=FlowFilterName(any_=list(wanted)))
        )
        for d in deployments:
            if d.name not in wanted:
                continue
            paused = wanted[d.name]
            tags = tags_for(list(d.tags), paused)
            if d.paused == paused and list(d.tags) == tags:
                continue
            await client.update_deployment(d.id, DeploymentUpdate(paused=paused, tags=tags))
            if d.paused != paused:
                changed[d.name] = paused
    return changed


def set_paused(wanted: dict[str, bool]) -> dict[str, bool]:
    """Pause (True) or resume (False) the deployments of the named triggers.

    Returns the ones whose state changed. Pausing deletes their future scheduled runs;
    resuming lets the server schedule them again (nothing missed is replayed).

    Raises:
        TriggerflowError: the API could not be reached.
    """
    if not wanted:
        return {}
    try:
        return run_sync(_set_paused(wanted))
    except Exception as e:  # httpx/prefect errors: one readable line
        raise TriggerflowError(f"Prefect API not reachable: {type(e).__name__}: {e}") from e


_ensured: set[str] = set()


async def _ensure_limit(name: str, limit: int) -> None:
    from prefect.client.orchestration import get_client
    from prefect.client.schemas.actions import GlobalConcurrencyLimitCreate
    from prefect.exceptions import ObjectAlreadyExists, ObjectNotFound

    async with get_client() as client:
        try:
            await client.read_global_concurrency_limit_by_name(name)
        except ObjectNotFound:
            try:
                await client.create_global_concurrency_limit(
                    GlobalConcurrencyLimitCreate(name=name, limit=limit)
                )
            except ObjectAlreadyExists:  # another process created it meanwhile
                pass


def ensure_concurrency_limit(name: str, limit: int = 1) -> str:
    """Create the Prefect global concurrency limit ``name`` unless it exists; return ``name``.

    Prefect never creates a missing limit: acquiring one that is missing passes
    silently (or fails with ``strict=True``), so the project creates its own.
    """
    if name not in _ensured:
        run_sync(_ensure_limit(name, limit))
        _ensured.add(name)
    return name
