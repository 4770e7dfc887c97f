"""A Mastodon instance for the tests: apps, OAuth 2 with PKCE, timelines, posting.

Written from docs.joinmastodon.org (mastodon/documentation) and Mastodon's Doorkeeper
configuration (config/initializers/doorkeeper.rb):

* ``POST /api/v1/apps`` — methods/apps#create: a confidential client per instance
  (CredentialApplication: id, name, website, scopes, redirect_uri, redirect_uris,
  client_id, client_secret, client_secret_expires_at).
* ``GET /oauth/authorize``, ``POST /oauth/token``, ``POST /oauth/revoke`` —
  methods/oauth and spec/oauth: authorization code grant, PKCE with ``S256`` only
  (4.3.0+), client credentials; ``scope`` must be a subset of the app's ``scopes``
  (default ``read``); ``redirect_uri`` must be one of the app's ``redirect_uris``.
  Tokens are ``{"access_token", "token_type": "Bearer", "scope", "created_at"}``: Mastodon
  configures Doorkeeper with ``access_token_expires_in nil`` and without
  ``use_refresh_token``, so real tokens never expire and come without refresh token.
  ``refresh_tokens=True`` / ``token_lifetime=`` turn both on (Doorkeeper's options) for
  tests of a client's refresh path. The stand-in's user approves at once (no login page).
* ``GET /.well-known/oauth-authorization-server`` — methods/oauth (4.3.0+).
* ``GET /api/v1/timelines/home``, ``GET /api/v1/timelines/tag/:hashtag`` —
  methods/timelines: newest first, ``max_id``/``since_id``/``min_id``/``limit`` (20, max
  40), ``Link`` header with ``rel="next"`` (only when the page is full) and
  ``rel="prev"``. The hashtag timeline is public.
* ``GET /api/v1/notifications`` — methods/notifications: ``types[]``,
  ``exclude_types[]``, limit 40 (max 80), Link header.
* ``GET /api/v1/favourites`` — methods/favourites: paged ONLY through the ``Link``
  header, whose ``max_id``/``min_id`` are favourite ids (internal, never shown in the
  body): passing a status id there does not page.
* ``POST /api/v1/statuses`` — methods/statuses#create: ``status``, ``visibility``,
  ``spoiler_text``, ``in_reply_to_id``, ``sensitive``, ``language``; the
  ``Idempotency-Key`` header returns the status already posted with that key (kept one
  hour) instead of posting twice; 422 ``Validation failed: Text can't be blank`` and
  ``Text character limit of N exceeded`` (URLs count 23 characters).
* ``GET /api/v2/instance`` — methods/instance#v2, ``configuration.statuses``.
* ``GET /api/v1/accounts/verify_credentials`` — methods/accounts.
* Errors are ``{"error": "..."}`` (entities/Error): 401 ``The access token is invalid``
  (expired: ``The access token expired``, revoked: ``The access token was revoked``, with
  ``WWW-Authenticate``), 403 ``This action is outside the authorized scopes``, 404
  ``Record not found``, 422 for validation.
* Rate limits — api/rate-limits: 300 requests per 5 minutes on ``/api/*``, headers
  ``X-RateLimit-Limit``, ``X-RateLimit-Remaining``, ``X-RateLimit-Reset`` (ISO 8601);
  beyond: 429 ``{"error": "Too many requests"}`` (config/initializers/rack_attack.rb).
"""

from __future__ import annotations

import copy
import html
import re
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any
from urllib.parse import quote, urlencode

import regex
from authlib.common.security import generate_token
from authlib.oauth2.rfc6749 import (
    AuthorizationCodeGrant,
    AuthorizationCodeMixin,
    ClientCredentialsGrant,
    ClientMixin,
    InvalidRequestError,
    OAuth2Error,
    OAuth2Request,
    RefreshTokenGrant,
    TokenMixin,
    UnauthorizedClientError,
    list_to_scope,
    scope_to_list,
)
from authlib.oauth2.rfc7009 import RevocationEndpoint
from authlib.oauth2.rfc7636 import CodeChallenge
from starlette.requests import Request
from starlette.responses import HTMLResponse, JSONResponse, RedirectResponse, Response
from starlette.routing import BaseRoute, Route

from ._oauth import (
    ConfidentialClient,
    HttpRequest,
    StarletteAuthorizationServer,
    TokenProtector,
    TokenState,
    read_request,
)
from ._server import Gate, RecordedRequest, StandIn, reason

__all__ = ["MastodonApp", "MastodonStandIn", "MastodonToken", "OOB"]

VAPID_KEY = (
    "BCk-QqERU0q-CfYZjcuB6lnyyOYfJ2AifKqfeGIm7Z-HiTU5T9eTG5GxVA0_OH5mMlI4UkkDTpaZwozy0TzdZ2M="
)
OOB = "urn:ietf:wg:oauth:2.0:oob"  # "show me the code" redirect URI (methods/oauth)

# Doorkeeper's default_scopes + optional_scopes in Mastodon, plus 4.4's "profile".
SCOPES = (
    "read write follow push profile crypto "
    "read:accounts read:blocks read:bookmarks read:favourites read:filters read:follows "
    "read:lists read:mutes read:notifications read:search read:statuses "
    "write:accounts write:blocks write:bookmarks write:conversations write:favourites "
    "write:filters write:follows write:lists write:media write:mutes write:notifications "
    "write:reports write:statuses "
    "admin:read admin:read:accounts admin:read:reports admin:read:domain_allows "
    "admin:read:domain_blocks admin:read:ip_blocks admin:read:email_domain_blocks "
    "admin:read:canonical_email_blocks admin:write admin:write:accounts "
    "admin:write:reports admin:write:domain_allows admin:write:domain_blocks "
    "admin:write:ip_blocks admin:write:email_domain_blocks "
    "admin:write:canonical_email_blocks"
).split()

