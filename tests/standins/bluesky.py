"""A Bluesky PDS (AT Protocol) for the tests: sessions, posts as records, an author feed.

Written from the lexicons (bluesky-social/atproto ``lexicons/``) and the reference PDS
(``packages/pds``):

* ``com.atproto.server.createSession`` — ``{identifier, password}`` (a handle or DID;
  the account password or an app password) → ``{accessJwt, refreshJwt, handle, did,
  didDoc, active}``; wrong: 401 ``AuthenticationRequired`` "Invalid identifier or
  password"; the account password of an account with e-mail sign-in codes: 401
  ``AuthFactorTokenRequired``. Limited to 30 per 5 minutes and 300 a day per identifier
  (``RateLimit-Limit/-Remaining/-Reset/-Policy`` headers; beyond: 429
  ``RateLimitExceeded``).
* ``com.atproto.server.refreshSession`` — the refresh JWT as Bearer → a new pair. The
  old refresh token stays usable for 2 hours (``REFRESH_GRACE_MS``) and a repeat within
  it gets the same next token, so two clients refreshing at once both keep working.
* ``com.atproto.server.getSession``.
* Access tokens are JWTs (``exp`` 2 hours after issue, scope ``com.atproto.appPass`` for
  app passwords); expired: **400** ``ExpiredToken`` "Token has expired"; unknown or a
  refresh token used for a call: 400 ``InvalidToken``; none: 401 ``AuthenticationRequired``.
* ``com.atproto.repo.putRecord`` — ``repo`` (the session's DID or handle), ``collection``,
  ``rkey`` (a TID for posts), ``record``; ``swapRecord: null`` means "only if there is
  none": a record already there is 400 ``InvalidSwap`` (the reference PDS's
  ``BadRecordSwapError``), unless the record is the same (a no-op). Posts are checked as
  the ``app.bsky.feed.post`` lexicon says: ``text`` at most 300 graphemes and 3000 UTF-8
  bytes, ``createdAt``, ``langs`` at most 3, facets' byte ranges inside the text.
* ``com.atproto.repo.getRecord`` — 400 ``RecordNotFound`` when there is none.
* ``com.atproto.identity.resolveHandle`` — 400 ``InvalidRequest`` "Unable to resolve handle".
* ``app.bsky.feed.getAuthorFeed`` — ``actor``, ``limit`` (1–100, 50), ``cursor``,
  ``filter`` (``posts_with_replies``, ``posts_no_replies``, ...): newest first, reposts
  with ``reason`` ``app.bsky.feed.defs#reasonRepost``.
* Errors are ``{"error": "Name", "message": "..."}`` (XRPC).

Not modelled: repositories as Merkle trees (CIDs are hashes of the JSON), the relay and
firehose, blobs, OAuth, labels, takedowns, other collections' lexicons, and the AppView
being a separate service (the PDS proxies ``app.bsky.*`` to it; here one server answers).
"""

from __future__ import annotations

import base64
import hashlib
import json
import secrets
from collections import deque
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any

import regex
from starlette.requests import Request
from starlette.responses import JSONResponse, Response
from starlette.routing import BaseRoute, Route

from ._server import Gate, RecordedRequest, StandIn

__all__ = ["BlueskyStandIn", "Post", "tid"]

ACCESS_LIFETIME = 2 * 3600  # the reference PDS: access tokens live 2 hours
REFRESH_LIFETIME = 90 * 86400  # refresh tokens 90 days
REFRESH_GRACE = 2 * 3600  # a rotated refresh token stays usable this long
SESSION_LIMITS = ((30, 300.0), (300, 86400.0))  # createSession per identifier
S32 = "234567abcdefghijklmnopqrstuvwxyz"  # base32-sortable, for TIDs
POST = "app.bsky.feed.post"


def tid(micros: int, clock: int = 0) -> str:
    """A TID (timestamp identifier) of ``micros`` since 1970 and a 10-bit clock id."""
    value = (micros << 10) | (clock & 0x3FF)
    return "".join(S32[(value >> (5 * i)) & 31] for i in reversed(range(13)))


