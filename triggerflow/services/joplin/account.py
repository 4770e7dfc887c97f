"""The Joplin account: where the app's Web Clipper service listens, and its token."""

from __future__ import annotations

from collections.abc import Callable, Generator

import httpx

from .._account import ServiceAccount

__all__ = ["JoplinAccount"]


class JoplinAccount(ServiceAccount):
    """The Joplin app's Data API (its Web Clipper service) and the token it gave.

    The token is ``access_token`` (encrypted like every secret); it does not expire.
    """

    _block_type_name = "Joplin Account"
    _block_type_slug = "triggerflow-joplin-account"
    _description = "The Joplin app's Data API, connected with `triggerflow connect joplin`."

    def auth(self, update_token: Callable[..., None]) -> httpx.Auth:
        """Every Joplin version reads the token from the query (``?token=``); newer ones
        also from a Bearer header, which older ones refuse. httpx's log of each request
        keeps only the origin (``triggerflow._http``), so the token is never logged."""
        return _QueryToken(self.token().get("access_token", ""))


class _QueryToken(httpx.Auth):
    def __init__(self, token: str) -> None:
        self._token = token

    def auth_flow(self, request: httpx.Request) -> Generator[httpx.Request, httpx.Response, None]:
        request.url = request.url.copy_merge_params({"token": self._token})
        yield request