# Doorkeeper's English error descriptions (doorkeeper's config/locales/en.yml); Authlib's
# own wording is kept for invalid_request, whose reasons are more specific.
DOORKEEPER_ERRORS = {
    "invalid_client": (
        "Client authentication failed due to unknown client, no client authentication "
        "included, or unsupported authentication method."
    ),
    "invalid_grant": (
        "The provided authorization grant is invalid, expired, revoked, does not match the "
        "redirection URI used in the authorization request, or was issued to another client."
    ),
    "invalid_scope": "The requested scope is invalid, unknown, or malformed.",
    "unauthorized_client": (
        "The client is not authorized to perform this request using this method."
    ),
    "access_denied": "The resource owner or authorization server denied the request.",
    "unsupported_grant_type": (
        "The authorization grant type is not supported by the authorization server."
    ),
    "unsupported_response_type": "The authorization server does not support this response type.",
}

TOKEN_MESSAGES = {  # Doorkeeper's invalid_token descriptions, as Mastodon renders them
    "missing": "The access token is invalid",
    "invalid": "The access token is invalid",
    "expired": "The access token expired",
    "revoked": "The access token was revoked",
}

URL_RE = re.compile(r"https?://[^\s<>\"]+")
HASHTAG_RE = re.compile(r"(?<![\w/])#(\w+)")
IDEMPOTENCY_TTL = 3600  # methods/statuses: "Idempotency keys are stored for up to 1 hour"
CODE_TTL = 600  # Doorkeeper's authorization_code_expires_in default (10 minutes)


def iso(ts: float) -> str:
    """Mastodon's datetime format (api/datetime-format): ``2019-11-26T23:24:13.113Z``."""
    return datetime.fromtimestamp(ts, UTC).strftime("%Y-%m-%dT%H:%M:%S.%f")[:-3] + "Z"


@dataclass
class MastodonApp(ConfidentialClient):
    """An app registered with ``POST /api/v1/apps`` (Authlib's ClientMixin)."""

    id: str
    name: str
    website: str | None
    client_id: str
    client_secret: str
    redirect_uris: list[str]
    scopes: list[str]
    refresh_tokens: bool = False

    def get_default_redirect_uri(self) -> str | None:
        return self.redirect_uris[0] if len(self.redirect_uris) == 1 else None

    def get_allowed_scope(self, scope: str | None) -> str | None:
        # Doorkeeper's enforce_configured_scopes: every requested scope must be one the
        # app registered (a literal subset: "read" does not allow asking "read:statuses").
        requested = scope_to_list(scope) or ["read"]
        if not set(requested) <= set(self.scopes):
            return None
        return list_to_scope(requested)

    def check_response_type(self, response_type: str) -> bool:
        return response_type == "code"

    def check_grant_type(self, grant_type: str) -> bool:
        if grant_type == "refresh_token":
            return self.refresh_tokens
        return grant_type in ("authorization_code", "client_credentials")

    def entity(self) -> dict[str, Any]:
        """The CredentialApplication entity (entities/Application)."""
        return {
            "id": self.id,
            "name": self.name,
            "website": self.website,
            "scopes": list(self.scopes),
            "redirect_uri": "\n".join(self.redirect_uris),
            "redirect_uris": list(self.redirect_uris),
            "vapid_key": VAPID_KEY,  # deprecated since 4.3, still sent
            "client_id": self.client_id,
            "client_secret": self.client_secret,
            "client_secret_expires_at": 0,
        }


@dataclass
class AuthCode(AuthorizationCodeMixin):
    code: str
    client_id: str
    redirect_uri: str
    scope: str
    user_id: str
    code_challenge: str | None
    code_challenge_method: str | None
    issued_at: float

    def get_redirect_uri(self) -> str:
        return self.redirect_uri

    def get_scope(self) -> str:
        return self.scope


@dataclass
class MastodonToken(TokenMixin):
    """An issued token (Authlib's TokenMixin); ``user_id`` None for app tokens."""

    access_token: str
    client_id: str
    scope: str
    user_id: str | None
    created_at: float
    expires_in: int | None = None
    refresh_token: str | None = None
    revoked: bool = False
    expired: bool = False  # forced by MastodonStandIn.expire_tokens()
    now: Any = field(default=None, repr=False, compare=False)  # the stand-in's clock

    def check_client(self, client: ClientMixin) -> bool:
        return self.client_id == client.get_client_id()

    def get_scope(self) -> str:
        return self.scope

    def get_expires_in(self) -> int:
        return self.expires_in or 0

    def is_expired(self) -> bool:
        if self.expired:
            return True
        return bool(self.expires_in) and self.now() >= self.created_at + (self.expires_in or 0)

    def is_revoked(self) -> bool:
        return self.revoked

    def get_user(self) -> str | None:
        return self.user_id

    def get_client(self) -> Any:
        return None


@dataclass
class _User:
    id: str


class _CodeGrant(AuthorizationCodeGrant):
    TOKEN_ENDPOINT_AUTH_METHODS = ["client_secret_basic", "client_secret_post"]
    AUTHORIZATION_CODE_LENGTH = 43  # Doorkeeper's codes: 43 url-safe characters

    @property
    def standin(self) -> MastodonStandIn:
        return self.server.standin

    def save_authorization_code(self, code: str, request: OAuth2Request) -> None:
        data = request.payload.data
        self.standin._codes[code] = AuthCode(
            code=code,
            client_id=request.client.get_client_id(),
            redirect_uri=request.payload.redirect_uri or "",
            scope=request.scope,
            user_id=request.user.id,
            code_challenge=data.get("code_challenge"),
            code_challenge_method=data.get("code_challenge_method"),
            issued_at=self.standin.now(),
        )

    def query_authorization_code(self, code: str, client: ClientMixin) -> AuthCode | None:
        item = self.standin._codes.get(code)
        if item is None or item.client_id != client.get_client_id():
            return None
        if self.standin.now() - item.issued_at > CODE_TTL:
            return None
        return item

    def delete_authorization_code(self, authorization_code: AuthCode) -> None:
        self.standin._codes.pop(authorization_code.code, None)

    def authenticate_user(self, authorization_code: AuthCode) -> _User:
        return _User(authorization_code.user_id)


