"""Authlib's OAuth servers on Starlette: the glue Authlib has no integration for.

Authlib ships its authorization servers for Flask and Django only. The generic
:class:`authlib.oauth2.rfc6749.AuthorizationServer` leaves to the framework:
``query_client``, ``save_token``, ``create_oauth2_request``, ``create_json_request``,
``handle_response`` and ``send_signal`` — :class:`StarletteAuthorizationServer` fills them
in. Authlib's servers are synchronous while Starlette reads bodies with ``await``: each
handler first reads the whole request (:func:`read_request`), then calls Authlib.

Authlib 1.9 deprecates passing ``body=`` to ``OAuth2Request`` (and reading
``request.data``/``request.client_id``...): the request carries an ``OAuth2Payload``
instead, as :class:`StarletteOAuth2Request` does. Loopback ``http://127.0.0.1`` URLs pass
Authlib's https check (RFC 8252 §7.3), so no ``AUTHLIB_INSECURE_TRANSPORT`` is needed.
"""

from __future__ import annotations

import hmac
import json
from collections import defaultdict
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any
from urllib.parse import urlencode

from authlib.oauth2.rfc6749 import (
    AuthorizationServer,
    ClientMixin,
    JsonPayload,
    JsonRequest,
    MissingAuthorizationError,
    OAuth2Payload,
    OAuth2Request,
    ResourceProtector,
    TokenMixin,
)
from authlib.oauth2.rfc6749.errors import UnsupportedTokenTypeError
from authlib.oauth2.rfc6750 import BearerTokenValidator, InsufficientScopeError, InvalidTokenError
from starlette.datastructures import Headers
from starlette.requests import Request
from starlette.responses import Response

from ._server import parse_body

__all__ = [
    "HttpRequest",
    "StarletteAuthorizationServer",
    "StarletteOAuth2Request",
    "TokenProtector",
    "TokenState",
    "read_request",
]


@dataclass
class HttpRequest:
    """A request read in full: what Authlib's synchronous servers look at."""

    method: str
    url: str
    headers: Headers
    query: list[tuple[str, str]]
    form: list[tuple[str, str]]
    body: bytes = b""

    def first(self, name: str) -> str | None:
        """The first value of ``name`` in the query, then in the body."""
        for key, value in (*self.query, *self.form):
            if key == name:
                return value
        return None

    def params(self) -> dict[str, str]:
        """Query and body parameters, first value of each (body wins over query)."""
        merged: dict[str, str] = {}
        for key, value in (*self.form, *self.query):
            merged.setdefault(key, value)
        return merged

    def all(self, name: str) -> list[str]:
        """Every value of ``name`` in the query and the body."""
        return [v for k, v in (*self.query, *self.form) if k == name]


async def read_request(request: Request) -> HttpRequest:
    """Read ``request`` in full (query, headers, body parameters)."""
    body = await request.body()
    return HttpRequest(
        method=request.method,
        url=str(request.url),
        headers=request.headers,
        query=list(request.query_params.multi_items()),
        form=parse_body(request.headers.get("content-type", ""), body),
        body=body,
    )


def _first_values(pairs: Sequence[tuple[str, str]]) -> dict[str, str]:
    values: dict[str, str] = {}
    for key, value in pairs:
        values.setdefault(key, value)
    return values


class ConfidentialClient(ClientMixin):
    """What Mastodon's apps and Wallabag's API clients share (Authlib's ClientMixin): an
    id, registered redirect URIs, and a secret compared in constant time, sent in HTTP
    Basic or in the form (both services read either)."""

    client_id: str
    client_secret: str
    redirect_uris: list[str]

    def get_client_id(self) -> str:
        return self.client_id

    def check_redirect_uri(self, redirect_uri: str) -> bool:
        return redirect_uri in self.redirect_uris

    def check_client_secret(self, client_secret: str) -> bool:
        return hmac.compare_digest(self.client_secret, client_secret)

    def check_endpoint_auth_method(self, method: str, endpoint: str) -> bool:
        return method in ("client_secret_basic", "client_secret_post")


class StarletteOAuth2Payload(OAuth2Payload):
    """Query and body parameters, as Flask's ``request.values`` would give them."""

    def __init__(self, request: HttpRequest) -> None:
        datalist: defaultdict[str, list[str]] = defaultdict(list)
        for key, value in (*request.query, *request.form):
            datalist[key].append(value)
        self._datalist = datalist
        self._data = {key: values[0] for key, values in datalist.items()}

    @property
    def data(self) -> dict[str, str]:
        return self._data

    @property
    def datalist(self) -> defaultdict[str, list[str]]:
        return self._datalist


class StarletteOAuth2Request(OAuth2Request):
    """Authlib's OAuth2Request over a request read by :func:`read_request`."""

    def __init__(self, request: HttpRequest) -> None:
        super().__init__(method=request.method, uri=request.url, headers=request.headers)
        self.payload = StarletteOAuth2Payload(request)
        self._args = _first_values(request.query)
        self._form = _first_values(request.form)

    @property
    def args(self) -> dict[str, str]:
        return self._args

    @property
    def form(self) -> dict[str, str]:
        return self._form


