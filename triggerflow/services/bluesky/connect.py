"""``triggerflow connect bluesky --handle alice.bsky.social``: a session from an app password.

An app password (Bluesky: Settings > Privacy and security > App passwords) signs in
with ``com.atproto.server.createSession``; the answer names the account's DID and, in
its DID document, its PDS, which every later call goes to. The session's tokens and
the app password are saved in the account's block (encrypted): runs refresh the
session and never sign in, which Bluesky allows only 30 times in 5 minutes.
"""

from __future__ import annotations

import argparse
import re
from datetime import datetime
from typing import TYPE_CHECKING, Any

import httpx
from pydantic import SecretStr

from ...exceptions import ConfigurationError
from .._connect import TIMEOUT, Say, refused, save, secret
from .._oauth import require_https

if TYPE_CHECKING:  # the account imports Prefect: the CLI loads this module for every command
    from .account import BlueskyAccount

__all__ = ["DEFAULT_URL", "EXAMPLES", "add_arguments", "connect_bluesky", "run"]

DEFAULT_URL = "https://bsky.social"
EXAMPLES = [
    "triggerflow connect bluesky --handle alice.bsky.social   (then type the app password)",
    "TRIGGERFLOW_BLUESKY_APP_PASSWORD=xxxx-xxxx-xxxx-xxxx triggerflow connect bluesky "
    "--handle alice.example.org --url https://pds.example.org",
]
_APP_PASSWORD = re.compile(r"[a-z2-7]{4}(-[a-z2-7]{4}){3}")  # how Bluesky makes them
_MAKE_ONE = "make an app password in Bluesky (Settings > Privacy and security > App passwords)"


def connect_bluesky(
    handle: str,
    account: str = "default",
    *,
    app_password: str | None = None,
    url: str = DEFAULT_URL,
    say: Say = print,
) -> BlueskyAccount:
    """Sign in with an app password, check the session, save the account."""
    base = require_https(url, "Bluesky")
    handle = handle.strip().lstrip("@")
    password = secret(app_password, "TRIGGERFLOW_BLUESKY_APP_PASSWORD", "Bluesky app password: ")
    with httpx.Client(timeout=TIMEOUT) as http:
        r = _call(http, base, "POST", "com.atproto.server.createSession",
                  json={"identifier": handle, "password": password.strip()})  # fmt: skip
        if r.status_code == 401 and _error(r) == "AuthFactorTokenRequired":
            raise ConfigurationError(
                "Bluesky: that is the account's own password, and the account signs in "
                f"with a code by e-mail; {_MAKE_ONE} and give that"
            )
        if r.status_code == 401:
            raise ConfigurationError(
                f"Bluesky ({base}) refused the handle {handle!r} or the app password; "
                f"check both, or {_MAKE_ONE}"
            )
        if r.status_code == 429:
            reset = r.headers.get("ratelimit-reset", "")
            when = f" until {datetime.fromtimestamp(int(reset)):%H:%M}" if reset.isdigit() else ""
            raise ConfigurationError(
                f"Bluesky: too many sign-ins for {handle!r} (30 in 5 minutes, 300 a day); "
                f"no more{when}"
            )
        if r.status_code != 200:
            raise refused("Bluesky", r)
        session = r.json()
        pds = require_https(_pds(session) or base, "Bluesky's PDS for the account")
        check = _call(http, pds, "GET", "com.atproto.server.getSession",
                      headers={"Authorization": f"Bearer {session['accessJwt']}"})  # fmt: skip
        if check.status_code != 200:
            raise refused(f"Bluesky ({pds})", check)
    if not _APP_PASSWORD.fullmatch(password.strip()):
        say(f"Note: that looks like the account's own password; {_MAKE_ONE}: it can be "
            "revoked alone and cannot change the account's settings.")  # fmt: skip
    from .account import BlueskyAccount, jwt_expiry

    block = BlueskyAccount(
        url=pds, user=f"@{session['handle']}", did=session["did"],
        app_password=SecretStr(password.strip()),
    )  # fmt: skip
    block.set_token({
        "access_token": session["accessJwt"], "refresh_token": session["refreshJwt"],
        "expires_at": jwt_expiry(session["accessJwt"]),
    })  # fmt: skip
    say(f"Connected Bluesky account {block.user} as {save(block, 'bluesky', account)!r}.")
    return block


def _call(http: httpx.Client, base: str, method: str, nsid: str, **kwargs: Any) -> httpx.Response:
    try:
        return http.request(method, f"{base}/xrpc/{nsid}", **kwargs)
    except httpx.HTTPError as e:
        raise ConfigurationError(
            f"Bluesky ({base}) cannot be reached ({type(e).__name__}); check --url"
        ) from None


def _error(r: httpx.Response) -> str:
    try:
        return str(r.json().get("error") or "")
    except (ValueError, AttributeError):
        return ""


def _pds(session: dict[str, Any]) -> str | None:
    """The PDS the DID document names (``#atproto_pds``), if any."""
    for service in (session.get("didDoc") or {}).get("service") or ():
        if str(service.get("id", "")).endswith("#atproto_pds") and service.get("serviceEndpoint"):
            return str(service["serviceEndpoint"])
    return None


def add_arguments(p: argparse.ArgumentParser) -> None:
    p.add_argument("--handle", required=True, help="the account's handle, e.g. alice.bsky.social")
    p.add_argument("--url", default=DEFAULT_URL,
                   help=f"where to sign in: bsky.social or your PDS ({DEFAULT_URL})")  # fmt: skip


def run(args: argparse.Namespace, say: Say) -> None:
    connect_bluesky(args.handle, args.account, url=args.url, say=say)
