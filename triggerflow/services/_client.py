"""The one boundary to web services' APIs (Mastodon, Trello, Wallabag, ...).

:class:`ServiceClient` is what sources and sinks of those services call. It

* signs requests as the connected account says (its block's ``http_client``: Authlib's
  OAuth 2 client, which refreshes an expired token and hands the new one to us to save in
  the account's block; Trello's key + token header; Bluesky's session, which renews
  itself and raises ``SessionRefused`` when it cannot);
* refreshes tokens that work once (X: ``Service.rotating_refresh``) ahead of expiry,
  under a lock and after reading the saved account again, so two processes never spend
  one refresh token twice;
* signs in again when the refresh token has expired too and the account can (Wallabag's
  saved password);
* keeps to the service's rate limit: a window counted here, or for every host with the
  PostgreSQL store (``Service.window``, ``_pacing``: Trello sends no rate headers),
  ``X-RateLimit-Remaining: 0`` (X's ``x-rate-limit-*``, the IETF draft's ``RateLimit-*``) waits for
  the reset (ISO 8601 on Mastodon, Unix time or seconds elsewhere) before the next
  request, and a 429 waits until the reset, bounded by ``TRIGGERFLOW_RATE_LIMIT_WAIT``;
  beyond that it is a transient error Prefect retries;
* translates every failure into the error tree, in words a user understands:
  timeouts/5xx/429 transient, 401/403 "reconnect the account", 404 not found, other
  refusals (422) with the service's own message. Foreign exceptions are never chained:
  they carry the request, and so the token.
"""

from __future__ import annotations

import time
from collections.abc import Mapping
from datetime import datetime
from email.utils import parsedate_to_datetime
from typing import Any
from urllib.parse import urlsplit

import httpx
from pydantic import SecretStr

from .. import (
    _http,  # noqa: F401 - its log filter keeps tokens in URLs (Joplin's ?token=) out of logs
    _runtime,
)
from ..exceptions import (
    ConfigurationError,
    ServiceAuthError,
    ServiceError,
    ServiceNotFound,
    ServiceRateLimited,
    ServiceRejected,
    ServiceUnavailable,
)
from . import service as service_spec
from ._account import ServiceAccount, SessionRefused, block_name, load_service_account
from ._oauth import oauth_call, require_https
from ._pacing import request_window

__all__ = ["ServiceClient", "service_message"]

MAX_RATE_WAITS = 5  # 429s answered by waiting, per request, before giving up
RENEW_AHEAD = 120.0  # seconds before expiry that a rotating token is refreshed
LOCK_WAIT = 60.0  # the longest wait for another process's refresh of the same account


def service_message(r: httpx.Response) -> str:
    """The service's own words for a refusal: JSON ``error_description``/``error``/
    ``message``, or Trello's plain text; at most 200 characters."""
    try:
        body = r.json()
    except ValueError:
        body = None
    if isinstance(body, Mapping):
        listed = body.get("errors")  # X: [{"message": ...}], more precise than its "detail"
        if isinstance(listed, list) and listed and isinstance(listed[0], Mapping):
            first = listed[0].get("message")
            if isinstance(first, str) and first:
                return first[:200]
        for key in ("error_description", "message", "error", "detail"):  # detail: X
            value = body.get(key)
            if isinstance(value, str) and value:
                return value.split("\n\n", 1)[0][:200]  # Joplin adds its stack trace
        errors = body.get("errors")  # Wallabag's form errors
        if errors:
            return str(errors)[:200]
    text = r.text.strip()
    return text[:200] if text and not text.startswith("<") else r.reason_phrase


def _rate_header(r: httpx.Response, name: str) -> str | None:
    """``X-RateLimit-<name>`` (Mastodon), ``x-rate-limit-<name>`` (X), or the IETF draft's
    ``RateLimit-<name>`` (Bluesky, proxies)."""
    for prefix in ("x-ratelimit-", "x-rate-limit-", "ratelimit-"):
        value = r.headers.get(prefix + name)
        if value:
            return value
    return None


