"""``triggerflow connect SERVICE`` and ``triggerflow accounts``: accounts made once, used by name.

``connect`` has one sub-command per service, built from the service's folder
(``triggerflow/services/<name>/connect.py``: its options, examples and way in); the
result is saved as a Prefect block named ``<service>-<account>`` (secrets encrypted by
Prefect), checked with one authenticated call before it is saved. ``accounts`` lists
every saved account and the XMPP ones from the environment, never a secret.
"""

from __future__ import annotations

import argparse
import functools
import importlib
import os
from collections.abc import Callable
from types import ModuleType

from .config import Settings
from .services import Service, services
from .services._connect import Say

__all__ = ["add_commands", "list_accounts"]


def _connect_module(spec: Service) -> ModuleType:
    return importlib.import_module(f"triggerflow.{spec.module('connect')}")


def _env_xmpp_accounts() -> list[tuple[str, str, str, str]]:
    """XMPP accounts configured in the environment (``TRIGGERFLOW_XMPP_<NAME>_JID``)."""
    import re

    rows = []
    for key, jid in sorted(os.environ.items()):
        m = re.fullmatch(r"TRIGGERFLOW_XMPP_(.+)_JID", key)
        if m and jid and os.environ.get(f"TRIGGERFLOW_XMPP_{m.group(1)}_PASSWORD"):
            rows.append(("xmpp", m.group(1).lower(), jid, "from the environment"))
    return rows


def list_accounts() -> list[tuple[str, str, str, str]]:
    """(service, account, who, state) of every account: XMPP ones from the environment
    and every saved block (XMPP and the services); never a secret."""
    from prefect.client.orchestration import get_client

    from .blocks import XMPPAccount

    rows = _env_xmpp_accounts()
    in_env = {name for _, name, _, _ in rows}
    with get_client(sync_client=True) as client:
        try:
            xmpp_docs = client.read_block_documents_by_type(XMPPAccount.get_block_type_slug())
        except Exception:  # the type was never registered: no account of it
            xmpp_docs = []
        for doc in xmpp_docs:
            name = (doc.name or "").removeprefix("xmpp-")
            if doc.name and doc.name.startswith("xmpp-") and name not in in_env:
                rows.append(("xmpp", name, str(doc.data.get("jid", "")), "saved block"))
        for service, spec in services().items():
            cls = spec.account_class()
            try:
                docs = client.read_block_documents_by_type(cls.get_block_type_slug())
            except Exception:  # the type was never registered: no account of it
                continue
            for doc in docs:
                if not doc.name or not doc.name.startswith(f"{service}-"):
                    continue
                block = cls.load(doc.name)
                name = doc.name.removeprefix(f"{service}-")
                rows.append((service, name, block.user or "", block.state()))
    return rows


# -- the CLI ---------------------------------------------------------------------------------
def cmd_connect(s: Settings, args: argparse.Namespace) -> int:
    from ._serve import prepare_environment

    if prepare_environment(s) is None:
        print("No triggerflow serve running: saving through a temporary Prefect server.")
    # Flushed: the address must show while we wait, also when stdout is a pipe (| tee).
    say: Say = functools.partial(print, flush=True)
    _connect_module(services()[args.service]).run(args, say)
    return 0


def cmd_accounts(s: Settings, args: argparse.Namespace) -> int:
    from ._serve import prepare_environment

    if prepare_environment(s) is None:
        # Saved accounts live on the Prefect server: a read-only command starts none.
        rows = _env_xmpp_accounts()
        note = "saved accounts not checked: no Prefect server running (start `triggerflow serve`)"
    else:
        rows, note = list_accounts(), ""
    if not rows:
        print(f"No accounts connected yet: triggerflow connect {'|'.join(services())} --help;")
        print("XMPP: set TRIGGERFLOW_XMPP_DEFAULT_JID and _PASSWORD (README, Accounts)")
    if rows:
        width = max(len(f"{svc} {name}") for svc, name, _, _ in rows)
        for service, name, who, state in rows:
            print(f"{f'{service} {name}':<{width}}  {who}  ({state})")
    if note:
        print(f"({note})")
    return 0


def add_commands(add: Callable[..., argparse.ArgumentParser]) -> None:
    """Register ``connect`` (one sub-command per service) and ``accounts`` on the CLI."""
    examples = [line for spec in services().values() for line in _connect_module(spec).EXAMPLES]
    sp = add(
        "connect", cmd_connect, f"connect an account of {_titles()}",
        "Connect an account once; triggers then name it (account=\"default\").\n"
        "Saved as a Prefect block <service>-<account>; tokens are refreshed and saved\n"
        "again by themselves. Each service's options: triggerflow connect SERVICE --help\n\n"
        "examples:\n" + "\n".join(f"  {line}" for line in examples),
    )  # fmt: skip
    which = sp.add_subparsers(dest="service", metavar="SERVICE", required=True)
    for name, spec in services().items():
        module = _connect_module(spec)
        p = which.add_parser(
            name,
            help=f"connect {spec.connect}",
            description=f"Connect {spec.connect}.\n\nexamples:\n"
            + "\n".join(f"  {line}" for line in module.EXAMPLES),
            formatter_class=argparse.RawDescriptionHelpFormatter,
        )
        p.add_argument("--account", default="default", help="the account's name (default)")
        module.add_arguments(p)
    add(
        "accounts", cmd_accounts, "list connected accounts (no secrets)",
        f"List the accounts connected with `connect` ({_titles()}) and the XMPP ones:\n"
        "service, name, who, and whether the token is still valid. Secrets are never shown.",
    )  # fmt: skip


def _titles() -> str:
    titles = [spec.title for spec in services().values()]
    return ", ".join(titles[:-1]) + " or " + titles[-1] if len(titles) > 1 else titles[0]
