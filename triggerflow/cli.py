"""The ``triggerflow`` command line: the parser and the entry point (the commands
themselves are in ``_cli_commands``, a thin layer over the library).

Imports stay lazy: Prefect reads its settings when first imported, so the
environment (its home under the data dir, the API of a running ``serve``) is set
before any command touches it, and ``--help`` stays fast.
"""

from __future__ import annotations

import argparse
import gc
import os
import sys
from collections.abc import Callable, Sequence
from typing import NoReturn

from . import _cli_commands
from ._cli_commands import (
    cmd_config,
    cmd_feeds,
    cmd_list,
    cmd_pause,
    cmd_preview,
    cmd_retry,
    cmd_run,
    cmd_search,
    cmd_serve,
    cmd_status,
    cmd_store,
    cmd_vacation,
)
from .config import settings
from .exceptions import TriggerflowError

EPILOG = """\
Settings come from TRIGGERFLOW_* environment variables or ./triggerflow.toml
(see `triggerflow config`). Accounts: TRIGGERFLOW_XMPP_DEFAULT_JID and
TRIGGERFLOW_XMPP_DEFAULT_PASSWORD (see README, "Accounts").
"""


def build_parser() -> argparse.ArgumentParser:
    """The argument parser (also used to test that every command has help)."""
    p = argparse.ArgumentParser(
        prog="triggerflow",
        description="Self-hosted, code-first 'if this then that': triggers in flows/*.py, "
        "run by Prefect, remembered in DuckDB.",
        epilog=EPILOG,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    p.add_argument("--version", action="version", version=f"%(prog)s {_version()}")
    p.add_argument(
        "--flows", metavar="DIR",
        help=f"folder of trigger files (default: TRIGGERFLOW_FLOWS_DIR or ./flows; "
        f"now: {os.environ.get('TRIGGERFLOW_FLOWS_DIR') or './flows'})",
    )  # fmt: skip
    p.add_argument(
        "--debug", action="store_true",
        help="show tracebacks and Prefect's own console log (they are always in the Prefect logs)",
    )  # fmt: skip
    sub = p.add_subparsers(dest="command", metavar="COMMAND", required=True)

    def add(name: str, fn: Callable[..., int], help_: str, desc: str) -> argparse.ArgumentParser:
        sp = sub.add_parser(
            name, help=help_, description=desc, epilog=EPILOG,
            formatter_class=argparse.RawDescriptionHelpFormatter,
        )  # fmt: skip
        sp.set_defaults(func=fn)
        return sp

    sp = add(
        "serve", cmd_serve, "run every trigger on its schedule (starts Prefect if needed)",
        "Deploy every trigger in the flows folder with its schedule and run them until\n"
        "Ctrl-C. Without PREFECT_API_URL a local Prefect server (SQLite in the data dir,\n"
        "or PREFECT_SERVER_DATABASE_CONNECTION_URL) is started first and stopped on exit.\n"
        "Triggers whose account is not configured are deployed paused and listed with the\n"
        "reason. The flows folder is watched: new, changed and removed trigger files are\n"
        "deployed or removed within seconds.",
    )  # fmt: skip
    sp.add_argument(
        "--no-runs", action="store_true",
        help="run no triggers here: only the Prefect server, the generated feeds and the "
        "webhook receiver, for workers on other hosts (see README)",
    )  # fmt: skip
    add(
        "list", cmd_list, "list triggers: schedule, status, last and next run",
        "List the triggers in the flows folder with their schedule, whether their\n"
        "deployment is active, paused or broken, their last finished run and their next\n"
        "scheduled one (from the Prefect server of a running `triggerflow serve`, or\n"
        "PREFECT_API_URL).",
    )  # fmt: skip
    sp = add(
        "run", cmd_run, "run one trigger now, through Prefect",
        "Run one trigger now: fetch, store, send. With a Prefect server (a running\n"
        "`triggerflow serve`, or PREFECT_API_URL) it is a run of the trigger's deployment,\n"
        "executed by serve or a worker, its log shown here; else it runs in this process.\n"
        "Exits 1 if a source or sink failed (what was delivered stays delivered; the rest\n"
        "stays queued). A trigger on vacation or paused is refused without --force.",
    )  # fmt: skip
    sp.add_argument("name", help="the trigger's name (see `triggerflow list`)")
    sp.add_argument("--here", action="store_true", help="run it in this process, not by serve")
    sp.add_argument("--force", action="store_true", help="run it even on vacation or paused")
    sp.add_argument(
        "--all-feeds", action="store_true",
        help="fetch every feed now, also those that wait (backoff, fresh, 410 Gone)",
    )  # fmt: skip
    sp.add_argument(
        "--wait", type=float, default=60, metavar="SECONDS",
        help="how long the run may wait to be started by serve or a worker (60)",
    )  # fmt: skip
    sp = add(
        "preview", cmd_preview, "dry run: show what a trigger would send",
        "Fetch a trigger's sources and show the messages it would send. Nothing is sent\n"
        "and no delivery state changes; the store is not written.",
    )  # fmt: skip
    sp.add_argument("name", help="the trigger's name (see `triggerflow list`)")
    sp.add_argument("--limit", type=int, default=20, help="messages shown per target (20)")
    sp = add(
        "status", cmd_status, "what was collected, sent, queued and failed, and why",
        "Per trigger and target: items collected, sent, queued, failed (with the\n"
        "reason), skipped on the first run; then the sources that fail and why.\n"
        "With NAME: only that trigger, its deliveries and the sources it reads.",
    )  # fmt: skip
    sp.add_argument("name", nargs="?", help="only this trigger (see `triggerflow list`)")
    sp.add_argument(
        "--all", action="store_true", help="also the failure alerts' deliveries (_alerts)"
    )
    sp.add_argument("--failures", type=int, default=10, help="failed deliveries shown (10)")
    sp.add_argument("--sources", action="store_true", help="also list every source")
    sp = add(
        "vacation", cmd_vacation, "pause every trigger while away, resume them on return",
        "on: remember which triggers are active, then pause their deployments.\n"
        "off: resume exactly those (triggers paused by hand stay paused).\n"
        "status: since when, and what is paused. Survives restarts of serve.",
    )  # fmt: skip
    sp.add_argument("action", choices=["on", "off", "status"], help="what to do")
    sp.add_argument("--note", help="with on: a note shown by status (e.g. back on the 12th)")
    sp.add_argument(
        "--skip-backlog", action="store_true",
        help="with off: mark what piled up as skipped instead of sending it",
    )  # fmt: skip
    for action, help_, desc in (
        ("pause", "pause one trigger (kept across restarts and vacations)",
         "Pause one trigger's deployment until `triggerflow resume NAME`; it stays\n"
         "paused across vacations and restarts of serve."),
        ("resume", "resume a trigger paused with `pause`",
         "Resume a trigger paused with `triggerflow pause NAME`."),
    ):  # fmt: skip
        sp = add(action, cmd_pause, help_, desc)
        sp.set_defaults(action=action)
        sp.add_argument("name", help="the trigger's name (see `triggerflow list`)")
        if action == "pause":
            sp.add_argument("--note", help="why (shown by status)")
    sp = add(
        "retry", cmd_retry, "owe failed items again (after fixing the cause)",
        "Requeue items that failed (a bounce, a refused room): the next run tries them\n"
        "again with a fresh attempt count. --dead also requeues items given up after\n"
        "TRIGGERFLOW_MAX_ATTEMPTS failed attempts.",
    )  # fmt: skip
    sp.add_argument("name", nargs="?", help="only this trigger (default: all)")
    sp.add_argument("--dead", action="store_true", help="also items that were given up")
    sp = add(
        "feeds", cmd_feeds, "list generated feeds, or export one as Atom/RSS XML",
        "list: the feeds that feed(items, name=...) sinks collect.\n"
        "export NAME: write the feed's XML (Atom, or RSS 2.0 with --rss) to stdout.",
    )  # fmt: skip
    sp.add_argument("action", choices=["list", "export"], help="what to do")
    sp.add_argument("name", nargs="?", help="with export: the feed's name")
    how = sp.add_mutually_exclusive_group()
    how.add_argument("--rss", action="store_true", help="RSS 2.0 instead of Atom")
    how.add_argument("--json", action="store_true", help="JSON Feed 1.1 instead of Atom")
    sp.add_argument("--limit", type=int, default=50, help="newest entries to include (50)")
    sp = add(
        "search", cmd_search, "full-text search over every stored item (BM25)",
        "Find stored items by words in their title, text and author, best first (BM25).\n"
        "Every word must occur; case, accents and word endings do not matter.\n"
        "Items stored a second ago are found too. The index is rebuilt in the background\n"
        "by serve, when many items wait for it, or with --reindex.\n\n"
        "examples:\n"
        "  triggerflow search linux kernel\n"
        "  triggerflow search \"security advisory\" --since 7d --trigger security_digest\n"
        "  triggerflow search --reindex --status",
    )  # fmt: skip
    sp.add_argument("query", nargs="*", help="words to look for")
    sp.add_argument(
        "--since", metavar="WHEN",
        help="only items from then on: an age (30s, 15m, 12h, 7d, 2w) or a date (2026-11-01)",
    )  # fmt: skip
    sp.add_argument("--until", metavar="WHEN", help="only items before then (same forms)")
    sp.add_argument(
        "--trigger", metavar="NAME",
        help="only items from this trigger's sources (_alerts: the failure alerts, else left out)",
    )  # fmt: skip
    sp.add_argument("--source", metavar="TEXT", help="only sources whose URL contains TEXT")
    sp.add_argument("--limit", type=int, default=20, help="at most this many hits (20)")
    sp.add_argument("--reindex", action="store_true", help="rebuild the search index first")
    sp.add_argument("--status", action="store_true", help="say how current the index is")
    sp = add(
        "store", cmd_store, "back up, restore, check or compact the store (DuckDB file)",
        "backup [PATH]: a consistent copy of the store, taken while serve runs (default:\n"
        "  a new file in <data dir>/backups); checked before it is kept.\n"
        "restore PATH: make a backup the store (serve must be stopped); the store it\n"
        "  replaces is kept beside it as triggerflow.duckdb.replaced-<time>.\n"
        "check [PATH]: open the store (or a backup) read-only, read every table and check\n"
        "  its schema; says OK or what is wrong (exit code 1).\n"
        "compact: rewrite the store without the space DuckDB left unused, while serve runs\n"
        "  (serve does it on its own once the store has doubled).\n"
        "serve keeps TRIGGERFLOW_BACKUPS daily backups (7; 0 turns them off).",
    )  # fmt: skip
    sp.add_argument("action", choices=["backup", "restore", "check", "compact"], help="what to do")
    sp.add_argument(
        "path", nargs="?", help="backup: where to; restore: which backup; check: which file"
    )
    add("config", cmd_config, "show the effective settings", "Show every setting and its value.")
    from ._connect import add_commands

    add_commands(add)
    return p


def _version() -> str:
    from . import __version__

    return __version__


# Commands that only read: they never start a temporary Prefect server (20-60 s) to
# look for saved accounts; they say which accounts they could not check instead.
READ_ONLY = {"list", "status", "preview", "accounts", "search", "feeds", "config"}


def _without_slow_imports() -> None:
    # Jupyter (the notebooks extra) brings rfc3987-syntax, which jsonschema imports to
    # check the "iri" format, and which compiles a grammar when imported: 1.5 s added to
    # every command that imports Prefect (Prefect imports jsonschema), twice the cost of
    # Prefect itself (issue 15). No command checks IRIs, so this process goes without.
    sys.modules.setdefault("rfc3987_syntax", None)  # type: ignore[arg-type]


def main(argv: Sequence[str] | None = None) -> int:
    """Entry point of the ``triggerflow`` command."""
    _without_slow_imports()
    args = build_parser().parse_args(argv)
    if args.flows:
        os.environ["TRIGGERFLOW_FLOWS_DIR"] = args.flows
    if not args.debug and args.command != "serve":  # serve's console is its log
        # Prefect prints a failed task's traceback on the console, then the same reason
        # again for the flow: the run's own summary says it once. The Prefect logs (UI)
        # keep everything; --debug shows it here too.
        os.environ.setdefault("PREFECT_LOGGING_HANDLERS_CONSOLE_LEVEL", "CRITICAL")
    if args.command in READ_ONLY:
        from .blocks import without_temporary_server

        without_temporary_server()
    try:
        s = settings()
        return int(args.func(s, args))
    except TriggerflowError as e:
        if args.debug:
            import traceback

            traceback.print_exc()
        print(f"triggerflow: error: {e}", file=sys.stderr)
        return 1
    except KeyboardInterrupt:
        return 130
    except BrokenPipeError:
        # The reader went away (`triggerflow status | head`): not an error of ours.
        # Python would complain again when it flushes stdout at exit: point it nowhere.
        devnull = os.open(os.devnull, os.O_WRONLY)
        os.dup2(devnull, sys.stdout.fileno())
        return 1


def command() -> NoReturn:
    """The ``triggerflow`` console command: :func:`main` as a whole process, then exit."""
    _cli_commands.WHOLE_PROCESS = True
    code = main()
    # The interpreter's last collections walk everything Prefect imported, several times
    # (~0.5 s at the end of every `triggerflow run`): frozen objects are left to the OS.
    # Nothing is lost: Prefect's log and event workers flushed in threading's exit hooks,
    # which run before, and the store committed each transaction as it went.
    gc.freeze()
    sys.exit(code)


if __name__ == "__main__":  # pragma: no cover
    command()
