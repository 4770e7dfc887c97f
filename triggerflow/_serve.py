"""``triggerflow serve``: every trigger in ``flows/`` as a scheduled Prefect deployment.

With no ``PREFECT_API_URL`` it first starts a local Prefect server (SQLite under
the data dir) and stops it again on exit; with one, it serves against that
server. Prefect's ``serve`` runs each flow run as a subprocess of this process.

Prefect reads its settings when it is first imported, so the environment is set
up here *before* anything imports prefect (the CLI keeps its imports lazy).
"""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import threading
import time
import warnings
from collections.abc import Callable
from datetime import UTC, datetime
from pathlib import Path
from typing import TYPE_CHECKING, Any

from ._prefect_server import (
    LocalPrefectServer,
    clear_state,
    prefect_environment,
    running_serve,
    write_state,
)
from ._webhooks import GitHubReceiver
from .config import Settings
from .exceptions import ConfigurationError

if TYPE_CHECKING:
    from ._event_runs import EventRuns

Say = Callable[[str], None]

STOP_SECONDS = 8.0  # Ctrl-C or SIGTERM to the end of serving (then the servers stop)


def prepare_environment(s: Settings, *, use_serve: bool = True) -> str | None:
    """Point this process's Prefect at the right server; return its API URL if known.

    Order: an explicit ``PREFECT_API_URL``; else the server of a running
    ``triggerflow serve`` (when ``use_serve``); else none (Prefect's ephemeral mode,
    with its home under the data dir).
    """
    for key, value in prefect_environment(s).items():
        os.environ.setdefault(key, value)
    if os.environ.get("PREFECT_API_URL"):
        return os.environ["PREFECT_API_URL"]
    state = running_serve(s) if use_serve else None
    if state:
        os.environ["PREFECT_API_URL"] = state["api_url"]
        return state["api_url"]
    return None


def serve(s: Settings, say: Say, *, run_triggers: bool = True) -> int:
    """Start (if needed) the Prefect server, deploy every trigger, run until Ctrl-C.

    ``run_triggers=False`` (``serve --no-runs``): the Prefect server, the web app and the
    webhook receiver only; the triggers are the deployments of ``prefect.yaml``, run by
    workers (a delivery wakes them by a Prefect event), and no XMPP bot is started.
    """
    existing = running_serve(s)
    if existing:
        raise ConfigurationError(
            f"triggerflow serve is already running (pid {existing['pid']}, "
            f"UI {existing['ui_url']}); stop it first"
        )
    server: LocalPrefectServer | None = None
    api_url = prepare_environment(s, use_serve=False)
    if threading.current_thread() is threading.main_thread():
        # SIGTERM (systemd, docker stop, kill) stops like Ctrl-C, also while starting up.
        signal.signal(signal.SIGTERM, _interrupt)
    try:
        if api_url is None:
            server = LocalPrefectServer(s)
            say(f"Starting a local Prefect server on {server.ui_url} (data in {s.prefect_home})…")
            server.start(say)
            os.environ["PREFECT_API_URL"] = api_url = server.api_url
            ui_url = server.ui_url
        else:
            ui_url = api_url.removesuffix("/").removesuffix("/api")
            say(f"Using the Prefect server at {api_url}")
        write_state(s, api_url, ui_url)
        from ._event_runs import EventRuns
        from ._web import WebServer

        runs = EventRuns(s.event_runs)
        web = WebServer(s.web_port, _github_receiver(s, say, runs))
        # Deliveries count from here on for the triggers loaded at start (below).
        started = datetime.now(UTC)
        web.start()
        say(f"Generated feeds: {web.url}/feeds/  GitHub webhooks: {web.url}/hooks/github")
        reindexer = Reindexer(s.search_reindex, say)
        reindexer.start()
        upkeep = _Upkeep(s, say)
        try:
            if not run_triggers:
                return _serve_nothing_else(s, ui_url, say, started)
            return _serve_triggers(s, ui_url, say, started, runs, own_server=server is not None)
        finally:
            runs.stop()
            upkeep.stop()
            reindexer.stop()
            web.stop()
    except KeyboardInterrupt:
        return 130
    finally:
        clear_state(s)
        if server is not None and server.process is not None:
            say("Stopping the Prefect server…")
            server.stop()


class _Upkeep:
    """The store's daily backup (``TRIGGERFLOW_BACKUPS`` kept) and its compaction."""

    def __init__(self, s: Settings, say: Say) -> None:
        from ._backups import Backups, Compactor

        self.threads = (Backups(s, say), Compactor(s, say))
        for t in self.threads:
            t.start()

    def stop(self) -> None:
        for t in self.threads:
            t.stop()


def _github_receiver(s: Settings, say: Say, runs: EventRuns) -> GitHubReceiver:
    from ._webhooks import Stored
    from .blocks import load_github_secret
    from .sources._github import KIND, waker

    secret = load_github_secret()
    if secret is None and not s.github_allow_unsigned:
        say("  (GitHub webhooks are refused until TRIGGERFLOW_GITHUB_SECRET is set)")
    elif secret is None:
        say("  (GitHub webhooks are accepted unsigned: TRIGGERFLOW_GITHUB_ALLOW_UNSIGNED=1)")
    emit = waker()

    def stored(d: Stored) -> None:  # serve's own triggers here; workers' by a Prefect event
        runs.wake(KIND, lambda on: on.woken_by(d.event, d.repo))
        emit(d)

    secret_value = secret.get_secret_value() if secret else None
    return GitHubReceiver(s, secret_value, on_stored=stored)


