"""``triggerflow connect trello``: an API key and a user token that the person pastes.

The token comes back in the URL *fragment* of Trello's authorize page, which never
reaches a server, so the person copies it from the page.
"""

from __future__ import annotations

import argparse
import os
from typing import TYPE_CHECKING
from urllib.parse import urlencode

import httpx

from ...exceptions import ConfigurationError
from .._connect import TIMEOUT, Say, refused, save, secret
from .._oauth import require_https

if TYPE_CHECKING:  # the account imports Prefect: the CLI loads this module for every command
    from .account import TrelloAccount

__all__ = ["EXAMPLES", "add_arguments", "connect_trello", "run", "trello_authorize_url"]

API = "https://api.trello.com"
EXAMPLES = ["triggerflow connect trello --key KEY      (shows where to get the token)"]


def trello_authorize_url(api_key: str, api: str = API) -> str:
    """The page where a person approves triggerflow and is shown a token to paste."""
    query = {
        "expiration": "never",
        "name": "triggerflow",
        "scope": "read,write",
        "response_type": "token",
        "key": api_key,
    }
    return f"{require_https(api, 'Trello API')}/1/authorize?{urlencode(query)}"


def connect_trello(
    api_key: str, token: str, account: str = "default", *, say: Say = print, api: str = API
) -> TrelloAccount:
    """Check a Trello key + token with one call and save the account."""
    base = require_https(api, "Trello API")
    token = token.strip().removeprefix("#token=")
    try:
        r = httpx.get(
            f"{base}/1/members/me",
            params={"fields": "username"},
            headers={
                "Authorization": f'OAuth oauth_consumer_key="{api_key}", oauth_token="{token}"'
            },
            timeout=TIMEOUT,
        )
    except httpx.HTTPError as e:
        raise ConfigurationError(f"Trello {base}: cannot reach it ({type(e).__name__})") from None
    if r.status_code != 200:
        raise refused("Trello", r)
    from .account import TrelloAccount

    block = TrelloAccount(url=base, user=r.json().get("username"), api_key=api_key)
    block.set_token({"access_token": token})
    say(f"Connected Trello account {block.user} as {save(block, 'trello', account)!r}.")
    return block


def add_arguments(p: argparse.ArgumentParser) -> None:
    p.add_argument("--key", required=True,
                   help="your API key (https://trello.com/power-ups/admin)")  # fmt: skip
    p.add_argument("--token", help="the token (else TRIGGERFLOW_TRELLO_TOKEN, else asked)")
    p.add_argument("--url", default=API, help=f"the API's address ({API})")


def run(args: argparse.Namespace, say: Say) -> None:
    token = args.token or os.environ.get("TRIGGERFLOW_TRELLO_TOKEN")
    if not token:
        say("Open this address, approve the access, and paste the token it shows:")
        say(f"  {trello_authorize_url(args.key, args.url)}")
        token = secret(None, "TRIGGERFLOW_TRELLO_TOKEN", "Trello token: ")
    connect_trello(args.key, token, args.account, say=say, api=args.url)