class _ClientCredentialsGrant(ClientCredentialsGrant):
    TOKEN_ENDPOINT_AUTH_METHODS = ["client_secret_basic", "client_secret_post"]


class _RefreshGrant(RefreshTokenGrant):
    TOKEN_ENDPOINT_AUTH_METHODS = ["client_secret_basic", "client_secret_post"]
    INCLUDE_NEW_REFRESH_TOKEN = True  # Doorkeeper issues a new refresh token each time

    def authenticate_refresh_token(self, refresh_token: str) -> MastodonToken | None:
        token = self.server.standin._by_refresh.get(refresh_token)
        return None if token is None or token.revoked else token

    def authenticate_user(self, refresh_token: MastodonToken) -> _User | None:
        return _User(refresh_token.user_id) if refresh_token.user_id else None

    def revoke_old_credential(self, refresh_token: MastodonToken) -> None:
        refresh_token.revoked = True  # the old access token stops working too


class _MastodonPKCE(CodeChallenge):
    """RFC 7636 with Mastodon's rule: ``S256`` only (methods/oauth#authorize).

    ``require_challenge`` also refuses an authorization request without
    ``code_challenge`` (Authlib's ``required=True`` only checks public clients at the token
    endpoint, and Mastodon's clients are all confidential).
    """

    SUPPORTED_CODE_CHALLENGE_METHOD = ["S256"]

    def __init__(self, require_challenge: bool) -> None:
        super().__init__(required=True)
        self.require_challenge = require_challenge

    def validate_code_challenge(self, grant: Any, redirect_uri: str) -> None:
        data = grant.request.payload.data
        challenge = data.get("code_challenge")
        if self.require_challenge and not challenge:
            raise InvalidRequestError("Missing 'code_challenge'")
        if challenge and not data.get("code_challenge_method"):
            # RFC 7636 §4.3: no method means "plain", which Mastodon does not support.
            raise InvalidRequestError("Unsupported 'code_challenge_method'")
        super().validate_code_challenge(grant, redirect_uri)


class _Revocation(RevocationEndpoint):
    CLIENT_AUTH_METHODS = ["client_secret_basic", "client_secret_post"]

    def authenticate_token(self, request: OAuth2Request, client: ClientMixin) -> Any:
        self.check_params(request, client)
        token = self.query_token(request.form["token"], request.form.get("token_type_hint"))
        if token and not token.check_client(client):
            # methods/oauth#revoke: someone else's token is a 403 unauthorized_client.
            raise UnauthorizedClientError(
                "You are not authorized to revoke this token", status_code=403
            )
        return token

    def query_token(self, token_string: str, token_type_hint: str | None) -> Any:
        standin = self.server.standin
        return standin._tokens.get(token_string) or standin._by_refresh.get(token_string)

    def revoke_token(self, token: MastodonToken, request: OAuth2Request) -> None:
        token.revoked = True


class _Server(StarletteAuthorizationServer):
    standin: MastodonStandIn

    def handle_error_response(self, request: Any, error: OAuth2Error) -> Response:
        if error.error in DOORKEEPER_ERRORS:
            error.description = DOORKEEPER_ERRORS[error.error]
        return super().handle_error_response(request, error)


