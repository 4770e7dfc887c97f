"""A Wallabag server for the tests: OAuth 2 password grant, entries API.

Written from Wallabag's API documentation (wallabag/doc: developer/api/oauth.md and
methods.md; the API doc served at ``/api/doc``) and the server's code it documents
(``src/Controller/Api/EntryRestController.php``, ``EntryRepository::findEntries``,
``ContentProxy``) and its OAuth library (FriendsOfSymfony/oauth2-php ``OAuth2.php``):

* ``POST /oauth/v2/token`` (oauth2-php also reads the parameters of a GET) —
  ``grant_type=password`` with ``client_id``, ``client_secret`` (in the form, or HTTP
  Basic), ``username`` (or the e-mail address), ``password`` →
  ``{"access_token", "expires_in": 3600, "refresh_token", "scope": null,
  "token_type": "bearer"}``. ``grant_type=refresh_token`` returns a new refresh token and
  deletes the old one (rotation); refresh tokens live 14 days. Every error is a 400
  ``{"error", "error_description"}``: ``invalid_client`` "The client credentials are
  invalid", ``invalid_grant`` "Invalid username and password combination" / "Invalid
  refresh token" / "Refresh token has expired", ``invalid_scope`` (Wallabag configures no
  scopes, so any ``scope`` is refused).
* API calls carry ``Authorization: Bearer <token>`` or ``?access_token=``: a missing
  token is 401 ``{"error": "access_denied", "error_description": "OAuth2 authentication
  required"}``, a wrong one 401 ``invalid_grant`` "The access token provided is
  invalid." (expired: "... has expired.").
* ``POST /api/entries.json`` — ``url``, ``title``, ``tags`` (comma-separated), ``starred``,
  ``archive``, ``content``...: a URL the user already saved returns that entry (updated
  with what was given, 200) instead of a second one. The stand-in cannot fetch pages: a new
  entry gets the ``title``/``content`` given, those of :meth:`WallabagStandIn.set_page`,
  or — as Wallabag when fetching fails — a title from the URL and the "can't retrieve
  contents" text.
* ``GET /api/entries.json`` — ``archive``, ``starred``, ``sort`` (created, updated,
  archived), ``order``, ``page``, ``perPage`` (30), ``tags`` (all of them), ``since``
  (``updated_at`` strictly after that Unix time — updates count, not only creation),
  ``detail`` (full, metadata: no ``content``), ``domain_name`` →
  ``{"page", "limit", "pages", "total", "_links", "_embedded": {"items": [...]}}``.
* ``GET /api/entries/exists.json?url=`` → ``{"exists": true|false}`` (``return_id=1``:
  the id or null); ``GET|PATCH|DELETE /api/entries/{id}.json``; ``GET /api/version.json``,
  ``/api/info.json``, ``/api/user.json``.
* Other API errors: ``{"code": N, "message": "..."}`` (FOSRestBundle).

Wallabag itself has no rate limit (a reverse proxy may): use ``fail_next(n, 429,
headers={"Retry-After": "1"})`` for that.
"""

from __future__ import annotations

import base64
import copy
import hashlib
import hmac
import json
import math
import re
import secrets
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any
from urllib.parse import urlencode, urlsplit

from authlib.oauth2.rfc6749 import (
    ClientMixin,
    InvalidClientError,
    InvalidGrantError,
    InvalidRequestError,
    InvalidScopeError,
    OAuth2Error,
    OAuth2Request,
    RefreshTokenGrant,
    ResourceOwnerPasswordCredentialsGrant,
    TokenMixin,
)
from starlette.requests import Request
from starlette.responses import JSONResponse, Response
from starlette.routing import BaseRoute, Route

from ._oauth import (
    ConfidentialClient,
    HttpRequest,
    StarletteAuthorizationServer,
    TokenProtector,
    TokenState,
)
from ._oauth import read_request as _read_request
from ._server import StandIn, reason

__all__ = ["WallabagClient", "WallabagStandIn", "WallabagToken"]

