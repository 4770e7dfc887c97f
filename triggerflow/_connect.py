"""``triggerflow connect SERVICE`` and ``triggerflow accounts``: accounts made once, used by name.

Each service's way in, from its public documentation:

* Mastodon: an app registered on the instance (``POST /api/v1/apps``, per instance, with
  this run's loopback redirect), then the authorization code grant with PKCE.
* Wallabag: the password grant at ``/oauth/v2/token`` with the user's API client
  (``client_secret_post``); access tokens last an hour and are refreshed (rotating the
  refresh token), so the password is kept to sign in again when the refresh token expires.
* Trello: an API key and a user token; the token comes back in the URL *fragment* of the
  authorize page, which never reaches a server, so the person pastes it.

The result is saved as a Prefect block named ``<service>-<account>`` (secrets encrypted
by Prefect), and checked with one authenticated call before it is saved.
"""

from __future__ import annotations

import argparse
import functools
import getpass
import os
import sys
from collections.abc import Callable
from typing import TYPE_CHECKING
from urllib.parse import urlencode, urlsplit

import httpx

from ._oauth import (
    DEFAULT_WAIT,
    LoopbackRedirect,
    authlib_client,
    authorization_code,
    oauth_call,
    require_https,
)
from .config import Settings
from .exceptions import ConfigurationError

if TYPE_CHECKING:  # blocks import Prefect: the CLI loads this module for every command
    from .blocks import MastodonAccount, ServiceAccount, TrelloAccount, WallabagAccount

__all__ = ["connect_mastodon", "connect_trello", "connect_wallabag", "list_accounts"]

Say = Callable[[str], None]
SERVICE_NAMES = ("mastodon", "trello", "wallabag")  # as blocks.SERVICES, without Prefect
MASTODON_SCOPES = "read write"
TRELLO_API = "https://api.trello.com"
_TIMEOUT = httpx.Timeout(30.0, connect=10.0)


def _refused(service: str, r: httpx.Response) -> ConfigurationError:
    """A clear error from a service's refusal (its own words, never the request's)."""
    try:
        body = r.json()
        why = body.get("error_description") or body.get("error") or body.get("message")
    except ValueError:
        why = r.text.strip()[:200]
    return ConfigurationError(f"{service} answered {r.status_code}: {why or r.reason_phrase}")


def _save(block: ServiceAccount, service: str, account: str) -> str:
    from .blocks import block_name

    name = block_name(service, account)
    block.save(name, overwrite=True)
    return name


def connect_mastodon(
    instance: str,
    account: str = "default",
    *,
    say: Say = print,
    scopes: str = MASTODON_SCOPES,
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
                timeout=_TIMEOUT,
            )
        except httpx.HTTPError as e:
            raise ConfigurationError(f"Mastodon instance {url}: cannot reach it ({e})") from None
        if r.status_code != 200:
            raise _refused(f"Mastodon instance {url} (registering the app)", r)
        app = r.json()
        client = authlib_client(
            client_id=app["client_id"],
            client_secret=app["client_secret"],
            scope=scopes,
            redirect_uri=redirect.redirect_uri,
            code_challenge_method="S256",
            token_endpoint_auth_method="client_secret_post",
            timeout=_TIMEOUT,
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
        raise _refused(f"Mastodon instance {url}", me)
    from .blocks import MastodonAccount

    block = MastodonAccount(
        url=url,
        user=f"@{me.json()['acct']}@{urlsplit(url).hostname}",
        client_id=app["client_id"],
        client_secret=app["client_secret"],
    )
    block.set_token(token)
    say(f"Connected Mastodon account {block.user} as {_save(block, 'mastodon', account)!r}.")
    return block


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
        timeout=_TIMEOUT,
    )
    token = oauth_call(
        f"Wallabag {base}",
        lambda: client.fetch_token(
            f"{base}/oauth/v2/token", grant_type="password", username=username, password=password
        ),
    )
    from .blocks import WallabagAccount

    block = WallabagAccount(
        url=base,
        user=f"{username} on {urlsplit(base).hostname}",
        client_id=client_id,
        client_secret=client_secret,
        username=username,
        password=password,
    )
    block.set_token(token)
    say(f"Connected Wallabag account {block.user} as {_save(block, 'wallabag', account)!r}.")
    return block


def trello_authorize_url(api_key: str, api: str = TRELLO_API) -> str:
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
    api_key: str, token: str, account: str = "default", *, say: Say = print, api: str = TRELLO_API
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
            timeout=_TIMEOUT,
        )
    except httpx.HTTPError as e:
        raise ConfigurationError(f"Trello {base}: cannot reach it ({type(e).__name__})") from None
    if r.status_code != 200:
        raise _refused("Trello", r)
    from .blocks import TrelloAccount

    block = TrelloAccount(url=base, user=r.json().get("username"), api_key=api_key)
    block.set_token({"access_token": token})
    say(f"Connected Trello account {block.user} as {_save(block, 'trello', account)!r}.")
    return block


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
    import time

    from prefect.client.orchestration import get_client

    from .blocks import SERVICES, XMPPAccount

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
        for service, cls in SERVICES.items():
            try:
                docs = client.read_block_documents_by_type(cls.get_block_type_slug())
            except Exception:  # the type was never registered: no account of it
                continue
            for doc in docs:
                if not doc.name or not doc.name.startswith(f"{service}-"):
                    continue
                block = cls.load(doc.name)
                state = "token never expires"
                if block.expires_at:
                    left = block.expires_at - time.time()
                    state = (
                        f"token valid {left / 60:.0f} more min (refreshed when needed)"
                        if left > 0
                        else "token expired (refreshed on next use)"
                    )
                rows.append(
                    (service, doc.name.removeprefix(f"{service}-"), block.user or "", state)
                )
    return rows


