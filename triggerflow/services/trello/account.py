"""The Trello account: the API key and a user token (which does not expire)."""

from __future__ import annotations

from collections.abc import Callable

import httpx
from pydantic import Field

from .._account import ServiceAccount

__all__ = ["TrelloAccount"]


class TrelloAccount(ServiceAccount):
    """A Trello account: the API key and a user token (which does not expire)."""

    _block_type_name = "Trello Account"
    _block_type_slug = "triggerflow-trello-account"
    _description = "A Trello account connected with `triggerflow connect trello`."

    api_key: str = Field(description="The Power-Up's API key (https://trello.com/power-ups/admin).")

    def http_client(
        self,
        *,
        token_endpoint: str | None,
        update_token: Callable[..., None],
        headers: dict[str, str],
        timeout: httpx.Timeout,
    ) -> httpx.Client:
        """Trello reads key and token from an OAuth 1 header (never from logged URLs)."""
        token = self.token().get("access_token", "")
        auth = f'OAuth oauth_consumer_key="{self.api_key}", oauth_token="{token}"'
        return httpx.Client(headers={**headers, "Authorization": auth}, timeout=timeout)