def is_tid(key: str) -> bool:
    return len(key) == 13 and all(c in S32 for c in key) and key[0] in S32[:16]


def iso(ts: float) -> str:
    return datetime.fromtimestamp(ts, UTC).strftime("%Y-%m-%dT%H:%M:%S.%f")[:-3] + "Z"


def _b64(data: dict[str, Any]) -> str:
    return base64.urlsafe_b64encode(json.dumps(data).encode()).rstrip(b"=").decode()


def error(status: int, name: str, message: str) -> JSONResponse:
    return JSONResponse({"error": name, "message": message}, status_code=status)


@dataclass
class Account:
    did: str
    handle: str
    password: str
    app_passwords: set[str] = field(default_factory=set)
    sign_in_codes: bool = False  # e-mail 2FA: the account password alone is not enough


@dataclass
class Post:
    """A post as the stand-in keeps it (the record as it was put)."""

    uri: str
    cid: str
    author: str  # DID
    record: dict[str, Any]
    indexed_at: float
    rkey: str
    repost_of: str | None = None  # a repost: the reposted post's URI

    @property
    def text(self) -> str:
        return str(self.record.get("text", ""))

    def facet_texts(self) -> list[tuple[str, dict[str, Any]]]:
        """Each facet's slice of the text (by its UTF-8 byte range) and its feature."""
        raw = self.text.encode()
        return [
            (raw[f["index"]["byteStart"] : f["index"]["byteEnd"]].decode(), feature)
            for f in self.record.get("facets") or ()
            for feature in f["features"]
        ]


@dataclass
class _RefreshToken:
    did: str
    expires_at: float
    next_id: str | None = None


