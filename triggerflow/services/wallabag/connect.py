"""``triggerflow connect wallabag``: the password grant with the user's API client.

Wallabag's password grant at ``/oauth/v2/token`` (``client_secret_post``); access tokens
last an hour and are refreshed (rotating the refresh token), so the password is kept to
sign in again when the refresh token expires (two weeks).
"""

from __future__ import annotations

import argparse
from typing import TYPE_CHECKING
from urllib.parse import urlsplit

from .._connect import TIMEOUT, Say, save, secret
from .._oauth import authlib_client, oauth_call, require_https

if TYPE_CHECKING:  # the account imports Prefect: the CLI loads this module for every command
    from .account import WallabagAccount

__all__ = ["EXAMPLES", "add_arguments", "connect_wallabag", "run"]

EXAMPLES = [
    "triggerflow connect wallabag --url https://app.wallabag.it --client-id ID \\",
    "    --username me            (asks for the client secret and the password)",
]


def connect_wallabag(
    url: str,
    account: str = "default",
    *,
    client_id: str,
    client_secret: str,
    username: str,
    password: str,
    say: Say = print,
) -> WallabagAccount:
    """Sign in to Wallabag with the password grant and save the account."""
    base = require_https(url, "Wallabag")
    client = authlib_client(
        client_id=client_id,
        client_secret=client_secret,
        token_endpoint_auth_method="client_secret_post",
        timeout=TIMEOUT,
    )
    token = oauth_call(
        f"Wallabag {base}",
        lambda: client.fetch_token(
            f"{base}/oauth/v2/token", grant_type="password", username=username, password=password
        ),
    )
    from .account import WallabagAccount

    block = WallabagAccount(
        url=base,
        user=f"{username} on {urlsplit(base).hostname}",
        client_id=client_id,
        client_secret=client_secret,
        username=username,
        password=password,
    )
    block.set_token(token)
    say(f"Connected Wallabag account {block.user} as {save(block, 'wallabag', account)!r}.")
    return block


def add_arguments(p: argparse.ArgumentParser) -> None:
    p.add_argument("--url", required=True, help="your Wallabag, e.g. https://app.wallabag.it")
    p.add_argument("--client-id", required=True,
                   help="the API client's id (Wallabag: Developer > New client)")  # fmt: skip
    p.add_argument("--client-secret",
                   help="the API client's secret (else TRIGGERFLOW_WALLABAG_CLIENT_SECRET, "
                        "else asked)")  # fmt: skip
    p.add_argument("--username", required=True, help="your Wallabag user name")


def run(args: argparse.Namespace, say: Say) -> None:
    connect_wallabag(
        args.url, args.account, client_id=args.client_id,
        client_secret=secret(args.client_secret, "TRIGGERFLOW_WALLABAG_CLIENT_SECRET",
                             "Wallabag client secret: "),
        username=args.username,
        password=secret(None, "TRIGGERFLOW_WALLABAG_PASSWORD", "Wallabag password: "),
        say=say,
    )  # fmt: skip