class StarletteJsonPayload(JsonPayload):
    def __init__(self, request: HttpRequest) -> None:
        self._data = json.loads(request.body) if request.body else {}

    @property
    def data(self) -> Any:
        return self._data


class StarletteJsonRequest(JsonRequest):
    def __init__(self, request: HttpRequest) -> None:
        super().__init__(request.method, request.url, request.headers)
        self.payload = StarletteJsonPayload(request)


TokenGenerator = Callable[..., dict[str, Any]]


class StarletteAuthorizationServer(AuthorizationServer):
    """Authlib's generic authorization server, answering with Starlette responses.

    ``query_client(client_id)`` finds a ClientMixin, ``save_token(token, request)`` keeps
    an issued token, ``token_generator(grant_type=, client=, user=, scope=, expires_in=,
    include_refresh_token=)`` makes the token dict (the service's own shape).
    ``signals`` records what Authlib signals (``after_authenticate_client``,
    ``after_revoke_token``) for the tests to inspect.
    """

    def __init__(
        self,
        *,
        query_client: Callable[[str], Any],
        save_token: Callable[[dict[str, Any], OAuth2Request], None],
        token_generator: TokenGenerator,
        scopes_supported: Sequence[str] | None = None,
    ) -> None:
        super().__init__(scopes_supported=list(scopes_supported) if scopes_supported else None)
        self._query_client = query_client
        self._save_token = save_token
        self.register_token_generator("default", token_generator)
        self.signals: list[tuple[str, dict[str, Any]]] = []

    def query_client(self, client_id: str) -> Any:
        return self._query_client(client_id)

    def save_token(self, token: dict[str, Any], request: OAuth2Request) -> None:
        self._save_token(token, request)

    def create_oauth2_request(self, request: Any) -> OAuth2Request:
        if isinstance(request, OAuth2Request):
            return request
        return StarletteOAuth2Request(request)

    def create_json_request(self, request: Any) -> JsonRequest:
        return StarletteJsonRequest(request)

    def handle_response(self, status: int, body: Any, headers: Any) -> Response:
        if isinstance(body, dict):
            content: str | bytes = json.dumps(body)
        elif isinstance(body, list):  # OAuth 1 style pairs
            content = urlencode(body)
        else:
            content = body or b""
        return Response(content, status_code=status, headers=dict(headers or []))

    def send_signal(self, name: str, *args: Any, **kwargs: Any) -> None:
        # Flask sends blinker signals here; the stand-ins only record them.
        self.signals.append((name, kwargs))


@dataclass
class TokenState:
    """Why a bearer token was refused: ``missing``, ``invalid``, ``expired``, ``revoked``
    or ``scope`` (valid token, scope too narrow)."""

    problem: str
    token: Any = None


class _LookupValidator(BearerTokenValidator):
    def __init__(self, lookup: Callable[[str], TokenMixin | None]) -> None:
        super().__init__()
        self._lookup = lookup

    def authenticate_token(self, token_string: str) -> TokenMixin | None:
        return self._lookup(token_string)

    def validate_token(self, token: Any, scopes: Any, request: Any) -> None:
        # The same checks as BearerTokenValidator, but saying which one failed: each
        # service words expired, revoked and unknown tokens differently.
        if not token:
            raise InvalidTokenError(description="invalid")
        if token.is_revoked():
            raise InvalidTokenError(description="revoked")
        if token.is_expired():
            raise InvalidTokenError(description="expired")
        super().validate_token(token, scopes, request)


@dataclass
class TokenProtector:
    """Authlib's ResourceProtector with a bearer validator over ``lookup``.

    :meth:`check` returns the token, or a :class:`TokenState` saying what is wrong.
    """

    lookup: Callable[[str], TokenMixin | None]
    _protector: ResourceProtector = field(init=False)

    def __post_init__(self) -> None:
        self._protector = ResourceProtector()
        self._protector.register_token_validator(_LookupValidator(self.lookup))

    def check(
        self, headers: Mapping[str, str], scopes: Sequence[str] | None = None
    ) -> Any | TokenState:
        """The token in ``Authorization: Bearer`` if valid for one of ``scopes`` (each a
        space-separated set, as Authlib's ``ResourceProtector`` takes them)."""
        holder = _HeaderHolder(headers)
        try:
            return self._protector.validate_request(list(scopes) if scopes else None, holder)
        except MissingAuthorizationError:
            return TokenState("missing")
        except UnsupportedTokenTypeError:
            return TokenState("invalid")
        except InvalidTokenError as error:
            return TokenState(error.description)
        except InsufficientScopeError:
            auth = headers.get("Authorization") or ""
            return TokenState("scope", self.lookup(auth.split(None, 1)[-1]))


@dataclass
class _HeaderHolder:
    headers: Mapping[str, str]
