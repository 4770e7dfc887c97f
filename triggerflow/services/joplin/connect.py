"""``triggerflow connect joplin``: the Joplin app's token, asked of the app itself.

Joplin's Data API is its Web Clipper service (Tools > Options > Web Clipper: enable it),
on ``http://localhost:41184`` by default. ``POST /auth`` makes the app ask its user
whether to allow access; ``GET /auth/check?auth_token=`` then says ``waiting``,
``rejected`` or ``accepted`` with the token. A token given (``--token``, from Web Clipper
> Advanced options) skips that. Either way one authenticated call checks it.
"""

from __future__ import annotations

import argparse
import os
import time
from typing import TYPE_CHECKING, Any
from urllib.parse import urlsplit

import httpx

from ... import _http  # noqa: F401 - its log filter keeps ?token= out of logs
from ...exceptions import ConfigurationError
from .._connect import TIMEOUT, Say, refused, save, secret
from .._oauth import require_https

if TYPE_CHECKING:  # the account imports Prefect: the CLI loads this module for every command
    from .account import JoplinAccount

__all__ = ["DEFAULT_URL", "EXAMPLES", "add_arguments", "connect_joplin", "run"]

DEFAULT_URL = "http://localhost:41184"
WAIT = 180.0  # seconds the person has to answer in the Joplin window
EXAMPLES = [
    "triggerflow connect joplin          (then allow triggerflow in the Joplin window)",
    "triggerflow connect joplin --token TOKEN --url http://localhost:41184",
]
_ENABLE = "start Joplin and enable its Web Clipper service (Tools > Options > Web Clipper)"


def connect_joplin(
    url: str = DEFAULT_URL,
    account: str = "default",
    *,
    token: str | None = None,
    say: Say = print,
    wait: float = WAIT,
) -> JoplinAccount:
    """Get a token from the Joplin app (or check the one given) and save the account."""
    base = require_https(url, "Joplin")
    with httpx.Client(timeout=TIMEOUT) as http:
        ping = _call(http, "GET", f"{base}/ping")
        if ping.status_code != 200 or "JoplinClipperServer" not in ping.text:
            raise ConfigurationError(
                f"Joplin: {base} answers, but it is not Joplin's Web Clipper service "
                f"(it said {ping.status_code}); {_ENABLE}"
            )
        if token is None:
            token = _ask_the_app(http, base, say, wait)
        r = _call(http, "GET", f"{base}/folders", params={"token": token.strip(), "limit": 1})
        if r.status_code != 200:
            raise refused("Joplin", r)
    from .account import JoplinAccount

    parts = urlsplit(base)
    block = JoplinAccount(url=base, user=f"Joplin on {parts.hostname}:{parts.port or 80}")
    block.set_token({"access_token": token.strip()})
    say(f"Connected {block.user} as {save(block, 'joplin', account)!r}.")
    return block


def _call(http: httpx.Client, method: str, url: str, **kwargs: Any) -> httpx.Response:
    try:
        return http.request(method, url, **kwargs)
    except httpx.HTTPError as e:
        origin = url.split("/", 3)[:3]
        raise ConfigurationError(
            f"Joplin ({'/'.join(origin)}) cannot be reached ({type(e).__name__}): {_ENABLE}"
        ) from None


def _ask_the_app(http: httpx.Client, base: str, say: Say, wait: float) -> str:
    """The token, once the person allowed triggerflow in the Joplin window."""
    r = _call(http, "POST", f"{base}/auth")
    if r.status_code == 404:  # a Joplin from before the auth flow (1.x): paste the token
        say("Copy the token from Joplin: Tools > Options > Web Clipper > Advanced options.")
        return secret(None, "TRIGGERFLOW_JOPLIN_TOKEN", "Joplin token: ")
    if r.status_code != 200:
        raise refused("Joplin", r)
    auth_token = r.json().get("auth_token", "")
    say(f"Joplin asks whether to allow triggerflow: answer in the Joplin window "
        f"(waiting up to {wait / 60:.0f} min).")  # fmt: skip
    deadline = time.monotonic() + wait
    while True:
        check = _call(http, "GET", f"{base}/auth/check", params={"auth_token": auth_token})
        if check.status_code != 200:
            raise refused("Joplin", check)
        answer = check.json()
        if answer.get("status") == "accepted" and answer.get("token"):
            return str(answer["token"])
        if answer.get("status") == "rejected":
            raise ConfigurationError("Joplin: access was refused in the Joplin window")
        if time.monotonic() >= deadline:
            raise ConfigurationError(
                f"Joplin: no answer in the Joplin window within {wait:.0f} s; or give the "
                "token: --token (Tools > Options > Web Clipper > Advanced options)"
            )
        time.sleep(min(1.0, max(0.0, deadline - time.monotonic())))


def add_arguments(p: argparse.ArgumentParser) -> None:
    p.add_argument("--url", default=DEFAULT_URL,
                   help=f"where Joplin's Web Clipper service listens ({DEFAULT_URL})")  # fmt: skip
    p.add_argument("--token",
                   help="its token (else TRIGGERFLOW_JOPLIN_TOKEN, else Joplin asks you "
                        "to allow triggerflow in its window)")  # fmt: skip


def run(args: argparse.Namespace, say: Say) -> None:
    token = args.token or os.environ.get("TRIGGERFLOW_JOPLIN_TOKEN") or None
    connect_joplin(args.url, args.account, token=token, say=say)
