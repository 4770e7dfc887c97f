"""Credentials as Prefect Blocks, with environment variables as the simple path.

An account is named (``account="default"``). Its credentials come from, in order:

1. environment variables ``TRIGGERFLOW_XMPP_<NAME>_JID``, ``_PASSWORD`` and the
   optional ``_HOST``, ``_PORT``, ``_CA_FILE``, ``_OWNER``, ``_ALLOW_PLAINTEXT``;
2. a saved :class:`XMPPAccount` block named ``xmpp-<name>`` (when a Prefect API is
   configured), e.g. created with ``XMPPAccount(...).save("xmpp-default")``.

Mastodon, Wallabag and Trello accounts are made by ``triggerflow connect SERVICE
--account NAME`` and saved as :class:`MastodonAccount`, :class:`WallabagAccount` and
:class:`TrelloAccount` blocks named ``<service>-<name>``; tokens that are refreshed are
saved again. ``triggerflow accounts`` lists them without their secrets.

The GitHub webhook secret comes from ``TRIGGERFLOW_GITHUB_SECRET``, else a Prefect
``Secret`` block named ``github-webhook-secret``.
"""

from __future__ import annotations

import os
import re
from typing import Any

from prefect.blocks.core import Block
from pydantic import Field, SecretStr

from .exceptions import AccountNotChecked, AccountNotConfigured

__all__ = [
    "MastodonAccount",
    "ServiceAccount",
    "TrelloAccount",
    "WallabagAccount",
    "XMPPAccount",
    "load_github_secret",
    "load_service_account",
    "load_xmpp_account",
]

GITHUB_SECRET_ENV = "TRIGGERFLOW_GITHUB_SECRET"
GITHUB_SECRET_BLOCK = "github-webhook-secret"


class XMPPAccount(Block):
    """An XMPP (Jabber) account that triggers send from.

    Example::

        from triggerflow.blocks import XMPPAccount
        XMPPAccount(jid="bot@example.org", password="...", owner="me@example.org").save(
            "xmpp-default"
        )
        account = XMPPAccount.load("xmpp-default")
    """

    _block_type_name = "XMPP Account"
    _block_type_slug = "triggerflow-xmpp-account"
    _description = "An XMPP account that triggerflow sends messages from."
    _documentation_url = "https://github.com/triggerflow/triggerflow#accounts"  # type: ignore[assignment]

    jid: str = Field(description="The account's address, e.g. bot@example.org.")
    password: SecretStr = Field(description="The account's password (stored encrypted).")
    host: str | None = Field(
        default=None, description="Server to connect to, when not the JID's domain."
    )
    port: int | None = Field(default=None, description="Client port (default 5222).")
    ca_file: str | None = Field(
        default=None,
        description="CA certificate file to trust, for self-hosted servers with their own CA.",
    )
    allow_plaintext: bool = Field(
        default=False,
        description="Allow an unencrypted connection (only for servers on this machine).",
    )
    owner: str | None = Field(
        default=None,
        description="Who receives messages when a sink names no recipient (you).",
    )


def _env_name(account: str) -> str:
    return "TRIGGERFLOW_XMPP_" + re.sub(r"[^A-Za-z0-9]", "_", account).upper()


def load_xmpp_account(account: str) -> XMPPAccount:
    """The credentials of the named XMPP account.

    Raises:
        AccountNotConfigured: neither the environment nor a saved block has them;
            the message says what to set.
    """
    prefix = _env_name(account)
    jid = os.environ.get(prefix + "_JID")
    password = os.environ.get(prefix + "_PASSWORD")
    if jid and password:
        port = os.environ.get(prefix + "_PORT")
        return XMPPAccount(
            jid=jid,
            password=SecretStr(password),
            host=os.environ.get(prefix + "_HOST") or None,
            port=int(port) if port else None,
            ca_file=os.environ.get(prefix + "_CA_FILE") or None,
            allow_plaintext=os.environ.get(prefix + "_ALLOW_PLAINTEXT", "").lower()
            in ("1", "true", "yes"),
            owner=os.environ.get(prefix + "_OWNER") or None,
        )
    if os.environ.get("PREFECT_API_URL"):
        try:
            return XMPPAccount.load(f"xmpp-{account}")  # type: ignore[return-value]
        except ValueError:
            pass  # no such block
    missing = " and ".join(
        n for n, v in ((prefix + "_JID", jid), (prefix + "_PASSWORD", password)) if not v
    )
    raise AccountNotConfigured(
        f"XMPP account {account!r} is not configured: set {missing} "
        f"(or save an XMPPAccount block named 'xmpp-{account}')"
    )


