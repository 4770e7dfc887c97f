"""GitHub webhooks as a source: ``@trigger(on=github_webhook(repo=..., events=[...]))``.

``triggerflow serve`` receives the deliveries (``POST /hooks/github``), stores them in
the inbox, and wakes the trigger with a Prefect event. The run reads the inbox from
its cursor, keeps the deliveries its filter accepts, turns them into items (one per
delivery, the message ready in the item) and hands them to the trigger function, whose
sinks deliver them through the ledger: a lost wake-up or a failed run loses nothing,
the next run (or the fallback schedule) reads from the same cursor.
"""

from __future__ import annotations

import fnmatch
import json
from collections.abc import Iterable
from dataclasses import dataclass, field
from typing import Any

from prefect import task
from prefect.cache_policies import NO_CACHE

from .. import _github, _runtime
from .._store import Store, now
from .._webhooks import KIND, Stored, drain_spool
from ..blocks import GITHUB_SECRET_ENV, load_github_secret
from ..config import settings
from ..exceptions import ConfigurationError, TriggerflowError
from ..types import Item, Items, SourceReport

__all__ = ["GitHubWebhook", "github_webhook"]

SOURCE = "github"  # the source key of every webhook item
EVENT_PREFIX = "triggerflow.github."  # Prefect event names: triggerflow.github.<event>
_BATCH = 1000  # deliveries read per run at most; the next run goes on from there


@dataclass(frozen=True)
class GitHubWebhook:
    """Which deliveries a trigger takes. Create it with :func:`github_webhook`.

    Attributes:
        repos: ``owner/name`` patterns (``owner/*`` for all of an owner); empty: any.
        events: GitHub event names (``push``, ``pull_request``…); empty: every
            announced event.
        branches: branch patterns (``main``, ``release/*``); empty: any. Events that
            concern no branch (issues, stars…) pass.
    """

    repos: tuple[str, ...] = ()
    events: tuple[str, ...] = ()
    branches: tuple[str, ...] = ()

    def describe(self) -> str:
        """Short human form, e.g. ``GitHub push, pull_request from me/project``."""
        what = ", ".join(self.events) or "events"
        where = f" from {', '.join(self.repos)}" if self.repos else ""
        on = f" on {', '.join(self.branches)}" if self.branches else ""
        return f"GitHub {what}{where}{on}"

    def accepts(self, event: str, announcement: _github.Announcement) -> bool:
        """Whether a delivery of ``event`` with this announcement is for the trigger."""
        if self.events and event not in self.events:
            return False
        if self.repos and not any(
            fnmatch.fnmatchcase(announcement.repo.lower(), r.lower()) for r in self.repos
        ):
            return False
        if self.branches and announcement.branch:
            return any(fnmatch.fnmatchcase(announcement.branch, b) for b in self.branches)
        return True

    def prefect_trigger(self) -> Any:
        """The Prefect deployment trigger that runs the deployment on a matching event."""
        from prefect.events import DeploymentEventTrigger

        expect = {EVENT_PREFIX + e for e in self.events} or {EVENT_PREFIX + "*"}
        repos = [f"github.repo.{r.lower()}" for r in self.repos] or ["github.repo.*"]
        return DeploymentEventTrigger(
            expect=expect,
            match={"prefect.resource.id": repos if len(repos) > 1 else repos[0]},
        )


def github_webhook(
    repo: str | Iterable[str] | None = None,
    events: str | Iterable[str] | None = None,
    branches: str | Iterable[str] | None = None,
) -> GitHubWebhook:
    """Run a trigger on GitHub webhook deliveries: ``@trigger(on=github_webhook(...))``.

    The trigger function receives the deliveries as items (``def f(events): ...``);
    each item's message is ready for ``xmpp()`` (the old Jabber hook's format).

    Args:
        repo: ``"owner/name"``, ``"owner/*"`` or several; default: any repository.
        events: ``"push"``, ``["push", "pull_request"]``…; default: every announced one
            (see ``triggerflow._github.ANNOUNCED``).
        branches: ``"main"``, ``["main", "release/*"]``; default: any branch.

    Raises:
        ConfigurationError: an event that is never announced (it would never run).
    """

    def names(value: str | Iterable[str] | None) -> tuple[str, ...]:
        if value is None:
            return ()
        return (value,) if isinstance(value, str) else tuple(value)

    spec = GitHubWebhook(names(repo), names(events), names(branches))
    unknown = [e for e in spec.events if e not in _github.ANNOUNCED]
    if unknown:
        raise ConfigurationError(
            f"github_webhook(events={list(spec.events)!r}): {', '.join(unknown)} "
            f"never produce a message; announced events: {', '.join(_github.ANNOUNCED)}"
        )
    return spec


