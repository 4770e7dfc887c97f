"""``@trigger``: a plain function becomes a Prefect flow with a schedule.

The decorated object *is* a :class:`prefect.Flow` (so Prefect can load it from
``flows/<file>.py:<name>`` in a deployment run) with three additions: its
``schedule``, ``preview()`` for a dry run, and ``check()`` for configuration
problems found without fetching or sending anything.
"""

from __future__ import annotations

import functools
import html
import inspect
from collections.abc import Callable, Iterable
from datetime import UTC, datetime
from typing import TYPE_CHECKING, Any

from prefect import Flow

from . import _runtime
from ._paused import paused_reasons
from ._store import Store
from .config import settings
from .exceptions import ConfigurationError, TriggerRunFailed
from .schedules import Schedule, every
from .types import Item, Items, SinkReport, SourceReport

if TYPE_CHECKING:
    from .sources import ChatMessages, GitHubWebhook

__all__ = ["RunResult", "Trigger", "trigger"]

FALLBACK = "10m"  # the catch-up schedule of an event trigger without one of its own


class RunResult(Items):
    """The items a trigger run collected, with what its sinks did.

    It is an :class:`Items` (the items every source returned), so it renders as a
    table in Jupyter; ``summary()`` is the one-line human account.

    Attributes:
        trigger: the trigger's name.
        dry_run: True for a preview (nothing was sent or marked).
        sources: one report per source call.
        sinks: one report per sink call.
        more: an event trigger read a full batch from its inbox and more waits: serve
            runs it again at once.
    """

    def __init__(
        self,
        trigger: str,
        dry_run: bool,
        items: Iterable[Item],
        sources: list[SourceReport],
        sinks: list[SinkReport],
    ) -> None:
        super().__init__(items)
        self.trigger = trigger
        self.dry_run = dry_run
        self.sources = sources
        self.sinks = sinks
        self.more = False

    @property
    def new(self) -> int:
        """Items stored for the first time in this run."""
        return sum(r.new for r in self.sources)

    @property
    def failures(self) -> list[str]:
        """Every failure of the run, one readable line each."""
        lines = [f"{url}: {why}" for r in self.sources for url, why in r.failures.items()]
        for s in self.sinks:
            if s.error:
                lines.append(f"{s.sink} to {s.target}: {s.error}")
            lines += [f"{s.sink} to {s.target}: {f.title}: {f.reason}" for f in s.failed.values()]
            if s.dead:
                lines.append(
                    f"{s.sink} to {s.target}: {s.dead} item(s): gave up after {s.max_attempts} "
                    "attempts (`triggerflow retry --dead` owes them again)"
                )
        return lines

    def summary(self) -> str:
        """E.g. ``python_news: 3 new items, 3 sent to me@example.org``."""
        parts = [f"{len(self)} items" + (f", {self.new} new" if not self.dry_run else "")]
        for s in self.sinks:
            if self.dry_run:
                parts.append(f"{len(s.would_send)} would be sent to {s.target}")
                continue
            bits = [f"{s.sent} sent to {s.target}"]
            if s.queued:
                bits.append(f"{s.queued} queued")
            if s.failed or s.dead:
                bits.append(f"{len(s.failed) + s.dead} failed")
            if s.skipped:
                bits.append(f"{s.skipped} older skipped")
            parts.append(", ".join(bits))
        failures = self.failures
        if failures:
            parts.append(f"{len(failures)} problem{'s' if len(failures) > 1 else ''}")
        return f"{self.trigger}: " + "; ".join(parts)

    def markdown(self) -> str:
        """The run summary as Markdown (the Prefect artifact)."""
        lines = [f"### {self.trigger}", "", "| | count |", "|---|---|"]
        lines.append(f"| items fetched | {len(self)} |")
        lines.append(f"| new | {self.new} |")
        for s in self.sinks:
            lines.append(f"| sent to {s.target} ({s.sink}) | {s.sent} |")
            lines.append(f"| queued for {s.target} | {s.queued} |")
            lines.append(f"| failed for {s.target} | {len(s.failed) + s.dead} |")
        failures = self.failures
        if failures:
            lines += ["", "**Problems**", ""] + [f"- {f}" for f in failures]
        return "\n".join(lines)

    def __repr__(self) -> str:
        text = self.summary()
        for s in self.sinks:
            for body in s.would_send[:20]:
                text += f"\n  → {s.target}: " + " | ".join(body.splitlines())
        return text + "\n" + super().__repr__()

    def _repr_html_(self) -> str:
        would = "".join(
            f"<li>{html.escape(s.target)}: {html.escape(b)}</li>"
            for s in self.sinks
            for b in s.would_send[:50]
        )
        extra = f"<ul>{would}</ul>" if would else ""
        return f"<p><b>{html.escape(self.summary())}</b></p>{extra}" + super()._repr_html_()


