"""Evernote's API for the tests: UserStore and NoteStore over Thrift, decoded by thriftpy2.

Written from Evernote's IDL (github.com/Evernote/evernote-thrift: ``Types.thrift``,
``NoteStore.thrift``, ``UserStore.thrift``, ``Errors.thrift``, ``Limits.thrift``) and the
ENML page of dev.evernote.com. The calls come in as ``TBinaryProtocol`` messages over
HTTP POST (``application/x-thrift``) and are decoded and answered by thriftpy2 from the
IDL subset in ``evernote.thrift``, an implementation independent of triggerflow's:

* ``POST /edam/user`` — ``UserStore.getUser``, ``UserStore.getNoteStoreUrl``;
* ``POST /shard/s1/notestore`` — ``NoteStore.listNotebooks``, ``createNotebook`` (a name
  taken, case-insensitively: ``EDAMUserException(DATA_CONFLICT, "Notebook.name")``),
  ``createNote``, ``findNotesMetadata`` (``applicationData:<key>`` in the search words:
  notes with that key; other words: in the title or content);
* every call's first argument is the token: unknown ``INVALID_AUTH``, expired
  ``AUTH_EXPIRED`` (``EDAMUserException``, parameter ``authenticationToken``);
* ``createNote`` checks what Evernote's server checks: a title (``DATA_REQUIRED``
  ``Note.title``) of 1-255 characters without space at the ends (``BAD_DATA_FORMAT``),
  content that is ENML (XML, ``<en-note>``, the permitted elements, no prohibited
  attribute: ``ENML_VALIDATION`` with the reason), a notebook that exists
  (``EDAMNotFoundException`` ``Note.notebookGuid``), tag names (no comma, 1-100),
  applicationData keys (``^[A-Za-z0-9_.-]{3,32}$``); tags named in ``tagNames`` are made;
* :meth:`EvernoteStandIn.rate_limit`: calls for a while get ``EDAMSystemException
  (RATE_LIMIT_REACHED, rateLimitDuration)`` (the seconds left); :meth:`lose_answer`: a
  call is done and its answer lost; ``upload_left``: the month's upload
  allowance in bytes (``QUOTA_REACHED``); ``index_delay``: seconds before a new note is
  found by a search (Evernote indexes in the background).

Not modelled: resources (attachments), OAuth 1.0a, sync (``getSyncChunk``), note
updates, shared and business notebooks, the full search grammar.
"""

from __future__ import annotations

import re
import secrets
import uuid
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import thriftpy2
from lxml import etree
from starlette.requests import Request
from starlette.responses import Response
from starlette.routing import BaseRoute, Route
from thriftpy2.protocol.binary import TBinaryProtocol
from thriftpy2.thrift import TProcessor
from thriftpy2.transport.memory import TMemoryBuffer

from ._server import StandIn

__all__ = ["EvernoteStandIn", "StoredNote"]

EDAM = thriftpy2.load(str(Path(__file__).with_name("evernote.thrift")), module_name="edam_thrift")
CODE = EDAM.EDAMErrorCode
# "Permitted elements" and "prohibited attributes" of dev.evernote.com's ENML page.
PERMITTED = set(
    "a abbr acronym address area b bdo big blockquote br caption center cite code col "
    "colgroup dd del dfn div dl dt em font h1 h2 h3 h4 h5 h6 hr i img ins kbd li map ol p "
    "pre q s samp small span strike strong sub sup table tbody td tfoot th thead title tr "
    "tt u ul var xmp en-note en-media en-crypt en-todo".split()
)
PROHIBITED_ATTRIBUTES = {"id", "class", "accesskey", "data", "dynsrc", "tabindex"}
TITLE_RE = re.compile(r"^[^\s\x00-\x1f]([^\x00-\x1f\u2028\u2029]{0,253}[^\s\x00-\x1f])?$")
DATA_KEY_RE = re.compile(r"^[A-Za-z0-9_.-]{3,32}$")


@dataclass
class StoredNote:
    guid: str
    title: str
    content: str
    notebook: str
    created: int | None
    tags: list[str]
    source_url: str = ""
    author: str = ""
    application_data: dict[str, str] = field(default_factory=dict)
    made_at: float = 0.0  # on the stand-in's clock


def _user_error(code: int, parameter: str) -> Exception:
    return EDAM.EDAMUserException(errorCode=code, parameter=parameter)


