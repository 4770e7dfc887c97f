"""The Trello account: the API key and a user token (which does not expire)."""

from __future__ import annotations

from collections.abc import Callable, Generator

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

    def auth(self, update_token: Callable[..., None]) -> httpx.Auth:
        """Trello reads key and token from an OAuth 1 header (never from logged URLs)."""
        token = self.token().get("access_token", "")
        return _Header(f'OAuth oauth_consumer_key="{self.api_key}", oauth_token="{token}"')


class _Header(httpx.Auth):
    def __init__(self, value: str) -> None:
        self._value = value

    def auth_flow(self, request: httpx.Request) -> Generator[httpx.Request, httpx.Response, None]:
        request.headers["Authorization"] = self._value
        yield request
