"""The Evernote account: a developer token (or an OAuth access token) and its NoteStore URL.

Evernote's API takes the token as the first argument of every call, not as a header,
and each account's notes live on its own shard: the NoteStore URL
(``https://www.evernote.com/shard/s1/notestore``) comes with the token.
"""

from __future__ import annotations

from collections.abc import Callable

import httpx
from pydantic import Field

from .._account import ServiceAccount

__all__ = ["EvernoteAccount"]


class EvernoteAccount(ServiceAccount):
    """An Evernote account: ``access_token`` is the developer token (encrypted), ``url``
    the service's address and ``note_store_url`` the account's NoteStore."""

    _block_type_name = "Evernote Account"
    _block_type_slug = "triggerflow-evernote-account"
    _description = "An Evernote account, connected with `triggerflow connect evernote`."

    note_store_url: str = Field(description="The account's NoteStore (Thrift over HTTPS).")

    def auth(self, update_token: Callable[..., None]) -> httpx.Auth:
        # The token goes inside each Thrift call (its authenticationToken argument).
        return httpx.Auth()

    def state(self) -> str:
        return "developer token (Evernote's expire after a year: connect again then)"
