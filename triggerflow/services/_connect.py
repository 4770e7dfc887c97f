"""What the services' ``connect`` steps share: saving the account, refusals, secrets.

A service's ``connect.py`` (``triggerflow/services/<name>/connect.py``) defines

* ``connect_<name>(...)``: gets a token the service's way, checks it with one
  authenticated call, saves the account as a block named ``<service>-<account>``;
* ``add_arguments(parser)``: its options of ``triggerflow connect <name>``, and
  ``EXAMPLES``: the lines its help shows;
* ``run(args, say)``: that command, from the parsed options.

The CLI (``triggerflow/_connect.py``) loads these modules for every command: they import neither
Prefect nor the account blocks at the top.
"""

from __future__ import annotations

import getpass
import os
import sys
from collections.abc import Callable
from typing import TYPE_CHECKING

import httpx

from ..exceptions import ConfigurationError

if TYPE_CHECKING:  # blocks import Prefect
    from ._account import ServiceAccount

__all__ = ["TIMEOUT", "Say", "refused", "save", "secret"]

Say = Callable[[str], None]
TIMEOUT = httpx.Timeout(30.0, connect=10.0)


def refused(service: str, r: httpx.Response) -> ConfigurationError:
    """A clear error from a service's refusal (its own words, never the request's)."""
    try:
        body = r.json()
        why = body.get("error_description") or body.get("error") or body.get("message")
    except ValueError:
        why = r.text.strip()[:200]
    return ConfigurationError(f"{service} answered {r.status_code}: {why or r.reason_phrase}")


def save(block: ServiceAccount, service: str, account: str) -> str:
    """Save ``block`` as the account's block; its name."""
    from ._account import block_name

    name = block_name(service, account)
    block.save(name, overwrite=True)
    return name


def secret(value: str | None, env: str, prompt: str) -> str:
    """A secret from its option, else the environment, else a prompt (never echoed)."""
    value = value or os.environ.get(env)
    if value:
        return value
    if not sys.stdin.isatty():
        line = sys.stdin.readline().strip()
        if line:
            return line
        raise ConfigurationError(f"{prompt.rstrip(': ')} is needed: set {env} or type it")
    return getpass.getpass(prompt)