class MastodonStandIn(StandIn):
    """A Mastodon instance with one user, ``@tester``, who approves every app at once.

    Args:
        max_characters: ``configuration.statuses.max_characters`` (and the limit enforced).
        rate_limit, rate_period: requests allowed on ``/api/*`` per period (seconds).
        refresh_tokens: issue refresh tokens and accept the refresh_token grant (real
            Mastodon: no).
        token_lifetime: seconds an access token lives (real Mastodon: None, forever).
        require_pkce: refuse authorization requests without ``code_challenge`` (real
            Mastodon accepts them; triggerflow always sends one).
        username: the user's name.

    Controls: :meth:`add_status`, :meth:`add_mention`, :meth:`add_notification`,
    :meth:`favourite`, :meth:`unfavourite`, :meth:`register_app`, :meth:`issue_token`,
    :meth:`expire_tokens`, :meth:`revoke_tokens`, :meth:`set_remaining`,
    :meth:`advance`, :meth:`fail_next`; ``approve = False`` makes the user deny.
    Inspection: :attr:`posted` (statuses created through the API), :attr:`apps`,
    :attr:`issued_tokens`, :meth:`token_info`, :attr:`requests`, :meth:`count`.
    """

    def __init__(
        self,
        *,
        max_characters: int = 500,
        rate_limit: int = 300,
        rate_period: float = 300.0,
        refresh_tokens: bool = False,
        token_lifetime: int | None = None,
        require_pkce: bool = True,
        username: str = "tester",
    ) -> None:
        super().__init__()
        self.max_characters = max_characters
        self.characters_reserved_per_url = 23
        self.rate_limit = rate_limit
        self.rate_period = rate_period
        self.refresh_tokens = refresh_tokens
        self.token_lifetime = token_lifetime
        self.approve = True
        #: apps by client_id
        self.apps: dict[str, MastodonApp] = {}
        #: every token response the token endpoint gave (and issue_token made), in order
        self.issued_tokens: list[dict[str, Any]] = []
        #: statuses created with POST /api/v1/statuses (entities), oldest first
        self.posted: list[dict[str, Any]] = []
        self._tokens: dict[str, MastodonToken] = {}
        self._by_refresh: dict[str, MastodonToken] = {}
        self._codes: dict[str, AuthCode] = {}
        self._accounts: dict[str, dict[str, Any]] = {}
        self._statuses: dict[str, dict[str, Any]] = {}
        self._home: list[str] = []
        self._tags: dict[str, list[str]] = {}
        self._notifications: list[dict[str, Any]] = []
        self._favourites: list[tuple[int, str]] = []  # (favourite id, status id)
        self._idempotency: dict[str, tuple[str, float]] = {}  # key -> (status id, when)
        self._last_snowflake = 0
        self._next_account = 1
        self._next_app = 1
        self._next_favourite = 4000  # favourite ids: their own sequence, unlike status ids
        self._next_notification = 70000
        self._rl_remaining = rate_limit
        self._rl_reset = 0.0
        self.account = self._account(username)
        self.user = _User(self.account["id"])
        self._protector = TokenProtector(self._tokens.get)
        self._oauth = self._make_server(require_pkce)

    def _make_server(self, require_pkce: bool) -> _Server:
        server = _Server(
            query_client=self.apps.get,
            save_token=self._save_token,
            token_generator=self._generate_token,
            scopes_supported=SCOPES,
        )
        server.standin = self
        server.register_grant(_CodeGrant, [_MastodonPKCE(require_pkce)])
        server.register_grant(_ClientCredentialsGrant)
        server.register_grant(_RefreshGrant)
        server.register_endpoint(_Revocation)
        return server

    # -- test controls: OAuth --------------------------------------------------------------
    def register_app(
        self,
        name: str = "triggerflow",
        redirect_uris: Sequence[str] = (OOB,),
        scopes: str = "read",
        website: str | None = None,
    ) -> MastodonApp:
        """Register an app as ``POST /api/v1/apps`` would."""
        with self.lock:
            app = MastodonApp(
                id=str(self._next_app),
                name=name,
                website=website,
                client_id=generate_token(43),
                client_secret=generate_token(43),
                redirect_uris=list(redirect_uris),
                scopes=scope_to_list(scopes) or ["read"],
                refresh_tokens=self.refresh_tokens,
            )
            self._next_app += 1
            self.apps[app.client_id] = app
            return app

    def issue_token(self, app: MastodonApp | None = None, scope: str = "read write") -> str:
        """A user token made without the OAuth dance (for tests of the API calls)."""
        with self.lock:
            app = app or self.register_app(scopes=scope)
            token = self._generate_token("authorization_code", app, self.user, scope)
            self._store_token(token, app.client_id, self.user.id)
            return token["access_token"]

    def expire_tokens(self) -> None:
        """Every token issued so far expires now (401 ``The access token expired``)."""
        with self.lock:
            for token in self._tokens.values():
                token.expired = True

    def revoke_tokens(self) -> None:
        """Every token issued so far is revoked (401 ``The access token was revoked``)."""
        with self.lock:
            for token in self._tokens.values():
                token.revoked = True

    def token_info(self, access_token: str) -> MastodonToken | None:
        """The stand-in's record of ``access_token`` (scope, revoked, expired...)."""
        with self.lock:
            return self._tokens.get(access_token)

    # -- test controls: rate limit --------------------------------------------------------
    def set_remaining(self, n: int) -> None:
        """Only ``n`` more ``/api/*`` requests in the current window, then 429."""
        with self.lock:
            self._roll_window()
            self._rl_remaining = n

    @property
    def rate_limit_reset(self) -> float:
        """When the current rate-limit window ends (the stand-in's clock)."""
        with self.lock:
            self._roll_window()
            return self._rl_reset

    # -- test controls: content ------------------------------------------------------------
    def add_status(
        self,
        text: str,
        *,
        author: str = "alice",
        tags: Iterable[str] = (),
        home: bool = True,
        visibility: str = "public",
        spoiler_text: str = "",
        sensitive: bool = False,
        language: str | None = "en",
        in_reply_to_id: str | None = None,
        mentions: Iterable[str] = (),
        created_at: float | None = None,
    ) -> dict[str, Any]:
        """A status by ``author``: in the home timeline if ``home``, and (if public) in the
        timeline of each of its hashtags (``tags`` and ``#words`` in ``text``)."""
        with self.lock:
            status = self._new_status(
                text,
                account=self._account(author),
                tags=tags,
                visibility=visibility,
                spoiler_text=spoiler_text,
                sensitive=sensitive,
                language=language,
                in_reply_to_id=in_reply_to_id,
                mentions=[self._account(m) for m in mentions],
                created_at=created_at,
            )
            if home:
                self._home.append(status["id"])
            return copy.deepcopy(status)

    def add_mention(
        self, text: str, *, author: str = "bob", visibility: str = "public"
    ) -> dict[str, Any]:
        """A status by ``author`` mentioning the user, and its ``mention`` notification."""
        with self.lock:
            mention = f"@{self.account['username']}"
            if mention not in text:
                text = f"{mention} {text}"
            status = self._new_status(
                text,
                account=self._account(author),
                visibility=visibility,
                mentions=[self.account],
            )
            return self._notify("mention", status["account"], status)

    def add_notification(
        self, type: str, *, author: str = "carol", status_id: str | None = None
    ) -> dict[str, Any]:
        """A notification of ``type`` (``favourite``, ``follow``, ``reblog``...)."""
        with self.lock:
            status = self._statuses[status_id] if status_id else None
            return self._notify(type, self._account(author), status)

    def favourite(self, status_id: str) -> int:
        """The user favourites a status (made with :meth:`add_status`); the favourite's
        internal id, which only the Link header of ``/api/v1/favourites`` carries."""
        with self.lock:
            status = self._statuses[status_id]
            for fav_id, sid in self._favourites:
                if sid == status_id:
                    return fav_id
            self._next_favourite += 1
            self._favourites.append((self._next_favourite, status_id))
            status["favourited"] = True
            status["favourites_count"] += 1
            return self._next_favourite

    def unfavourite(self, status_id: str) -> None:
        with self.lock:
            before = len(self._favourites)
            self._favourites = [(f, s) for f, s in self._favourites if s != status_id]
            if len(self._favourites) != before:
                status = self._statuses[status_id]
                status["favourited"] = False
                status["favourites_count"] -= 1

    def status(self, status_id: str) -> dict[str, Any]:
        """The current entity of a status."""
        with self.lock:
            return copy.deepcopy(self._statuses[status_id])

    # -- internals: model ------------------------------------------------------------------
    def _snowflake(self, ts: float) -> str:
        # Mastodon's ids: milliseconds since the epoch << 16, plus a sequence; increasing.
        value = max(int(ts * 1000) << 16, self._last_snowflake + 1)
        self._last_snowflake = value
        return str(value)

    def _account(self, name: str) -> dict[str, Any]:
        if name in self._accounts:
            return self._accounts[name]
        username, _, domain = name.partition("@")
        account_id = str(self._next_account)
        self._next_account += 1
        local = not domain
        base = self.url if local else f"https://{domain}"
        url = f"{base}/@{username}"
        created = iso(self.now())
        account = {
            "id": account_id,
            "username": username,
            "acct": username if local else f"{username}@{domain}",
            "display_name": username.capitalize(),
            "locked": False,
            "bot": False,
            "discoverable": True,
            "indexable": False,
            "group": False,
            "created_at": created[:11] + "00:00:00.000Z",
            "note": "",
            "url": url,
            "uri": f"{base}/users/{username}",
            "avatar": f"{self.url}/avatars/original/missing.png",
            "avatar_static": f"{self.url}/avatars/original/missing.png",
            "header": f"{self.url}/headers/original/missing.png",
            "header_static": f"{self.url}/headers/original/missing.png",
            "followers_count": 0,
            "following_count": 0,
            "statuses_count": 0,
            "last_status_at": None,
            "hide_collections": False,
            "emojis": [],
            "fields": [],
        }
        self._accounts[name] = account
        return account

    def _html(self, text: str) -> str:
        """Plain text as Mastodon renders it: escaped, paragraphs, links, hashtags."""
        paragraphs = []
        for block in re.split(r"\n{2,}", text.strip()):
            escaped = html.escape(block, quote=False)
            escaped = URL_RE.sub(
                lambda m: (
                    f'<a href="{m.group(0)}" target="_blank" rel="nofollow noopener" '
                    f'translate="no">{m.group(0)}</a>'
                ),
                escaped,
            )
            escaped = HASHTAG_RE.sub(
                lambda m: (
                    f'<a href="{self.url}/tags/{m.group(1).lower()}" class="mention hashtag" '
                    f'rel="tag">#<span>{m.group(1)}</span></a>'
                ),
                escaped,
            )
            paragraphs.append("<p>" + escaped.replace("\n", "<br />") + "</p>")
        return "".join(paragraphs)

    def _new_status(
        self,
        text: str,
        *,
        account: dict[str, Any],
        tags: Iterable[str] = (),
        visibility: str = "public",
        spoiler_text: str = "",
        sensitive: bool = False,
        language: str | None = "en",
        in_reply_to_id: str | None = None,
        mentions: Sequence[dict[str, Any]] = (),
        created_at: float | None = None,
        application: dict[str, Any] | None = None,
    ) -> dict[str, Any]:
        when = self.now() if created_at is None else created_at
        sid = self._snowflake(when)
        names: list[str] = []
        for tag in [*tags, *HASHTAG_RE.findall(text)]:
            tag = tag.lstrip("#").lower()
            if tag not in names:
                names.append(tag)
        reply_to = self._statuses.get(in_reply_to_id) if in_reply_to_id else None
        status = {
            "id": sid,
            "created_at": iso(when),
            "in_reply_to_id": reply_to["id"] if reply_to else None,
            "in_reply_to_account_id": reply_to["account"]["id"] if reply_to else None,
            "sensitive": sensitive or bool(spoiler_text),
            "spoiler_text": spoiler_text,
            "visibility": visibility,
            "language": language,
            "uri": f"{account['uri']}/statuses/{sid}",
            "url": f"{account['url']}/{sid}",
            "replies_count": 0,
            "reblogs_count": 0,
            "favourites_count": 0,
            "quotes_count": 0,
            "edited_at": None,
            "favourited": False,
            "reblogged": False,
            "muted": False,
            "bookmarked": False,
            "pinned": False,
            "content": self._html(text),
            "filtered": [],
            "reblog": None,
            "application": application,
            "account": copy.deepcopy(account),
            "media_attachments": [],
            "mentions": [
                {"id": m["id"], "username": m["username"], "url": m["url"], "acct": m["acct"]}
                for m in mentions
            ],
            "tags": [{"name": n, "url": f"{self.url}/tags/{n}"} for n in names],
            "emojis": [],
            "card": None,
            "poll": None,
            "quote": None,
            "text": None,  # only filled in by DELETE and the source endpoint
        }
        if reply_to:
            reply_to["replies_count"] += 1
        self._statuses[sid] = status
        account["statuses_count"] += 1
        account["last_status_at"] = iso(when)[:10]
        if visibility == "public":
            for name in names:
                self._tags.setdefault(name, []).append(sid)
        return status

    def _notify(
        self, type: str, account: dict[str, Any], status: dict[str, Any] | None
    ) -> dict[str, Any]:
        self._next_notification += 1
        nid = str(self._next_notification)
        notification = {
            "id": nid,
            "type": type,
            "created_at": iso(self.now()),
            "group_key": f"ungrouped-{nid}",
            "account": copy.deepcopy(account),
            "status": copy.deepcopy(status) if status else None,
        }
        self._notifications.append(notification)
        return copy.deepcopy(notification)

    # -- internals: OAuth ------------------------------------------------------------------
    def _generate_token(
        self,
        grant_type: str,
        client: MastodonApp,
        user: Any = None,
        scope: str | None = None,
        expires_in: int | None = None,
        include_refresh_token: bool = True,
    ) -> dict[str, Any]:
        token: dict[str, Any] = {
            "access_token": generate_token(43),
            "token_type": "Bearer",
            "scope": scope or "read",
            "created_at": int(self.now()),
        }
        if self.token_lifetime:
            token["expires_in"] = self.token_lifetime
        if include_refresh_token and self.refresh_tokens and user is not None:
            token["refresh_token"] = generate_token(43)
        return token

    def _save_token(self, token: dict[str, Any], request: OAuth2Request) -> None:
        user = request.user
        self._store_token(token, request.client.get_client_id(), user.id if user else None)

    def _store_token(self, token: dict[str, Any], client_id: str, user_id: str | None) -> None:
        record = MastodonToken(
            access_token=token["access_token"],
            client_id=client_id,
            scope=token["scope"],
            user_id=user_id,
            created_at=float(token["created_at"]),
            expires_in=token.get("expires_in"),
            refresh_token=token.get("refresh_token"),
            now=self.now,
        )
        self._tokens[record.access_token] = record
        if record.refresh_token:
            self._by_refresh[record.refresh_token] = record
        self.issued_tokens.append(dict(token))

    # -- internals: HTTP -------------------------------------------------------------------
    def exception_handlers(self) -> dict[Any, Any]:
        async def not_found(request: Request, exc: Exception) -> Response:
            if request.url.path.startswith("/api/"):
                return _error(404, "Record not found")
            return HTMLResponse("<h1>The page you are looking for isn't here.</h1>", 404)

        return {404: not_found}

    def failure_body(self, status: int) -> tuple[bytes, str]:
        if status == 429:
            return b'{"error":"Too many requests"}', "application/json; charset=utf-8"
        # nginx's error pages in front of Mastodon (its own 5xx are HTML too)
        page = f"<html><head><title>{status} {reason(status)}</title></head></html>"
        return page.encode(), "text/html"

    def _roll_window(self) -> None:
        now = self.now()
        if now >= self._rl_reset:
            # Rack::Attack's windows are aligned on multiples of the period.
            self._rl_reset = (now // self.rate_period + 1) * self.rate_period
            self._rl_remaining = self.rate_limit

    def gate(self, request: RecordedRequest) -> Gate:
        if not request.path.startswith("/api/"):
            return Gate()
        with self.lock:
            self._roll_window()
            reset = datetime.fromtimestamp(self._rl_reset, UTC)
            headers = {
                "X-RateLimit-Limit": str(self.rate_limit),
                "X-RateLimit-Remaining": str(max(self._rl_remaining - 1, 0)),
                "X-RateLimit-Reset": reset.isoformat(timespec="microseconds").replace(
                    "+00:00", "Z"
                ),
            }
            if self._rl_remaining <= 0:
                headers["X-RateLimit-Remaining"] = "0"
                return Gate(_error(429, "Too many requests"), headers)
            self._rl_remaining -= 1
            return Gate(headers=headers)

    def _auth(
        self, req: HttpRequest, scopes: Sequence[str], *, user: bool = True
    ) -> MastodonToken | Response:
        """The request's token if it may call an endpoint needing one of ``scopes``."""
        with self.lock:
            result = self._protector.check(req.headers, scopes)
        if isinstance(result, TokenState):
            if result.problem == "scope":
                return _error(403, "This action is outside the authorized scopes")
            message = TOKEN_MESSAGES.get(result.problem, TOKEN_MESSAGES["invalid"])
            response = _error(401, message)
            response.headers["WWW-Authenticate"] = (
                f'Bearer realm="Doorkeeper", error="invalid_token", error_description="{message}"'
            )
            return response
        if user and result.user_id is None:
            return _error(422, "This method requires an authenticated user")
        return result

    def routes(self) -> list[BaseRoute]:
        return [
            Route("/api/v1/apps", self._create_app, methods=["POST"]),
            Route("/oauth/authorize", self._authorize, methods=["GET"]),
            Route("/oauth/authorize/native", self._native, methods=["GET"]),
            Route("/oauth/token", self._token, methods=["POST"]),
            Route("/oauth/revoke", self._revoke, methods=["POST"]),
            Route("/.well-known/oauth-authorization-server", self._metadata, methods=["GET"]),
            Route("/api/v1/accounts/verify_credentials", self._verify, methods=["GET"]),
            Route("/api/v2/instance", self._instance, methods=["GET"]),
            Route("/api/v1/timelines/home", self._home_timeline, methods=["GET"]),
            Route("/api/v1/timelines/tag/{hashtag}", self._tag_timeline, methods=["GET"]),
            Route("/api/v1/notifications", self._notifications_list, methods=["GET"]),
            Route("/api/v1/favourites", self._favourites_list, methods=["GET"]),
            Route("/api/v1/statuses", self._post_status, methods=["POST"]),
            Route("/api/v1/statuses/{id}", self._get_status, methods=["GET"]),
            Route("/api/v1/statuses/{id}/favourite", self._favourite, methods=["POST"]),
        ]

    async def _create_app(self, request: Request) -> Response:
        """methods/apps#create (form or JSON body; redirect_uris a string or an array)."""
        req = await read_request(request)
        params = req.params()
        name = (params.get("client_name") or "").strip()
        uris: list[str] = []
        for value in [*req.all("redirect_uris"), *req.all("redirect_uris[]")]:
            uris.extend(u for u in re.split(r"\s+", value) if u)
        scopes = scope_to_list(params.get("scopes") or "read") or ["read"]
        if not name:
            return _error(422, "Validation failed: Application name can't be blank")
        if not uris:
            return _error(422, "Validation failed: Redirect URI can't be blank")
        for uri in uris:
            if uri != OOB and not re.match(r"^[a-zA-Z][a-zA-Z0-9+.-]*://\S+$", uri):
                return _error(422, "Validation failed: Redirect URI must be an absolute URI.")
        if not set(scopes) <= set(SCOPES):
            return _error(422, "Validation failed: Scopes must be a valid scope")
        app = self.register_app(name, uris, " ".join(scopes), params.get("website") or None)
        return JSONResponse(app.entity())

    async def _authorize(self, request: Request) -> Response:
        """methods/oauth#authorize, approved at once by the stand-in's user."""
        req = await read_request(request)
        server = self._oauth
        with self.lock:
            try:
                grant = server.get_consent_grant(req, end_user=self.user)
            except OAuth2Error as error:
                if error.redirect_uri:
                    return server.handle_error_response(None, error)
                # Doorkeeper renders an error page instead of redirecting when it cannot
                # trust the redirect URI (unknown client, unregistered redirect_uri).
                text = html.escape(error.description or error.error or "")
                return HTMLResponse(
                    f"<h2>An error has occurred</h2><p>{html.escape(error.error or '')}: "
                    f"{text}</p>",
                    status_code=400,
                )
            user = self.user if self.approve else None
            response = server.create_authorization_response(
                grant.request, grant_user=user, grant=grant
            )
        location = response.headers.get("location", "")
        if location.startswith(OOB):
            # The out-of-band URI: Doorkeeper shows the code on its "native" page.
            native = location.replace(OOB, f"{self.url}/oauth/authorize/native", 1)
            return RedirectResponse(native, status_code=302)
        return response

    async def _native(self, request: Request) -> Response:
        code = html.escape(request.query_params.get("code", ""))
        return HTMLResponse(
            "<h2>Copy this authorization code and paste it to the application.</h2>"
            f'<input class="oauth-code" readonly type="text" value="{code}">'
        )

    async def _token(self, request: Request) -> Response:
        req = await read_request(request)
        with self.lock:
            return self._oauth.create_token_response(req)

    async def _revoke(self, request: Request) -> Response:
        req = await read_request(request)
        with self.lock:
            response = self._oauth.create_endpoint_response("revocation", req)
        assert response is not None
        return response

    async def _metadata(self, request: Request) -> Response:
        base = self.url
        return JSONResponse(
            {
                "issuer": f"{base}/",
                "service_documentation": "https://docs.joinmastodon.org/",
                "authorization_endpoint": f"{base}/oauth/authorize",
                "token_endpoint": f"{base}/oauth/token",
                "app_registration_endpoint": f"{base}/api/v1/apps",
                "revocation_endpoint": f"{base}/oauth/revoke",
                "scopes_supported": SCOPES,
                "response_types_supported": ["code"],
                "response_modes_supported": ["query", "fragment", "form_post"],
                "code_challenge_methods_supported": ["S256"],
                "grant_types_supported": ["authorization_code", "client_credentials"]
                + (["refresh_token"] if self.refresh_tokens else []),
                "token_endpoint_auth_methods_supported": [
                    "client_secret_basic",
                    "client_secret_post",
                ],
            }
        )

    async def _verify(self, request: Request) -> Response:
        req = await read_request(request)
        token = self._auth(req, ["read", "read:accounts", "profile"])
        if isinstance(token, Response):
            return token
        with self.lock:
            account = copy.deepcopy(self.account)
        account["source"] = {
            "privacy": "public",
            "sensitive": False,
            "language": "en",
            "note": "",
            "fields": [],
            "follow_requests_count": 0,
        }
        return JSONResponse(account)

    async def _instance(self, request: Request) -> Response:
        with self.lock:
            max_characters = self.max_characters
            per_url = self.characters_reserved_per_url
        domain = self.url.removeprefix("http://")
        return JSONResponse(
            {
                "domain": domain,
                "title": "Stand-in",
                "version": "4.4.0",
                "source_url": "https://github.com/mastodon/mastodon",
                "description": "A Mastodon stand-in for triggerflow's tests",
                "usage": {"users": {"active_month": 1}},
                "thumbnail": {"url": f"{self.url}/packs/media/images/preview.png"},
                "icon": [],
                "languages": ["en"],
                "configuration": {
                    "urls": {"streaming": f"ws://{domain}", "status": None},
                    "vapid": {"public_key": ""},
                    "accounts": {"max_featured_tags": 10, "max_pinned_statuses": 5},
                    "statuses": {
                        "max_characters": max_characters,
                        "max_media_attachments": 4,
                        "characters_reserved_per_url": per_url,
                    },
                    "media_attachments": {
                        "supported_mime_types": ["image/jpeg", "image/png"],
                        "image_size_limit": 16777216,
                        "image_matrix_limit": 33177600,
                        "video_size_limit": 103809024,
                        "video_frame_rate_limit": 120,
                        "video_matrix_limit": 8294400,
                        "description_limit": 1500,
                    },
                    "polls": {
                        "max_options": 4,
                        "max_characters_per_option": 50,
                        "min_expiration": 300,
                        "max_expiration": 2629746,
                    },
                    "translation": {"enabled": False},
                    "limited_federation": False,
                },
                "registrations": {
                    "enabled": False,
                    "approval_required": False,
                    "reason_required": False,
                    "message": None,
                    "min_age": None,
                    "url": None,
                },
                "api_versions": {"mastodon": 6},
                "contact": {"email": "admin@example.org", "account": None},
                "rules": [],
            }
        )

    def _paginate(
        self,
        req: HttpRequest,
        items: list[tuple[int, Any]],
        *,
        default_limit: int,
        keep: Sequence[str] = ("limit",),
    ) -> tuple[list[Any], str | None]:
        """Mastodon's ``paginate_by_id`` and ``insert_pagination_headers``.

        ``items`` are (id, value) pairs; the page is newest first; the Link header's
        ``max_id``/``min_id`` are those ids (favourite ids for favourites).
        """

        def as_id(name: str) -> int | None:
            value = req.first(name)
            return int(value) if value and value.isdigit() else None

        max_id, since_id, min_id = as_id("max_id"), as_id("since_id"), as_id("min_id")
        raw_limit = req.first("limit")
        limit = default_limit
        if raw_limit is not None:
            try:
                limit = min(abs(int(raw_limit)), default_limit * 2)
            except ValueError:
                limit = 0  # Ruby's "abc".to_i
        ordered = sorted(items, key=lambda pair: pair[0])
        if min_id is not None:
            chosen = [p for p in ordered if p[0] > min_id and (max_id is None or p[0] < max_id)]
            page = list(reversed(chosen[:limit]))
        else:
            chosen = [
                p
                for p in reversed(ordered)
                if (max_id is None or p[0] < max_id) and (since_id is None or p[0] > since_id)
            ]
            page = chosen[:limit]
        links = []
        path = req.url.split("?", 1)[0]
        kept = [(k, v) for k, v in req.query if k in keep]
        if page and len(page) == limit:
            query = urlencode([*kept, ("max_id", str(page[-1][0]))], quote_via=quote)
            links.append(f'<{path}?{query}>; rel="next"')
        if page:
            query = urlencode([*kept, ("min_id", str(page[0][0]))], quote_via=quote)
            links.append(f'<{path}?{query}>; rel="prev"')
        return [value for _, value in page], ", ".join(links) or None

    def _page_response(self, values: list[Any], link: str | None) -> Response:
        response = JSONResponse(copy.deepcopy(values))
        if link:
            response.headers["Link"] = link
        return response

    async def _home_timeline(self, request: Request) -> Response:
        req = await read_request(request)
        token = self._auth(req, ["read", "read:statuses"])
        if isinstance(token, Response):
            return token
        with self.lock:
            items = [(int(sid), self._statuses[sid]) for sid in self._home]
            values, link = self._paginate(
                req, items, default_limit=20, keep=("local", "limit", "only_media")
            )
            return self._page_response(values, link)

    async def _tag_timeline(self, request: Request) -> Response:
        # Public (timeline preview on): no token needed, a bad one is ignored.
        req = await read_request(request)
        tag = request.path_params["hashtag"].lstrip("#").lower()
        with self.lock:
            items = [(int(sid), self._statuses[sid]) for sid in self._tags.get(tag, [])]
            values, link = self._paginate(
                req, items, default_limit=20, keep=("local", "limit", "only_media")
            )
            return self._page_response(values, link)

    async def _notifications_list(self, request: Request) -> Response:
        req = await read_request(request)
        token = self._auth(req, ["read", "read:notifications"])
        if isinstance(token, Response):
            return token
        types = set(req.all("types[]") + req.all("types"))
        excluded = set(req.all("exclude_types[]") + req.all("exclude_types"))
        with self.lock:
            items = [
                (int(n["id"]), n)
                for n in self._notifications
                if (not types or n["type"] in types) and n["type"] not in excluded
            ]
            values, link = self._paginate(
                req,
                items,
                default_limit=40,
                keep=("limit", "account_id", "types[]", "exclude_types[]", "include_filtered"),
            )
            return self._page_response(values, link)

    async def _favourites_list(self, request: Request) -> Response:
        req = await read_request(request)
        token = self._auth(req, ["read", "read:favourites"])
        if isinstance(token, Response):
            return token
        with self.lock:
            items = [(fav_id, self._statuses[sid]) for fav_id, sid in self._favourites]
            values, link = self._paginate(req, items, default_limit=20)
            return self._page_response(values, link)

    def _text_length(self, text: str) -> int:
        # StatusLengthValidator: grapheme clusters (each_grapheme_cluster.size), every URL
        # counting characters_reserved_per_url.
        return len(regex.findall(r"\X", URL_RE.sub("x" * self.characters_reserved_per_url, text)))

    async def _post_status(self, request: Request) -> Response:
        """methods/statuses#create, with the Idempotency-Key header."""
        req = await read_request(request)
        token = self._auth(req, ["write", "write:statuses"])
        if isinstance(token, Response):
            return token
        params = req.params()
        key = req.headers.get("idempotency-key")
        with self.lock:
            if key:
                # PostStatusService checks the key first: a retry gets the first status.
                known = self._idempotency.get(f"{token.user_id}:{key}")
                if known and self.now() - known[1] < IDEMPOTENCY_TTL:
                    return JSONResponse(copy.deepcopy(self._statuses[known[0]]))
            text = params.get("status", "")
            spoiler = params.get("spoiler_text", "")
            media = req.all("media_ids[]")
            visibility = params.get("visibility") or "public"
            if visibility not in ("public", "unlisted", "private", "direct"):
                return _error(422, f"'{visibility}' is not a valid visibility")
            if not text.strip() and not media:
                return _error(422, "Validation failed: Text can't be blank")
            if self._text_length(text) + len(spoiler) > self.max_characters:
                return _error(
                    422,
                    f"Validation failed: Text character limit of {self.max_characters} exceeded",
                )
            reply_to = params.get("in_reply_to_id") or None
            if reply_to and reply_to not in self._statuses:
                return _error(404, "The post you are trying to reply to does not appear to exist.")
            app = self.apps.get(token.client_id)
            status = self._new_status(
                text,
                account=self.account,
                visibility=visibility,
                spoiler_text=spoiler,
                sensitive=params.get("sensitive", "").lower() in ("true", "1"),
                language=params.get("language") or "en",
                in_reply_to_id=reply_to,
                application={"name": app.name, "website": app.website} if app else None,
            )
            self._home.append(status["id"])
            if key:
                self._idempotency[f"{token.user_id}:{key}"] = (status["id"], self.now())
            self.posted.append(copy.deepcopy(status))
            return JSONResponse(copy.deepcopy(status))

    async def _get_status(self, request: Request) -> Response:
        with self.lock:
            status = self._statuses.get(request.path_params["id"])
            if status is None or status["visibility"] in ("private", "direct"):
                return _error(404, "Record not found")
            return JSONResponse(copy.deepcopy(status))

    async def _favourite(self, request: Request) -> Response:
        req = await read_request(request)
        token = self._auth(req, ["write", "write:favourites"])
        if isinstance(token, Response):
            return token
        sid = request.path_params["id"]
        with self.lock:
            if sid not in self._statuses:
                return _error(404, "Record not found")
            self.favourite(sid)
            return JSONResponse(copy.deepcopy(self._statuses[sid]))


def _error(status: int, message: str) -> JSONResponse:
    return JSONResponse({"error": message}, status_code=status)