def enml_problem(content: str) -> str | None:
    """Why ``content`` is no ENML (in the words of Evernote's validator), or None."""
    if "<!DOCTYPE en-note" not in content:
        return "Document root element must be en-note with the ENML DOCTYPE"
    try:
        root = etree.fromstring(content.encode(), etree.XMLParser(resolve_entities=False))
    except etree.XMLSyntaxError as e:
        return f"The content of the note is not well-formed: {e}"
    if root.tag != "en-note":
        return f'Document root element "{root.tag}", must match DOCTYPE root "en-note"'
    for el in root.iter():
        if not isinstance(el.tag, str):
            continue
        if el.tag not in PERMITTED:
            return f'Element type "{el.tag}" must be declared.'
        for name in el.attrib:
            if name in PROHIBITED_ATTRIBUTES or name.startswith("on"):
                return f'Attribute "{name}" must be declared for element type "{el.tag}".'
    return None


class _Stores:
    """The Thrift handlers: one method per call, named and with arguments as in the IDL."""

    def __init__(self, standin: EvernoteStandIn) -> None:
        self.s = standin

    def _check(self, token: str) -> None:
        s = self.s
        with s.lock:
            left = int(s.rate_limited_until - s.now() + 0.999)
            if left > 0:
                raise EDAM.EDAMSystemException(
                    errorCode=CODE.RATE_LIMIT_REACHED, rateLimitDuration=left
                )
        if token == s.expired_token:
            raise _user_error(CODE.AUTH_EXPIRED, "authenticationToken")
        if not secrets.compare_digest(token or "", s.token):
            raise _user_error(CODE.INVALID_AUTH, "authenticationToken")

    # UserStore
    def getUser(self, authenticationToken: str) -> Any:  # noqa: N802, N803 - the IDL's names
        self._check(authenticationToken)
        return EDAM.User(id=1, username=self.s.username, name="Test User", shardId="s1")

    def getNoteStoreUrl(self, authenticationToken: str) -> str:  # noqa: N802, N803
        self._check(authenticationToken)
        return f"{self.s.url}/shard/s1/notestore"

    # NoteStore
    def listNotebooks(self, authenticationToken: str) -> list[Any]:  # noqa: N802, N803
        self._check(authenticationToken)
        with self.s.lock:
            return [
                EDAM.Notebook(guid=g, name=n, defaultNotebook=g == self.s.default_notebook)
                for g, n in self.s.notebooks.items()
            ]

    def createNotebook(self, authenticationToken: str, notebook: Any) -> Any:  # noqa: N802, N803
        self._check(authenticationToken)
        name = (notebook.name or "").strip()
        with self.s.lock:
            if not name:
                raise _user_error(CODE.DATA_REQUIRED, "Notebook.name")
            if any(n.casefold() == name.casefold() for n in self.s.notebooks.values()):
                raise _user_error(CODE.DATA_CONFLICT, "Notebook.name")
            guid = str(uuid.uuid4())
            self.s.notebooks[guid] = name
            return EDAM.Notebook(guid=guid, name=name)

    def createNote(self, authenticationToken: str, note: Any) -> Any:  # noqa: N802, N803
        self._check(authenticationToken)
        s = self.s
        if not note.title:
            raise _user_error(CODE.DATA_REQUIRED, "Note.title")
        if len(note.title) > 255 or not TITLE_RE.match(note.title):
            raise _user_error(CODE.BAD_DATA_FORMAT, "Note.title")
        problem = enml_problem(note.content or "")
        if problem:
            raise _user_error(CODE.ENML_VALIDATION, problem)
        for tag in note.tagNames or ():
            if not 1 <= len(tag) <= 100 or "," in tag or tag != tag.strip():
                raise _user_error(CODE.BAD_DATA_FORMAT, "Tag.name")
        attributes = note.attributes or EDAM.NoteAttributes()
        data = dict((attributes.applicationData or EDAM.LazyMap()).fullMap or {})
        if any(not DATA_KEY_RE.match(k) for k in data):
            raise _user_error(CODE.BAD_DATA_FORMAT, "NoteAttributes.applicationData")
        with s.lock:
            notebook = note.notebookGuid or s.default_notebook
            if notebook not in s.notebooks:
                raise EDAM.EDAMNotFoundException(identifier="Note.notebookGuid", key=notebook)
            size = len(note.content.encode())
            if size > s.upload_left:
                raise _user_error(CODE.QUOTA_REACHED, "Accounting.uploadLimit")
            s.upload_left -= size
            stored = StoredNote(
                guid=str(uuid.uuid4()), title=note.title, content=note.content,
                notebook=notebook, created=note.created, tags=list(note.tagNames or ()),
                source_url=attributes.sourceURL or "", author=attributes.author or "",
                application_data=data, made_at=s.now(),
            )  # fmt: skip
            s.tags.update(stored.tags)
            s._notes.append(stored)
            return EDAM.Note(guid=stored.guid, title=stored.title, notebookGuid=notebook,
                             created=note.created, updateSequenceNum=len(s._notes))  # fmt: skip

    def findNotesMetadata(  # noqa: N802
        self, authenticationToken: str, filter: Any, offset: int, maxNotes: int,  # noqa: A002, N803
        resultSpec: Any,  # noqa: N803
    ) -> Any:  # fmt: skip
        self._check(authenticationToken)
        words = (filter.words or "").strip()
        with self.s.lock:
            seen = [n for n in self.s._notes if n.made_at + self.s.index_delay <= self.s.now()]
            if words.startswith("applicationData:"):
                key = words.split(":", 1)[1]
                found = [n for n in seen if key in n.application_data]
            else:
                found = [n for n in seen if words.lower() in (n.title + n.content).lower()]
            page = found[offset : offset + maxNotes]
            return EDAM.NotesMetadataList(
                startIndex=offset, totalNotes=len(found),
                notes=[EDAM.NoteMetadata(guid=n.guid, title=n.title) for n in page],
            )  # fmt: skip


