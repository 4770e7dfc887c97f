"""``triggerflow connect mastodon``: an app registered on the instance, then the user's OK.

The app is registered per instance (``POST /api/v1/apps``) with this run's loopback
redirect, then the authorization code grant with PKCE runs in the person's browser.
"""

from __future__ import annotations

import argparse
from typing import TYPE_CHECKING
from urllib.parse import urlsplit

import httpx

from ...exceptions import ConfigurationError
from .._connect import TIMEOUT, Say, refused, save
from .._oauth import (
    DEFAULT_WAIT,
    LoopbackRedirect,
    authlib_client,
    authorization_code,
    oauth_call,
    require_https,
)

if TYPE_CHECKING:  # the account imports Prefect: the CLI loads this module for every command
    from .account import MastodonAccount

__all__ = ["EXAMPLES", "add_arguments", "connect_mastodon", "run"]

SCOPES = "read write"
EXAMPLES = ["triggerflow connect mastodon --url https://mastodon.social"]


def connect_mastodon(
    instance: str,
    account: str = "default",
    *,
    say: Say = print,
    scopes: str = SCOPES,
    open_browser: bool = True,
    wait: float = DEFAULT_WAIT,
    port: int = 0,
) -> MastodonAccount:
    """Register triggerflow on ``instance``, get the user's approval, save the account."""
    url = require_https(instance, "Mastodon instance")
    redirect = LoopbackRedirect(port)  # bound first: the registered URI must stay ours
    try:
        try:
            r = httpx.post(
                f"{url}/api/v1/apps",
                data={
                    "client_name": "triggerflow",
                    "redirect_uris": redirect.redirect_uri,
                    "scopes": scopes,
                    "website": "https://github.com/triggerflow/triggerflow",
                },
                timeout=TIMEOUT,
            )
        except httpx.HTTPError as e:
            raise ConfigurationError(f"Mastodon instance {url}: cannot reach it ({e})") from None
        if r.status_code != 200:
            raise refused(f"Mastodon instance {url} (registering the app)", r)
        app = r.json()
        client = authlib_client(
            client_id=app["client_id"],
            client_secret=app["client_secret"],
            scope=scopes,
            redirect_uri=redirect.redirect_uri,
            code_challenge_method="S256",
            token_endpoint_auth_method="client_secret_post",
            timeout=TIMEOUT,
        )
        token = authorization_code(
            client, f"{url}/oauth/authorize", f"{url}/oauth/token", redirect,
            say=say, open_browser=open_browser, wait=wait,
        )  # fmt: skip
    finally:
        redirect.close()
    me = oauth_call(
        f"Mastodon instance {url}", lambda: client.get(f"{url}/api/v1/accounts/verify_credentials")
    )
    if me.status_code != 200:
        raise refused(f"Mastodon instance {url}", me)
    from .account import MastodonAccount

    block = MastodonAccount(
        url=url,
        user=f"@{me.json()['acct']}@{urlsplit(url).hostname}",
        client_id=app["client_id"],
        client_secret=app["client_secret"],
    )
    block.set_token(token)
    say(f"Connected Mastodon account {block.user} as {save(block, 'mastodon', account)!r}.")
    return block


def add_arguments(p: argparse.ArgumentParser) -> None:
    p.add_argument("--url", required=True, help="the instance, e.g. https://mastodon.social")
    p.add_argument("--scopes", default=SCOPES, help=f"the scopes to ask for ({SCOPES})")
    p.add_argument("--no-browser", action="store_true", help="only print the address")
    p.add_argument("--wait", type=float, default=DEFAULT_WAIT,
                   help=f"seconds to wait for the browser ({DEFAULT_WAIT:g})")  # fmt: skip
    p.add_argument("--port", type=int, default=0, help="loopback port for the redirect (any)")


def run(args: argparse.Namespace, say: Say) -> None:
    connect_mastodon(
        args.url, args.account, say=say, scopes=args.scopes,
        open_browser=not args.no_browser, wait=args.wait, port=args.port,
    )  # fmt: skip