VERSION = "2.6.10"
ACCESS_LIFETIME = 3600  # oauth2-php's default, Wallabag's fos_oauth_server setting
REFRESH_LIFETIME = 1209600  # 14 days
FETCH_ERROR = (
    "wallabag can't retrieve contents for this article. Please <a "
    'href="https://doc.wallabag.org/en/user/errors_during_fetching.html#how-can-i-help-to-'
    'fix-that">troubleshoot this issue</a>.'
)
SORTS = {"created": "created_at", "updated": "updated_at", "archived": "archived_at"}


def wallabag_time(ts: float) -> str:
    """Wallabag's date format: ``2016-04-05T09:07:54+0000``."""
    return datetime.fromtimestamp(ts, UTC).strftime("%Y-%m-%dT%H:%M:%S+0000")


def _oauth_token() -> str:
    # oauth2-php's genAccessToken: base64 of a hex digest, without padding.
    return base64.b64encode(secrets.token_hex(32).encode()).decode().rstrip("=")


def php_bool(value: Any) -> bool | None:
    """A request value as PHP's ``(bool)`` sees it ("0" and "" are false; "false" is
    true!); None when absent."""
    if value is None:
        return None
    if isinstance(value, bool):
        return value
    if isinstance(value, int | float):
        return value != 0
    return str(value) not in ("", "0")


def slug(label: str) -> str:
    return re.sub(r"[^a-z0-9]+", "-", label.lower()).strip("-")


@dataclass
class WallabagClient(ConfidentialClient):
    """An API client (Developer > API clients): Authlib's ClientMixin."""

    client_id: str
    client_secret: str
    name: str = "triggerflow"
    redirect_uris: list[str] = field(default_factory=list)
    grant_types: tuple[str, ...] = ("password", "refresh_token", "authorization_code", "token")

    def get_default_redirect_uri(self) -> str | None:
        return self.redirect_uris[0] if self.redirect_uris else None

    def get_allowed_scope(self, scope: str | None) -> str | None:
        return None if scope else ""

    def check_response_type(self, response_type: str) -> bool:
        return response_type in ("code", "token")

    def check_grant_type(self, grant_type: str) -> bool:
        return grant_type in self.grant_types


@dataclass
class WallabagToken(TokenMixin):
    """An access token, with the refresh token issued beside it (Authlib's TokenMixin)."""

    access_token: str
    refresh_token: str | None
    client_id: str
    user_id: int
    expires_at: float
    refresh_expires_at: float
    now: Any = field(repr=False, compare=False)
    refresh_deleted: bool = False  # rotated out: oauth2-php deletes the old refresh token

    def check_client(self, client: ClientMixin) -> bool:
        return self.client_id == client.get_client_id()

    def get_scope(self) -> None:
        return None

    def get_expires_in(self) -> int:
        return max(0, int(self.expires_at - self.now()))

    def is_expired(self) -> bool:
        return self.now() >= self.expires_at

    def is_refresh_expired(self) -> bool:
        return self.now() >= self.refresh_expires_at

    def is_revoked(self) -> bool:
        return False  # oauth2-php has no revocation: tokens only expire

    def get_user(self) -> int:
        return self.user_id

    def get_client(self) -> Any:
        return None


@dataclass
class _User:
    id: int
    username: str
    email: str


@dataclass
class _Entry:
    id: int
    url: str
    title: str
    content: str
    tags: list[str]
    is_starred: bool
    is_archived: bool
    created_at: float
    updated_at: float
    starred_at: float | None = None
    archived_at: float | None = None
    language: str | None = "en"
    preview_picture: str | None = None
    published_at: float | None = None
    published_by: list[str] | None = None
    origin_url: str | None = None
    is_not_parsed: bool = False
    given_url: str = ""


def _error(kind: type[OAuth2Error], description: str) -> OAuth2Error:
    """An Authlib error with oauth2-php's description. Authlib refuses descriptions with
    a double quote (RFC 6749 §5.2's character set) in the constructor; oauth2-php sends
    them anyway, so the description is set afterwards."""
    error = kind()
    error.description = description
    return error