class Trigger(Flow[..., RunResult]):
    """A trigger: a Prefect flow with a schedule. Create it with :func:`trigger`."""

    def __init__(
        self,
        fn: Callable[..., Any],
        *,
        name: str,
        schedule: Schedule | None,
        description: str | None,
        tags: Iterable[str],
        on: GitHubWebhook | ChatMessages | None = None,
    ) -> None:
        self.user_fn = fn
        self.on = on
        # An event trigger also runs on a schedule, so that a lost wake-up only delays.
        self.schedule = schedule or (every(FALLBACK) if on is not None else None)
        self.extra_tags = tuple(tags)
        # When this process learnt of the trigger (no I/O here): a trigger that serve
        # never loaded exists from then on for its inbox (see ``sources._inbox``).
        self.defined_at = datetime.now(UTC)

        @functools.wraps(fn)
        def run_trigger(*args: Any, **kwargs: Any) -> RunResult:
            return self._execute("run", args, kwargs)

        if on is not None:
            # The deliveries are the first argument, supplied by the run itself: it is no
            # deployment parameter (Prefect would require it of every run).
            params = list(inspect.signature(fn).parameters.values())[1:]
            del run_trigger.__wrapped__
            run_trigger.__signature__ = inspect.Signature(params)  # type: ignore[attr-defined]

        super().__init__(
            fn=run_trigger,
            name=name,
            description=description,
            log_prints=True,
            validate_parameters=False,
            persist_result=False,
        )

    @property
    def when(self) -> str:
        """When it runs, for people: ``every 15m``, ``on GitHub push from me/x; every 10m``."""
        every_ = self.schedule.describe() if self.schedule else "on demand"
        return f"on {self.on.describe()}; {every_}" if self.on is not None else every_

    @property
    def tags(self) -> tuple[str, ...]:
        """Deployment tags: ``triggerflow`` plus the trigger's own."""
        return ("triggerflow", *self.extra_tags)

    def preview(self, *args: Any, **kwargs: Any) -> RunResult:
        """Dry run: fetch, then show what would be sent. Sends nothing, marks nothing.

        Returns:
            The items the sources returned, with ``would_send`` per sink.
        """
        return self._execute("preview", args, kwargs)

    def check(self) -> list[str]:
        """Configuration problems (missing accounts, bad targets), without any I/O."""
        try:
            self._execute("check", (), {})
        except ConfigurationError as e:
            return [str(e)]
        return []

    def _held(self) -> bool:
        """Whether this event trigger is paused (vacation or by hand) and must not deliver.

        Prefect's automations start runs of paused deployments too; what arrives meanwhile
        stays in the inbox and goes out after the pause (the cursor does not move).
        """
        why = paused_reasons([self.name]).get(self.name)
        if why:
            _runtime.logger().info("%s is %s: deliveries wait in the inbox", self.name, why)
        return why is not None

    def _execute(self, mode: _runtime.Mode, args: tuple[Any, ...], kwargs: dict[str, Any]) -> Any:
        s = settings()
        ctx = _runtime.RunContext(self.name, mode, s, Store.default(s), defined_at=self.defined_at)
        token = _runtime._current.set(ctx)
        try:
            if self.on is not None and mode == "run" and self._held():
                return RunResult(self.name, False, (), [], [])
            if self.on is not None:
                events = self.on.read()
                if inspect.signature(self.user_fn).parameters:
                    args = (events, *args)
            self.user_fn(*args, **kwargs)
            if mode == "run" and ctx.cursors:  # what the sinks owe is in the ledger now
                with ctx.store.transaction() as tx:
                    for kind, seq in ctx.cursors.items():
                        tx.set_inbox_cursor(self.name, kind, seq)
        except Exception as e:
            if mode == "run":  # a bug or a config error in the trigger: an outage too
                from . import _alerts

                _alerts.check(ctx.store, self.name, [f"{type(e).__name__}: {e}"])
            raise
        finally:
            _runtime._current.reset(token)
        if mode == "check":
            if ctx.problems:
                raise ConfigurationError("; ".join(ctx.problems))
            return None
        every = sum(ctx.items, Items())  # every source's, in order (kept as they are)
        result = RunResult(self.name, mode != "run", every, ctx.sources, ctx.sinks)
        result.more = ctx.more
        if mode == "run":
            from . import _alerts

            _publish_summary(result)
            _alerts.check(ctx.store, self.name, result.failures)
            silent = {f: why for r in ctx.sources for f, why in r.silent.items()}
            if silent:  # one alert per run, however many feeds went silent
                from ._polling import silent_summary

                _alerts.send_now(
                    ctx.store,
                    f"silent:{self.name}:{datetime.now(UTC).isoformat()}",
                    f"⚠ triggerflow: {self.name}: {silent_summary(silent)}",
                )
            if result.failures:
                raise TriggerRunFailed(
                    f"trigger {self.name}: "
                    + "; ".join(result.failures[:5])
                    + (
                        f" (and {len(result.failures) - 5} more)"
                        if len(result.failures) > 5
                        else ""
                    )
                )
        return result


