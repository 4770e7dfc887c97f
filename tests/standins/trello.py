"""A Trello API for the tests: key + token auth, OAuth 1.0a, cards, board actions.

Written from Trello's REST API documentation (developer.atlassian.com/cloud/trello:
guides/rest-api/authorization, guides/rest-api/rate-limits, rest/api-group-cards,
rest/api-group-boards, rest/api-group-actions, rest/api-group-members):

* Every call carries the API key and a user token: ``key`` and ``token`` parameters (query
  or body), or ``Authorization: OAuth oauth_consumer_key="<key>", oauth_token="<token>"``
  (what an OAuth 1.0a client sends, signed or not: Trello does not check API signatures).
* ``GET /1/authorize?expiration=never&name=...&scope=read,write&response_type=token&key=
  ...&return_url=...&callback_method=fragment`` — after the user approves (at once here),
  the browser goes to ``return_url#token=<token>``: the token is in the URL *fragment*,
  which browsers never send to a server. Without ``return_url`` the token is shown on the
  page. ``expiration``: ``1hour``, ``1day``, ``30days`` (default) or ``never``.
* OAuth 1.0a (authorization guide, "Using Basic OAuth"): ``POST /1/OAuthGetRequestToken``,
  ``GET /1/OAuthAuthorizeToken`` (``name``, ``scope``, ``expiration``), ``POST
  /1/OAuthGetAccessToken`` — HMAC-SHA1, consumer key = API key, consumer secret = the
  key's secret. The access token is an ordinary Trello token.
* ``POST /1/cards`` (``idList`` required, ``name``, ``desc``, ``pos``, ``urlSource``,
  ``due``...) → the card; each new card is a ``createCard`` action on its board.
* ``GET /1/boards/{id}/actions?filter=createCard&since=&before=&limit=`` → newest first;
  ``since``/``before`` take an action id or a date; ``limit`` 50 by default, 1000 at
  most. Each action: ``id``, ``idMemberCreator``, ``type``, ``date``, ``data`` (card:
  id/name/idShort/shortLink, list: id/name, board: id/name/shortLink),
  ``memberCreator``.
* ``GET /1/members/me`` (and ``/boards``), ``GET /1/boards/{id}`` (and ``/lists``),
  ``GET /1/lists/{id}``, ``GET /1/cards/{id}``, ``GET|DELETE /1/tokens/{token}``.
* Rate limits: 300 requests per 10 s per API key, 100 per 10 s per token; beyond, 429 with
  JSON ``{"error": "API_TOKEN_LIMIT_EXCEEDED" | "API_KEY_LIMIT_EXCEEDED", "message":
  "Rate limit exceeded"}`` and no Retry-After. (``rate_headers=True`` adds the
  ``x-rate-limit-api-token-*`` headers an Atlassian answer on their forum describes; the
  documentation does not, so they are off by default.)
* Every other error is PLAIN TEXT, not JSON: 401 ``invalid key``, ``invalid token``,
  ``expired token``, ``unauthorized permission requested``; 400 ``invalid id``,
  ``invalid value for idList``; 404 ``The requested resource was not found.`` /
  ``model not found``; unknown routes ``Cannot GET /1/...``.
"""

from __future__ import annotations

import copy
import hmac
import re
import secrets
from collections.abc import Iterable
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any
from urllib.parse import parse_qsl, urlencode, urlsplit
from urllib.request import parse_http_list, parse_keqv_list

from authlib.oauth1 import AuthorizationServer as OAuth1Server
from authlib.oauth1 import ClientMixin as OAuth1ClientMixin
from authlib.oauth1 import OAuth1Request, TemporaryCredential, TokenCredentialMixin
from authlib.oauth1.rfc5849.errors import OAuth1Error
from starlette.requests import Request
from starlette.responses import HTMLResponse, JSONResponse, PlainTextResponse, Response
from starlette.routing import BaseRoute, Route

from ._oauth import HttpRequest, read_request
from ._server import Gate, RecordedRequest, StandIn, parse_body

__all__ = ["TrelloStandIn", "TrelloToken"]

EXPIRATIONS = {"1hour": 3600, "1day": 86400, "30days": 30 * 86400, "never": None}
SCOPES = {"read", "write", "account"}
ID_RE = re.compile(r"^[0-9a-f]{24}$")
SHORT_RE = re.compile(r"^[0-9A-Za-z]{8}$")
NOT_FOUND = "The requested resource was not found."