def wake(stored: Stored) -> None:
    """Tell Prefect a delivery is stored: the matching deployments' triggers start runs."""
    from prefect.events import emit_event

    repo = stored.repo.lower() or "unknown"
    emit_event(
        event=EVENT_PREFIX + stored.event,
        resource={"prefect.resource.id": f"github.repo.{repo}", "prefect.resource.name": repo},
        payload={"delivery": stored.id},
    )


@dataclass
class _Read:
    items: list[Item] = field(default_factory=list)
    report: SourceReport = field(default_factory=lambda: SourceReport(SOURCE))
    last_seq: int | None = None


def read(spec: GitHubWebhook) -> Items:
    """The deliveries for the trigger in progress (called by the trigger, not by users)."""
    ctx = _runtime.current()
    if ctx is None:
        raise ConfigurationError("github_webhook(): deliveries are read inside a trigger run")
    if ctx.mode == "check":
        if load_github_secret() is None and not ctx.settings.github_allow_unsigned:
            ctx.problems.append(
                f"GitHub webhooks: no secret: set {GITHUB_SECRET_ENV} to the secret given "
                "to GitHub (or TRIGGERFLOW_GITHUB_ALLOW_UNSIGNED=1 behind another gate)"
            )
        return Items()
    try:
        got: _Read = _runtime.call_step(
            _github_task, _read, f"github: {spec.describe()}", ctx.trigger, spec,
            ctx.mode == "run",
        )  # fmt: skip
    except TriggerflowError as e:  # the store stayed busy, also after Prefect's retries
        got = _Read(report=SourceReport(SOURCE, failures={"inbox": str(e)}))
    ctx.sources.append(got.report)
    ctx.items.extend(got.items)
    if got.last_seq is not None:
        ctx.cursors[KIND] = got.last_seq
    return Items(got.items)


def _read(trigger: str, spec: GitHubWebhook, write: bool) -> _Read:
    s = settings()
    store = Store(s.store_path, s.store_wait)
    log = _runtime.logger()
    if write:
        drain_spool(s.spool_dir, store)
    out = _Read()
    skipped = 0
    with store.transaction(commit=write) as con:
        after = store.inbox_cursor(con, trigger, KIND)
        deliveries = store.inbox_after(con, KIND, after, _BATCH)
        for d in deliveries:
            announcement = None if d.ignored else _github.describe(d.event, json.loads(d.payload))
            if announcement is None or not spec.accepts(d.event, announcement):
                skipped += 1
                continue
            out.items.append(_item(d.id, d.event, d.received_at, announcement))
        out.report.new = store.upsert_items(con, out.items, now(), update=False)
    out.report.fetched = len(out.items)
    if deliveries:
        out.last_seq = deliveries[-1].seq
    log.info(
        "github: %d new deliver%s in the inbox: %d for this trigger, %d not",
        len(deliveries), "y" if len(deliveries) == 1 else "ies", len(out.items), skipped,
    )  # fmt: skip
    return out


def _item(delivery: str, event: str, received: Any, a: _github.Announcement) -> Item:
    return Item(
        source=SOURCE,
        id=delivery,
        title=a.lines[0],
        link=a.url,
        summary="\n".join(a.lines[1:]),
        author=a.actor,
        published=received,
        tags=tuple(t for t in (event, a.repo, a.branch) if t),
        # ``text``: the whole message, which sinks send as is when given no format.
        raw={"text": a.text, "event": event, "repo": a.repo, "branch": a.branch},
    )


_github_task = task(_read, name="github", cache_policy=NO_CACHE, persist_result=False,
                    retry_condition_fn=_runtime.only_transient)  # fmt: skip
