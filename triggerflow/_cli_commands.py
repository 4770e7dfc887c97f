"""The commands of ``triggerflow``, one function each: a thin layer over the library.

``cli`` parses the command line and calls one of these with the settings and the
parsed arguments; each returns the exit code. Imports stay lazy (see ``cli``).
"""

from __future__ import annotations

import argparse
import gc
import os
import sys
from typing import Any

from ._show import table as _table
from ._show import when as _when
from .config import Settings
from .exceptions import ConfigurationError, TriggerflowError


def say(text: str = "") -> None:
    """Print one line of output now (also when piped)."""
    print(text, flush=True)


# -- commands -----------------------------------------------------------------------


def cmd_serve(s: Settings, args: argparse.Namespace) -> int:
    from ._serve import serve

    return serve(s, say, run_triggers=not args.no_runs)


def cmd_list(s: Settings, args: argparse.Namespace) -> int:
    from ._serve import prepare_environment

    api_url = prepare_environment(s)  # before anything imports prefect
    from ._discovery import discover
    from ._read import listing
    from ._show import list_lines

    found = discover(s.flows_dir)
    for why in found.errors.values():
        say(f"✗ {why}")  # the message names the file
    if not found.triggers:
        say(
            f"No triggers in {s.flows_dir.resolve()}. Run triggerflow where your flows/ folder"
            " is, or name it: --flows DIR or TRIGGERFLOW_FLOWS_DIR."
        )
        return 1 if found.errors else 0
    for line in list_lines(listing(found.triggers, api_url=api_url, s=s)):
        say(line)
    return 1 if found.errors else 0


def _find(s: Settings, name: str) -> Any:
    from ._discovery import find

    return find(s.flows_dir, name)


# True when this process is the command (``cli.command``), not a caller of ``cli.main``
# (a test, a script): only then may a command freeze what it imported (see cmd_run).
WHOLE_PROCESS = False


def cmd_run(s: Settings, args: argparse.Namespace) -> int:
    from ._serve import prepare_environment

    api_url = prepare_environment(s)
    # Finding the trigger imports Prefect: ~0.2 s of it is the collector walking what the
    # imports made, again and again; frozen afterwards, no later collection walks it.
    gc.disable()
    try:
        t = _find(s, args.name)
    finally:
        gc.enable()
    if WHOLE_PROCESS:
        gc.freeze()
    from . import vacation

    held = vacation.paused_reasons([t.name]).get(t.name)
    if held and not args.force:
        raise ConfigurationError(
            f"{t.name} is not run: {held}; `triggerflow run {t.name} --force` runs it anyway"
        )
    if args.all_feeds:
        from ._store import Store

        with Store.default(s).transaction() as tx:
            waited = tx.make_sources_due(t.name)
        if waited:
            say(f"{waited} feed(s) that were waiting (backoff, fresh, 410 Gone) are fetched now.")
    if api_url and not args.here:
        from ._runs import run_deployment

        outcome = run_deployment(t.name, say, wait=args.wait, debug=args.debug)
        if outcome is not None:
            return outcome
    if api_url is None:
        home = os.environ["PREFECT_HOME"]  # prepare_environment's, or the user's own
        say(
            "No Prefect server running: this run starts a temporary one (slower), and its "
            f"record goes to the Prefect database in {home}: `triggerflow serve` shows it "
            "in the UI later."
        )
    return _run_here(t, api_url)


def _run_here(t: Any, api_url: str | None) -> int:
    """The trigger run in this process (``--here``, or no deployment to run)."""
    from prefect.states import State

    from ._runs import without_heartbeat

    with without_heartbeat():  # this process is the run: nothing to watch it
        state: State = t(return_state=True)
    result = state.result(raise_on_failure=False) if state.is_completed() else None
    if result is not None:
        say(result.summary())
    else:
        say(f"{t.name}: {state.name}: {state.message or ''}".rstrip(": "))
    if api_url:
        ui = api_url.removesuffix("/").removesuffix("/api")
        say(f"Prefect UI: {ui}/runs/flow-run/{state.state_details.flow_run_id}")
    return 0 if state.is_completed() else 1


