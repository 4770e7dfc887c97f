"""The Joplin app's Data API (its Web Clipper service) for the tests.

Written from Joplin's Data API documentation (joplinapp.org/help/api/references/rest_api)
and the code it documents (``packages/lib/services/rest/Api.ts``, ``routes/notes.ts``,
``routes/folders.ts``, ``routes/events.ts``, ``routes/auth.ts``, ``ClipperServer.ts``):

* every call but ``GET /ping`` and the auth flow needs the token: ``?token=`` (or, in
  newer versions, ``Authorization: Bearer``); missing or wrong is 403 ``Missing "token"
  parameter`` / ``Invalid "token" parameter``;
* errors are ``{"error": "<message>"}`` (5xx: ``Internal Server Error: <message>`` and a
  stack trace after a blank line); an unknown path is 404 ``Not Found``;
* ``GET /ping`` → ``JoplinClipperServer`` (text);
* ``POST /auth`` → ``{"auth_token"}`` and the app asks its user; ``GET /auth/check?
  auth_token=`` → ``{"status": "waiting" | "rejected" | "accepted", "token"}`` (the token
  once accepted); :attr:`JoplinStandIn.answer` is what the user answers (None: never);
* lists page: ``?limit=`` (at most 100, else 400 ``Limit cannot be over 100``), ``page``
  (from 1), ``order_by``, ``order_dir``, ``fields`` → ``{"items": [...], "has_more"}``;
* ``GET|POST /folders`` (``title``, ``parent_id``, ``id``), ``GET /folders/:id/notes``;
* ``GET /notes``, ``GET /notes/:id`` (404 ``Not Found``), ``POST /notes``: ``title``,
  ``body`` or ``body_html`` (Joplin turns HTML into Markdown; this stand-in keeps the HTML
  as it came in :attr:`JoplinNote.body_html` and strips tags for ``body``), ``parent_id``
  (default: the first notebook), ``source_url``, ``author``, ``user_created_time``,
  ``tags`` (comma-separated titles), and ``id``: a client may choose it (32 hex digits);
  an id that exists is a 500 ``SQLITE_CONSTRAINT: UNIQUE constraint failed: notes.id``;
  a folder's likewise;
* ``GET /events`` without ``cursor`` → ``{"items": [], "has_more": false, "cursor":
  "<last change id>"}``; with ``cursor=N`` the changes after N, 100 at most, each
  ``{"id", "item_type": 1, "item_id", "type": 1|2|3, "created_time"}`` (created, updated,
  deleted), ``has_more`` when 100 came, and the last one's id as the cursor.

* :meth:`JoplinStandIn.import_enex`: the app's *File > Import > ENEX* (Joplin's
  ``import-enex.ts``): the file is read with a strict XML parser (Joplin's ``sax`` in
  strict mode refuses what is not well-formed), each ``<note>``'s ``title``,
  ``created``/``updated`` (``yyyymmddThhmmssZ``), ``tag``s, ``note-attributes``
  (``author``, ``source-url``) and ``content``, whose ENML is parsed strictly too.

Not modelled: resources (attachments) and the images Joplin downloads from a note's
HTML, search, revisions, sync, encryption, the trash, nested notebooks' ``as_tree``.
"""

from __future__ import annotations

import copy
import json
import re
import secrets
import xml.etree.ElementTree as ET
from dataclasses import asdict, dataclass, field
from datetime import UTC, datetime
from typing import Any

from starlette.requests import Request
from starlette.responses import JSONResponse, PlainTextResponse, Response
from starlette.routing import BaseRoute, Route

from ._server import StandIn

__all__ = ["JoplinNote", "JoplinStandIn"]

ID_RE = re.compile(r"^[0-9a-f]{32}$")
TAG_RE = re.compile(r"<[^>]*>")
MAX_LIMIT = 100


@dataclass
class JoplinNote:
    id: str
    parent_id: str
    title: str
    body: str
    created_time: int
    user_created_time: int
    source_url: str = ""
    author: str = ""
    is_todo: int = 0
    body_html: str | None = None  # what the client sent, before Joplin's conversion
    tags: list[str] = field(default_factory=list)

    def fields(self) -> dict[str, Any]:
        out = asdict(self)
        del out["body_html"], out["tags"]
        return out


def _error(status: int, message: str) -> JSONResponse:
    if status >= 500:
        message = f"Internal Server Error: {message}\n\nError: {message}\n    at Api.route"
    return JSONResponse({"error": message}, status_code=status)