class Reindexer(threading.Thread):
    """Rebuilds the search index in the background when items wait for it.

    Searches find waiting items anyway (by a scan that grows with their number), so
    this only keeps searches fast. The rebuild runs in a child process: building the
    index of a large store takes memory that serve should not keep.
    """

    def __init__(self, interval: float, say: Say) -> None:
        super().__init__(name="triggerflow-reindex", daemon=True)
        self.interval = interval
        self.say = say
        self._halt = threading.Event()
        self._child: subprocess.Popen[bytes] | None = None

    def run(self) -> None:
        if self.interval <= 0:
            return
        delay = min(self.interval, 30.0)  # the first look soon after start
        while not self._halt.wait(delay):
            delay = self.interval
            try:
                self._check()
            except Exception as e:  # never take serve down; say why and try later
                self.say(f"search index: not rebuilt: {e}")

    def _check(self) -> None:
        from ._search import search_index_status

        waiting = search_index_status().waiting
        if not waiting:
            return
        self._child = subprocess.Popen(
            [sys.executable, "-m", "triggerflow", "search", "--reindex"],
            stdout=subprocess.DEVNULL, stderr=subprocess.PIPE,
        )  # fmt: skip
        _, err = self._child.communicate()
        if self._child.returncode not in (0, 130, -signal.SIGINT) and not self._halt.is_set():
            last = err.decode(errors="replace").strip().splitlines()[-1:] or ["no output"]
            self.say(f"search index: rebuild failed: {last[0]}")
        self._child = None

    def stop(self) -> None:
        self._halt.set()
        child = self._child
        if child is not None and child.poll() is None:
            child.send_signal(signal.SIGINT)  # lets it remove its half-built file
            try:
                child.wait(10)
            except subprocess.TimeoutExpired:
                child.kill()
        self.join(timeout=15)


def _interrupt(signum: int, frame: object) -> None:
    raise KeyboardInterrupt


def _serve_triggers(
    s: Settings, ui_url: str, say: Say, started: datetime, runs: EventRuns, *, own_server: bool
) -> int:
    import asyncio

    from prefect.exceptions import TerminationSignal
    from prefect.runner import Runner

    from ._lifeline import hand_down
    from ._watch import ServedTriggers
    from ._watchdog import Watchdog

    served = ServedTriggers(s, say, started, in_process=True)
    plan = served.scan()
    if not served.triggers and not served.broken:
        where = Path(s.flows_dir).resolve()
        raise ConfigurationError(
            f"no triggers found in {where}; write one (see README) or set TRIGGERFLOW_FLOWS_DIR"
        )
    # pause_on_shutdown=False: stopping serve must not look like a vacation (issue 5
    # keeps its own record of what was paused by the user).
    runner = Runner(pause_on_shutdown=False)
    hand_down()  # the runs the runner starts die with serve, even a SIGKILLed one
    bot = _start_bot(s, served.triggers, say, runs)
    # Prefect's own SIGTERM handler leaves a coroutine un-awaited (3.8.8); harmless.
    warnings.filterwarnings("ignore", "coroutine 'Runner.astop' was never awaited")

    async def main() -> None:
        await served.apply(runner, plan)
        await _mark_crashed(served.ids, started, say, own_server=own_server)
        say(f"Serving {len(served.deployed)} trigger(s). Prefect UI: {ui_url}  (Ctrl-C to stop)")
        runs.attach(served.triggers, served.ids)
        watchdog = Watchdog(s, served.triggers, served.ids, started, say)
        await asyncio.to_thread(watchdog.start)  # says first if the last serve was killed
        await served.catch_up()
        watching = asyncio.create_task(served.watch(runner))
        running = asyncio.create_task(runner.start())
        await asyncio.sleep(0)  # the runner has installed its SIGTERM handler by now
        stop = asyncio.Event()
        if threading.current_thread() is threading.main_thread():
            # Ctrl-C and SIGTERM (systemd, docker stop, kill) set `stop`, and serve ends
            # its own way, within STOP_SECONDS whatever runs. Prefect's SIGTERM handler
            # (stop the runner, then exit), and asyncio's Ctrl-C (cancel the main task),
            # left serve running for good once runs had been going (issue 17).
            loop = asyncio.get_running_loop()
            for sig in (signal.SIGINT, signal.SIGTERM):
                loop.add_signal_handler(sig, stop.set)
        stopping = asyncio.create_task(stop.wait())
        try:
            await asyncio.wait({running, stopping}, return_when=asyncio.FIRST_COMPLETED)
        finally:
            say("Stopping…")
            watching.cancel()
            stopping.cancel()
            watchdog.stop()
            runs.stop(timeout=STOP_SECONDS / 2)  # in-process runs: end, or owed again later
            running.cancel()
            await asyncio.wait({running}, timeout=STOP_SECONDS / 2)

    try:
        asyncio.run(main())
    except (KeyboardInterrupt, TerminationSignal):  # Ctrl-C, or Prefect's SIGTERM handler
        pass
    finally:
        if bot is not None:
            bot.stop()
        _drain_prefect()
    say("Stopped serving.")
    return 0


