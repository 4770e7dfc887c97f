"""The Mastodon account: the app registered on the instance, and the user's token."""

from __future__ import annotations

from pydantic import Field, SecretStr

from .._account import OAuth2Account

__all__ = ["MastodonAccount"]


class MastodonAccount(OAuth2Account):
    """A Mastodon account: the app registered on the instance, and the user's token."""

    _block_type_name = "Mastodon Account"
    _block_type_slug = "triggerflow-mastodon-account"
    _description = "A Mastodon account connected with `triggerflow connect mastodon`."

    client_id: str = Field(description="The app registered on the instance.")
    client_secret: SecretStr = Field(description="The registered app's secret.")