# -- the CLI ---------------------------------------------------------------------------------
def _secret(value: str | None, env: str, prompt: str) -> str:
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


def cmd_connect(s: Settings, args: argparse.Namespace) -> int:
    from ._serve import prepare_environment

    if prepare_environment(s) is None:
        print("No triggerflow serve running: saving through a temporary Prefect server.")
    # Flushed: the address must show while we wait, also when stdout is a pipe (| tee).
    say: Say = functools.partial(print, flush=True)
    if args.service == "mastodon":
        if not args.url:
            raise ConfigurationError("connect mastodon: give the instance, --url https://...")
        connect_mastodon(
            args.url, args.account, say=say, scopes=args.scopes or MASTODON_SCOPES,
            open_browser=not args.no_browser, wait=args.wait, port=args.port,
        )  # fmt: skip
    elif args.service == "wallabag":
        if not (args.url and args.client_id and args.username):
            raise ConfigurationError(
                "connect wallabag: give --url, --client-id and --username (the API client "
                "is made in Wallabag under Developer > Create a new client)"
            )
        connect_wallabag(
            args.url, args.account, client_id=args.client_id,
            client_secret=_secret(args.client_secret, "TRIGGERFLOW_WALLABAG_CLIENT_SECRET",
                                  "Wallabag client secret: "),
            username=args.username,
            password=_secret(None, "TRIGGERFLOW_WALLABAG_PASSWORD", "Wallabag password: "),
            say=say,
        )  # fmt: skip
    else:
        if not args.key:
            raise ConfigurationError(
                "connect trello: give --key (your API key: https://trello.com/power-ups/admin)"
            )
        api = args.url or TRELLO_API
        token = args.token or os.environ.get("TRIGGERFLOW_TRELLO_TOKEN")
        if not token:
            say("Open this address, approve the access, and paste the token it shows:")
            say(f"  {trello_authorize_url(args.key, api)}")
            token = _secret(None, "TRIGGERFLOW_TRELLO_TOKEN", "Trello token: ")
        connect_trello(args.key, token, args.account, say=say, api=api)
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
        print("No accounts connected yet: triggerflow connect mastodon|wallabag|trello --help;")
        print("XMPP: set TRIGGERFLOW_XMPP_DEFAULT_JID and _PASSWORD (README, Accounts)")
    if rows:
        width = max(len(f"{svc} {name}") for svc, name, _, _ in rows)
        for service, name, who, state in rows:
            print(f"{f'{service} {name}':<{width}}  {who}  ({state})")
    if note:
        print(f"({note})")
    return 0


def add_commands(add: Callable[..., argparse.ArgumentParser]) -> None:
    """Register ``connect`` and ``accounts`` on the CLI."""
    sp = add(
        "connect", cmd_connect, "connect a Mastodon, Wallabag or Trello account",
        "Connect an account once; triggers then name it (account=\"default\").\n"
        "Saved as a Prefect block <service>-<account>; tokens are refreshed and saved\n"
        "again by themselves.\n\n"
        "examples:\n"
        "  triggerflow connect mastodon --url https://mastodon.social\n"
        "  triggerflow connect wallabag --url https://app.wallabag.it --client-id ID \\\n"
        "      --username me            (asks for the client secret and the password)\n"
        "  triggerflow connect trello --key KEY      (shows where to get the token)",
    )  # fmt: skip
    sp.add_argument("service", choices=SERVICE_NAMES, help="which service")
    sp.add_argument("--account", default="default", help="the account's name (default)")
    sp.add_argument("--url", help="Mastodon instance / Wallabag address / Trello API address")
    sp.add_argument("--scopes", help=f"Mastodon: scopes to ask for ({MASTODON_SCOPES})")
    sp.add_argument("--no-browser", action="store_true", help="only print the address")
    sp.add_argument("--wait", type=float, default=DEFAULT_WAIT,
                    help=f"seconds to wait for the browser ({DEFAULT_WAIT:g})")  # fmt: skip
    sp.add_argument("--port", type=int, default=0, help="loopback port for the redirect (any)")
    sp.add_argument("--client-id", help="Wallabag: the API client's id")
    sp.add_argument("--client-secret", help="Wallabag: the API client's secret (else asked)")
    sp.add_argument("--username", help="Wallabag: your user name")
    sp.add_argument("--key", help="Trello: your API key")
    sp.add_argument("--token", help="Trello: the token (else asked)")
    add(
        "accounts", cmd_accounts, "list connected accounts (no secrets)",
        "List the Mastodon, Wallabag and Trello accounts connected with `connect`:\n"
        "service, name, who, and whether the token is still valid. Secrets are never shown.",
    )  # fmt: skip