def cmd_preview(s: Settings, args: argparse.Namespace) -> int:
    t = _find(s, args.name)
    result = t.preview()
    for src in result.sources:
        for url, why in src.failures.items():
            say(f"✗ {url}: {why}")
        for url, why in src.warnings.items():
            say(f"! {url}: {why}")
    say(f"{len(result)} item(s) fetched (nothing sent, nothing marked).")
    for sink in result.sinks:
        if sink.error:
            say(f"✗ {sink.sink} to {sink.target}: {sink.error}")
        say(f"Would send {len(sink.would_send)} message(s) to {sink.target} ({sink.sink}):")
        limit = args.limit
        for body in sink.would_send[:limit]:
            say("  → " + " | ".join(body.splitlines()))
        if len(sink.would_send) > limit:
            say(f"  … and {len(sink.would_send) - limit} more (--limit)")
        if sink.held:
            say(f"  ({sink.held} more wait for the publication limit)")
    return 1 if result.failures else 0


def cmd_status(s: Settings, args: argparse.Namespace) -> int:
    from ._read import status
    from ._show import status_lines
    from ._store import Store

    st = status(args.name, failures=args.failures, alerts=args.all, store=Store.default(s))
    for line in status_lines(st, sources=args.sources):
        say(line)
    return 0


def _applied(change: Any) -> str:
    if change.applied:
        return ""
    return " (no Prefect server reachable: `triggerflow serve` applies it when it starts)"


def cmd_vacation(s: Settings, args: argparse.Namespace) -> int:
    from ._serve import prepare_environment

    prepare_environment(s)
    from . import vacation

    if args.action == "on":
        change = vacation.on(note=args.note)
        names = ", ".join(change.vacation.resume) or "none"
        say(f"On vacation. Paused: {names}.{_applied(change)}")
        say("`triggerflow vacation off` resumes exactly these.")
    elif args.action == "off":
        before = vacation.status()
        change = vacation.off(skip_backlog=args.skip_backlog)
        resumed = [n for n in before.resume if n not in change.vacation.paused]
        say(f"Back from vacation. Resumed: {', '.join(resumed) or 'none'}.{_applied(change)}")
        kept = sorted(change.vacation.paused)
        if kept:
            say(f"Still paused by hand: {', '.join(kept)} (`triggerflow resume NAME`).")
        if args.skip_backlog:
            say(f"Skipped {change.skipped} queued item(s) and anything published while away.")
    else:
        state = vacation.status()
        if state.active and state.since is not None:
            say(
                f"On vacation since {_when(state.since)}"
                + (f": {state.note}" if state.note else "")
            )
            say(f"Paused for the vacation: {', '.join(state.resume) or 'none'}")
        else:
            say("Not on vacation.")
        for name, at in sorted(state.paused.items()):
            say(f"Paused by hand: {name} (since {_when(at)})")
    return 0


def cmd_pause(s: Settings, args: argparse.Namespace) -> int:
    from ._serve import prepare_environment

    prepare_environment(s)
    from . import vacation

    _find(s, args.name)  # a typo is an error, not a pause of nothing
    if args.action == "pause":
        change = vacation.pause(args.name.replace("-", "_"), note=args.note)
        say(f"Paused {args.name}.{_applied(change)}")
    else:
        change = vacation.resume(args.name.replace("-", "_"))
        if change.vacation.active:
            say(f"{args.name} is no longer paused by hand; it resumes when the vacation ends.")
        else:
            say(f"Resumed {args.name}.{_applied(change)}")
    return 0


