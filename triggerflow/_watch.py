"""What a running ``triggerflow serve`` deploys, kept in step with the flows folder.

Serve deploys every trigger at start, then looks at the folder every
``WATCH_INTERVAL`` seconds (modification time and size of each ``*.py``: polling works
on every file system and costs microseconds for a few dozen files). A new or changed
file is imported again and its triggers are deployed again (Prefect's deploy is an
upsert by name, and every run imports its file afresh, so the new code runs from the
next run on); a trigger whose file or definition is gone loses its deployment. A file
that no longer imports is reported and keeps what it had deployed: saving a half-edited
file must not delete a trigger's deployment and automations.

One trigger that cannot be deployed (Prefect refuses its schedule, the API is
briefly away) is listed as broken with the reason; the others are served.
"""

from __future__ import annotations

import asyncio
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any
from uuid import UUID

from ._deployments import tags_for
from ._discovery import load_file
from ._paused import paused_reasons
from ._trigger import Trigger
from .config import Settings
from .exceptions import FlowsLoadError, TriggerflowError
from .schedules import ANCHOR, Every

Say = Callable[[str], None]

WATCH_INTERVAL = 1.0  # seconds between two looks at the flows folder

Stamp = tuple[int, int]  # (mtime_ns, size) of one file


@dataclass
class _File:
    stamp: Stamp
    triggers: dict[str, Trigger] = field(default_factory=dict)
    error: str | None = None


@dataclass
class Plan:
    """What one look at the folder found to do: deployments to make, names to remove."""

    deploy: dict[str, Any] = field(default_factory=dict)  # name -> RunnerDeployment
    remove: list[str] = field(default_factory=list)