def load_github_secret() -> SecretStr | None:
    """The secret GitHub signs webhook deliveries with, or None if none is configured."""
    value = os.environ.get(GITHUB_SECRET_ENV)
    if value:
        return SecretStr(value)
    if os.environ.get("PREFECT_API_URL"):
        from prefect.blocks.system import Secret

        try:
            return SecretStr(str(Secret.load(GITHUB_SECRET_BLOCK).get()))
        except ValueError:
            pass  # no such block
    return None


class ServiceAccount(Block):
    """What the accounts of web services share: where, who, and the OAuth 2 token."""

    url: str = Field(description="The service's address, e.g. https://mastodon.social.")
    user: str | None = Field(default=None, description="Who the account is, for people.")
    access_token: SecretStr | None = Field(default=None, description="OAuth 2 access token.")
    refresh_token: SecretStr | None = Field(default=None, description="OAuth 2 refresh token.")
    expires_at: int | None = Field(
        default=None, description="When the access token expires (Unix time), if it does."
    )

    def token(self) -> dict[str, Any]:
        """The token as Authlib's clients take it."""
        token: dict[str, Any] = {"token_type": "Bearer"}
        if self.access_token is not None:
            token["access_token"] = self.access_token.get_secret_value()
        if self.refresh_token is not None:
            token["refresh_token"] = self.refresh_token.get_secret_value()
        if self.expires_at is not None:
            token["expires_at"] = self.expires_at
        return token

    def set_token(self, token: dict[str, Any]) -> None:
        """Take a new token (e.g. refreshed: the refresh token may have rotated)."""
        self.access_token = SecretStr(token["access_token"])
        if token.get("refresh_token"):
            self.refresh_token = SecretStr(token["refresh_token"])
        expires_at = token.get("expires_at")
        self.expires_at = int(expires_at) if expires_at else None


class MastodonAccount(ServiceAccount):
    """A Mastodon account: the app registered on the instance, and the user's token."""

    _block_type_name = "Mastodon Account"
    _block_type_slug = "triggerflow-mastodon-account"
    _description = "A Mastodon account connected with `triggerflow connect mastodon`."

    client_id: str = Field(description="The app registered on the instance.")
    client_secret: SecretStr = Field(description="The registered app's secret.")


class WallabagAccount(ServiceAccount):
    """A Wallabag account: an API client of the user's, and the user's credentials."""

    _block_type_name = "Wallabag Account"
    _block_type_slug = "triggerflow-wallabag-account"
    _description = "A Wallabag account connected with `triggerflow connect wallabag`."

    client_id: str = Field(description="The API client (Wallabag: Developer > API clients).")
    client_secret: SecretStr = Field(description="The API client's secret.")
    username: str = Field(description="The Wallabag user name.")
    password: SecretStr | None = Field(
        default=None,
        description="Kept to sign in again when the refresh token has expired (2 weeks).",
    )


class TrelloAccount(ServiceAccount):
    """A Trello account: the API key and a user token (which does not expire)."""

    _block_type_name = "Trello Account"
    _block_type_slug = "triggerflow-trello-account"
    _description = "A Trello account connected with `triggerflow connect trello`."

    api_key: str = Field(description="The Power-Up's API key (https://trello.com/power-ups/admin).")


SERVICES: dict[str, type[ServiceAccount]] = {
    "mastodon": MastodonAccount,
    "wallabag": WallabagAccount,
    "trello": TrelloAccount,
}


def block_name(service: str, account: str) -> str:
    """The block an account is saved as: ``mastodon-default``."""
    return f"{service}-{account}"


_may_start_server = True  # False in read-only commands: see ``without_temporary_server``


def without_temporary_server() -> None:
    """From now on, looking for a saved account never starts a temporary Prefect server.

    Without ``PREFECT_API_URL`` Prefect answers a block lookup by starting a server of
    its own (20-60 s): worth it for a run, never for ``list`` or ``status``, which then
    say which accounts they could not check.
    """
    global _may_start_server
    _may_start_server = False


def load_service_account(service: str, account: str) -> ServiceAccount:
    """The saved account ``account`` of ``service`` (``mastodon``, ``wallabag``, ``trello``).

    Raises:
        AccountNotConfigured: it was never connected (the message says how to).
        AccountNotChecked: no Prefect server runs to look in (read-only commands).
    """
    cls = SERVICES[service]
    if not _may_start_server and not os.environ.get("PREFECT_API_URL"):
        raise AccountNotChecked(
            f"{service} account {account!r}: not checked (saved accounts live on the "
            "Prefect server, and none is running: start `triggerflow serve`)"
        )
    try:  # tokens live only in blocks: without a server, Prefect's ephemeral mode reads them
        return cls.load(block_name(service, account))  # type: ignore[return-value]
    except ValueError:
        raise AccountNotConfigured(
            f"{service} account {account!r} is not connected: run "
            f"`triggerflow connect {service} --account {account}`"
        ) from None
