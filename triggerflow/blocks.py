"""Credentials as Prefect Blocks, with environment variables as the simple path.

An account is named (``account="default"``). Its credentials come from, in order:

1. environment variables ``TRIGGERFLOW_XMPP_<NAME>_JID``, ``_PASSWORD`` and the
   optional ``_HOST``, ``_PORT``, ``_CA_FILE``, ``_OWNER``, ``_ALLOW_PLAINTEXT``;
2. a saved :class:`XMPPAccount` block named ``xmpp-<name>`` (when a Prefect API is
   configured), e.g. created with ``XMPPAccount(...).save("xmpp-default")``.

The web services' accounts (Mastodon, Trello, Wallabag, ...) are made by ``triggerflow
connect SERVICE --account NAME`` and saved as that service's block (``MastodonAccount``,
``TrelloAccount``, ..., each defined in ``triggerflow/services/<service>/account.py``
and importable from here) named ``<service>-<name>``; tokens that are refreshed are saved
again. ``triggerflow accounts`` lists them without their secrets.

The GitHub webhook secret comes from ``TRIGGERFLOW_GITHUB_SECRET``, else a Prefect
``Secret`` block named ``github-webhook-secret``.
"""

from __future__ import annotations

import os
import re
from typing import Any

from prefect.blocks.core import Block
from pydantic import Field, SecretStr

from .exceptions import AccountNotConfigured
from .services import services
from .services._account import (
    ServiceAccount,
    block_name,
    load_service_account,
    without_temporary_server,
)

__all__ = [
    "ServiceAccount",
    "XMPPAccount",
    "block_name",
    "load_github_secret",
    "load_service_account",
    "load_xmpp_account",
    "without_temporary_server",
    *(spec.account for spec in services().values()),  # MastodonAccount, TrelloAccount, ...
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


def __getattr__(name: str) -> Any:
    """The services' account blocks, by class name (``MastodonAccount``), from the folder
    of their service (``triggerflow/services/<name>/account.py``)."""
    for spec in services().values():
        if spec.account == name:
            return spec.account_class()
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")


def __dir__() -> list[str]:
    return sorted({*globals(), *(spec.account for spec in services().values())})