def trello_time(ts: float) -> str:
    """Trello's dates: ``2020-03-09T19:41:51.396Z``."""
    return datetime.fromtimestamp(ts, UTC).strftime("%Y-%m-%dT%H:%M:%S.%f")[:-3] + "Z"


def _text(status: int, message: str) -> Response:
    return PlainTextResponse(message, status_code=status)


@dataclass
class TrelloToken:
    """A user token: its member, scopes and expiry."""

    token: str
    key: str
    member_id: str
    name: str
    scopes: set[str]
    created_at: float
    expires_at: float | None
    secret: str | None = None  # OAuth 1.0a tokens also have a secret
    revoked: bool = False

    def expired(self, now: float) -> bool:
        return self.expires_at is not None and now >= self.expires_at


@dataclass
class _Consumer(OAuth1ClientMixin):
    key: str
    secret: str

    def get_default_redirect_uri(self) -> str | None:
        return None

    def get_client_secret(self) -> str:
        return self.secret

    def get_rsa_public_key(self) -> None:
        return None


@dataclass
class _TokenCredential(TokenCredentialMixin):
    oauth_token: str
    oauth_token_secret: str

    def get_oauth_token(self) -> str:
        return self.oauth_token

    def get_oauth_token_secret(self) -> str:
        return self.oauth_token_secret


class _OAuth1(OAuth1Server):
    """Authlib's OAuth 1.0a authorization server over the stand-in's tokens."""

    def __init__(self, standin: TrelloStandIn) -> None:
        self.standin = standin
        self.temporary: dict[str, TemporaryCredential] = {}
        self._nonces: set[tuple[str, str, str, str]] = set()

    def get_client_by_id(self, client_id: str) -> _Consumer | None:
        if client_id == self.standin.api_key:
            return _Consumer(self.standin.api_key, self.standin.api_secret)
        return None

    def exists_nonce(self, nonce: str, request: OAuth1Request) -> bool:
        key = (nonce, request.timestamp or "", request.client_id or "", request.token or "")
        if key in self._nonces:
            return True
        self._nonces.add(key)
        return False

    def create_temporary_credential(self, request: OAuth1Request) -> TemporaryCredential:
        credential = TemporaryCredential(
            oauth_token=secrets.token_hex(16),
            oauth_token_secret=secrets.token_hex(16),
            client_id=request.client_id,
            oauth_callback=request.redirect_uri,
        )
        self.temporary[credential["oauth_token"]] = credential
        return credential

    def get_temporary_credential(self, request: OAuth1Request) -> TemporaryCredential | None:
        return self.temporary.get(request.token or "")

    def delete_temporary_credential(self, request: OAuth1Request) -> None:
        self.temporary.pop(request.token or "", None)

    def create_authorization_verifier(self, request: OAuth1Request) -> str:
        verifier = secrets.token_hex(16)
        request.credential["oauth_verifier"] = verifier
        request.credential["user_id"] = self.standin.me["id"]
        return verifier

    def create_token_credential(self, request: OAuth1Request) -> _TokenCredential:
        temporary = request.credential
        token = self.standin._new_token(
            key=temporary["client_id"],
            name=temporary.get("name", ""),
            scope=temporary.get("scope", "read"),
            expiration=temporary.get("expiration", "30days"),
        )
        token.secret = secrets.token_hex(32)
        return _TokenCredential(token.token, token.secret)

    def create_oauth1_request(self, request: HttpRequest) -> OAuth1Request:
        body = urlencode(request.form) if request.form else None
        return OAuth1Request(request.method, request.url, body, request.headers)

    def handle_response(self, status_code: int, payload: Any, headers: Any) -> Response:
        if isinstance(payload, list):
            # Authlib passes oauth_callback_confirmed=True, which urlencode() writes
            # "True"; RFC 5849 §2.1 (and Trello) send "true".
            pairs = [(k, str(v).lower() if isinstance(v, bool) else v) for k, v in payload]
            content = urlencode(pairs)
        else:
            content = payload or ""
        return Response(content, status_code=status_code, headers=dict(headers or []))

    def handle_error_response(self, error: OAuth1Error) -> Response:
        # Trello's errors are plain text, not Authlib's form-encoded OAuth 1 errors.
        text = (error.description or error.error or "invalid request").rstrip(".")
        if error.error == "invalid_signature":
            text = "invalid signature"
        elif error.error == "invalid_client":
            text = "invalid key"
        elif error.error == "invalid_token":
            text = "invalid token"
        return _text(error.status_code, text)