def _reset_at(r: httpx.Response) -> float | None:
    """When a rate limit resets (Unix time), from the headers services send."""
    reset = _rate_header(r, "reset")
    if reset:
        try:
            return datetime.fromisoformat(reset).timestamp()  # Mastodon: ISO 8601
        except ValueError:
            try:
                value = float(reset)  # others: Unix time, or seconds from now
                return value if value > 1e9 else time.time() + value
            except ValueError:
                pass
    after = r.headers.get("retry-after")
    if after:
        try:
            return time.time() + float(after)
        except ValueError:
            try:
                return parsedate_to_datetime(after).timestamp()
            except (TypeError, ValueError):
                pass
    return None


class ServiceClient:
    """An authenticated client of one connected account (a context manager).

    Args:
        service: the service's name (``mastodon``, ``trello``, ...).
        account: the account's name, as given to ``triggerflow connect --account``.
        timeout: seconds for one request.
        max_wait: the longest wait for a rate limit to reset inside one step.
        account_block: the account itself (default: loaded from its Prefect block).

    Raises:
        AccountNotConfigured: the account was never connected.
    """

    def __init__(
        self,
        service: str,
        account: str = "default",
        *,
        timeout: float = 20.0,
        max_wait: float = 300.0,
        account_block: ServiceAccount | None = None,
    ) -> None:
        self.service = service
        self.account = account
        self.spec = service_spec(service)
        self.name = self.spec.title
        self.block = account_block or load_service_account(service, account)
        self.base = require_https(self.block.url, f"{self.name} account {account!r}")
        self.timeout = timeout
        self.max_wait = max_wait
        window = self.spec.window
        self._window = request_window(block_name(service, account), window) if window else None
        self._not_before = 0.0  # Unix time: the service said "nothing left until then"
        self._http = self._make_client()

    def __repr__(self) -> str:  # the block's repr masks its secrets; ours names no token
        return f"ServiceClient({self.service!r}, account={self.account!r}, url={self.base!r})"

    def __enter__(self) -> ServiceClient:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def close(self) -> None:
        self._http.close()

    # -- the client ----------------------------------------------------------------------
    def _make_client(self) -> httpx.Client:
        return self.block.http_client(
            token_endpoint=self._token_endpoint(),
            update_token=self._token_refreshed,
            headers={"User-Agent": "triggerflow (+https://github.com/triggerflow/triggerflow)"},
            timeout=httpx.Timeout(self.timeout, connect=min(self.timeout, 10.0)),
        )

    def _token_endpoint(self) -> str | None:
        path = self.spec.token_path
        return self.base + path if path else None

    def _token_refreshed(self, token: dict[str, Any], **_: Any) -> None:
        """Authlib's ``update_token``: save the new token (the refresh token rotated)."""
        self.block.set_token(token)
        self.block.save(block_name(self.service, self.account), overwrite=True)
        _runtime.logger().info(
            "%s account %r: access token refreshed and saved", self.name, self.account
        )

    def _sign_in_again(self) -> None:
        """The refresh token expired too: sign in again if the account can (Wallabag)."""
        grant = self.block.sign_in()
        if grant is None:
            raise self.auth_error("the saved token has expired and cannot be refreshed")
        try:
            token = oauth_call(
                f"{self.name} {self.base}",
                lambda: self._http.fetch_token(self._token_endpoint(), **grant),  # type: ignore[attr-defined]
            )
        except ConfigurationError as e:  # the password is refused, or the server is away
            raise self.auth_error(str(e)) from None
        self._token_refreshed(token)

    # -- requests ------------------------------------------------------------------------
    def get(self, path: str, *, what: str | None = None, **kwargs: Any) -> httpx.Response:
        return self.request("GET", path, what=what, **kwargs)

    def post(self, path: str, *, what: str | None = None, **kwargs: Any) -> httpx.Response:
        return self.request("POST", path, what=what, **kwargs)

    def request(
        self,
        method: str,
        path: str,
        *,
        what: str | None = None,
        accept: tuple[int, ...] = (),
        **kwargs: Any,
    ) -> httpx.Response:
        """One API call; a 2xx/3xx response (or one of ``accept``), or a :class:`ServiceError`.

        ``path`` is relative to the account's URL (or a full URL on it: the token is
        never sent to another address); ``what`` names the thing for error messages (``"list
        5f…"``); ``accept``: statuses that are an answer, not an error (Bluesky's 400
        ``RecordNotFound``); ``kwargs`` go to httpx (``params``, ``data``, ``json``, ``headers``).
        """
        url = path if path.startswith(("http://", "https://")) else self.base + path
        if not url.startswith(self.base + "/"):  # the token goes with it: never elsewhere
            raise ConfigurationError(f"{self.name}: {url} is not on {self.base}")
        waited = 0.0
        refreshed = False
        for _ in range(MAX_RATE_WAITS + 1):
            self._renew_ahead()
            waited += self._pace(waited)
            r = self._send(method, url, kwargs)
            self._note_limits(r)
            if r.status_code == 429:
                wait = self.spec.wait_after_429
                reset = _reset_at(r) or (time.time() + wait if wait is not None else None)
                waited += self._wait_for(reset, waited, "answered 429 (too many requests)")
                continue
            if (
                r.status_code == 401
                and not refreshed
                and self.block.refresh_token is not None
                and hasattr(self._http, "refresh_token")  # an OAuth 2 client (Authlib)
            ):
                # The token died before the time it was given (revoked, clock skew): one
                # refresh, then the call once more.
                refreshed = True
                if self.spec.rotating_refresh:
                    self._guarded_refresh()
                else:
                    self._refresh()
                continue
            if r.status_code < 400 or r.status_code in accept:
                return r
            raise self.error(r, what or f"{method} {urlsplit(url).path}")
        raise ServiceRateLimited(
            self.service,
            f"{self.name}: still rate limited after {MAX_RATE_WAITS} waits; try later",
        )

    def _send(self, method: str, url: str, kwargs: dict[str, Any]) -> httpx.Response:
        from authlib.common.errors import AuthlibBaseError

        try:
            try:
                return self._http.request(method, url, **kwargs)
            except AuthlibBaseError as e:
                if getattr(e, "error", None) != "invalid_grant":
                    raise
                self._sign_in_again()  # the refresh token expired (Wallabag: 2 weeks)
                return self._http.request(method, url, **kwargs)
        except httpx.TimeoutException:
            raise ServiceUnavailable(
                self.service, f"{self.name} ({self.base}) did not answer within {self.timeout:g} s"
            ) from None
        except httpx.HTTPError as e:
            raise ServiceUnavailable(
                self.service, f"{self.name} ({self.base}) cannot be reached ({type(e).__name__})"
            ) from None
        except AuthlibBaseError as e:
            why = getattr(e, "description", None) or getattr(e, "error", None) or "refused"
            raise self.auth_error(f"the token could not be refreshed: {why}") from None
        except SessionRefused as e:  # an account's own sign-in (Bluesky's session)
            raise self.auth_error(self._scrub(str(e))) from None

    def _renew_ahead(self) -> None:
        """A refresh token that works once (X) is refreshed before the access token
        expires, not by Authlib on the way: there, two processes could both spend it."""
        expires = self.block.expires_at
        if not self.spec.rotating_refresh or self.block.refresh_token is None or not expires:
            return
        if expires - RENEW_AHEAD > time.time():
            return
        self._guarded_refresh()

    def _guarded_refresh(self) -> None:
        """Refresh, one process at a time, and only if no other process did first.

        Under the store's lock for this account (a file lock for the processes of one
        machine; with the PostgreSQL store an advisory lock every host shares) the
        saved account is read again: when another process refreshed already, its token
        is taken (its refresh token is the one that still works); else this one
        refreshes and saves the new pair before the lock is let go.
        """
        from .._store import Store

        try:
            what = f"{self.name} token refresh"
            with Store.default().held(block_name(self.service, self.account), LOCK_WAIT, what):
                saved = load_service_account(self.service, self.account)
                if (
                    saved.refresh_token is not None
                    and saved.refresh_token != self.block.refresh_token
                ):
                    self.block.set_token(saved.token())
                    self._http.token = self.block.token()  # type: ignore[attr-defined]
                    if (saved.expires_at or 0) - RENEW_AHEAD > time.time():
                        _runtime.logger().info(
                            "%s account %r: took the token another process refreshed",
                            self.name, self.account,
                        )  # fmt: skip
                        return
                self._refresh()
        except TimeoutError as e:
            raise ServiceUnavailable(self.service, f"{self.name}: {e}") from None

    def _refresh(self) -> None:
        from authlib.common.errors import AuthlibBaseError

        try:
            self._http.refresh_token(self._token_endpoint())  # type: ignore[attr-defined]
        except AuthlibBaseError as e:
            if getattr(e, "error", None) == "invalid_grant":
                self._sign_in_again()
                return
            raise self.auth_error("the token could not be refreshed") from None
        except httpx.HTTPError as e:
            raise ServiceUnavailable(
                self.service, f"{self.name} ({self.base}) cannot be reached ({type(e).__name__})"
            ) from None

    # -- rate limits ---------------------------------------------------------------------
    def _pace(self, waited: float) -> float:
        """Wait until the next request is within the limits; return how long it waited.

        The window (Trello tells nothing before its 429) is this process's, or every
        host's with the PostgreSQL store (``_pacing``); ``X-RateLimit-Remaining: 0``
        holds every request until the reset it names.
        """
        delay = 0.0
        if self._not_before > time.time():
            delay = self._wait_for(self._not_before, waited, "rate limit used up")
        if self._window is not None:
            while (later := self._window.take()) > 0:
                delay += self._wait_for(time.time() + later, waited + delay, "rate limit used up")
        return delay

    def _note_limits(self, r: httpx.Response) -> None:
        if _rate_header(r, "remaining") == "0":
            reset = _reset_at(r)
            if reset is not None:
                self._not_before = max(self._not_before, reset)

    def _wait_for(self, reset: float | None, waited: float, why: str) -> float:
        """Sleep until ``reset`` (Unix time) if the step may still wait that long."""
        delay = max(0.0, (reset or 0.0) - time.time())
        if reset is None or waited + delay > self.max_wait:
            when = f" until {datetime.fromtimestamp(reset):%H:%M:%S}" if reset else ""
            raise ServiceRateLimited(
                self.service,
                f"{self.name} {why}: no more requests{when}; Prefect retries later",
                retry_at=reset,
            )
        _runtime.logger().info("%s %s: waiting %.1f s for the reset", self.name, why, delay)
        time.sleep(delay + 0.05)
        return delay

    # -- errors --------------------------------------------------------------------------
    def auth_error(self, why: str, status: int | None = None) -> ServiceAuthError:
        """The account was refused (``why``): the error says to reconnect it."""
        return ServiceAuthError(
            self.service,
            f"{self.name} account {self.account!r} ({self.block.user or self.base}): {why}; "
            f"reconnect the account: triggerflow connect {self.service} --account "
            f"{self.account}",
            status,
        )

    def error(self, r: httpx.Response, what: str) -> ServiceError:
        """The error for refusal ``r`` of ``what``, in words a user understands."""
        why = self._scrub(service_message(r))
        status = r.status_code
        if status in (401, 403):
            return self.auth_error(f"refused ({status}: {why})", status)
        if status == 404:
            return ServiceNotFound(self.service, f"{self.name}: {what} not found ({why})", 404)
        if status >= 500:
            return ServiceUnavailable(
                self.service, f"{self.name} ({self.base}) answered {status}: {why}", status
            )
        return ServiceRejected(self.service, f"{self.name} refused {what}: {why}", status)

    def _scrub(self, text: str) -> str:
        """Services may quote what they were sent: never pass a secret on."""
        block = self.block
        for name in type(block).model_fields:  # every secret of every account type
            secret = getattr(block, name, None)
            value = secret.get_secret_value() if isinstance(secret, SecretStr) else ""
            if len(value) >= 8:
                text = text.replace(value, "***")
        return text
