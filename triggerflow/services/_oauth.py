"""Connecting accounts with Authlib: the OAuth 2 steps every service shares.

* :func:`authlib_client` — Authlib's httpx ``OAuth2Client``. Authlib 1.9 prefers the
  ``httpx2`` package when it can import it and then silently builds its clients on it;
  Prefect needs ``httpx``, and our error translation speaks httpx. So we depend on httpx
  on purpose, refuse to run on httpx2 (a clear error instead of foreign exceptions), and
  silence the deprecation warning Authlib prints for httpx where we import it.
* :class:`LoopbackRedirect` — the ``http://127.0.0.1:<port>/callback`` the browser comes
  back to: the port is bound *before* the authorization URL is built, one request is
  answered, the wait is bounded.
* :func:`authorization_code` — the code grant with PKCE (S256), ``state`` checked by us
  (Authlib's client accepts a forged ``state`` unless told which one to expect).
* :func:`require_https` — every endpoint that is not on this machine must be https
  (Authlib's client would send tokens over plain http).
"""

from __future__ import annotations

import hmac
import ipaddress
import secrets
import threading
import time
import warnings
import webbrowser
from collections.abc import Callable, Mapping
from http.server import BaseHTTPRequestHandler, HTTPServer
from typing import Any
from urllib.parse import parse_qs, urlsplit

import httpx

from ..exceptions import ConfigurationError

__all__ = [
    "LoopbackRedirect",
    "authlib_client",
    "authorization_code",
    "require_https",
]

DEFAULT_WAIT = 300.0  # seconds a person gets to approve in the browser


def _is_loopback(host: str) -> bool:
    if host == "localhost":
        return True
    try:
        return ipaddress.ip_address(host.strip("[]")).is_loopback
    except ValueError:
        return False


def require_https(url: str, what: str) -> str:
    """``url`` without a trailing slash, if it is https or on this machine.

    Raises:
        ConfigurationError: http (or anything else) to another machine.
    """
    parts = urlsplit(url)
    if not parts.scheme or not parts.hostname:
        raise ConfigurationError(f"{what}: {url!r} is not a URL (e.g. https://example.org)")
    if parts.scheme != "https" and not (parts.scheme == "http" and _is_loopback(parts.hostname)):
        raise ConfigurationError(
            f"{what}: {url} must use https (tokens and passwords would travel unencrypted); "
            "plain http is only accepted for 127.0.0.1/localhost"
        )
    return url.rstrip("/")


def _authlib_httpx() -> Any:
    """Authlib's httpx integration, checked to be built on httpx (not httpx2)."""
    # Authlib 1.9 deprecates running on httpx in favour of httpx2; we choose httpx. Its
    # deprecation module puts an "always" filter in front on import: import it first, so
    # that ours goes in front of that one.
    import authlib.deprecate  # noqa: F401

    with warnings.catch_warnings():
        warnings.filterwarnings("ignore", message=".*httpx module is deprecated.*")
        from authlib.integrations import httpx_client
        from authlib.integrations.httpx_client import _compat
    if _compat.httpx2 is not httpx:
        raise ConfigurationError(
            "the httpx2 package is installed, and Authlib then builds its clients on it "
            "instead of httpx (which triggerflow and Prefect use): pip uninstall httpx2"
        )
    return httpx_client


def authlib_client(**kwargs: Any) -> Any:
    """An ``authlib.integrations.httpx_client.OAuth2Client`` built on httpx."""
    return _authlib_httpx().OAuth2Client(**kwargs)