class TrelloStandIn(StandIn):
    """Trello's API with one member (``me``), an API key and its secret.

    Args:
        api_key, api_secret: the Power-Up's key and (OAuth 1) secret; random by default.
        token_limit, key_limit, rate_interval: requests per token / per key per interval.
        rate_headers: add ``x-rate-limit-api-*`` headers (not in Trello's documentation).
        allowed_origins: origins ``return_url`` may use (the key's "Allowed origins");
            None allows any.
        username: the member's username.

    Controls: :meth:`add_board`, :meth:`add_list`, :meth:`add_card`, :meth:`add_member`,
    :meth:`issue_token`, :meth:`expire_tokens`, :meth:`revoke_token`,
    :meth:`set_remaining`, :meth:`advance`, :meth:`fail_next`.
    Inspection: :attr:`created_cards` (made through the API), :meth:`actions`,
    :meth:`card`, :attr:`tokens`, :attr:`requests`, :meth:`count`.
    """

    def __init__(
        self,
        *,
        api_key: str | None = None,
        api_secret: str | None = None,
        token_limit: int = 100,
        key_limit: int = 300,
        rate_interval: float = 10.0,
        rate_headers: bool = False,
        allowed_origins: Iterable[str] | None = None,
        username: str = "tester",
    ) -> None:
        super().__init__()
        self.api_key = api_key or secrets.token_hex(16)
        self.api_secret = api_secret or secrets.token_hex(32)
        self.token_limit = token_limit
        self.key_limit = key_limit
        self.rate_interval = rate_interval
        self.rate_headers = rate_headers
        self.allowed_origins = list(allowed_origins) if allowed_origins is not None else None
        #: tokens by their string
        self.tokens: dict[str, TrelloToken] = {}
        #: cards created with POST /1/cards, as answered, oldest first
        self.created_cards: list[dict[str, Any]] = []
        self._members: dict[str, dict[str, Any]] = {}
        self._boards: dict[str, dict[str, Any]] = {}
        self._lists: dict[str, dict[str, Any]] = {}
        self._cards: dict[str, dict[str, Any]] = {}
        self._actions: list[dict[str, Any]] = []
        self._action_times: dict[str, float] = {}  # action id -> when (the stand-in's clock)
        self._counter = secrets.randbelow(1 << 20)
        self._windows: dict[tuple[str, str], list[float]] = {}  # (kind, value) -> [end, used]
        self._forced: dict[str, list[float]] = {}  # kind -> [end, remaining]
        self.me = self.add_member(username)
        self._oauth1 = _OAuth1(self)

    # -- test controls -----------------------------------------------------------------
    def _id(self) -> str:
        # Trello ids are MongoDB ObjectIds: 4 bytes of seconds, then a counter; they sort
        # by creation time, which is what "since=<action id>" relies on.
        self._counter += 1
        return f"{int(self.now()):08x}{self._counter:016x}"

    @staticmethod
    def _short_link() -> str:
        alphabet = "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789"
        return "".join(secrets.choice(alphabet) for _ in range(8))

    def add_member(self, username: str, full_name: str | None = None) -> dict[str, Any]:
        """A Trello member (the first one is ``me``, the token's owner)."""
        with self.lock:
            full_name = full_name or username.capitalize()
            member = {
                "id": self._id(),
                "activityBlocked": False,
                "avatarHash": None,
                "avatarUrl": None,
                "fullName": full_name,
                "idMemberReferrer": None,
                "initials": "".join(w[0] for w in full_name.split())[:3].upper(),
                "nonPublic": {},
                "nonPublicAvailable": True,
                "username": username,
                "url": f"{self.url}/{username}",
                "idBoards": [],
                "confirmed": True,
                "memberType": "normal",
            }
            self._members[member["id"]] = member
            return copy.deepcopy(member)

    def add_board(
        self, name: str = "Inbox", lists: Iterable[str] = ("To Do", "Doing", "Done")
    ) -> dict[str, Any]:
        """A board of ``me`` with ``lists`` (Trello's defaults), as ``GET /1/boards/{id}``."""
        with self.lock:
            short = self._short_link()
            board = {
                "id": self._id(),
                "name": name,
                "desc": "",
                "descData": None,
                "closed": False,
                "idOrganization": None,
                "idEnterprise": None,
                "pinned": False,
                "url": f"{self.url}/b/{short}/{_slug(name)}",
                "shortUrl": f"{self.url}/b/{short}",
                "shortLink": short,
                "prefs": {"permissionLevel": "private", "background": "blue"},
                "labelNames": {
                    "green": "",
                    "yellow": "",
                    "orange": "",
                    "red": "",
                    "purple": "",
                    "blue": "",
                },
                "idMemberCreator": self.me["id"],
            }
            self._boards[board["id"]] = board
            self._members[self.me["id"]]["idBoards"].append(board["id"])
            for list_name in lists:
                self.add_list(board["id"], list_name)
            return copy.deepcopy(board)

    def add_list(self, board_id: str, name: str) -> dict[str, Any]:
        with self.lock:
            count = sum(1 for lst in self._lists.values() if lst["idBoard"] == board_id)
            lst = {
                "id": self._id(),
                "name": name,
                "closed": False,
                "color": None,
                "idBoard": board_id,
                "pos": 16384 * (count + 1),
                "subscribed": False,
                "softLimit": None,
            }
            self._lists[lst["id"]] = lst
            return copy.deepcopy(lst)

    def lists(self, board_id: str) -> list[dict[str, Any]]:
        """The lists of a board, in order."""
        with self.lock:
            found = [lst for lst in self._lists.values() if lst["idBoard"] == board_id]
            return copy.deepcopy(sorted(found, key=lambda lst: lst["pos"]))

    def add_card(
        self,
        list_id: str,
        name: str,
        *,
        desc: str = "",
        url_source: str | None = None,
        by: str | None = None,
        pos: str | float = "bottom",
    ) -> dict[str, Any]:
        """A card made by ``by`` (a username; default ``me``) and its createCard action."""
        with self.lock:
            member = self.me
            if by is not None:
                member = next(
                    (m for m in self._members.values() if m["username"] == by), None
                ) or self.add_member(by)
            return self._create_card(
                self._lists[list_id], name, desc=desc, url_source=url_source, member=member, pos=pos
            )

    def card(self, card_id: str) -> dict[str, Any]:
        with self.lock:
            return copy.deepcopy(self._cards[card_id])

    def actions(self, board_id: str) -> list[dict[str, Any]]:
        """The board's actions, newest first."""
        with self.lock:
            found = [a for a in self._actions if a["data"]["board"]["id"] == board_id]
            return copy.deepcopy(list(reversed(found)))

    def issue_token(
        self, scope: str = "read,write", expiration: str = "never", name: str = "triggerflow"
    ) -> str:
        """A user token for ``me``, as if authorized in the browser."""
        with self.lock:
            return self._new_token(
                key=self.api_key, name=name, scope=scope, expiration=expiration
            ).token

    def expire_tokens(self) -> None:
        """Every token issued so far has expired (401 ``expired token``)."""
        with self.lock:
            now = self.now()
            for token in self.tokens.values():
                token.expires_at = now

    def revoke_token(self, token: str) -> None:
        with self.lock:
            self.tokens[token].revoked = True

    def set_remaining(self, n: int, *, limit: str = "token") -> None:
        """Only ``n`` more API requests (``limit``: per ``token`` or per ``key``) until the
        current rate-limit interval ends; then 429."""
        if limit not in ("token", "key"):
            raise ValueError("limit is 'token' or 'key'")
        with self.lock:
            self._forced[limit] = [self.now() + self.rate_interval, float(n)]

    # -- internals: model --------------------------------------------------------------
    def _new_token(self, *, key: str, name: str, scope: str, expiration: str) -> TrelloToken:
        now = self.now()
        lifetime = EXPIRATIONS.get(expiration, EXPIRATIONS["30days"])
        token = TrelloToken(
            token=secrets.token_hex(32),  # Trello's tokens: 64 hex characters (ATTA... now)
            key=key,
            member_id=self.me["id"],
            name=name,
            scopes={s for s in scope.split(",") if s},
            created_at=now,
            expires_at=None if lifetime is None else now + lifetime,
        )
        self.tokens[token.token] = token
        return token

    def _create_card(
        self,
        lst: dict[str, Any],
        name: str,
        *,
        desc: str,
        url_source: str | None,
        member: dict[str, Any],
        pos: str | float,
        due: str | None = None,
    ) -> dict[str, Any]:
        board = self._boards[lst["idBoard"]]
        on_list = [c for c in self._cards.values() if c["idList"] == lst["id"]]
        id_short = 1 + sum(1 for c in self._cards.values() if c["idBoard"] == board["id"])
        if pos == "top":
            position = min((c["pos"] for c in on_list), default=65536.0) / 2
        elif isinstance(pos, int | float) or (isinstance(pos, str) and _is_number(pos)):
            position = float(pos)
        else:
            position = max((c["pos"] for c in on_list), default=0.0) + 65536
        short = self._short_link()
        now = self.now()
        card_name = name or (url_source or "")
        attachments = (
            [
                {
                    "id": self._id(),
                    "bytes": None,
                    "date": trello_time(now),
                    "idMember": member["id"],
                    "isUpload": False,
                    "mimeType": "",
                    "name": url_source,
                    "url": url_source,
                    "pos": 16384,
                }
            ]
            if url_source
            else []
        )
        card = {
            "id": self._id(),
            "badges": {
                "attachmentsByType": {"trello": {"board": 0, "card": 0}},
                "location": False,
                "votes": 0,
                "viewingMemberVoted": False,
                "subscribed": False,
                "fogbugz": "",
                "checkItems": 0,
                "checkItemsChecked": 0,
                "checkItemsEarliestDue": None,
                "comments": 0,
                "attachments": len(attachments),
                "description": bool(desc),
                "due": due,
                "dueComplete": False,
                "start": None,
            },
            "checkItemStates": [],
            "closed": False,
            "dueComplete": False,
            "dateLastActivity": trello_time(now),
            "desc": desc,
            "descData": {"emoji": {}},
            "due": due,
            "dueReminder": None,
            "email": None,
            "idBoard": board["id"],
            "idChecklists": [],
            "idList": lst["id"],
            "idMembers": [],
            "idMembersVoted": [],
            "idShort": id_short,
            "idAttachmentCover": None,
            "labels": [],
            "idLabels": [],
            "manualCoverAttachment": False,
            "name": card_name,
            "pos": position,
            "shortLink": short,
            "shortUrl": f"{self.url}/c/{short}",
            "start": None,
            "subscribed": False,
            "url": f"{self.url}/c/{short}/{id_short}-{_slug(card_name)}",
            "cover": {
                "idAttachment": None,
                "color": None,
                "idUploadedBackground": None,
                "size": "normal",
                "brightness": "dark",
            },
            "isTemplate": False,
            "cardRole": None,
            "attachments": attachments,
            "stickers": [],
            "limits": {},
        }
        self._cards[card["id"]] = card
        creator = self._members[member["id"]]
        action_id = self._id()
        self._action_times[action_id] = now
        self._actions.append(
            {
                "id": action_id,
                "idMemberCreator": creator["id"],
                "data": {
                    "card": {
                        "id": card["id"],
                        "name": card_name,
                        "idShort": id_short,
                        "shortLink": short,
                    },
                    "list": {"id": lst["id"], "name": lst["name"]},
                    "board": {
                        "id": board["id"],
                        "name": board["name"],
                        "shortLink": board["shortLink"],
                    },
                },
                "appCreator": None,
                "type": "createCard",
                "date": trello_time(now),
                "limits": {},
                "memberCreator": {
                    k: creator[k]
                    for k in (
                        "id",
                        "activityBlocked",
                        "avatarHash",
                        "avatarUrl",
                        "fullName",
                        "idMemberReferrer",
                        "initials",
                        "nonPublic",
                        "nonPublicAvailable",
                        "username",
                    )
                },
            }
        )
        return copy.deepcopy(card)

    def _after(self, a: dict[str, Any] | str | float, b: dict[str, Any] | str | float) -> bool:
        """Whether ``a`` is newer than ``b`` (each an action, an action id or a date):
        ids compare as ids (ObjectIds grow with time), dates with the action's date."""
        if isinstance(a, dict) and isinstance(b, str):
            return a["id"] > b
        if isinstance(a, str) and isinstance(b, dict):
            return a > b["id"]
        if isinstance(a, dict) and isinstance(b, float):
            return self._action_times[a["id"]] > b
        if isinstance(a, float) and isinstance(b, dict):
            return a > self._action_times[b["id"]]
        raise TypeError("compare an action with an id or a date")

    # -- internals: auth and limits ------------------------------------------------------
    @staticmethod
    def _credentials(
        query: list[tuple[str, str]], form: list[tuple[str, str]], authorization: str
    ) -> tuple[str | None, str | None]:
        """The (key, token) of a request: parameters, else the OAuth header."""
        params = dict(form)
        params.update(dict(query))
        key, token = params.get("key"), params.get("token")
        if authorization.lower().startswith("oauth "):
            try:
                fields = parse_keqv_list(parse_http_list(authorization[6:]))
            except ValueError:
                fields = {}
            key = key or fields.get("oauth_consumer_key")
            token = token or fields.get("oauth_token")
        return key or None, token or None

    def gate(self, request: RecordedRequest) -> Gate:
        path = request.path
        if not path.startswith("/1/") or path == "/1/authorize" or path.startswith("/1/OAuth"):
            return Gate()
        key, token = self._credentials(
            parse_qsl(request.query, keep_blank_values=True),
            parse_body(request.headers.get("content-type", ""), request.body),
            request.headers.get("authorization", ""),
        )
        with self.lock:
            now = self.now()
            headers: dict[str, str] = {}
            for kind, value, limit, error in (
                ("key", key, self.key_limit, "API_KEY_LIMIT_EXCEEDED"),
                ("token", token, self.token_limit, "API_TOKEN_LIMIT_EXCEEDED"),
            ):
                if value is None:
                    continue
                window = self._windows.get((kind, value))
                if window is None or now >= window[0]:
                    window = [now + self.rate_interval, 0.0]
                    self._windows[(kind, value)] = window
                forced = self._forced.get(kind)
                if forced is not None and now >= forced[0]:
                    del self._forced[kind]
                    forced = None
                remaining = limit - window[1]
                if forced is not None:
                    remaining = min(remaining, forced[1])
                if remaining <= 0:
                    body = {"error": error, "message": "Rate limit exceeded"}
                    return Gate(JSONResponse(body, status_code=429), headers)
                window[1] += 1
                if forced is not None:
                    forced[1] -= 1
                if self.rate_headers:
                    headers[f"x-rate-limit-api-{kind}-interval-ms"] = str(
                        int(self.rate_interval * 1000)
                    )
                    headers[f"x-rate-limit-api-{kind}-max"] = str(limit)
                    headers[f"x-rate-limit-api-{kind}-remaining"] = str(int(remaining - 1))
            return Gate(headers=headers)

    def _auth(self, req: HttpRequest, *, write: bool = False) -> TrelloToken | Response:
        key, token = self._credentials(req.query, req.form, req.headers.get("authorization", ""))
        with self.lock:
            if key is None or not hmac.compare_digest(key, self.api_key):
                return _text(401, "invalid key")
            if token is None:
                return _text(401, "unauthorized permission requested")
            record = self.tokens.get(token)
            if record is None or record.revoked or record.key != key:
                return _text(401, "invalid token")
            if record.expired(self.now()):
                return _text(401, "expired token")
            if write and "write" not in record.scopes:
                return _text(401, "unauthorized permission requested")
            if not write and "read" not in record.scopes:
                return _text(401, "unauthorized permission requested")
            return record

    # -- internals: HTTP -------------------------------------------------------------------
    def failure_body(self, status: int) -> tuple[bytes, str]:
        if status == 429:
            return (
                b'{"error":"API_TOKEN_LIMIT_EXCEEDED","message":"Rate limit exceeded"}',
                "application/json; charset=utf-8",
            )
        return super().failure_body(status)

    def exception_handlers(self) -> dict[Any, Any]:
        async def no_route(request: Request, exc: Exception) -> Response:
            return _text(404, f"Cannot {request.method} {request.url.path}")

        return {404: no_route, 405: no_route}

    def routes(self) -> list[BaseRoute]:
        return [
            Route("/1/authorize", self._authorize, methods=["GET"]),
            Route("/1/OAuthGetRequestToken", self._request_token, methods=["POST"]),
            Route("/1/OAuthAuthorizeToken", self._authorize_token, methods=["GET"]),
            Route("/1/OAuthGetAccessToken", self._access_token, methods=["POST"]),
            Route("/1/members/me", self._member_me, methods=["GET"]),
            Route("/1/members/me/boards", self._my_boards, methods=["GET"]),
            Route("/1/boards/{id}", self._board, methods=["GET"]),
            Route("/1/boards/{id}/lists", self._board_lists, methods=["GET"]),
            Route("/1/boards/{id}/actions", self._board_actions, methods=["GET"]),
            Route("/1/lists/{id}", self._list, methods=["GET"]),
            Route("/1/cards", self._post_card, methods=["POST"]),
            Route("/1/cards/{id}", self._get_card, methods=["GET"]),
            Route("/1/tokens/{token}", self._token_info, methods=["GET", "DELETE"]),
        ]

    async def _authorize(self, request: Request) -> Response:
        """guides/rest-api/authorization: the 1/authorize route, approved at once."""
        req = await read_request(request)
        params = req.params()
        key = params.get("key")
        if not key or not hmac.compare_digest(key, self.api_key):
            return _text(401, "invalid key")
        scope = params.get("scope", "read")
        if not {s for s in scope.split(",") if s} <= SCOPES:
            return _text(400, "invalid value for scope")
        expiration = params.get("expiration", "30days")
        if expiration not in EXPIRATIONS:
            return _text(400, "invalid value for expiration")
        if params.get("response_type", "token") not in ("token", "fragment"):
            return _text(400, "invalid value for response_type")
        return_url = params.get("return_url")
        if return_url and self.allowed_origins is not None:
            parts = urlsplit(return_url)
            if f"{parts.scheme}://{parts.netloc}" not in self.allowed_origins:
                return _text(
                    400,
                    "Invalid return_url. The return URL should match the application's "
                    "allowed origins.",
                )
        with self.lock:
            token = self._new_token(
                key=key, name=params.get("name", ""), scope=scope, expiration=expiration
            )
        callback = params.get("callback_method", "postMessage")
        if return_url and callback == "fragment":
            # The fragment never reaches a server: the page at return_url must read it.
            return Response(
                status_code=302, headers={"Location": f"{return_url}#token={token.token}"}
            )
        if return_url:  # postMessage: the page posts the token to window.opener
            return HTMLResponse(
                "<script>window.opener.postMessage("
                f"{token.token!r}, {return_url!r});window.close();</script>"
            )
        return HTMLResponse(
            "<p>You have granted access to your Trello information.</p>"
            f"<p>To complete the process, please give this token:</p><pre>{token.token}</pre>"
        )

    async def _request_token(self, request: Request) -> Response:
        req = await read_request(request)
        with self.lock:
            return self._oauth1.create_temporary_credentials_response(req)

    async def _authorize_token(self, request: Request) -> Response:
        req = await read_request(request)
        params = req.params()
        with self.lock:
            credential = self._oauth1.temporary.get(params.get("oauth_token", ""))
            if credential is None:
                return _text(400, "invalid token")
            # Remembered for the access token: what the user approved.
            credential["name"] = params.get("name", "")
            credential["scope"] = params.get("scope", "read")
            credential["expiration"] = params.get("expiration", "30days")
            if credential.get("oauth_callback") in (None, "oob"):
                oauth_request = self._oauth1.create_oauth1_request(req)
                oauth_request.credential = credential
                verifier = self._oauth1.create_authorization_verifier(oauth_request)
                return HTMLResponse(
                    "<p>You have granted access to your Trello information.</p>"
                    f"<p>To complete the process, please give this verification code:</p>"
                    f"<pre>{verifier}</pre>"
                )
            try:
                return self._oauth1.create_authorization_response(req, grant_user=self.me)
            except OAuth1Error as error:
                return self._oauth1.handle_error_response(error)

    async def _access_token(self, request: Request) -> Response:
        req = await read_request(request)
        with self.lock:
            return self._oauth1.create_token_response(req)

    async def _member_me(self, request: Request) -> Response:
        req = await read_request(request)
        token = self._auth(req)
        if isinstance(token, Response):
            return token
        with self.lock:
            return JSONResponse(copy.deepcopy(self._members[token.member_id]))

    async def _my_boards(self, request: Request) -> Response:
        req = await read_request(request)
        token = self._auth(req)
        if isinstance(token, Response):
            return token
        with self.lock:
            ids = self._members[token.member_id]["idBoards"]
            return JSONResponse([copy.deepcopy(self._boards[i]) for i in ids])

    def _find_board(self, board_id: str) -> dict[str, Any] | Response:
        if not (ID_RE.match(board_id) or SHORT_RE.match(board_id)):
            return _text(400, "invalid id")
        for board in self._boards.values():
            if board_id in (board["id"], board["shortLink"]):
                return board
        return _text(404, NOT_FOUND)

    async def _on_board(self, request: Request, answer: Any) -> Response:
        """``answer(board)`` for the board of the path, once the token is checked."""
        token = self._auth(await read_request(request))
        if isinstance(token, Response):
            return token
        with self.lock:
            board = self._find_board(request.path_params["id"])
            if isinstance(board, Response):
                return board
            return JSONResponse(answer(board))

    async def _board(self, request: Request) -> Response:
        return await self._on_board(request, copy.deepcopy)

    async def _board_lists(self, request: Request) -> Response:
        return await self._on_board(request, lambda board: self.lists(board["id"]))

    async def _board_actions(self, request: Request) -> Response:
        """rest/api-group-boards: GET /1/boards/{id}/actions."""
        req = await read_request(request)
        token = self._auth(req)
        if isinstance(token, Response):
            return token
        params = req.params()
        raw_limit = params.get("limit", "50")
        if not raw_limit.isdigit() or not 0 <= int(raw_limit) <= 1000:
            return _text(400, "invalid value for limit")
        limit = int(raw_limit)
        types = {t for t in params.get("filter", "all").split(",") if t}
        bounds = {}
        for name in ("since", "before"):
            value = params.get(name)
            if value in (None, "", "null"):
                continue
            bound = _bound(value)
            if bound is None:
                return _text(400, f"invalid value for {name}")
            bounds[name] = bound
        with self.lock:
            board = self._find_board(request.path_params["id"])
            if isinstance(board, Response):
                return board
            found = []
            for action in reversed(self._actions):  # newest first
                if action["data"]["board"]["id"] != board["id"]:
                    continue
                if "all" not in types and action["type"] not in types:
                    continue
                if "since" in bounds and not self._after(action, bounds["since"]):
                    continue
                if "before" in bounds and not self._after(bounds["before"], action):
                    continue
                found.append(action)
            return JSONResponse(copy.deepcopy(found[:limit]))

    async def _list(self, request: Request) -> Response:
        req = await read_request(request)
        token = self._auth(req)
        if isinstance(token, Response):
            return token
        list_id = request.path_params["id"]
        if not ID_RE.match(list_id):
            return _text(400, "invalid id")
        with self.lock:
            lst = self._lists.get(list_id)
            if lst is None:
                return _text(404, "model not found")
            return JSONResponse(copy.deepcopy(lst))

    async def _post_card(self, request: Request) -> Response:
        """rest/api-group-cards: POST /1/cards (parameters in the query or the body)."""
        req = await read_request(request)
        token = self._auth(req, write=True)
        if isinstance(token, Response):
            return token
        params = req.params()
        list_id = params.get("idList", "")
        name = params.get("name", "")
        if len(name) > 16384:
            return _text(400, "invalid value for name")
        with self.lock:
            lst = self._lists.get(list_id) if ID_RE.match(list_id) else None
            if lst is None:
                return _text(400, "invalid value for idList")
            pos = params.get("pos", "bottom")
            if pos not in ("top", "bottom") and not _is_number(pos):
                return _text(400, "invalid value for pos")
            card = self._create_card(
                lst,
                name,
                desc=params.get("desc", ""),
                url_source=params.get("urlSource") or None,
                member=self._members[token.member_id],
                pos=pos,
                due=params.get("due") or None,
            )
            self.created_cards.append(copy.deepcopy(card))
            return JSONResponse(card)

    async def _get_card(self, request: Request) -> Response:
        req = await read_request(request)
        token = self._auth(req)
        if isinstance(token, Response):
            return token
        card_id = request.path_params["id"]
        if not (ID_RE.match(card_id) or SHORT_RE.match(card_id)):
            return _text(400, "invalid id")
        with self.lock:
            for card in self._cards.values():
                if card_id in (card["id"], card["shortLink"]):
                    return JSONResponse(copy.deepcopy(card))
        return _text(404, NOT_FOUND)

    async def _token_info(self, request: Request) -> Response:
        req = await read_request(request)
        token = self._auth(req, write=req.method == "DELETE")
        if isinstance(token, Response):
            return token
        with self.lock:
            record = self.tokens.get(request.path_params["token"])
            if record is None or record.revoked:
                return _text(404, NOT_FOUND)
            if req.method == "DELETE":
                record.revoked = True
                return JSONResponse({"_value": None})
            return JSONResponse(
                {
                    "id": self._id(),
                    "identifier": record.name,
                    "idMember": record.member_id,
                    "dateCreated": trello_time(record.created_at),
                    "dateExpires": trello_time(record.expires_at) if record.expires_at else None,
                    "permissions": [
                        {
                            "idModel": "*",
                            "modelType": model,
                            "read": "read" in record.scopes,
                            "write": "write" in record.scopes,
                        }
                        for model in ("Board", "Organization")
                    ],
                }
            )


def _slug(text: str) -> str:
    return re.sub(r"[^a-z0-9]+", "-", text.lower()).strip("-")


def _is_number(value: str) -> bool:
    try:
        float(value)
    except ValueError:
        return False
    return True


def _bound(value: str) -> str | float | None:
    """``since``/``before``: an action id (str), or a date (float, Unix time)."""
    if ID_RE.match(value):
        return value
    try:
        when = datetime.fromisoformat(value.replace("Z", "+00:00"))
    except ValueError:
        return None
    if when.tzinfo is None:
        when = when.replace(tzinfo=UTC)
    return when.timestamp()
