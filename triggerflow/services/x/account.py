"""The X account: an OAuth 2 app of the user's (its client id, and its secret if it is a
confidential "Web App"), the user's tokens, and the user's id.

X's access tokens live 2 hours; with the ``offline.access`` scope a refresh token comes
along, and each refresh gives a new one and spends the old one at once. The client
therefore refreshes ahead of expiry under a lock, after reading the saved account
again (``Service.rotating_refresh``): a second process takes the first one's new token
instead of spending the old one for nothing.
"""

from __future__ import annotations

from pydantic import Field

from .._account import OAuth2Account

__all__ = ["XAccount"]


class XAccount(OAuth2Account):
    """An X account connected through the user's own app (X Developer Console)."""

    _block_type_name = "X Account"
    _block_type_slug = "triggerflow-x-account"
    _description = "An X account, connected with `triggerflow connect x`."

    user_id: str = Field(description="The user's numeric id (posts are read by id).")

    def token_auth_method(self) -> str:
        """A confidential client ("Web App") authenticates with HTTP Basic; a public one
        ("Native App") has no secret and sends only its id."""
        return "client_secret_basic" if self.client_secret.get_secret_value() else "none"