class _PasswordGrant(ResourceOwnerPasswordCredentialsGrant):
    TOKEN_ENDPOINT_AUTH_METHODS = ["client_secret_basic", "client_secret_post"]
    TOKEN_ENDPOINT_HTTP_METHODS = ["POST", "GET"]  # oauth2-php reads GET parameters too

    def validate_token_request(self) -> None:
        form = self.request.form
        if not form.get("username") or not form.get("password"):
            # oauth2-php authenticates the client first, then wants both parameters.
            self.authenticate_token_endpoint_client()
            raise _error(
                InvalidRequestError, 'Missing parameters. "username" and "password" required'
            )
        super().validate_token_request()

    def authenticate_user(self, username: str, password: str) -> _User:
        standin: WallabagStandIn = self.server.standin
        user = standin.user
        # The user provider is username_email: either identifies the user.
        if username in (user.username, user.email) and hmac.compare_digest(
            password, standin.password
        ):
            return user
        raise InvalidGrantError("Invalid username and password combination")


class _RefreshGrant(RefreshTokenGrant):
    TOKEN_ENDPOINT_AUTH_METHODS = ["client_secret_basic", "client_secret_post"]
    TOKEN_ENDPOINT_HTTP_METHODS = ["POST", "GET"]
    INCLUDE_NEW_REFRESH_TOKEN = True  # oauth2-php always issues a new refresh token

    def authenticate_refresh_token(self, refresh_token: str) -> WallabagToken:
        standin: WallabagStandIn = self.server.standin
        token = standin._by_refresh.get(refresh_token)
        if token is None or token.refresh_deleted:
            raise InvalidGrantError("Invalid refresh token")
        if token.is_refresh_expired():
            raise InvalidGrantError("Refresh token has expired")
        return token

    def authenticate_user(self, refresh_token: WallabagToken) -> _User:
        return self.server.standin.user

    def revoke_old_credential(self, refresh_token: WallabagToken) -> None:
        refresh_token.refresh_deleted = True  # the old access token stays valid until expiry


class _Server(StarletteAuthorizationServer):
    standin: WallabagStandIn

    def validate_requested_scope(self, scope: str | None) -> None:
        # No supported_scopes in Wallabag's fos_oauth_server config: any scope is refused.
        if scope:
            raise InvalidScopeError("An unsupported scope was requested.")

    def handle_error_response(self, request: Any, error: OAuth2Error) -> Response:
        # oauth2-php answers every token endpoint error with 400 and its own wording.
        if error.error == "unsupported_grant_type":
            error = InvalidRequestError("Invalid grant_type parameter or parameter missing")
        elif error.error == "invalid_client":
            has_id = (request is not None and request.form.get("client_id")) or (
                request is not None
                and (request.headers.get("Authorization") or "").lower().startswith("basic ")
            )
            error = InvalidClientError(
                "The client credentials are invalid"
                if has_id
                else "Client id was not found in the headers or body"
            )
        elif error.error == "invalid_grant" and not error.description:
            error.description = "Invalid refresh token"  # token of another client
        elif error.error == "invalid_scope":
            error.description = "An unsupported scope was requested."
        error.status_code = 400
        return super().handle_error_response(request, error)