class ServedTriggers:
    """The triggers of one serve: loaded per file, deployed, watched.

    ``triggers`` is one dict updated in place, so that what holds it (the bot's
    commands) always sees the current set.
    """

    def __init__(
        self, s: Settings, say: Say, started: datetime | None = None, *, in_process: bool = False
    ) -> None:
        self.s = s
        self.say = say
        # Event triggers run in this process (_event_runs), not by Prefect's runner: their
        # deployments are registered without the runner and without automations.
        self.in_process = in_process
        # When serve started (its webhook receiver was up before the first scan): the
        # triggers of the first scan exist from then on, later ones from their scan.
        self._started = started
        self.triggers: dict[str, Trigger] = {}
        self.broken: dict[str, str] = {}  # trigger name or file -> why it is not served
        self._files: dict[Path, _File] = {}
        self._ids: dict[str, UUID] = {}
        self._paused: set[str] = set()  # deployed paused (not configured, vacation, by hand)

    @property
    def ids(self) -> dict[str, UUID]:
        """Deployment id per deployed trigger (one dict, kept up to date)."""
        return self._ids

    @property
    def deployed(self) -> list[str]:
        """The triggers that have a deployment now."""
        return sorted(n for n in self._ids if n in self.triggers)

    # -- the folder ------------------------------------------------------------------

    def _stamps(self) -> dict[Path, Stamp]:
        folder = self.s.flows_dir
        out: dict[Path, Stamp] = {}
        if not folder.is_dir():
            return out
        for path in sorted(folder.glob("*.py")):
            if path.name.startswith("_"):
                continue
            try:
                st = path.stat()
            except OSError:  # removed between the listing and the look
                continue
            out[path.resolve()] = (st.st_mtime_ns, st.st_size)
        return out

    def changed(self) -> bool:
        """Whether a file was added, changed or removed since the last ``scan``."""
        return self._stamps() != {p: f.stamp for p, f in self._files.items()}

    def scan(self) -> Plan:
        """Load what is new or changed and say what to deploy and remove (blocking I/O:
        imports user files and reads accounts and the store, so it runs in a thread)."""
        stamps = self._stamps()
        before = dict(self.triggers)
        for path in [p for p in self._files if p not in stamps]:
            self.say(f"  − {path.name}: removed")
            del self._files[path]
        touched: set[Path] = set()
        for path, stamp in stamps.items():
            old = self._files.get(path)
            if old is not None and old.stamp == stamp:
                continue
            touched.add(path)
            try:
                loaded = {t.name: t for t in load_file(path)}
            except FlowsLoadError as e:
                self.say(f"  ✗ {e}")  # the message names the file
                kept = old.triggers if old is not None else {}
                if kept:
                    self.say(f"    (its triggers {', '.join(sorted(kept))} keep their deployments)")
                self._files[path] = _File(stamp, kept, str(e))
                continue
            self._files[path] = _File(stamp, loaded)
        triggers, clashes = self._resolve_names()
        for path, why in clashes.items():
            if self.broken.get(path) != why:
                self.say(f"  ✗ {why}")
        self.triggers.clear()
        self.triggers.update(triggers)
        kept = {n: why for n, why in self.broken.items() if n in triggers}  # deploy errors
        self.broken = {str(p): f.error for p, f in self._files.items() if f.error}
        self.broken.update(clashes)
        self.broken.update(kept)
        plan = Plan(remove=sorted(set(before) - set(self.triggers)))
        fresh = [
            name for name, t in self.triggers.items()
            if name not in before or before[name] is not t
            or self._file_of(name) in touched
        ]  # fmt: skip
        self._note_starts(sorted(fresh))
        plan.deploy = self._deployments(sorted(fresh))
        return plan

    def _note_starts(self, names: list[str]) -> None:
        """Record when each new trigger was first seen: an event trigger delivers every
        event received from then on, and none from before (issue 15, item 10)."""
        from ._store import Store, now

        at, self._started = self._started or now(), None
        if not names:
            return
        store = Store.default(self.s)
        try:
            with store.transaction() as tx:
                tx.trigger_started(names, at)
        except TriggerflowError as e:  # the first run records it instead
            self.say(f"  ! could not note when {', '.join(names)} started: {e}")

    def _file_of(self, name: str) -> Path | None:
        return next((p for p, f in self._files.items() if name in f.triggers), None)

    def _resolve_names(self) -> tuple[dict[str, Trigger], dict[str, str]]:
        """Every trigger by name, and the files that define a name taken already (a
        name defined in two files is served from the first, in name order)."""
        out: dict[str, Trigger] = {}
        where: dict[str, Path] = {}
        clashes: dict[str, str] = {}
        for path, f in sorted(self._files.items()):
            for name, t in f.triggers.items():
                if name in out:
                    clashes[str(path)] = (
                        f"flows file {path}: trigger {name!r} is also defined in "
                        f"{where[name]}; rename one of them"
                    )
                    continue
                out[name], where[name] = t, path
        return out, clashes

    def _deployments(self, names: list[str]) -> dict[str, Any]:
        held = paused_reasons({n: self.triggers[n] for n in names}) if names else {}
        out: dict[str, Any] = {}
        for name in names:
            t = self.triggers[name]
            try:
                problems = t.check()
                out[name] = deployment_for(t, problems, held.get(name), in_process=self.in_process)
            except Exception as e:  # one trigger's fault never stops the others
                self._broke(name, e)
                continue
            self.broken.pop(name, None)
            if problems:
                self.say(f"  ⏸ {name} ({t.when}): not configured: {'; '.join(problems)}")
            elif name in held:
                self.say(f"  ⏸ {name} ({t.when}): {held[name]}")
            else:
                self.say(f"  ✓ {name} ({t.when})")
        return out

    def _broke(self, name: str, e: BaseException) -> None:
        why = f"cannot be deployed: {type(e).__name__}: {e}"
        self.broken[name] = why
        self.say(f"  ✗ {name}: {why}")

    # -- Prefect ---------------------------------------------------------------------

    async def apply(self, runner: Any, plan: Plan) -> None:
        """Deploy and remove what ``plan`` says, each on its own."""
        from prefect.client.orchestration import get_client

        for name, deployment in plan.deploy.items():
            here = self.in_process and self.triggers[name].on is not None
            try:
                if here:
                    self._ids[name] = await deployment.aapply()
                else:
                    self._ids[name] = await runner.aadd_deployment(deployment)
            except Exception as e:
                self._broke(name, e)
                continue
            if deployment.paused:
                self._paused.add(name)
            else:
                self._paused.discard(name)
        if plan.remove:
            async with get_client() as client:
                for name in plan.remove:
                    try:
                        await _delete(client, name, self._ids.pop(name, None))
                        self.say(f"  − {name}: no longer defined, deployment removed")
                    except Exception as e:
                        self.say(f"  ✗ {name}: deployment not removed: {type(e).__name__}: {e}")
        self._publish()

    def _publish(self) -> None:
        from ._prefect_server import update_state

        update_state(self.s, broken=self.broken)

    async def catch_up(self) -> None:
        """Start a run now of each interval trigger whose last run is more than one
        interval ago (serve was stopped meanwhile): the schedule's anchor is fixed, so
        without this an overdue trigger would wait for its next slot."""
        from prefect.client.orchestration import get_client

        now = datetime.now(UTC)
        async with get_client() as client:
            for name, t in sorted(self.triggers.items()):
                if (
                    not isinstance(t.schedule, Every)
                    or name not in self._ids
                    or name in self._paused
                    or (self.in_process and t.on is not None)  # run at start anyway
                ):
                    continue
                try:
                    if await _overdue(client, name, self._ids[name], t.schedule, now):
                        await client.create_flow_run_from_deployment(
                            self._ids[name], tags=["triggerflow", "catch-up"]
                        )
                        self.say(f"  ↻ {name}: overdue (last run more than "
                                 f"{t.schedule.describe()[6:]} ago), running it now")  # fmt: skip
                except Exception as e:  # a catch-up is a courtesy; the schedule still holds
                    self.say(f"  ! {name}: no catch-up run: {type(e).__name__}: {e}")

    async def watch(self, runner: Any, interval: float = WATCH_INTERVAL) -> None:
        """Keep the deployments in step with the folder until cancelled."""
        while True:
            await asyncio.sleep(interval)
            try:
                if not self.changed():
                    continue
                self.say("Flows folder changed:")
                plan = await asyncio.to_thread(self.scan)
                await self.apply(runner, plan)
            except Exception as e:  # never take serve down; say why and look again
                self.say(f"  ✗ flows folder: not reloaded: {type(e).__name__}: {e}")