def _publish_summary(result: RunResult) -> None:
    """Log the summary and attach it to the flow run as a Markdown artifact."""
    from prefect.artifacts import create_markdown_artifact

    _runtime.logger().info(result.summary())
    key = "".join(c if c.isalnum() else "-" for c in result.trigger.lower()) + "-summary"
    create_markdown_artifact(
        key=key, markdown=result.markdown(), description=f"Last run of {result.trigger}"
    )


def trigger(
    fn: Callable[..., Any] | None = None,
    *,
    schedule: Schedule | None = None,
    on: GitHubWebhook | ChatMessages | None = None,
    name: str | None = None,
    tags: Iterable[str] = (),
) -> Any:
    """Make ``fn`` a trigger: a Prefect flow that ``triggerflow serve`` deploys.

    Args:
        fn: the function; its body calls sources and sinks.
        schedule: ``every("15m")`` or ``cron("0 7 * * *")``; None runs only on demand
            (an ``on=`` trigger runs every 10 minutes as well, to catch up).
        on: run when something arrives: ``github_webhook(repo=..., events=[...])`` or
            ``xmpp_message()`` (sent to the bot); the function then receives what
            arrived as its first argument.
        name: the trigger's name (default: the function's name).
        tags: extra deployment tags (``triggerflow`` is always set).

    Example::

        @trigger(schedule=every("15m"))
        def python_news():
            '''New posts from the Python blog, to me.'''
            xmpp(rss("https://blog.python.org/feeds/posts/default"))

        @trigger(on=github_webhook(repo="me/project", events=["push", "pull_request"]))
        def project_activity(events):
            xmpp(events, room="dev@conference.example.org")
    """

    def wrap(f: Callable[..., Any]) -> Trigger:
        return Trigger(
            f,
            name=name or f.__name__,
            schedule=schedule,
            description=(f.__doc__ or "").strip() or None,
            tags=tags,
            on=on,
        )

    return wrap(fn) if fn is not None else wrap