def _method(body: bytes) -> str:
    """The method a Thrift binary message calls (its name follows the version)."""
    size = int.from_bytes(body[4:8], "big") if len(body) >= 8 else 0
    return body[8 : 8 + size].decode("utf-8", "replace")


class EvernoteStandIn(StandIn):
    """Evernote with one account, its developer token (``evernote.token``) and a default
    notebook, "First Notebook"."""

    def __init__(self) -> None:
        super().__init__()
        self.token = "S=s1:U=1:E=" + secrets.token_hex(8) + ":H=" + secrets.token_hex(16)
        self.expired_token = "S=s1:U=1:E=expired:H=0"
        self.username = "tester"
        self.default_notebook = str(uuid.uuid4())
        self.notebooks: dict[str, str] = {self.default_notebook: "First Notebook"}
        self.tags: set[str] = set()
        self._notes: list[StoredNote] = []
        self.rate_limited_until = 0.0  # calls before then: RATE_LIMIT_REACHED
        self.lose: dict[str, int] = {}  # method -> how many of its answers to lose
        self.upload_left = 60 * 1024 * 1024  # a free account's month
        self.index_delay = 0.0
        self._handler = _Stores(self)

    def notes(self) -> list[StoredNote]:
        with self.lock:
            return list(self._notes)

    def rate_limit(self, seconds: int) -> None:
        """Every call for ``seconds`` is refused with RATE_LIMIT_REACHED (the account's
        hourly allowance used up), told how long is left."""
        with self.lock:
            self.rate_limited_until = self.now() + seconds

    def lose_answer(self, method: str, n: int = 1) -> None:
        """The next ``n`` calls of ``method`` are done, and their answers lost (502)."""
        with self.lock:
            self.lose[method] = self.lose.get(method, 0) + n

    def calls(self, method: str) -> int:
        """How many calls of ``method`` (a Thrift method name) came in."""
        return sum(1 for r in self.requests if _method(r.body) == method)

    def routes(self) -> list[BaseRoute]:
        return [
            Route("/edam/user", self._thrift(EDAM.UserStore), methods=["POST"]),
            Route("/shard/s1/notestore", self._thrift(EDAM.NoteStore), methods=["POST"]),
        ]

    def _thrift(self, service: Any) -> Any:
        processor = TProcessor(service, self._handler)

        async def answer(request: Request) -> Response:
            if "thrift" not in request.headers.get("content-type", ""):
                return Response("Unsupported Media Type", status_code=415)
            body = await request.body()
            out = TMemoryBuffer()
            processor.process(TBinaryProtocol(TMemoryBuffer(body)), TBinaryProtocol(out))
            with self.lock:
                method = _method(body)
                if self.lose.get(method, 0) > 0:
                    self.lose[method] -= 1
                    return Response("Bad Gateway", status_code=502)
            return Response(out.getvalue(), media_type="application/x-thrift")

        return answer
