"""Thrift's binary protocol: the few pieces Evernote's API needs, sent with httpx.

Evernote's API is Thrift (``TBinaryProtocol``, strict) over HTTPS POST: a call is a
message (version and type ``CALL``, the method's name, a sequence id) followed by a
struct of the arguments; the answer is a ``REPLY`` whose struct holds the result as
field 0 or one of the declared exceptions as fields 1, 2, 3, or an ``EXCEPTION`` message
(Thrift's own ``TApplicationException``: an unknown method, a bad message). The official
SDK would bring its own transport and an old Thrift; these are the encodings only.

A struct is written from ``(field id, type, value)`` triples (``None`` values left out,
as optional fields are) and read back as ``{field id: value}``, nested the same way.
"""

from __future__ import annotations

import struct as _struct
from collections.abc import Iterable
from typing import Any

__all__ = [
    "BOOL", "I16", "I32", "I64", "LIST", "MAP", "SET", "STRING", "STRUCT",
    "ThriftError", "call", "encode_struct", "read_reply",
]  # fmt: skip

STOP, BOOL, BYTE, DOUBLE, I16, I32, I64, STRING, STRUCT, MAP, SET, LIST = (
    0, 2, 3, 4, 6, 8, 10, 11, 12, 13, 14, 15,
)  # fmt: skip
CALL, REPLY, EXCEPTION = 1, 2, 3
VERSION_1 = 0x80010000
MAX_SIZE = 64 * 1024 * 1024  # a length beyond this is a broken answer, not data
MAX_DEPTH = 32  # structs nested deeper: the same

Field = tuple[int, int, Any]


class ThriftError(Exception):
    """An answer that is not a Thrift reply to our call (cut short, garbled, or Thrift's
    own ``TApplicationException``)."""


def _value(kind: int, value: Any) -> bytes:
    if kind == BOOL:
        return b"\x01" if value else b"\x00"
    if kind == BYTE:
        return _struct.pack(">b", value)
    if kind == I16:
        return _struct.pack(">h", value)
    if kind == I32:
        return _struct.pack(">i", value)
    if kind == I64:
        return _struct.pack(">q", value)
    if kind == DOUBLE:
        return _struct.pack(">d", value)
    if kind == STRING:
        raw = value.encode() if isinstance(value, str) else bytes(value)
        return _struct.pack(">i", len(raw)) + raw
    if kind == STRUCT:
        return encode_struct(value)
    if kind in (LIST, SET):
        element, values = value
        return _struct.pack(">bi", element, len(values)) + b"".join(
            _value(element, v) for v in values
        )
    if kind == MAP:
        key, val, mapping = value
        return _struct.pack(">bbi", key, val, len(mapping)) + b"".join(
            _value(key, k) + _value(val, v) for k, v in mapping.items()
        )
    raise ValueError(f"Thrift type {kind} is not written here")


def encode_struct(fields: Iterable[Field]) -> bytes:
    """A struct of ``(field id, type, value)``; fields whose value is None are left out."""
    out = [
        _struct.pack(">bh", kind, field_id) + _value(kind, value)
        for field_id, kind, value in fields
        if value is not None
    ]
    return b"".join(out) + b"\x00"


def call(method: str, seqid: int, args: Iterable[Field]) -> bytes:
    """The request body of a call of ``method`` with ``args``."""
    return (
        _struct.pack(">I", VERSION_1 | CALL) + _value(STRING, method) + _struct.pack(">i", seqid)
        + encode_struct(args)
    )  # fmt: skip


class _Reader:
    def __init__(self, data: bytes) -> None:
        self.data = data
        self.at = 0

    def take(self, n: int) -> bytes:
        if n < 0 or self.at + n > len(self.data):
            raise ThriftError("the answer ends in the middle of a value")
        chunk = self.data[self.at : self.at + n]
        self.at += n
        return chunk

    def unpack(self, fmt: str) -> Any:
        return _struct.unpack(fmt, self.take(_struct.calcsize(fmt)))[0]

    def size(self) -> int:
        n = int(self.unpack(">i"))
        if not 0 <= n <= MAX_SIZE:
            raise ThriftError(f"a size of {n} in the answer")
        return n

    def value(self, kind: int, depth: int = 0) -> Any:
        if depth > MAX_DEPTH:
            raise ThriftError("structs nested too deep in the answer")
        if kind == BOOL:
            return self.take(1) != b"\x00"
        if kind == BYTE:
            return self.unpack(">b")
        if kind == I16:
            return self.unpack(">h")
        if kind == I32:
            return self.unpack(">i")
        if kind == I64:
            return self.unpack(">q")
        if kind == DOUBLE:
            return self.unpack(">d")
        if kind == STRING:
            raw = self.take(self.size())
            try:
                return raw.decode()
            except UnicodeDecodeError:
                return raw  # binary (a content hash)
        if kind == STRUCT:
            return self.struct(depth + 1)
        if kind in (LIST, SET):
            element = self.unpack(">b")
            return [self.value(element, depth + 1) for _ in range(self.size())]
        if kind == MAP:
            key, val = self.unpack(">b"), self.unpack(">b")
            return {
                self.value(key, depth + 1): self.value(val, depth + 1) for _ in range(self.size())
            }
        raise ThriftError(f"unknown Thrift type {kind} in the answer")

    def struct(self, depth: int = 0) -> dict[int, Any]:
        fields: dict[int, Any] = {}
        while True:
            kind = self.unpack(">b")
            if kind == STOP:
                return fields
            field_id = self.unpack(">h")
            fields[field_id] = self.value(kind, depth)


def read_reply(data: bytes, method: str, seqid: int) -> dict[int, Any]:
    """The result struct of the answer to ``method`` (field 0: the result; 1, 2, 3: the
    exceptions it declares).

    Raises:
        ThriftError: not a reply to this call, or Thrift's own exception.
    """
    reader = _Reader(data)
    head = reader.unpack(">I")
    if head & 0xFFFF0000 != VERSION_1:
        raise ThriftError("the answer is not a Thrift binary message")
    kind = head & 0xFF
    name = reader.value(STRING)
    got = reader.unpack(">i")
    body = reader.struct()
    if kind == EXCEPTION:
        raise ThriftError(f"{method} failed on the server: {body.get(1) or 'no reason given'}")
    if kind != REPLY or name != method or got != seqid:
        raise ThriftError(f"the answer is not the reply to {method}")
    return body