class WallabagStandIn(StandIn):
    """A Wallabag server with one user and one API client.

    Args:
        username, password, email: the user (the token endpoint takes the name or e-mail).
        access_lifetime, refresh_lifetime: token lifetimes in seconds.

    Attributes: ``client`` (the API client: ``client.client_id``,
    ``client.client_secret``), ``username``, ``password``.

    Controls: :meth:`add_entry`, :meth:`update_entry`, :meth:`star`, :meth:`archive`,
    :meth:`set_page`, :meth:`add_client`, :meth:`issue_token`, :meth:`expire_tokens`,
    :meth:`expire_refresh_tokens`, :meth:`advance`, :meth:`fail_next`.
    Inspection: :meth:`entries`, :meth:`entry`, :attr:`saved` (what POST
    /api/entries.json answered), :attr:`issued_tokens`, :attr:`refreshed_tokens`,
    :meth:`token_info`, :attr:`requests`, :meth:`count`.
    """

    def __init__(
        self,
        *,
        username: str = "wallabag",
        password: str = "wallabag",
        email: str = "wallabag@example.org",
        access_lifetime: int = ACCESS_LIFETIME,
        refresh_lifetime: int = REFRESH_LIFETIME,
    ) -> None:
        super().__init__()
        self.username = username
        self.password = password
        self.user = _User(1, username, email)
        self.access_lifetime = access_lifetime
        self.refresh_lifetime = refresh_lifetime
        self.clients: dict[str, WallabagClient] = {}
        self.client = self.add_client()
        #: every token the token endpoint issued, in order (as sent)
        self.issued_tokens: list[dict[str, Any]] = []
        #: the subset issued by grant_type=refresh_token
        self.refreshed_tokens: list[dict[str, Any]] = []
        #: what POST /api/entries.json answered, in order (new and existing URLs)
        self.saved: list[dict[str, Any]] = []
        self._tokens: dict[str, WallabagToken] = {}
        self._by_refresh: dict[str, WallabagToken] = {}
        self._entries: dict[int, _Entry] = {}
        self._tag_ids: dict[str, int] = {}
        self._pages: dict[str, tuple[str, str]] = {}
        self._next_entry = 1
        self._protector = TokenProtector(self._tokens.get)
        server = _Server(
            query_client=self.clients.get,
            save_token=self._save_token,
            token_generator=self._generate_token,
        )
        server.standin = self
        server.register_grant(_PasswordGrant)
        server.register_grant(_RefreshGrant)
        self._oauth = server

    # -- test controls -----------------------------------------------------------------
    def add_client(self, name: str = "triggerflow") -> WallabagClient:
        """Another API client (ids look like Wallabag's ``1_...``)."""
        with self.lock:
            number = len(self.clients) + 1
            client = WallabagClient(
                client_id=f"{number}_{secrets.token_hex(25)}",
                client_secret=secrets.token_hex(25),
                name=name,
            )
            self.clients[client.client_id] = client
            return client

    def issue_token(self) -> dict[str, Any]:
        """A token for the user without the token endpoint (for API tests)."""
        with self.lock:
            token = self._generate_token("password", self.client)
            self._store_token(token, self.client.client_id, "password")
            return token

    def expire_tokens(self) -> None:
        """Every access token issued so far has expired (refresh tokens still work)."""
        with self.lock:
            now = self.now()
            for token in self._tokens.values():
                token.expires_at = min(token.expires_at, now)

    def expire_refresh_tokens(self) -> None:
        """Every refresh token issued so far has expired (a new password grant is needed)."""
        with self.lock:
            now = self.now()
            for token in self._tokens.values():
                token.refresh_expires_at = min(token.refresh_expires_at, now)

    def token_info(self, access_token: str) -> WallabagToken | None:
        with self.lock:
            return self._tokens.get(access_token)

    def set_page(self, url: str, title: str, content: str = "") -> None:
        """What fetching ``url`` would give a new entry (title, HTML content)."""
        with self.lock:
            self._pages[url] = (title, content or f"<p>{title}</p>")

    def add_entry(
        self,
        url: str,
        *,
        title: str | None = None,
        content: str | None = None,
        tags: Iterable[str] = (),
        starred: bool = False,
        archived: bool = False,
        created_at: float | None = None,
        updated_at: float | None = None,
        language: str | None = "en",
        preview_picture: str | None = None,
    ) -> dict[str, Any]:
        """An entry saved by the user (e.g. from the browser extension)."""
        with self.lock:
            entry = self._create(url, title=title, content=content, created_at=created_at)
            entry.language = language
            entry.preview_picture = preview_picture
            self._assign_tags(entry, tags)
            if starred:
                entry.is_starred, entry.starred_at = True, entry.created_at
            if archived:
                entry.is_archived, entry.archived_at = True, entry.created_at
            if updated_at is not None:
                entry.updated_at = updated_at
            return self._json(entry)

    def update_entry(
        self,
        entry_id: int,
        *,
        title: str | None = None,
        content: str | None = None,
        tags: Iterable[str] | None = None,
        starred: bool | None = None,
        archived: bool | None = None,
        at: float | None = None,
    ) -> dict[str, Any]:
        """Change an entry as the user would: ``updated_at`` becomes ``at`` (or now)."""
        with self.lock:
            entry = self._entries[entry_id]
            when = self.now() if at is None else at
            if title is not None:
                entry.title = title
            if content is not None:
                entry.content = content
            if tags is not None:
                entry.tags = []
                self._assign_tags(entry, tags)
            if starred is not None:
                self._set_starred(entry, starred, when)
            if archived is not None:
                self._set_archived(entry, archived, when)
            entry.updated_at = when
            return self._json(entry)

    def star(self, entry_id: int, starred: bool = True) -> dict[str, Any]:
        return self.update_entry(entry_id, starred=starred)

    def archive(self, entry_id: int, archived: bool = True) -> dict[str, Any]:
        return self.update_entry(entry_id, archived=archived)

    def entry(self, entry_id: int) -> dict[str, Any]:
        with self.lock:
            return self._json(self._entries[entry_id])

    def entries(self) -> list[dict[str, Any]]:
        """All entries, oldest first."""
        with self.lock:
            return [self._json(e) for e in sorted(self._entries.values(), key=lambda e: e.id)]

    # -- internals: model --------------------------------------------------------------
    def _create(
        self,
        url: str,
        *,
        title: str | None = None,
        content: str | None = None,
        created_at: float | None = None,
    ) -> _Entry:
        when = self.now() if created_at is None else created_at
        fetched = self._pages.get(url)
        not_parsed = False
        if content is None:
            if fetched:
                content = fetched[1]
            else:
                content, not_parsed = FETCH_ERROR, True
        if not title:
            title = fetched[0] if fetched else self._default_title(url)
        entry = _Entry(
            id=self._next_entry,
            url=url,
            title=title,
            content=content,
            tags=[],
            is_starred=False,
            is_archived=False,
            created_at=when,
            updated_at=when,
            is_not_parsed=not_parsed,
            given_url=url,
        )
        self._next_entry += 1
        self._entries[entry.id] = entry
        return entry

    @staticmethod
    def _default_title(url: str) -> str:
        # ContentProxy::setDefaultEntryTitle: the URL's basename, else its host.
        parts = urlsplit(url)
        return parts.path.rstrip("/").rsplit("/", 1)[-1] or parts.hostname or url

    def _assign_tags(self, entry: _Entry, labels: Iterable[str] | str) -> None:
        # TagsAssigner: comma-separated, trimmed, lower-cased, no duplicates.
        if isinstance(labels, str):
            labels = labels.split(",")
        for label in labels:
            label = label.strip().lower()
            if not label:
                continue
            if label not in self._tag_ids:
                self._tag_ids[label] = len(self._tag_ids) + 1
            if label not in entry.tags:
                entry.tags.append(label)

    @staticmethod
    def _set_starred(entry: _Entry, starred: bool, when: float) -> None:
        if starred and not entry.is_starred:
            entry.starred_at = when
        elif not starred:
            entry.starred_at = None
        entry.is_starred = starred

    @staticmethod
    def _set_archived(entry: _Entry, archived: bool, when: float) -> None:
        if archived and not entry.is_archived:
            entry.archived_at = when
        elif not archived:
            entry.archived_at = None
        entry.is_archived = archived

    def _json(self, entry: _Entry, detail: str = "full") -> dict[str, Any]:
        """The Entry as the API serializes it (developer/api/methods.md)."""
        words = len(re.sub(r"<[^>]+>", " ", entry.content).split())
        hashed = hashlib.sha1(entry.url.encode()).hexdigest()
        data: dict[str, Any] = {
            "is_archived": int(entry.is_archived),
            "is_starred": int(entry.is_starred),
            "user_name": self.user.username,
            "user_email": self.user.email,
            "user_id": self.user.id,
            "tags": [
                {"id": self._tag_ids[label], "label": label, "slug": slug(label)}
                for label in entry.tags
            ],
            "is_public": False,
            "id": entry.id,
            "uid": None,
            "title": entry.title,
            "url": entry.url,
            "hashed_url": hashed,
            "origin_url": entry.origin_url,
            "given_url": entry.given_url,
            "hashed_given_url": hashlib.sha1(entry.given_url.encode()).hexdigest(),
            "archived_at": wallabag_time(entry.archived_at) if entry.archived_at else None,
            "content": entry.content,
            "created_at": wallabag_time(entry.created_at),
            "updated_at": wallabag_time(entry.updated_at),
            "published_at": wallabag_time(entry.published_at) if entry.published_at else None,
            "published_by": entry.published_by,
            "starred_at": wallabag_time(entry.starred_at) if entry.starred_at else None,
            "annotations": [],
            "mimetype": "text/html",
            "language": entry.language,
            "reading_time": words // 200,
            "domain_name": urlsplit(entry.url).hostname,
            "preview_picture": entry.preview_picture,
            "http_status": None if entry.is_not_parsed else "200",
            "headers": None,
            "_links": {"self": {"href": f"/api/entries/{entry.id}"}},
        }
        if detail == "metadata":
            del data["content"]
        return data

    # -- internals: OAuth --------------------------------------------------------------
    def _generate_token(
        self,
        grant_type: str,
        client: WallabagClient,
        user: Any = None,
        scope: str | None = None,
        expires_in: int | None = None,
        include_refresh_token: bool = True,
    ) -> dict[str, Any]:
        return {
            "access_token": _oauth_token(),
            "expires_in": self.access_lifetime,
            "token_type": "bearer",
            "scope": None,
            "refresh_token": _oauth_token(),
        }

    def _save_token(self, token: dict[str, Any], request: OAuth2Request) -> None:
        self._store_token(token, request.client.get_client_id(), request.payload.grant_type)

    def _store_token(self, token: dict[str, Any], client_id: str, grant_type: str) -> None:
        now = self.now()
        record = WallabagToken(
            access_token=token["access_token"],
            refresh_token=token.get("refresh_token"),
            client_id=client_id,
            user_id=self.user.id,
            expires_at=now + self.access_lifetime,
            refresh_expires_at=now + self.refresh_lifetime,
            now=self.now,
        )
        self._tokens[record.access_token] = record
        if record.refresh_token:
            self._by_refresh[record.refresh_token] = record
        self.issued_tokens.append(dict(token))
        if grant_type == "refresh_token":
            self.refreshed_tokens.append(dict(token))

    # -- internals: HTTP ---------------------------------------------------------------
    def failure_body(self, status: int) -> tuple[bytes, str]:
        return json.dumps({"code": status, "message": reason(status)}).encode(), "application/json"

    def exception_handlers(self) -> dict[Any, Any]:
        async def not_found(request: Request, exc: Exception) -> Response:
            return _api_error(404, f'No route found for "{request.method} {request.url.path}"')

        async def not_allowed(request: Request, exc: Exception) -> Response:
            return _api_error(405, f'No route found for "{request.method} {request.url.path}"')

        return {404: not_found, 405: not_allowed}

    def _auth(self, req: HttpRequest) -> WallabagToken | Response:
        in_query = [v for k, v in req.query if k == "access_token"]
        in_body = [v for k, v in req.form if k == "access_token"]
        header = req.headers.get("authorization") or ""
        found = len(in_query[:1]) + len(in_body[:1]) + int(header.lower().startswith("bearer "))
        if found > 1:
            return JSONResponse(
                {
                    "error": "invalid_request",
                    "error_description": "Only one method may be used to authenticate at a "
                    "time (Auth header, GET or POST).",
                },
                status_code=400,
            )
        headers: Mapping[str, str] = req.headers
        if in_query or in_body:
            headers = {"Authorization": f"Bearer {(in_query or in_body)[0]}"}
        with self.lock:
            result = self._protector.check(headers)
        if not isinstance(result, TokenState):
            return result
        if result.problem == "missing":
            return JSONResponse(
                {"error": "access_denied", "error_description": "OAuth2 authentication required"},
                status_code=401,
            )
        description = (
            "The access token provided has expired."
            if result.problem == "expired"
            else "The access token provided is invalid."
        )
        return JSONResponse(
            {"error": "invalid_grant", "error_description": description},
            status_code=401,
            headers={
                "WWW-Authenticate": f'Bearer realm="Service", error="invalid_grant", '
                f'error_description="{description}"'
            },
        )

    def routes(self) -> list[BaseRoute]:
        routes: list[BaseRoute] = [
            Route("/oauth/v2/token", self._token, methods=["GET", "POST"]),
        ]
        for suffix in (".json", ""):  # the {_format} routes default to json
            routes += [
                Route(f"/api/entries/exists{suffix}", self._exists, methods=["GET"]),
                Route(f"/api/entries{suffix}", self._list, methods=["GET"]),
                Route(f"/api/entries{suffix}", self._post, methods=["POST"]),
                Route(
                    f"/api/entries/{{entry:int}}{suffix}",
                    self._one,
                    methods=["GET", "PATCH", "DELETE"],
                ),
                Route(f"/api/version{suffix}", self._version, methods=["GET"]),
                Route(f"/api/info{suffix}", self._info, methods=["GET"]),
                Route(f"/api/user{suffix}", self._user, methods=["GET"]),
            ]
        return routes

    async def _token(self, request: Request) -> Response:
        req = await _read_request(request)
        if req.method == "GET":
            req.form = req.query  # oauth2-php: "Input data by default can be either POST or GET"
        with self.lock:
            return self._oauth.create_token_response(req)

    async def _read(self, request: Request) -> tuple[HttpRequest, dict[str, Any]]:
        """The request, and its body parameters with JSON types kept (PHP truthiness)."""
        req = await _read_request(request)
        data: dict[str, Any] = {}
        if request.headers.get("content-type", "").startswith("application/json"):
            try:
                loaded = json.loads(req.body or b"{}")
            except ValueError:
                loaded = {}
            data = loaded if isinstance(loaded, dict) else {}
        else:
            data = dict(req.form)
        return req, data

    async def _post(self, request: Request) -> Response:
        """EntryRestController::postEntriesAction."""
        req, data = await self._read(request)
        token = self._auth(req)
        if isinstance(token, Response):
            return token
        url = data.get("url")
        if not url or not isinstance(url, str):
            return _api_error(400, "This value should not be blank.\n")
        with self.lock:
            entry = next((e for e in self._entries.values() if url in (e.url, e.given_url)), None)
            when = self.now()
            title = data.get("title") or None
            content = data.get("content") or None
            if entry is None:
                entry = self._create(url, title=title, content=content, created_at=when)
            else:
                if title:
                    entry.title = title
                if content:
                    entry.content, entry.is_not_parsed = content, False
                entry.updated_at = when
            starred, archived = php_bool(data.get("starred")), php_bool(data.get("archive"))
            if archived is not None:
                self._set_archived(entry, archived, when)
            if starred is not None:
                self._set_starred(entry, starred, when)
            tags = data.get("tags")
            if tags:
                self._assign_tags(entry, tags if isinstance(tags, list | str) else str(tags))
            if data.get("origin_url"):
                entry.origin_url = str(data["origin_url"])
            if data.get("language"):
                entry.language = str(data["language"])
            if data.get("preview_picture"):
                entry.preview_picture = str(data["preview_picture"])
            body = self._json(entry)
            self.saved.append(copy.deepcopy(body))
        return JSONResponse(body)

    async def _list(self, request: Request) -> Response:
        """EntryRestController::getEntriesAction and EntryRepository::findEntries."""
        req = await _read_request(request)
        token = self._auth(req)
        if isinstance(token, Response):
            return token
        q = {k: v for k, v in reversed(req.query)}  # PHP keeps the last value of a name
        archive, starred = php_bool(q.get("archive")), php_bool(q.get("starred"))
        sort, order = q.get("sort", "created").lower(), q.get("order", "desc").lower()
        detail = q.get("detail", "full").lower()
        tags = q.get("tags", "")
        domain = q.get("domain_name", "")
        page, per_page, since = _int(q, "page", 1), _int(q, "perPage", 30), _int(q, "since", 0)
        if sort not in SORTS:
            return _api_error(400, 'Sort column must be one of "created", "updated", "archived"')
        if order not in ("asc", "desc"):
            return _api_error(400, 'Order must be "asc" or "desc"')
        if detail not in ("full", "metadata"):
            return _api_error(
                400, f'Detail "{detail}" parameter is wrong, allowed: full or metadata'
            )
        if per_page < 1:
            return _api_error(400, "The maximum number of items per page must be positive")
        with self.lock:
            chosen = [
                e
                for e in self._entries.values()
                if (archive is None or e.is_archived == archive)
                and (starred is None or e.is_starred == starred)
                and (since <= 0 or e.updated_at > since)
                and (not domain or urlsplit(e.url).hostname == domain)
                and all(t.strip().lower() in e.tags for t in tags.split(",") if t.strip())
            ]
            key = SORTS[sort]
            chosen.sort(key=lambda e: (getattr(e, key) or 0.0, e.id), reverse=order == "desc")
            total = len(chosen)
            pages = max(1, math.ceil(total / per_page))
            if page < 1 or page > pages:
                return _api_error(
                    404,
                    f'Page "{page}" does not exist. The currentPage must be inferior to "{pages}"',
                )
            items = [self._json(e, detail) for e in chosen[(page - 1) * per_page :][:per_page]]

        route = {
            "archive": None if archive is None else int(archive),
            "starred": None if starred is None else int(starred),
            "sort": sort,
            "order": order,
            "perPage": per_page,
            "tags": tags,
            "since": since,
            "detail": detail,
        }

        def href(number: int) -> dict[str, str]:
            params = {k: v for k, v in route.items() if v is not None}
            params["page"] = number
            return {"href": f"{self.url}/api/entries?{urlencode(params)}"}

        links = {"self": href(page), "first": href(1), "last": href(pages)}
        if page < pages:
            links["next"] = href(page + 1)
        if page > 1:
            links["previous"] = href(page - 1)
        return JSONResponse(
            {
                "page": page,
                "limit": per_page,
                "pages": pages,
                "total": total,
                "_links": links,
                "_embedded": {"items": items},
            }
        )

    async def _exists(self, request: Request) -> Response:
        req = await _read_request(request)
        token = self._auth(req)
        if isinstance(token, Response):
            return token
        return_id = php_bool(req.first("return_id")) or False
        hashed = {
            hashlib.sha1(u.encode()).hexdigest(): u for u in req.all("urls[]") + req.all("url")
        }
        hashes = req.all("hashed_urls[]") + req.all("hashed_url") + list(hashed)
        if not hashes:
            return _api_error(403, "URL is empty?, logged user id: 1")
        with self.lock:
            found: dict[str, int] = {}
            for entry in self._entries.values():
                for value in (entry.url, entry.given_url):
                    found.setdefault(hashlib.sha1(value.encode()).hexdigest(), entry.id)
        results = {h: found.get(h) if return_id else h in found for h in hashes}
        if req.first("url") or req.first("hashed_url"):
            first = hashes[0] if req.first("hashed_url") else next(iter(hashed))
            return JSONResponse({"exists": results[first]})
        return JSONResponse({hashed.get(h, h): v for h, v in results.items()})

    async def _one(self, request: Request) -> Response:
        req, data = await self._read(request)
        token = self._auth(req)
        if isinstance(token, Response):
            return token
        entry_id = request.path_params["entry"]
        with self.lock:
            entry = self._entries.get(entry_id)
            if entry is None:
                return _api_error(404, "Not Found")
            if req.method == "DELETE":
                body = self._json(entry)
                del self._entries[entry_id]
                return JSONResponse(body)
            if req.method == "PATCH":
                when = self.now()
                if data.get("title"):
                    entry.title = str(data["title"])
                if data.get("tags"):
                    entry.tags = []
                    tags = data["tags"]
                    self._assign_tags(entry, tags if isinstance(tags, list | str) else str(tags))
                starred, archived = php_bool(data.get("starred")), php_bool(data.get("archive"))
                if archived is not None:
                    self._set_archived(entry, archived, when)
                if starred is not None:
                    self._set_starred(entry, starred, when)
                entry.updated_at = when
            return JSONResponse(self._json(entry, (req.first("detail") or "full").lower()))

    async def _version(self, request: Request) -> Response:
        return JSONResponse(VERSION)

    async def _info(self, request: Request) -> Response:
        return JSONResponse(
            {"appname": "wallabag", "version": VERSION, "allowed_registration": False}
        )

    async def _user(self, request: Request) -> Response:
        req = await _read_request(request)
        token = self._auth(req)
        if isinstance(token, Response):
            return token
        return JSONResponse(
            {
                "id": self.user.id,
                "username": self.user.username,
                "email": self.user.email,
                "name": self.user.username.capitalize(),
                "created_at": wallabag_time(0),
                "updated_at": wallabag_time(0),
            }
        )


def _int(params: Mapping[str, str], name: str, default: int) -> int:
    # Symfony's getInt(): leading digits, else 0 ("abc" -> 0), default when absent.
    if name not in params:
        return default
    match = re.match(r"\s*[-+]?\d+", params[name])
    return int(match.group(0)) if match else 0


def _api_error(status: int, message: str) -> JSONResponse:
    return JSONResponse({"code": status, "message": message}, status_code=status)
