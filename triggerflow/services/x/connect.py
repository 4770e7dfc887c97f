"""``triggerflow connect x --client-id ID``: OAuth 2 with PKCE through the user's own app.

Make an app in the X Developer Console (*User authentication settings*: type "Web App"
for a confidential client with a secret, or "Native App" for a public one) with the
callback ``http://127.0.0.1:8976/callback`` (``--port`` to use another). ``connect``
opens X's authorization page asking for ``tweet.read tweet.write users.read
offline.access``, takes the code at that callback, exchanges it (with the PKCE verifier)
at ``/2/oauth2/token``, asks ``/2/users/me`` who it is, and saves the account.
"""

from __future__ import annotations

import argparse
import os
from typing import TYPE_CHECKING

from ...exceptions import ConfigurationError
from .._connect import Say, refused, save
from .._oauth import (
    DEFAULT_WAIT,
    LoopbackRedirect,
    authlib_client,
    authorization_code,
    oauth_call,
    require_https,
)

if TYPE_CHECKING:  # the account imports Prefect: the CLI loads this module for every command
    from .account import XAccount

__all__ = ["DEFAULT_PORT", "EXAMPLES", "add_arguments", "connect_x", "run"]

DEFAULT_URL = "https://api.x.com"
AUTHORIZE_URL = "https://x.com/i/oauth2/authorize"
DEFAULT_PORT = 8976  # the callback must be registered exactly: a fixed port
SCOPES = "tweet.read tweet.write users.read offline.access"
EXAMPLES = [
    "triggerflow connect x --client-id YOUR_CLIENT_ID      (then approve in the browser)",
    "TRIGGERFLOW_X_CLIENT_SECRET=... triggerflow connect x --client-id ID --port 8976",
]


def connect_x(
    client_id: str,
    account: str = "default",
    *,
    client_secret: str | None = None,
    url: str = DEFAULT_URL,
    authorize_url: str = AUTHORIZE_URL,
    port: int = DEFAULT_PORT,
    say: Say = print,
    open_browser: bool = True,
    wait: float = DEFAULT_WAIT,
) -> XAccount:
    """Get the user's approval for the app ``client_id``, check it, save the account."""
    base = require_https(url, "X's API")
    authorize = require_https(authorize_url, "X's authorization page")
    secret = (client_secret or "").strip()
    try:
        redirect = LoopbackRedirect(port)
    except OSError as e:
        raise ConfigurationError(
            f"X: cannot listen on 127.0.0.1:{port} for the callback ({e.strerror}); "
            "free it, or register another port's callback and give --port"
        ) from None
    try:
        client = authlib_client(
            client_id=client_id, client_secret=secret or None, scope=SCOPES,
            redirect_uri=redirect.redirect_uri, code_challenge_method="S256",
            token_endpoint_auth_method="client_secret_basic" if secret else "none",
        )  # fmt: skip
        token = authorization_code(
            client, authorize, f"{base}/2/oauth2/token", redirect,
            say=say, open_browser=open_browser, wait=wait,
        )  # fmt: skip
    finally:
        redirect.close()
    if not token.get("refresh_token"):
        say("Note: X gave no refresh token (is offline.access allowed for the app?): the "
            "account works for 2 hours, then needs connecting again.")  # fmt: skip
    me = oauth_call(f"X ({base})", lambda: client.get(f"{base}/2/users/me"))
    if me.status_code != 200:
        raise refused(f"X ({base})", me)
    user = me.json()["data"]
    from pydantic import SecretStr

    from .account import XAccount

    block = XAccount(
        url=base, user=f"@{user['username']}", user_id=str(user["id"]),
        client_id=client_id, client_secret=SecretStr(secret),
    )  # fmt: skip
    block.set_token(token)
    say(f"Connected X account {block.user} as {save(block, 'x', account)!r}.")
    return block


def add_arguments(p: argparse.ArgumentParser) -> None:
    p.add_argument("--client-id", required=True, help="your app's OAuth 2 client id")
    p.add_argument("--port", type=int, default=DEFAULT_PORT,
                   help=f"the callback's port, as registered (http://127.0.0.1:{DEFAULT_PORT}"
                        "/callback)")  # fmt: skip
    p.add_argument("--no-browser", action="store_true", help="only print the address")
    p.add_argument("--wait", type=float, default=DEFAULT_WAIT,
                   help=f"seconds to wait for the browser ({DEFAULT_WAIT:g})")  # fmt: skip
    p.add_argument("--url", default=DEFAULT_URL, help=f"X's API ({DEFAULT_URL})")
    p.add_argument("--authorize-url", default=AUTHORIZE_URL,
                   help=f"X's authorization page ({AUTHORIZE_URL})")  # fmt: skip


def run(args: argparse.Namespace, say: Say) -> None:
    connect_x(
        args.client_id, args.account,
        client_secret=os.environ.get("TRIGGERFLOW_X_CLIENT_SECRET"), url=args.url,
        authorize_url=args.authorize_url, port=args.port, say=say,
        open_browser=not args.no_browser, wait=args.wait,
    )  # fmt: skip
