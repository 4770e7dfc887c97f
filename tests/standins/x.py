"""X's API v2 for the tests: OAuth 2 with PKCE and single-use refresh tokens, posting,
timelines and recent search, with X's rate-limit headers.

Written from docs.x.com (X API v2: "OAuth 2.0 Authorization Code Flow with PKCE",
"Manage Posts", "Timelines", "Search", "Rate limits", "Response codes and errors") and
twitter-text's ``config/v3.json``:

* ``GET /i/oauth2/authorize`` — ``response_type=code``, ``client_id``, ``redirect_uri``
  (exactly as registered), ``scope``, ``state``, ``code_challenge`` with
  ``code_challenge_method=S256`` (``plain`` refused here); the user approves at once
  (a 302 to the callback with ``code`` and ``state``).
* ``POST /2/oauth2/token`` — ``authorization_code`` (with ``code_verifier``) and
  ``refresh_token``; a confidential client authenticates with HTTP Basic, a public one
  sends ``client_id``. Tokens: ``{"token_type": "bearer", "expires_in": 7200,
  "access_token", "scope", "refresh_token"}`` (a refresh token only with
  ``offline.access``). **A refresh token works once**: refreshing gives a new one, and
  the old one is then ``invalid_request`` "Value passed for the token was invalid.".
* Bearer tokens: missing, unknown or expired → 401 ``{"title": "Unauthorized", "type":
  "about:blank", "status": 401, "detail": "Unauthorized"}``.
* ``GET /2/users/me``, ``GET /2/users/by/username/:username`` → ``{"data": {"id",
  "name", "username"}}``.
* ``POST /2/tweets`` ``{"text"}`` → 201 ``{"data": {"id", "text",
  "edit_history_tweet_ids"}}``; longer than 280 weighted characters (URLs 23) → 400 with
  ``errors``; the same text as one of the account's recent posts → 403 ``"You are not
  allowed to create a Tweet with duplicate content."``; 100 per 15 minutes per user.
* ``GET /2/users/:id/tweets``, ``/2/users/:id/mentions``, ``/2/tweets/search/recent``
  (``query``) — newest first, ``since_id``, ``max_results`` (5-100, 10), ``meta``
  (``result_count``, ``newest_id``, ``oldest_id``, ``next_token``), ``pagination_token``,
  ``expansions=author_id`` → ``includes.users``.
* Every answer of the API carries ``x-rate-limit-limit``, ``-remaining`` and ``-reset``
  (Unix seconds) of its endpoint; beyond: 429 ``Too Many Requests``.

Not modelled: media, replies and quotes, the search grammar (a query matches posts that
contain it), the 7-day window of recent search, app-only Bearer tokens, billing.
"""

from __future__ import annotations

import base64
import hashlib
import json
import secrets
from collections import deque
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any
from urllib.parse import urlencode

import regex
from starlette.requests import Request
from starlette.responses import JSONResponse, RedirectResponse, Response
from starlette.routing import BaseRoute, Route

from ._server import Gate, RecordedRequest, StandIn, parse_body

__all__ = ["XStandIn", "weighted_length"]

TOKEN_LIFETIME = 7200
POST_LIMIT = (100, 900.0)  # POST /2/tweets: 100 per 15 minutes per user
READ_LIMIT = (900, 900.0)  # the timelines: 900 per 15 minutes per user (here: every GET)
_URL = regex.compile(r"https?://\S+")


def weighted_length(text: str) -> int:
    """twitter-text v3: 1 for code points in its light ranges, 2 otherwise, 2 an emoji,
    23 a URL."""
    light = ((0, 4351), (8192, 8205), (8208, 8223), (8242, 8247))
    total = 23 * len(_URL.findall(text))
    for cluster in regex.findall(r"\X", _URL.sub("", text)):
        if regex.match(r"\p{Extended_Pictographic}|\p{Regional_Indicator}", cluster):
            total += 2
        else:
            total += sum(1 if any(lo <= ord(c) <= hi for lo, hi in light) else 2 for c in cluster)
    return total