def _serve_nothing_else(s: Settings, ui_url: str, say: Say, started: datetime) -> int:
    """``serve --no-runs``: keep the servers up until Ctrl-C or SIGTERM.

    The flows folder is still read (again whenever a file changes): an event trigger
    delivers what arrived since it first existed, and without a note of when that was,
    its first run on a worker would count from itself and skip the very delivery that
    started it.
    """
    say(
        "Running no triggers here (--no-runs): the workers of their work pool do. "
        f"Prefect UI: {ui_url}  (Ctrl-C to stop)"
    )
    from ._store import now

    seen: dict[Path, float] | None = None
    try:
        while True:
            files = _flows_files(s.flows_dir)
            if files != seen:
                # Those there at start exist since serve started; those added later, since
                # they were seen (the earliest sighting wins in the store).
                _note_trigger_starts(s, say, started if seen is None else now())
                seen = files
            time.sleep(FLOWS_RESCAN)
    except KeyboardInterrupt:  # Ctrl-C, or SIGTERM (_interrupt)
        pass
    say("Stopped serving.")
    return 0


FLOWS_RESCAN = 2.0  # seconds between looks at the flows folder in --no-runs mode


def _flows_files(folder: Path) -> dict[Path, float]:
    try:
        return {p: p.stat().st_mtime for p in folder.glob("*.py")}
    except OSError:  # a file removed while looking: the next look sees it gone
        return {}


def _note_trigger_starts(s: Settings, say: Say, at: datetime) -> None:
    from ._discovery import discover
    from ._store import Store
    from .exceptions import TriggerflowError

    found = discover(s.flows_dir)
    for why in found.errors.values():
        say(f"  ✗ {why}")
    names = sorted(found.triggers)
    try:
        with Store.default(s).transaction() as tx:
            tx.trigger_started(names, at)
    except TriggerflowError as e:  # their first runs note it instead
        say(f"  ! could not note when the triggers started: {e}")


async def _mark_crashed(
    ids: dict[str, Any], started: datetime, say: Say, *, own_server: bool
) -> None:
    """Runs a killed serve left going, marked Crashed (never a reason not to serve)."""
    from prefect.client.orchestration import get_client

    from ._lifeline import mark_crashed

    names = {v: k for k, v in ids.items()}
    try:
        async with get_client() as client:
            marked = await mark_crashed(client, ids.values(), started, own_server=own_server)
    except Exception as e:  # the UI keeps saying Running; the next start tries again
        say(f"  (runs left going by a killed serve not marked: {type(e).__name__}: {e})")
        return
    for run in marked:
        name = names.get(run.deployment_id, "?")
        say(f"  ✗ {name}: run {run.name} was left going by a serve that was killed: now Crashed")


def _drain_prefect(timeout: float = 5.0) -> None:
    """Send what Prefect still holds for the API (the in-process runs' logs and events)
    while the server is up: at exit, Prefect waits for it without a bound, and the local
    server is gone by then (serve stayed alive after Ctrl-C for good)."""
    from prefect._internal.concurrency.services import QueueService  # pinned: prefect<3.9

    try:
        QueueService.drain_all(timeout=timeout)
    except Exception as e:  # a log line lost is no reason not to stop
        warnings.warn(f"Prefect's logs and events not all sent at stop: {e}", stacklevel=1)


def _start_bot(s: Settings, triggers: dict[str, Any], say: Say, runs: EventRuns) -> Any:
    """The XMPP bot, connected in the background, when the account ``bot`` is configured."""
    from ._bot import Bot
    from ._commands import Commands
    from ._xmpp import XMPPConnection
    from .blocks import load_xmpp_account
    from .exceptions import AccountNotConfigured
    from .sources._chat import KIND, waker

    try:
        acct = load_xmpp_account("bot")
    except AccountNotConfigured:
        return None
    owners = [o for o in (acct.owner, *s.bot_owners.split(",")) if o and o.strip()]
    conn = XMPPConnection(
        jid=acct.jid, password=acct.password.get_secret_value(), host=acct.host,
        port=acct.port, ca_file=acct.ca_file, allow_plaintext=acct.allow_plaintext,
        timeout=s.xmpp_timeout,
    )  # fmt: skip
    emit = waker(acct.jid)

    def wake(key: str) -> None:  # serve's own triggers here; workers' by a Prefect event
        runs.wake(KIND)
        emit(key)

    bot = Bot(s, conn, owners, Commands(s, triggers), wake=wake)
    bot.start()
    who = ", ".join(sorted(bot.owners)) or "nobody (set TRIGGERFLOW_BOT_OWNERS)"
    say(f"XMPP bot: {acct.jid}, taking commands from {who}")
    return bot