class LoopbackRedirect:
    """A one-shot web server on 127.0.0.1 that receives the browser's redirect.

    The port is bound in the constructor (``port=0``: any free one), so the redirect URI
    is known and reserved before it is registered or put in an authorization URL.
    """

    def __init__(self, port: int = 0, path: str = "/callback") -> None:
        self.path = path
        self.answer: dict[str, str] | None = None
        received = threading.Event()
        owner = self

        class Handler(BaseHTTPRequestHandler):
            def do_GET(self) -> None:  # noqa: N802 - http.server's naming
                url = urlsplit(self.path)
                if url.path != owner.path or received.is_set():
                    self.send_error(404)
                    return
                owner.answer = {k: v[-1] for k, v in parse_qs(url.query).items()}
                ok = "code" in owner.answer
                body = (
                    "<!doctype html><meta charset=utf-8><title>triggerflow</title>"
                    + (
                        "<p>Done: triggerflow got the authorization. You can close this tab."
                        if ok
                        else "<p>The authorization did not succeed; see the terminal."
                    )
                ).encode()
                self.send_response(200 if ok else 400)
                self.send_header("Content-Type", "text/html; charset=utf-8")
                self.send_header("Content-Length", str(len(body)))
                self.end_headers()
                self.wfile.write(body)
                received.set()

            def log_message(self, format: str, *args: object) -> None:  # noqa: A002
                pass  # the query holds the code: never logged

        self._received = received
        self._server = HTTPServer(("127.0.0.1", port), Handler)
        self._server.timeout = 0.2  # handle_request() returns this often to check the clock

    @property
    def redirect_uri(self) -> str:
        return f"http://127.0.0.1:{self._server.server_address[1]}{self.path}"

    def wait(self, timeout: float) -> dict[str, str]:
        """The query of the first request to the callback path, within ``timeout`` s.

        Raises:
            ConfigurationError: nothing arrived in time.
        """
        deadline = time.monotonic() + timeout
        try:
            while not self._received.is_set():
                if time.monotonic() > deadline:
                    raise ConfigurationError(
                        f"no answer from the browser within {timeout:g} s; run the command "
                        "again (or raise --wait)"
                    )
                self._server.handle_request()
        finally:
            self._server.server_close()
        assert self.answer is not None
        return self.answer

    def close(self) -> None:
        self._server.server_close()


def authorization_code(
    client: Any,
    authorize_url: str,
    token_url: str,
    redirect: LoopbackRedirect,
    *,
    say: Callable[[str], None],
    open_browser: bool = True,
    wait: float = DEFAULT_WAIT,
    extra: Mapping[str, str] | None = None,
) -> dict[str, Any]:
    """Run the authorization code grant with PKCE (S256); return the token.

    ``client`` is an :func:`authlib_client` made with ``redirect_uri=redirect.redirect_uri``
    and ``code_challenge_method="S256"``.

    Raises:
        ConfigurationError: refused in the browser, a forged or missing ``state``, no
            answer in time, or the token endpoint refused the code.
    """
    state = secrets.token_urlsafe(24)
    verifier = secrets.token_urlsafe(64)  # 86 characters: within RFC 7636's 43-128
    url, _ = client.create_authorization_url(
        authorize_url, state=state, code_verifier=verifier, **(extra or {})
    )
    say("Open this address in a browser and approve the access:")
    say(f"  {url}")
    if open_browser:
        try:
            webbrowser.open(url)
        except webbrowser.Error:
            pass  # no browser here: the address above is enough
    say(f"Waiting for the browser to come back to {redirect.redirect_uri} …")
    answer = redirect.wait(wait)
    if not hmac.compare_digest(answer.get("state", ""), state):
        raise ConfigurationError(
            "the answer to the authorization came back with a different state: ignored "
            "(it did not come from the request this command made; run it again)"
        )
    if "error" in answer:
        why = answer.get("error_description") or answer["error"]
        raise ConfigurationError(f"the authorization was refused: {why}")
    if "code" not in answer:
        raise ConfigurationError("the authorization answer carried no code; run it again")
    return oauth_call(
        "the token endpoint",
        lambda: client.fetch_token(
            token_url, code=answer["code"], state=state, code_verifier=verifier
        ),
    )


def oauth_call(what: str, call: Callable[[], Any]) -> Any:
    """Run an Authlib call; its errors and httpx's become a ConfigurationError."""
    from authlib.common.errors import AuthlibBaseError

    try:
        return call()
    except AuthlibBaseError as e:
        why = getattr(e, "description", None) or getattr(e, "error", None) or type(e).__name__
        raise ConfigurationError(f"{what} refused: {why}") from None
    except httpx.HTTPError as e:
        raise ConfigurationError(f"{what} could not be reached: {type(e).__name__}") from None