def problem(status: int, title: str, detail: str, **extra: Any) -> JSONResponse:
    body = {"title": title, "type": "about:blank", "status": status, "detail": detail, **extra}
    return JSONResponse(body, status_code=status)


@dataclass
class _Client:
    client_id: str
    secret: str | None  # None: a public client
    redirect_uri: str


@dataclass
class _Grant:
    user: str
    scope: str
    access_expires: float


class XStandIn(StandIn):
    """X with user ``tester`` (id ``2244994945``) and one confidential app (``client_id``,
    ``client_secret``, callback ``redirect_uri``)."""

    def __init__(self, redirect_uri: str = "http://127.0.0.1:8976/callback") -> None:
        super().__init__()
        self.client_id = "x-" + secrets.token_hex(8)
        self.client_secret = secrets.token_urlsafe(24)
        self._clients = {self.client_id: _Client(self.client_id, self.client_secret, redirect_uri)}
        self.users = {"2244994945": "tester"}
        self._codes: dict[str, tuple[str, str, str, str]] = {}  # code -> client, challenge, ...
        self._access: dict[str, _Grant] = {}
        self._refresh: dict[str, tuple[str, _Grant]] = {}  # token -> (client, grant)
        self.spent_refresh: set[str] = set()
        self.posts: list[dict[str, Any]] = []  # every post, oldest first
        self._next_id = 1_800_000_000_000_000_000
        self._windows: dict[str, deque[float]] = {}
        self.callback_port = 0  # set by the fixture

    # -- seeding and inspection ------------------------------------------------------------
    def add_public_client(self, redirect_uri: str) -> str:
        client_id = "xp-" + secrets.token_hex(8)
        with self.lock:
            self._clients[client_id] = _Client(client_id, None, redirect_uri)
        return client_id

    def add_user(self, username: str) -> str:
        with self.lock:
            user_id = str(1000 + len(self.users))
            self.users[user_id] = username
            return user_id

    def add_post(self, username: str, text: str) -> dict[str, Any]:
        with self.lock:
            author = next(i for i, u in self.users.items() if u == username)
            return self._post(author, text)

    def posted_by(self, username: str = "tester") -> list[str]:
        with self.lock:
            author = next(i for i, u in self.users.items() if u == username)
            return [p["text"] for p in self.posts if p["author_id"] == author]

    def expire_tokens(self) -> None:
        """Every access token expires (their 2 hours are over)."""
        with self.lock:
            for grant in self._access.values():
                grant.access_expires = 0

    # -- internals -------------------------------------------------------------------------
    def _post(self, author: str, text: str) -> dict[str, Any]:
        self._next_id += 1 + secrets.randbelow(1000)
        post = {
            "id": str(self._next_id), "text": text, "author_id": author,
            "created_at": datetime.fromtimestamp(self.now(), UTC).strftime(
                "%Y-%m-%dT%H:%M:%S.000Z"),
            "edit_history_tweet_ids": [str(self._next_id)],
        }  # fmt: skip
        tags = regex.findall(r"(?<!\w)#(\w+)", text)
        if tags:
            post["entities"] = {"hashtags": [{"tag": t} for t in tags]}
        self.posts.append(post)
        return post

    def _issue(self, client: str, user: str, scope: str) -> dict[str, Any]:
        access = secrets.token_urlsafe(32)
        grant = _Grant(user, scope, self.now() + TOKEN_LIFETIME)
        self._access[access] = grant
        token = {"token_type": "bearer", "expires_in": TOKEN_LIFETIME, "access_token": access,
                 "scope": scope}  # fmt: skip
        if "offline.access" in scope.split():
            refresh = secrets.token_urlsafe(32)
            self._refresh[refresh] = (client, grant)
            token["refresh_token"] = refresh
        return token

    def _caller(self, request: Request) -> str | Response:
        auth = request.headers.get("authorization", "")
        token = auth[7:].strip() if auth.lower().startswith("bearer ") else ""
        with self.lock:
            grant = self._access.get(token)
            if grant is None or grant.access_expires <= self.now():
                return problem(401, "Unauthorized", "Unauthorized")
            return grant.user

    def gate(self, request: RecordedRequest) -> Gate:
        if not request.path.startswith("/2/") or request.path == "/2/oauth2/token":
            return Gate()
        count, window = POST_LIMIT if request.method == "POST" else READ_LIMIT
        key = f"{request.method} {request.path}"
        now = self.now()
        with self.lock:
            times = self._windows.setdefault(key, deque())
            while times and times[0] <= now - window:
                times.popleft()
            times.append(now)
            reset = int(times[0] + window)
            headers = {
                "x-rate-limit-limit": str(count),
                "x-rate-limit-remaining": str(max(0, count - len(times))),
                "x-rate-limit-reset": str(reset),
            }
            if len(times) > count:
                return Gate(problem(429, "Too Many Requests", "Too Many Requests"), headers)
            return Gate(headers=headers)

    # -- HTTP ------------------------------------------------------------------------------
    def routes(self) -> list[BaseRoute]:
        return [
            Route("/i/oauth2/authorize", self._authorize, methods=["GET"]),
            Route("/2/oauth2/token", self._token, methods=["POST"]),
            Route("/2/users/me", self._me, methods=["GET"]),
            Route("/2/users/by/username/{username}", self._by_username, methods=["GET"]),
            Route("/2/tweets", self._create, methods=["POST"]),
            Route("/2/users/{id}/tweets", self._timeline, methods=["GET"]),
            Route("/2/users/{id}/mentions", self._timeline, methods=["GET"]),
            Route("/2/tweets/search/recent", self._timeline, methods=["GET"]),
        ]

    async def _authorize(self, request: Request) -> Response:
        q = request.query_params
        with self.lock:
            client = self._clients.get(q.get("client_id", ""))
            if client is None or q.get("redirect_uri") != client.redirect_uri:
                return JSONResponse({"error": "invalid_request"}, status_code=400)
            if q.get("code_challenge_method") != "S256" or not q.get("code_challenge"):
                return JSONResponse({"error": "invalid_request"}, status_code=400)
            code = secrets.token_urlsafe(24)
            self._codes[code] = (client.client_id, q["code_challenge"], q.get("scope", ""),
                                 client.redirect_uri)  # fmt: skip
        where = f"{client.redirect_uri}?{urlencode({'state': q.get('state', ''), 'code': code})}"
        return RedirectResponse(where, status_code=302)

    def _client_of(self, request: Request, form: dict[str, str]) -> _Client | None:
        auth = request.headers.get("authorization", "")
        if auth.lower().startswith("basic "):
            try:
                cid, _, secret = base64.b64decode(auth[6:]).decode().partition(":")
            except ValueError:
                return None
            client = self._clients.get(cid)
            if client is None or client.secret is None:
                return None
            return client if secrets.compare_digest(secret, client.secret) else None
        client = self._clients.get(form.get("client_id", ""))
        return client if client is not None and client.secret is None else None

    async def _token(self, request: Request) -> Response:
        form = dict(parse_body(request.headers.get("content-type", ""), await request.body()))
        invalid = JSONResponse(
            {"error": "invalid_request", "error_description": "Value passed for the token "
             "was invalid."}, status_code=400,
        )  # fmt: skip
        with self.lock:
            client = self._client_of(request, form)
            if client is None:
                why = "Missing valid authorization header"
                return JSONResponse(
                    {"error": "unauthorized_client", "error_description": why}, status_code=401
                )
            if form.get("grant_type") == "authorization_code":
                found = self._codes.pop(form.get("code", ""), None)
                if found is None or found[0] != client.client_id:
                    return invalid
                verifier = form.get("code_verifier", "").encode()
                challenge = base64.urlsafe_b64encode(hashlib.sha256(verifier).digest())
                if challenge.rstrip(b"=").decode() != found[1]:
                    return invalid
                if form.get("redirect_uri") != found[3]:
                    return invalid
                return JSONResponse(self._issue(client.client_id, "2244994945", found[2]))
            if form.get("grant_type") == "refresh_token":
                old = form.get("refresh_token", "")
                held = self._refresh.pop(old, None)  # spent: it works once
                if held is None or held[0] != client.client_id:
                    return invalid
                self.spent_refresh.add(old)
                return JSONResponse(self._issue(client.client_id, held[1].user, held[1].scope))
            return JSONResponse({"error": "unsupported_grant_type"}, status_code=400)

    async def _me(self, request: Request) -> Response:
        user = self._caller(request)
        if isinstance(user, Response):
            return user
        return JSONResponse({"data": {"id": user, "name": "Tester", "username": self.users[user]}})

    async def _by_username(self, request: Request) -> Response:
        if isinstance(caller := self._caller(request), Response):
            return caller
        name = request.path_params["username"].lower()
        with self.lock:
            for user_id, username in self.users.items():
                if username.lower() == name:
                    return JSONResponse({"data": {"id": user_id, "name": username,
                                                  "username": username}})  # fmt: skip
        return JSONResponse({"errors": [{"value": name, "detail": f"Could not find user with "
                             f"username: [{name}].", "title": "Not Found Error"}]})  # fmt: skip

    async def _create(self, request: Request) -> Response:
        user = self._caller(request)
        if isinstance(user, Response):
            return user
        text = str(json.loads(await request.body() or b"{}").get("text") or "")
        if weighted_length(text) > 280:
            return problem(400, "Invalid Request", "One or more parameters to your request "
                           "was invalid.", errors=[{"message": "Your Tweet text is too long. "
                           "For more information on how Twitter determines text length see "
                           "https://github.com/twitter/twitter-text."}])  # fmt: skip
        with self.lock:
            recent = [p["text"] for p in self.posts[-200:] if p["author_id"] == user]
            if text in recent:
                return problem(403, "Forbidden", "You are not allowed to create a Tweet with "
                               "duplicate content.")  # fmt: skip
            post = self._post(user, text)
        return JSONResponse({"data": {k: post[k] for k in ("id", "text",
                             "edit_history_tweet_ids")}}, status_code=201)  # fmt: skip

    async def _timeline(self, request: Request) -> Response:
        if isinstance(caller := self._caller(request), Response):
            return caller
        q = request.query_params
        size = int(q.get("max_results") or 10)
        if not 5 <= size <= 100:
            return problem(400, "Invalid Request", "One or more parameters to your request was "
                           "invalid.", errors=[{"message": "The `max_results` query parameter "
                           "value is not between 5 and 100"}])  # fmt: skip
        with self.lock:
            path = request.url.path
            if path.endswith("/tweets") and "search" not in path:
                chosen = [p for p in self.posts if p["author_id"] == request.path_params["id"]]
            elif path.endswith("/mentions"):
                name = "@" + self.users.get(request.path_params["id"], "?")
                chosen = [p for p in self.posts if name.lower() in p["text"].lower()]
            else:
                query = q.get("query", "").lower()
                chosen = [p for p in self.posts if query in p["text"].lower()]
            if q.get("since_id"):
                chosen = [p for p in chosen if int(p["id"]) > int(q["since_id"])]
            chosen = sorted(chosen, key=lambda p: int(p["id"]), reverse=True)
            start = int(q.get("pagination_token") or 0)
            page = chosen[start : start + size]
            meta: dict[str, Any] = {"result_count": len(page)}
            if page:
                meta["newest_id"], meta["oldest_id"] = page[0]["id"], page[-1]["id"]
            if start + size < len(chosen):
                meta["next_token"] = str(start + size)
            body: dict[str, Any] = {"meta": meta}
            if page:
                body["data"] = [dict(p) for p in page]
                authors = {p["author_id"] for p in page}
                users = [
                    {"id": a, "name": self.users[a], "username": self.users[a]} for a in authors
                ]
                body["includes"] = {"users": users}
            return JSONResponse(body)
