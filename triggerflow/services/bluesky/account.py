"""The Bluesky account: its PDS, its DID, the session's two tokens and the app password.

A session (``com.atproto.server.createSession`` with the app password) gives an access
JWT (2 hours) and a refresh JWT (90 days on the reference PDS); ``refreshSession`` with
the refresh JWT gives a new pair. Signing in is limited to 30 times in 5 minutes and 300
a day per account, so a run never signs in: it uses the saved session, refreshes it
when the access token is about to expire or is refused as expired, and saves the new
pair. Only when the refresh token is dead too (expired, revoked) does it sign in again
with the saved app password.

Two processes refreshing at once both keep working: the PDS keeps a rotated refresh
token usable for 2 hours and answers its repeats with the same next token.

On httpx, not the ``atproto`` package (0.0.x, its API still changing): the few XRPC calls
are JSON over HTTP, and going through the one client (:mod:`.._client`) keeps what every
service has there: rate-limit headers, errors in the user's words, secrets masked. Its
client would bring its own HTTP stack, models of every lexicon, and a session it saves
only through callbacks of its own.
"""

from __future__ import annotations

import base64
import json
import time
from collections.abc import Callable, Generator
from typing import Any

import httpx
from pydantic import Field, SecretStr

from .._account import ServiceAccount, SessionRefused

__all__ = ["BlueskyAccount"]

RENEW_AHEAD = 60.0  # seconds before the access token's expiry that it is renewed
_DEAD = ("ExpiredToken", "InvalidToken")  # the XRPC errors of a token that will not do


class BlueskyAccount(ServiceAccount):
    """A Bluesky account on its PDS: ``access_token``/``refresh_token`` are the session's
    JWTs, ``app_password`` signs in again when the session has ended."""

    _block_type_name = "Bluesky Account"
    _block_type_slug = "triggerflow-bluesky-account"
    _description = "A Bluesky account, connected with `triggerflow connect bluesky`."

    did: str = Field(description="The account's DID (did:plc:...), which outlives handles.")
    app_password: SecretStr | None = Field(
        default=None, description="Its app password, to sign in when the session has ended."
    )

    def auth(self, update_token: Callable[..., None]) -> httpx.Auth:
        return _Session(self, update_token)


def jwt_expiry(token: str) -> int | None:
    """The ``exp`` of a JWT (read, not verified: the PDS checks it, we only plan)."""
    try:
        payload = token.split(".")[1]
        exp = json.loads(base64.urlsafe_b64decode(payload + "=" * (-len(payload) % 4)))["exp"]
        return int(exp)
    except (IndexError, KeyError, TypeError, ValueError):
        return None


def xrpc_error(r: httpx.Response) -> str:
    """The XRPC error name of a refusal (``ExpiredToken``), or ""."""
    try:
        body = r.json()
    except ValueError:
        return ""
    return str(body.get("error") or "") if isinstance(body, dict) else ""


def _message(r: httpx.Response) -> str:
    try:
        body = r.json()
        return str(body.get("message") or body.get("error") or r.reason_phrase)[:200]
    except (ValueError, AttributeError):
        return r.reason_phrase


class _Session(httpx.Auth):
    """Sends the access JWT; renews the session ahead of its expiry and when refused.

    A renewal that fails for a passing reason (5xx, 429) ends the flow with that answer,
    which the client reports as such (and Prefect retries); one refused for good raises
    :class:`SessionRefused`.
    """

    requires_response_body = True  # to read the XRPC error name of a refusal

    def __init__(self, account: BlueskyAccount, update_token: Callable[..., None]) -> None:
        self._account = account
        self._save = update_token
        self._base = account.url.rstrip("/") + "/xrpc/"

    def _bearer(self, token: SecretStr | None) -> dict[str, str]:
        return {"Authorization": f"Bearer {token.get_secret_value()}"} if token else {}

    def auth_flow(self, request: httpx.Request) -> Generator[httpx.Request, httpx.Response, None]:
        account = self._account
        if account.access_token is None or (account.expires_at or 0) - RENEW_AHEAD < time.time():
            if (yield from self._renew()) is not None:
                return  # the renewal's own answer is the result
        request.headers.update(self._bearer(account.access_token))
        response = yield request
        if response.status_code in (400, 401) and xrpc_error(response) in _DEAD:
            if (yield from self._renew()) is not None:
                return
            request.headers.update(self._bearer(account.access_token))
            yield request

    def _renew(self) -> Generator[httpx.Request, httpx.Response, httpx.Response | None]:
        """A new session: refreshed, else signed in; None when done, else the failed answer."""
        account = self._account
        if account.refresh_token is not None:
            r = yield httpx.Request(
                "POST", self._base + "com.atproto.server.refreshSession",
                headers=self._bearer(account.refresh_token),
            )  # fmt: skip
            if r.status_code == 200:
                self._take(r.json(), "refreshed")
                return None
            if r.status_code >= 500 or r.status_code == 429:
                return r
            why = f"the session ended ({_message(r)})"
        else:
            why = "there is no session"
        if account.app_password is None:
            raise SessionRefused(f"{why} and no app password is saved to sign in again")
        r = yield httpx.Request(
            "POST", self._base + "com.atproto.server.createSession",
            json={"identifier": account.did, "password": account.app_password.get_secret_value()},
        )  # fmt: skip
        if r.status_code == 200:
            self._take(r.json(), "signed in again")
            return None
        if r.status_code >= 500 or r.status_code == 429:
            return r
        raise SessionRefused(f"{why}, and the saved app password was refused: {_message(r)}")

    def _take(self, session: dict[str, Any], how: str) -> None:
        access = str(session["accessJwt"])
        token = {
            "access_token": access,
            "refresh_token": session.get("refreshJwt"),
            "expires_at": jwt_expiry(access),
        }
        if session.get("handle"):
            self._account.user = f"@{session['handle']}"
        self._save(token, how=how)