def deployment_for(
    trigger: Any,
    problems: list[str],
    paused_because: str | None = None,
    *,
    in_process: bool = False,
) -> Any:
    """The Prefect deployment of one trigger.

    Paused when it is not configured yet, on vacation or paused by hand: Prefect
    un-pauses whatever is deployed again, so the pause is part of every deployment.
    ``in_process``: an event trigger that serve runs itself (no automation starts it).
    """
    from prefect.client.schemas.objects import ConcurrencyLimitConfig, ConcurrencyLimitStrategy

    from .schedules import to_prefect

    description = trigger.description or ""
    if problems:
        description = (description + "\n\nNot configured: " + "; ".join(problems)).strip()
    paused = bool(problems) or paused_because is not None
    # The schedule stays active: `paused` alone stops it, and resuming the deployment
    # (vacation off, `triggerflow resume`) then brings its runs back.
    schedules = [to_prefect(trigger.schedule)] if trigger.schedule else None
    # One run at a time: runs missed while nobody served are dropped rather than caught
    # up in a burst (shared notes/prefect.md §4). Not for event triggers: a queued run
    # waits for Prefect's slot retry (30 s); serve runs them one at a time itself
    # (_event_runs), and where workers run them, overlapping runs are safe (the ledger
    # claims each item once, cursors only move forward).
    limit = None
    if trigger.on is None:
        limit = ConcurrencyLimitConfig(
            limit=1, collision_strategy=ConcurrencyLimitStrategy.CANCEL_NEW
        )
    return trigger.to_deployment(
        name=trigger.name,
        schedules=schedules,
        triggers=[trigger.on.prefect_trigger()] if trigger.on and not in_process else None,
        paused=paused,
        tags=tags_for(list(trigger.tags), paused),
        description=description or None,
        concurrency_limit=limit,
    )


async def _delete(client: Any, name: str, known: UUID | None) -> None:
    from prefect.exceptions import ObjectNotFound

    ids = [known] if known else []
    if not ids:
        ids = [d.id for d in await client.read_deployments() if d.name == name]
    for deployment_id in ids:
        # The automations an event trigger's deploy made are owned by the deployment.
        await client.delete_resource_owned_automations(f"prefect.deployment.{deployment_id}")
        try:
            await client.delete_deployment(deployment_id)
        except ObjectNotFound:
            pass


async def _overdue(
    client: Any, name: str, deployment_id: UUID, every: Every, now: datetime
) -> bool:
    from prefect.client.schemas.filters import (
        DeploymentFilter,
        DeploymentFilterId,
        FlowRunFilter,
        FlowRunFilterStartTime,
    )
    from prefect.client.schemas.sorting import FlowRunSort

    runs = await client.read_flow_runs(
        deployment_filter=DeploymentFilter(id=DeploymentFilterId(any_=[deployment_id])),
        flow_run_filter=FlowRunFilter(start_time=FlowRunFilterStartTime(is_null_=False)),
        sort=FlowRunSort.START_TIME_DESC, limit=1,
    )  # fmt: skip
    if not runs:  # never ran: a new trigger starts on its schedule, like any other
        return False
    if runs[0].start_time + every.interval > now:
        return False
    # Due within the minute anyway: one run, not two in a row.
    slots = (now - ANCHOR) // every.interval + 1
    return ANCHOR + slots * every.interval - now > timedelta(seconds=60)
