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
from collections.abc import Callable, Hashable, Iterable
from dataclasses import dataclass
from typing import Any, ClassVar

from .. import _github, _runtime
from .._store import Delivery
from .._webhooks import KIND, Stored
from ..blocks import GITHUB_SECRET_ENV, load_github_secret
from ..exceptions import ConfigurationError
from ..types import Item, Items
from ._inbox import read_inbox

__all__ = ["GitHubWebhook", "github_webhook"]

SOURCE = "github"  # the source key of every webhook item
EVENT_PREFIX = "triggerflow.github."  # Prefect event names: triggerflow.github.<event>


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
    kind: ClassVar[str] = KIND

    def read(self) -> Items:
        """The new deliveries for the trigger in progress (the trigger calls it)."""
        ctx = _runtime.current()
        if ctx is not None and ctx.mode == "check":
            if load_github_secret() is None and not ctx.settings.github_allow_unsigned:
                ctx.problems.append(
                    f"GitHub webhooks: no secret: set {GITHUB_SECRET_ENV} to the secret given "
                    "to GitHub (or TRIGGERFLOW_GITHUB_ALLOW_UNSIGNED=1 behind another gate)"
                )
            return Items()
        return read_inbox(self)

    def item(self, d: Delivery) -> Item | None:
        """The item of a stored delivery, if this trigger takes it."""
        payload = json.loads(d.payload)
        announcement = _github.describe(d.event, payload)
        if announcement is None or not self.accepts(d.event, announcement):
            return None
        return _item(d.id, d.event, d.received_at, announcement, payload)

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

    def woken_by(self, event: str, repo: str) -> bool:
        """Whether a new delivery of ``event`` from ``repo`` may be for the trigger (the
        cheap part of :meth:`accepts`: what wakes it, before the payload is read)."""
        if self.events and event not in self.events:
            return False
        return not self.repos or any(
            fnmatch.fnmatchcase(repo.lower(), r.lower()) for r in self.repos
        )

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


def waker() -> Callable[[Stored], None]:
    """For deployments run by workers elsewhere (``prefect.yaml``): a Prefect event per
    new announced delivery's (event, repository), coalesced over bursts (see
    ``_wakeup``). Serve wakes its own event triggers in its process (``_event_runs``)."""
    from .._wakeup import Coalescer

    def emit(key: Hashable) -> None:
        from prefect.events import emit_event

        event, repo = key  # type: ignore[misc]
        emit_event(
            event=EVENT_PREFIX + event,
            resource={"prefect.resource.id": f"github.repo.{repo}", "prefect.resource.name": repo},
        )

    coalesce = Coalescer(emit)

    return lambda stored: coalesce((stored.event, stored.repo.lower() or "unknown"))


def _item(
    delivery: str, event: str, received: Any, a: _github.Announcement, payload: dict[str, Any]
) -> Item:
    # What a format or filter may want beyond the message: the action ("opened") and the
    # issue's or pull request's own number and title.
    thing = payload.get("issue") or payload.get("pull_request") or {}
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
        raw={
            "text": a.text,
            "event": event,
            "repo": a.repo,
            "branch": a.branch,
            "action": payload.get("action"),
            "number": thing.get("number"),
            "subject": thing.get("title"),
        },  # fmt: skip
    )
