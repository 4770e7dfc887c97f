"""The Wallabag account: an API client of the user's, and the user's credentials."""

from __future__ import annotations

from pydantic import Field, SecretStr

from .._account import OAuth2Account

__all__ = ["WallabagAccount"]


class WallabagAccount(OAuth2Account):
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

    def sign_in(self) -> dict[str, str] | None:
        """Wallabag's refresh tokens expire too: the password grant gives a new pair."""
        if self.password is None:
            return None
        return {
            "grant_type": "password",
            "username": self.username,
            "password": self.password.get_secret_value(),
        }
