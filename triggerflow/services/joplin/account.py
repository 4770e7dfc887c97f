"""The Joplin account: where the app's Web Clipper service listens, and its token."""

from __future__ import annotations

from collections.abc import Callable

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

    def http_client(
        self,
        *,
        token_endpoint: str | None,
        update_token: Callable[..., None],
        headers: dict[str, str],
        timeout: httpx.Timeout,
    ) -> httpx.Client:
        """Every Joplin version reads the token from the query (``?token=``); newer ones
        also from a Bearer header, which older ones refuse. httpx's log of each request
        keeps only the origin (``triggerflow._http``), so the token is never logged."""
        token = self.token().get("access_token", "")
        return httpx.Client(headers=headers, params={"token": token}, timeout=timeout)