def cmd_retry(s: Settings, args: argparse.Namespace) -> int:
    from ._store import Store, now

    name = args.name.replace("-", "_") if args.name else None
    if name:
        _find(s, name)
    store = Store.default(s)
    with store.transaction() as tx:
        n = tx.requeue(name, now(), dead=args.dead)
    what = "failed or dead" if args.dead else "failed"
    say(f"Requeued {n} {what} item(s){' of ' + name if name else ''}; the next run sends them.")
    return 0


def cmd_feeds(s: Settings, args: argparse.Namespace) -> int:
    from . import feeds

    if args.action == "list":
        rows = [(n, count, _when(last)) for n, count, last in feeds.names()]
        say(_table(rows, ("FEED", "ENTRIES", "LAST ADDED")) if rows else "No feeds yet.")
        return 0
    if not args.name:
        raise TriggerflowError("feeds export: name the feed (see `triggerflow feeds list`)")
    kind = "json" if args.json else "rss" if args.rss else "atom"
    xml = feeds.render(args.name, kind, limit=args.limit)
    sys.stdout.buffer.write(xml)
    sys.stdout.flush()
    return 0


def cmd_search(s: Settings, args: argparse.Namespace) -> int:
    from . import _search as search

    def progress(done: int, total: int) -> None:
        print(f"  indexed {done:,} of {total:,} items", file=sys.stderr, flush=True)

    if args.reindex:
        print("Rebuilding the search index…", file=sys.stderr, flush=True)
        n = search.rebuild_search_index(progress=progress)
        print(f"Search index rebuilt: {n:,} items.", file=sys.stderr, flush=True)
    if args.status:
        st = search.search_index_status()
        say(f"items in the index:  {st.indexed:,} (built {_when(st.built_at)})")
        say(f"waiting for it:      {st.waiting:,} (found all the same)")
    if not args.query:
        if not (args.reindex or args.status):
            raise TriggerflowError("search: give words to look for (or --reindex, --status)")
        return 0
    query = " ".join(args.query)
    hits = search.search(
        query, since=args.since, until=args.until, trigger=args.trigger, source=args.source,
        limit=args.limit, progress=progress,
    )  # fmt: skip
    if not hits:
        say(f"No item matches {query!r}.")
        return 0
    from ._show import search_lines

    for line in search_lines(hits):
        say(line)
    return 0


def cmd_store(s: Settings, args: argparse.Namespace) -> int:
    from pathlib import Path

    from . import _backups as backups

    if args.action == "backup":
        say(f"Backing up {s.store_path}…")
        dest = backups.backup(s, Path(args.path) if args.path else None)
        say(f"Backup written and checked: {dest} ({dest.stat().st_size / 1e6:.1f} MB)")
        return 0
    if args.action == "restore":
        if not args.path:
            raise TriggerflowError("store restore: name the backup file (see README)")
        done = backups.restore(s, Path(args.path))
        say(f"Restored {done.source} as {s.store_path}.")
        if done.replaced:
            say(f"The store it replaced is kept as {done.replaced}.")
        say("The search index is built again by serve (or `triggerflow search --reindex`).")
        return 0
    if args.action == "compact":
        say(f"Compacting {s.store_path}…")
        done = backups.compact(s)
        say(
            f"Compacted: {done.before / 1e6:.1f} MB → {done.after / 1e6:.1f} MB "
            f"in {done.seconds:.1f} s"
        )
        return 0
    path = Path(args.path) if args.path else s.store_path
    report = backups.check(path, s)
    for note in report.notes:
        say(f"  {note}")
    if report.ok:
        say(f"OK: {path}")
        return 0
    say(f"Problems in {path}:")
    for problem in report.problems:
        say(f"  ✗ {problem}")
    say('To recover, see the README, "Backups and recovery".')
    return 1


def cmd_config(s: Settings, args: argparse.Namespace) -> int:
    for key, value in s.describe().items():
        say(f"{key:18} {value}   (TRIGGERFLOW_{key.upper()})")
    return 0


# -- parser -------------------------------------------------------------------------
