"""What the accounts of web services share: a Prefect block per account, found by name.

An account is made once by ``triggerflow connect SERVICE --account NAME`` and saved as
the service's block named ``<service>-<name>`` (secrets encrypted by Prefect); tokens
that are refreshed are saved again. The block also knows how its requests are signed
(:meth:`ServiceAccount.http_client`), so that the one client (:mod:`._client`) needs to
know nothing of a service but its :class:`~triggerflow.services.Service`.
"""

from __future__ import annotations

import os
import time
from collections.abc import Callable
from typing import Any

import httpx
from prefect.blocks.core import Block
from pydantic import Field, SecretStr

from ..exceptions import AccountNotChecked, AccountNotConfigured
from . import service as service_spec

__all__ = [
    "OAuth2Account",
    "ServiceAccount",
    "SessionRefused",
    "block_name",
    "load_service_account",
    "without_temporary_server",
]


class SessionRefused(Exception):
    """An account's own sign-in (its :meth:`ServiceAccount.auth`) was refused for good:
    the message says why, in words for the user, never with a secret. The client turns
    it into "reconnect the account"."""


class ServiceAccount(Block):
    """What the accounts of web services share: where, who, and the token."""

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

    def http_client(
        self,
        *,
        token_endpoint: str | None,
        update_token: Callable[..., None],
        headers: dict[str, str],
        timeout: httpx.Timeout,
    ) -> httpx.Client:
        """An httpx client that signs every request of this account (with :meth:`auth`)."""
        return httpx.Client(headers=headers, timeout=timeout, auth=self.auth(update_token))

    def auth(self, update_token: Callable[..., None]) -> httpx.Auth:
        """How a request of this account is signed (an httpx auth); ``update_token`` is
        handed a token that was renewed, to be saved."""
        raise NotImplementedError

    def state(self) -> str:
        """How the account stands, for ``triggerflow accounts`` (never a secret)."""
        if not self.expires_at:
            return "token never expires"
        left = self.expires_at - time.time()
        if left > 0:
            return f"token valid {left / 60:.0f} more min (refreshed when needed)"
        return "token expired (refreshed on next use)"

    def sign_in(self) -> dict[str, str] | None:
        """What a new sign-in takes when the refresh token has expired too (the password
        grant's fields), or None: the person has to connect the account again."""
        return None


class OAuth2Account(ServiceAccount):
    """An account whose requests carry an OAuth 2 token of a registered client."""

    client_id: str = Field(description="The API client registered with the service.")
    client_secret: SecretStr = Field(description="The API client's secret.")

    def token_auth_method(self) -> str:
        """How the client authenticates at the token endpoint (RFC 6749 §2.3)."""
        return "client_secret_post"

    def http_client(
        self,
        *,
        token_endpoint: str | None,
        update_token: Callable[..., None],
        headers: dict[str, str],
        timeout: httpx.Timeout,
    ) -> httpx.Client:
        """Authlib's OAuth 2 client: it refreshes an expired token and hands the new one
        to ``update_token`` (to be saved: the refresh token may have rotated)."""
        from ._oauth import authlib_client

        client: httpx.Client = authlib_client(
            client_id=self.client_id,
            client_secret=self.client_secret.get_secret_value(),
            token=self.token(),
            token_endpoint=token_endpoint,
            token_endpoint_auth_method=self.token_auth_method(),
            update_token=update_token,
            headers=headers,
            timeout=timeout,
        )
        return client


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
    """The saved account ``account`` of ``service`` (``mastodon``, ``trello``, ...).

    Raises:
        AccountNotConfigured: it was never connected (the message says how to).
        AccountNotChecked: no Prefect server runs to look in (read-only commands).
    """
    cls = service_spec(service).account_class()
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
