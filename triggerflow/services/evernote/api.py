"""Evernote's API calls triggerflow makes: UserStore (who, which shard) and NoteStore.

Each is one Thrift call (:mod:`.thrift`) POSTed as ``application/x-thrift``: UserStore
at ``<url>/edam/user``, NoteStore at the account's own URL. The token is every call's
first argument. Evernote answers HTTP 200 with its exceptions inside the reply:
``EDAMUserException`` (an error code and the parameter at fault),
``EDAMSystemException`` (with ``rateLimitDuration`` when rate limited) and
``EDAMNotFoundException``; they become the error tree here. Field ids are those of
Evernote's IDL (``Types.thrift``, ``NoteStore.thrift``, ``UserStore.thrift``).
"""

from __future__ import annotations

import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any

import httpx

from ...exceptions import (
    ServiceError,
    ServiceNotFound,
    ServiceRateLimited,
    ServiceRejected,
    ServiceUnavailable,
)
from .thrift import BOOL, I64, LIST, MAP, STRING, STRUCT, Field, ThriftError, call, read_reply

__all__ = ["CODES", "EdamError", "count_spec", "edam_call", "find_filter", "note_fields"]

CODES = {  # Errors.thrift, EDAMErrorCode
    1: "UNKNOWN", 2: "BAD_DATA_FORMAT", 3: "PERMISSION_DENIED", 4: "INTERNAL_ERROR",
    5: "DATA_REQUIRED", 6: "LIMIT_REACHED", 7: "QUOTA_REACHED", 8: "INVALID_AUTH",
    9: "AUTH_EXPIRED", 10: "DATA_CONFLICT", 11: "ENML_VALIDATION", 12: "SHARD_UNAVAILABLE",
    13: "LEN_TOO_SHORT", 14: "LEN_TOO_LONG", 15: "TOO_FEW", 16: "TOO_MANY",
    17: "UNSUPPORTED_OPERATION", 18: "TAKEN_DOWN", 19: "RATE_LIMIT_REACHED",
}  # fmt: skip
AUTH_CODES = {3, 8, 9}  # PERMISSION_DENIED, INVALID_AUTH, AUTH_EXPIRED
THRIFT = {"Content-Type": "application/x-thrift", "Accept": "application/x-thrift"}


@dataclass
class EdamError(Exception):
    """One of Evernote's exceptions, as the reply carried it."""

    kind: str  # "user", "system", "not found"
    code: int | None
    text: str  # the parameter at fault, or the system's message, or the identifier
    rate_limit: int | None = None  # seconds to wait (RATE_LIMIT_REACHED)

    def __str__(self) -> str:
        name = CODES.get(self.code or 0, "")
        return f"{name} {self.text}".strip() if name else self.text

    def as_service_error(
        self, what: str, auth_error: Callable[[str], ServiceError]
    ) -> ServiceError:
        """This error in the error tree, for ``what`` (``"the note for 'x'"``)."""
        if self.rate_limit is not None or self.code == 19:
            wait = self.rate_limit or 60
            return ServiceRateLimited(
                "evernote", f"Evernote rate limit reached: no more calls for {wait} s; "
                "Prefect retries later", retry_at=time.time() + wait,
            )  # fmt: skip
        if self.kind == "user" and self.code in AUTH_CODES:
            return auth_error(f"refused ({self})")
        if self.kind == "not found":
            return ServiceNotFound("evernote", f"Evernote: {what}: not found ({self.text})", 404)
        if self.kind == "system" or self.code in (4, 12):
            return ServiceUnavailable("evernote", f"Evernote could not do {what}: {self}")
        if self.code == 7:
            return ServiceRejected(
                "evernote", "Evernote refused the note: the account's monthly upload "
                "allowance is used up", 403,
            )  # fmt: skip
        return ServiceRejected("evernote", f"Evernote refused {what}: {self}", 400)


def edam_call(
    post: Callable[[bytes], httpx.Response], method: str, args: Sequence[Field], seqid: int = 1
) -> Any:
    """Call ``method`` with ``args`` (the token among them) by ``post``; its result.

    Raises:
        EdamError: Evernote's exception.
        ThriftError: the answer is no Thrift reply (said in words).
    """
    r = post(call(method, seqid, args))
    if "thrift" not in r.headers.get("content-type", "application/x-thrift"):
        raise ThriftError(f"the answer is {r.headers.get('content-type')}, not Thrift")
    result = read_reply(r.content, method, seqid)
    if 1 in result:
        e = result[1]
        raise EdamError("user", e.get(1), str(e.get(2) or ""))
    if 2 in result:
        e = result[2]
        raise EdamError("system", e.get(1), str(e.get(2) or ""), e.get(3))
    if 3 in result:
        e = result[3]
        raise EdamError("not found", None, f"{e.get(1) or ''} {e.get(2) or ''}".strip())
    return result.get(0)


def note_fields(
    *,
    title: str,
    content: str,
    created_ms: int | None,
    notebook: str | None,
    tags: Sequence[str],
    author: str,
    source_url: str,
    data_key: str,
) -> list[Field]:
    """A ``Types.Note`` to create; ``data_key`` goes into its attributes' applicationData."""
    attributes = [
        (13, STRING, author or None),
        (15, STRING, source_url or None),
        (16, STRING, "triggerflow"),
        (23, STRUCT, [(2, MAP, (STRING, STRING, {data_key: "triggerflow"}))]),
    ]
    return [
        (2, STRING, title),
        (3, STRING, content),
        (6, I64, created_ms),
        (7, I64, created_ms),
        (11, STRING, notebook),
        (14, STRUCT, attributes),
        (15, LIST, (STRING, list(tags)) if tags else None),
    ]


def find_filter(words: str) -> list[Field]:
    """A ``NoteFilter`` of search words (Evernote's search grammar)."""
    return [(3, STRING, words), (7, BOOL, False)]


def count_spec() -> list[Field]:
    """A ``NotesMetadataResultSpec`` that asks for nothing but the count."""
    return [(2, BOOL, False)]