class BlueskyStandIn(StandIn):
    """A PDS with one account, ``alice.test`` (``did:plc:alice``), and its app password.

    Args:
        access_lifetime: seconds an access token lives (2 hours).
    """

    def __init__(self, access_lifetime: float = ACCESS_LIFETIME) -> None:
        super().__init__()
        self.access_lifetime = access_lifetime
        self.app_password = "abcd-efgh-ijkl-mnop"
        self.accounts: dict[str, Account] = {}
        self.add_account("alice.test", "did:plc:alice", "main-password", self.app_password)
        self._access: dict[str, tuple[str, float]] = {}  # jti -> (did, expires at)
        self._refresh: dict[str, _RefreshToken] = {}
        self._posts: dict[str, Post] = {}  # uri -> post
        self._sessions: dict[str, deque[float]] = {}  # identifier -> createSession times
        #: records put over an existing one (an edited post)
        self.overwrites = 0

    # -- seeding and inspection -----------------------------------------------------------
    def add_account(
        self, handle: str, did: str, password: str = "", app_password: str | None = None
    ) -> Account:
        with self.lock:
            account = Account(did, handle, password or secrets.token_hex(8))
            if app_password:
                account.app_passwords.add(app_password)
            self.accounts[did] = account
            return account

    def add_post(
        self,
        handle: str,
        text: str,
        *,
        at: float | None = None,
        repost_of: str | None = None,
        rkey: str | None = None,
    ) -> Post:
        """A post (or a repost of ``repost_of``) by ``handle``, indexed at ``at``."""
        with self.lock:
            did = self._did(handle)
            assert did is not None, handle
            when = self.now() if at is None else at
            rkey = rkey or tid(int(when * 1e6), len(self._posts))
            record = {"$type": POST, "text": text, "createdAt": iso(when)}
            return self._put(did, rkey, record, when, repost_of)

    def posts(self, handle: str = "alice.test") -> list[Post]:
        """``handle``'s posts (not reposts), oldest first."""
        with self.lock:
            did = self._did(handle)
            mine = [p for p in self._posts.values() if p.author == did and not p.repost_of]
            return sorted(mine, key=lambda p: p.indexed_at)

    def expire_sessions(self) -> None:
        """Every refresh token ends (as after 90 days): only a new sign-in helps."""
        with self.lock:
            self._refresh.clear()
            self._access.clear()

    def session_count(self) -> int:
        return self.count("/xrpc/com.atproto.server.createSession")

    # -- internals (under the lock) --------------------------------------------------------
    def _did(self, actor: str) -> str | None:
        if actor in self.accounts:
            return actor
        for account in self.accounts.values():
            if account.handle == actor:
                return account.did
        return None

    def _put(
        self, did: str, rkey: str, record: dict[str, Any], when: float, repost_of: str | None
    ) -> Post:
        uri = f"at://{did}/{POST}/{rkey}"
        digest = hashlib.sha256(json.dumps(record, sort_keys=True).encode()).digest()
        cid = "bafyrei" + base64.b32encode(digest).decode().lower().rstrip("=")
        post = Post(uri, cid, did, record, when, rkey, repost_of)
        self._posts[uri] = post
        return post

    def _session(self, account: Account) -> dict[str, Any]:
        now = self.now()
        jti = secrets.token_hex(12)
        self._access[jti] = (account.did, now + self.access_lifetime)
        refresh_id = secrets.token_hex(12)
        self._refresh[refresh_id] = _RefreshToken(account.did, now + REFRESH_LIFETIME)
        return self._pair(account, jti, refresh_id)

    def _pair(self, account: Account, jti: str, refresh_id: str) -> dict[str, Any]:
        now = self.now()
        access_exp = self._access[jti][1]
        head = _b64({"typ": "at+jwt", "alg": "ES256K"})
        access = _b64(
            {
                "scope": "com.atproto.appPass",
                "sub": account.did,
                "iat": int(now),
                "exp": int(access_exp),
                "jti": jti,
            }
        )
        refresh = _b64(
            {
                "scope": "com.atproto.refresh",
                "sub": account.did,
                "jti": refresh_id,
                "exp": int(self._refresh[refresh_id].expires_at),
            }
        )
        sig = "." + secrets.token_urlsafe(16)
        return {
            "accessJwt": f"{head}.{access}{sig}",
            "refreshJwt": f"{head}.{refresh}{sig}",
            "handle": account.handle,
            "did": account.did,
            "didDoc": {
                "id": account.did,
                "alsoKnownAs": [f"at://{account.handle}"],
                "service": [
                    {
                        "id": "#atproto_pds",
                        "type": "AtprotoPersonalDataServer",
                        "serviceEndpoint": self.url,
                    },
                ],
            },
            "active": True,
        }

    @staticmethod
    def _claims(request: Request) -> dict[str, Any] | None:
        auth = request.headers.get("authorization", "")
        if not auth.lower().startswith("bearer "):
            return None
        parts = auth[7:].strip().split(".")
        try:
            claims: dict[str, Any] = json.loads(base64.urlsafe_b64decode(parts[1] + "=="))
        except (IndexError, ValueError):
            return {}
        return claims

    def _caller(self, request: Request) -> str | Response:
        """The DID of a valid access token, or the PDS's refusal."""
        claims = self._claims(request)
        if claims is None:
            return error(401, "AuthenticationRequired", "Authentication Required")
        if claims.get("scope") == "com.atproto.refresh":
            return error(400, "InvalidToken", "Bad token scope")
        with self.lock:
            known = self._access.get(str(claims.get("jti")))
            if known is None:
                return error(400, "InvalidToken", "Token could not be verified")
            if known[1] <= self.now():
                return error(400, "ExpiredToken", "Token has expired")
            return known[0]

    # -- HTTP ------------------------------------------------------------------------------
    def failure_body(self, status: int) -> tuple[bytes, str]:
        return bytes(error(status, "InternalServerError", "Internal Server Error").body), (
            "application/json"
        )

    def gate(self, request: RecordedRequest) -> Gate:
        if request.path != "/xrpc/com.atproto.server.createSession":
            return Gate()
        try:
            identifier = str(json.loads(request.body).get("identifier", "")).lower()
        except ValueError:
            return Gate()
        now = self.now()
        with self.lock:
            times = self._sessions.setdefault(identifier, deque())
            times.append(now)
            while times and times[0] <= now - SESSION_LIMITS[-1][1]:
                times.popleft()
            for count, window in SESSION_LIMITS:
                recent = [t for t in times if t > now - window]
                headers = {
                    "RateLimit-Limit": str(count),
                    "RateLimit-Remaining": str(max(0, count - len(recent))),
                    "RateLimit-Reset": str(int(recent[0] + window)),
                    "RateLimit-Policy": f"{count};w={int(window)}",
                }
                if len(recent) > count:
                    return Gate(error(429, "RateLimitExceeded", "Rate Limit Exceeded"), headers)
            return Gate(headers=headers if len(times) else {})

    def routes(self) -> list[BaseRoute]:
        x = "/xrpc/"
        return [
            Route(x + "com.atproto.server.createSession", self._create_session, methods=["POST"]),
            Route(x + "com.atproto.server.refreshSession", self._refresh_session, methods=["POST"]),
            Route(x + "com.atproto.server.getSession", self._get_session, methods=["GET"]),
            Route(x + "com.atproto.repo.putRecord", self._put_record, methods=["POST"]),
            Route(x + "com.atproto.repo.getRecord", self._get_record, methods=["GET"]),
            Route(x + "com.atproto.identity.resolveHandle", self._resolve, methods=["GET"]),
            Route(x + "app.bsky.feed.getAuthorFeed", self._author_feed, methods=["GET"]),
        ]

    async def _create_session(self, request: Request) -> Response:
        body = json.loads(await request.body() or b"{}")
        identifier, password = str(body.get("identifier", "")), str(body.get("password", ""))
        with self.lock:
            did = self._did(identifier.lower())
            account = self.accounts.get(did or "")
            if account is None or not (
                secrets.compare_digest(password, account.password)
                or password in account.app_passwords
            ):
                return error(401, "AuthenticationRequired", "Invalid identifier or password")
            if password == account.password and account.sign_in_codes:
                return error(
                    401,
                    "AuthFactorTokenRequired",
                    "A sign in code has been sent to your email address",
                )
            return JSONResponse(self._session(account))

    async def _refresh_session(self, request: Request) -> Response:
        claims = self._claims(request)
        if claims is None:
            return error(401, "AuthenticationRequired", "Authentication Required")
        if claims.get("scope") != "com.atproto.refresh":
            return error(400, "InvalidToken", "Invalid token type")
        with self.lock:
            token = self._refresh.get(str(claims.get("jti")))
            if token is None:
                return error(401, "ExpiredToken", "Token has been revoked")
            now = self.now()
            if token.expires_at <= now:
                return error(400, "ExpiredToken", "Token has expired")
            next_id = token.next_id or secrets.token_hex(12)
            token.next_id = next_id
            token.expires_at = min(token.expires_at, now + REFRESH_GRACE)
            self._refresh.setdefault(next_id, _RefreshToken(token.did, now + REFRESH_LIFETIME))
            jti = secrets.token_hex(12)
            self._access[jti] = (token.did, now + self.access_lifetime)
            return JSONResponse(self._pair(self.accounts[token.did], jti, next_id))

    async def _get_session(self, request: Request) -> Response:
        did = self._caller(request)
        if isinstance(did, Response):
            return did
        with self.lock:
            account = self.accounts[did]
            return JSONResponse({"handle": account.handle, "did": did, "active": True})

    async def _put_record(self, request: Request) -> Response:
        did = self._caller(request)
        if isinstance(did, Response):
            return did
        body = json.loads(await request.body() or b"{}")
        with self.lock:
            if self._did(str(body.get("repo", ""))) != did:
                return error(401, "AuthenticationRequired", "Authentication Required")
            collection, rkey, record = (
                body.get("collection"),
                str(body.get("rkey", "")),
                (body.get("record") or {}),
            )
            if collection != POST or record.get("$type") != POST:
                return error(400, "InvalidRequest", f"Unsupported collection: {collection}")
            if not is_tid(rkey):
                return error(400, "InvalidRequest", f"Invalid record key: {rkey}")
            problem = self._invalid_post(record)
            if problem:
                return error(400, "InvalidRequest", f"Invalid {POST} record: {problem}")
            uri = f"at://{did}/{POST}/{rkey}"
            current = self._posts.get(uri)
            if (
                current is not None
                and current.record != record
                and ("swapRecord" in body and body["swapRecord"] != current.cid)
            ):
                return error(400, "InvalidSwap", f"Record was at {current.cid}")
            if current is not None and current.record == record:
                post = current  # the same record again: a no-op
            else:
                if current is not None:
                    self.overwrites += 1  # an edit: a post should never get one here
                post = self._put(did, rkey, record, self.now(), None)
            return JSONResponse({"uri": post.uri, "cid": post.cid, "validationStatus": "valid"})

    @staticmethod
    def _invalid_post(record: dict[str, Any]) -> str | None:
        text = record.get("text")
        if not isinstance(text, str):
            return 'Record must have the property "text"'
        if len(regex.findall(r"\X", text)) > 300:
            return "Record/text must not be longer than 300 graphemes"
        size = len(text.encode())
        if size > 3000:
            return "Record/text must not be longer than 3000 characters"
        if not isinstance(record.get("createdAt"), str):
            return 'Record must have the property "createdAt"'
        if len(record.get("langs") or ()) > 3:
            return "Record/langs must not have more than 3 elements"
        for i, facet in enumerate(record.get("facets") or ()):
            index = facet.get("index") or {}
            start, end = index.get("byteStart"), index.get("byteEnd")
            if not (isinstance(start, int) and isinstance(end, int) and 0 <= start < end <= size):
                return f"Record/facets/{i}/index is out of the text's bytes"
            try:
                text.encode()[start:end].decode()
            except UnicodeDecodeError:
                return f"Record/facets/{i}/index cuts a character"
        return None

    async def _get_record(self, request: Request) -> Response:
        q = request.query_params
        with self.lock:
            did = self._did(q.get("repo", ""))
            post = self._posts.get(f"at://{did}/{q.get('collection')}/{q.get('rkey')}")
            if post is None:
                return error(400, "RecordNotFound", f"Could not locate record: at://{did}/...")
            return JSONResponse({"uri": post.uri, "cid": post.cid, "value": post.record})

    async def _resolve(self, request: Request) -> Response:
        with self.lock:
            did = self._did(request.query_params.get("handle", "").lower())
            if did is None or did not in self.accounts:
                return error(400, "InvalidRequest", "Unable to resolve handle")
            return JSONResponse({"did": did})

    async def _author_feed(self, request: Request) -> Response:
        caller = self._caller(request)
        if isinstance(caller, Response):
            return caller
        q = request.query_params
        limit = int(q.get("limit") or 50)
        if not 1 <= limit <= 100:
            return error(400, "InvalidRequest", "limit must be between 1 and 100")
        with self.lock:
            did = self._did(q.get("actor", ""))
            if did is None:
                return error(400, "InvalidRequest", "Profile not found")
            mine = sorted(
                (p for p in self._posts.values() if p.author == did),
                key=lambda p: (p.indexed_at, p.uri),
                reverse=True,
            )
            cursor = q.get("cursor")
            if cursor:
                mine = [p for p in mine if f"{p.indexed_at:.6f}" < cursor]
            page = mine[:limit]
            feed = [self._feed_item(p) for p in page]
            body: dict[str, Any] = {"feed": feed}
            if len(mine) > limit:
                body["cursor"] = f"{page[-1].indexed_at:.6f}"
            return JSONResponse(body)

    def _feed_item(self, post: Post) -> dict[str, Any]:
        shown = self._posts[post.repost_of] if post.repost_of else post
        author = self.accounts[shown.author]
        item: dict[str, Any] = {
            "post": {
                "uri": shown.uri,
                "cid": shown.cid,
                "author": {"did": author.did, "handle": author.handle},
                "record": shown.record,
                "indexedAt": iso(shown.indexed_at),
                "replyCount": 0,
                "repostCount": 0,
                "likeCount": 0,
            },
        }
        if post.repost_of:
            by = self.accounts[post.author]
            item["reason"] = {
                "$type": "app.bsky.feed.defs#reasonRepost",
                "by": {"did": by.did, "handle": by.handle},
                "indexedAt": iso(post.indexed_at),
            }
        return item