class JoplinStandIn(StandIn):
    """Joplin's Data API on ``http://127.0.0.1:<port>`` with one notebook, "Notes"."""

    def __init__(self, token: str | None = None) -> None:
        super().__init__()
        self.token = token or secrets.token_hex(64)
        #: what the app's user answers to ``POST /auth``: True, False or None (never)
        self.answer: bool | None = True
        self._auth_token: str | None = None
        self._folders: dict[str, dict[str, Any]] = {}
        self._notes: dict[str, JoplinNote] = {}
        self._changes: list[dict[str, Any]] = []
        self._last_ms = 0
        self.default_folder = self.add_folder("Notes")["id"]

    # -- for tests ---------------------------------------------------------------------
    def add_folder(self, title: str, folder_id: str | None = None) -> dict[str, Any]:
        with self.lock:
            folder = {"id": folder_id or secrets.token_hex(16), "title": title, "parent_id": ""}
            self._folders[folder["id"]] = folder
            return dict(folder)

    def add_note(
        self, title: str, body: str = "", folder: str | None = None, note_id: str | None = None
    ) -> JoplinNote:
        """A note made in the app (an event says so)."""
        with self.lock:
            return self._create({"id": note_id, "title": title, "body": body, "parent_id": folder})

    def import_enex(self, data: bytes, folder: str | None = None) -> list[JoplinNote]:
        """Import an ENEX file as the app does; a file that is not well-formed XML, or a
        note whose ENML is not, raises ``ET.ParseError`` (the app's import fails)."""
        made = []
        for note in ET.fromstring(data).iter("note"):
            content = ET.fromstring((note.findtext("content") or "").encode())  # ENML
            if content.tag != "en-note":
                raise ET.ParseError(f"content is <{content.tag}>, not <en-note>")
            attributes = note.find("note-attributes")
            created = note.findtext("created")
            data_ = {
                "title": note.findtext("title") or "",
                "body_html": ET.tostring(content, encoding="unicode"),
                "parent_id": folder,
                "tags": ",".join(t.text or "" for t in note.findall("tag")),
                "source_url": attributes.findtext("source-url") if attributes is not None else "",
                "author": attributes.findtext("author") if attributes is not None else "",
            }
            if created:
                when = datetime.strptime(created, "%Y%m%dT%H%M%SZ").replace(tzinfo=UTC)
                data_["user_created_time"] = int(when.timestamp() * 1000)
            with self.lock:
                made.append(self._create(data_))
        return made

    def delete_note(self, note_id: str) -> None:
        with self.lock:
            del self._notes[note_id]
            self._change(note_id, 3)

    def notes(self) -> list[JoplinNote]:
        """Every note, oldest first."""
        with self.lock:
            return [copy.deepcopy(n) for n in self._notes.values()]

    def folders(self) -> list[dict[str, Any]]:
        with self.lock:
            return [dict(f) for f in self._folders.values()]

    # -- the model ---------------------------------------------------------------------
    def _change(self, note_id: str, kind: int) -> None:
        self._changes.append({
            "id": len(self._changes) + 1, "item_type": 1, "item_id": note_id, "type": kind,
            "created_time": int(self.now() * 1000),
        })  # fmt: skip

    def _create(self, data: dict[str, Any]) -> JoplinNote:
        note_id = data.get("id") or secrets.token_hex(16)
        if note_id in self._notes:
            raise _Refused(500, "SQLITE_CONSTRAINT: UNIQUE constraint failed: notes.id")
        if not ID_RE.match(note_id):
            raise _Refused(400, f"Invalid ID: {note_id}")
        now = self._last_ms = max(int(self.now() * 1000), self._last_ms + 1)  # ms, in order
        html = data.get("body_html")
        note = JoplinNote(
            id=note_id,
            parent_id=data.get("parent_id") or self.default_folder,
            title=data.get("title") or "",
            body=TAG_RE.sub("", html) if html else data.get("body") or "",
            created_time=now,
            user_created_time=int(data.get("user_created_time") or now),
            source_url=data.get("source_url") or "",
            author=data.get("author") or "",
            body_html=html,
            tags=[t for t in (data.get("tags") or "").split(",") if t],
        )
        self._notes[note_id] = note
        self._change(note_id, 1)
        return note

    # -- HTTP --------------------------------------------------------------------------
    def exception_handlers(self) -> dict[Any, Any]:
        async def not_found(request: Request, exc: Exception) -> Response:
            return _error(404, "Not Found")

        return {404: not_found, 405: not_found}

    def failure_body(self, status: int) -> tuple[bytes, str]:
        body = _error(status, "injected failure").body
        return bytes(body), "application/json"

    def routes(self) -> list[BaseRoute]:
        return [
            Route("/ping", self._ping, methods=["GET"]),
            Route("/auth", self._auth_start, methods=["POST"]),
            Route("/auth/check", self._auth_check, methods=["GET"]),
            Route("/folders", self._folders_route, methods=["GET", "POST"]),
            Route("/folders/{id}/notes", self._folder_notes, methods=["GET"]),
            Route("/notes", self._notes_route, methods=["GET", "POST"]),
            Route("/notes/{id}", self._note, methods=["GET"]),
            Route("/events", self._events, methods=["GET"]),
        ]

    async def _ping(self, request: Request) -> Response:
        return PlainTextResponse("JoplinClipperServer")

    async def _auth_start(self, request: Request) -> Response:
        with self.lock:
            self._auth_token = secrets.token_urlsafe(16)
            return JSONResponse({"auth_token": self._auth_token})

    async def _auth_check(self, request: Request) -> Response:
        given = request.query_params.get("auth_token")
        with self.lock:
            if given is None or given != self._auth_token:
                return _error(500, f"Invalid auth token: {given}")
            if self.answer is None:
                return JSONResponse({"status": "waiting"})
            if not self.answer:
                return JSONResponse({"status": "rejected"})
            return JSONResponse({"status": "accepted", "token": self.token})

    def _refusal(self, request: Request) -> Response | None:
        auth = request.headers.get("authorization", "")
        bearer = re.match(r"^Bearer\s+(\S+)$", auth, re.I)
        token = bearer.group(1) if bearer else request.query_params.get("token")
        if not token:
            return _error(403, 'Missing "token" parameter')
        if not secrets.compare_digest(token, self.token):
            return _error(403, 'Invalid "token" parameter')
        return None

    def _page(self, request: Request, rows: list[dict[str, Any]], default: str) -> Response:
        q = request.query_params
        limit = int(q.get("limit") or MAX_LIMIT)
        if limit > MAX_LIMIT:
            return _error(400, f"Limit cannot be over {MAX_LIMIT}")
        page = max(1, int(q.get("page") or 1))
        order_by = q.get("order_by") or "updated_time"
        if rows and order_by in rows[0]:
            rows = sorted(rows, key=lambda r: r[order_by], reverse=q.get("order_dir") == "DESC")
        fields = (q.get("fields") or default).split(",")
        chosen = rows[(page - 1) * limit : page * limit]
        items = [{f: r[f] for f in fields if f in r} for r in chosen]
        return JSONResponse({"items": items, "has_more": page * limit < len(rows)})

    async def _folders_route(self, request: Request) -> Response:
        if (refused := self._refusal(request)) is not None:
            return refused
        if request.method == "GET":
            with self.lock:
                return self._page(request, self.folders(), "id,parent_id,title")
        data = json.loads(await request.body() or b"{}")
        with self.lock:
            folder_id = data.get("id") or secrets.token_hex(16)
            if folder_id in self._folders:
                return _error(500, "SQLITE_CONSTRAINT: UNIQUE constraint failed: folders.id")
            return JSONResponse(self.add_folder(data.get("title") or "", folder_id))

    async def _folder_notes(self, request: Request) -> Response:
        if (refused := self._refusal(request)) is not None:
            return refused
        with self.lock:
            if request.path_params["id"] not in self._folders:
                return _error(404, "Not Found")
            rows = [n.fields() for n in self._notes.values()
                    if n.parent_id == request.path_params["id"]]  # fmt: skip
            return self._page(request, rows, "id,parent_id,title")

    async def _notes_route(self, request: Request) -> Response:
        if (refused := self._refusal(request)) is not None:
            return refused
        if request.method == "GET":
            with self.lock:
                rows = [n.fields() for n in self._notes.values()]
                return self._page(request, rows, "id,parent_id,title")
        try:
            data = json.loads(await request.body())
        except ValueError as e:
            return _error(500, f"Unexpected token in JSON: {e}")
        with self.lock:
            try:
                note = self._create(data)
            except _Refused as e:
                return _error(e.status, e.message)
            return JSONResponse(note.fields())

    async def _note(self, request: Request) -> Response:
        if (refused := self._refusal(request)) is not None:
            return refused
        with self.lock:
            note = self._notes.get(request.path_params["id"])
            if note is None:
                return _error(404, "Not Found")
            fields = (request.query_params.get("fields") or "id,parent_id,title").split(",")
            return JSONResponse({k: v for k, v in note.fields().items() if k in fields})

    async def _events(self, request: Request) -> Response:
        if (refused := self._refusal(request)) is not None:
            return refused
        with self.lock:
            if "cursor" not in request.query_params:
                last = self._changes[-1]["id"] if self._changes else 0
                return JSONResponse({"items": [], "has_more": False, "cursor": str(last)})
            raw = request.query_params["cursor"]
            try:
                cursor = int(raw)
            except ValueError:
                return _error(400, f"Invalid cursor: {raw}")
            changes = [dict(c) for c in self._changes if c["id"] > cursor][:MAX_LIMIT]
            return JSONResponse({
                "items": changes, "has_more": len(changes) >= MAX_LIMIT,
                "cursor": str(changes[-1]["id"] if changes else cursor),
            })  # fmt: skip


class _Refused(Exception):
    def __init__(self, status: int, message: str) -> None:
        super().__init__(message)
        self.status, self.message = status, message
