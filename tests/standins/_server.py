"""The base of the stand-ins: a Starlette app served by uvicorn on 127.0.0.1, in a thread.

A stand-in is a fake of a third-party web API for the tests. :class:`StandIn` gives every
one of them the same plumbing:

* the socket is bound to ``127.0.0.1:0`` in the constructor, before uvicorn starts, and
  handed to it (``Server.run(sockets=[sock])``): :attr:`StandIn.url` is known and
  reserved at once and no other process can take the port in between;
* ``start()`` waits (bounded) until uvicorn reports that it serves; ``close()`` asks it
  to stop and joins the thread (bounded); both run from the context manager;
* every request is recorded (:class:`RecordedRequest`: method, path, query, headers,
  body) in :attr:`StandIn.requests`, before the app sees it;
* :meth:`StandIn.fail_next` makes the next requests fail with a chosen status and body;
* :meth:`StandIn.gate` lets a stand-in answer before its routes (rate limits) and add
  headers to every answer (rate-limit headers);
* a clock the tests can move (:meth:`StandIn.advance`): token expiry, rate-limit windows
  and timestamps of seeded data follow it, so no test has to sleep.

The app runs in uvicorn's event loop in another thread while the test calls the control
methods from its own: the stand-ins keep their state behind :attr:`StandIn.lock` and
never ``await`` while holding it.
"""

from __future__ import annotations

import fnmatch
import json
import socket
import threading
import time
from collections import Counter
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from email.parser import BytesParser
from email.policy import HTTP
from http import HTTPStatus
from types import TracebackType
from typing import Any, Self
from urllib.parse import parse_qs, parse_qsl

import uvicorn
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import Response
from starlette.routing import BaseRoute
from starlette.types import ASGIApp, Message, Receive, Scope, Send

__all__ = ["Gate", "RecordedRequest", "StandIn", "parse_body", "reason"]

HOST = "127.0.0.1"  # the stand-ins never listen on anything but the loopback address
MAX_BODY = 10 * 1024 * 1024  # a request body larger than this is refused (413)
MAX_CHUNKS = 100_000  # and one sent in more pieces than this (bounds the read loop)


def reason(status: int) -> str:
    """The HTTP reason phrase of ``status`` ("Service Unavailable")."""
    try:
        return HTTPStatus(status).phrase
    except ValueError:
        return "Error"


@dataclass(frozen=True)
class RecordedRequest:
    """One request as the stand-in received it (header names in lower case)."""

    method: str
    path: str
    query: str
    headers: Mapping[str, str]
    body: bytes
    time: float  # on the stand-in's clock (StandIn.now())

    @property
    def params(self) -> dict[str, list[str]]:
        """The query string's parameters, every value of each."""
        return parse_qs(self.query, keep_blank_values=True)

    def param(self, name: str) -> str | None:
        """The last value of query parameter ``name``, or None."""
        values = self.params.get(name)
        return values[-1] if values else None

    def json(self) -> Any:
        """The body decoded as JSON."""
        return json.loads(self.body)

    def form(self) -> dict[str, str]:
        """The body's parameters (form-encoded, multipart or JSON), last value of each."""
        return {k: v for k, v in parse_body(self.headers.get("content-type", ""), self.body)}


def parse_body(content_type: str, body: bytes) -> list[tuple[str, str]]:
    """A request body's parameters as (name, value) pairs, in order.

    Form-encoded and multipart bodies (what ``curl -F`` sends, as in Mastodon's examples)
    and JSON objects (Mastodon, Wallabag and Trello all accept JSON bodies too; nested
    values are kept as JSON text, lists become repeated ``name[]`` pairs). Anything else:
    no parameters. Parsed with the standard library: python-multipart is not installed.
    """
    kind = content_type.split(";", 1)[0].strip().lower()
    if not body:
        return []
    if kind == "application/json":
        try:
            data = json.loads(body)
        except ValueError:
            return []
        if not isinstance(data, dict):
            return []
        pairs: list[tuple[str, str]] = []
        for key, value in data.items():
            if isinstance(value, list):
                name = key if key.endswith("[]") else f"{key}[]"
                pairs.extend((name, _scalar(v)) for v in value)
            else:
                pairs.append((key, _scalar(value)))
        return pairs
    if kind == "multipart/form-data":
        head = f"Content-Type: {content_type}\r\nMIME-Version: 1.0\r\n\r\n".encode()
        message = BytesParser(policy=HTTP).parsebytes(head + body)
        pairs = []
        for part in message.iter_parts():
            name = part.get_param("name", header="content-disposition")
            if name is None:
                continue
            payload = part.get_payload(decode=True) or b""
            pairs.append((str(name), payload.decode("utf-8", "replace")))
        return pairs
    if kind in ("application/x-www-form-urlencoded", ""):
        return parse_qsl(body.decode("utf-8", "replace"), keep_blank_values=True)
    return []


def _scalar(value: Any) -> str:
    if isinstance(value, bool):
        return "true" if value else "false"
    if value is None:
        return ""
    if isinstance(value, dict | list):
        return json.dumps(value)
    return str(value)


@dataclass
class _Failure:
    remaining: int
    status: int
    body: bytes
    content_type: str
    headers: dict[str, str]
    path: str | None
    method: str | None
    after: bool = False

    def matches(self, request: RecordedRequest) -> bool:
        if self.method is not None and request.method != self.method.upper():
            return False
        return self.path is None or fnmatch.fnmatchcase(request.path, self.path)


@dataclass
class Gate:
    """What :meth:`StandIn.gate` decides: answer now (``response``) and/or add headers."""

    response: Response | None = None
    headers: dict[str, str] = field(default_factory=dict)


class StandIn:
    """A fake web service on ``http://127.0.0.1:<port>``; subclasses supply the routes.

    Use it as a context manager (``with MastodonStandIn() as m: ...``) or call
    :meth:`start` and :meth:`close`.
    """

    #: seconds start() waits for uvicorn to serve, close() for its thread to end
    STARTUP_TIMEOUT = 10.0
    SHUTDOWN_TIMEOUT = 5.0

    def __init__(self) -> None:
        self.lock = threading.RLock()
        #: every request received, oldest first
        self.requests: list[RecordedRequest] = []
        self._failures: list[_Failure] = []
        self._clock_offset = 0.0
        self._server: uvicorn.Server | None = None
        self._thread: threading.Thread | None = None
        # Bound (and listening) at once: the URL is known before start(), seeded data can
        # carry it, and connections made before uvicorn runs wait in the backlog.
        sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
        try:
            sock.bind((HOST, 0))
            sock.listen(128)
        except OSError:
            sock.close()
            raise
        self._sock: socket.socket | None = sock
        #: "http://127.0.0.1:<port>"
        self.url = f"http://{HOST}:{sock.getsockname()[1]}"

    # -- what subclasses provide --------------------------------------------------------
    def routes(self) -> Sequence[BaseRoute]:
        """The Starlette routes of the service."""
        raise NotImplementedError

    def exception_handlers(self) -> dict[Any, Any]:
        """Starlette exception handlers (e.g. the service's own 404 body)."""
        return {}

    def failure_body(self, status: int) -> tuple[bytes, str]:
        """Body and content type of an injected failure when the test gives no body."""
        return reason(status).encode(), "text/plain; charset=utf-8"

    def gate(self, request: RecordedRequest) -> Gate:
        """Called for each request before the routes (after injected failures).

        Return a :class:`Gate` with a ``response`` to answer without the routes (a rate
        limit), and/or ``headers`` to add to the answer. The default lets all through.
        """
        return Gate()

    # -- clock ---------------------------------------------------------------------------
    def now(self) -> float:
        """The stand-in's clock (Unix time): the real one moved by :meth:`advance`."""
        return time.time() + self._clock_offset

    def advance(self, seconds: float) -> None:
        """Move the stand-in's clock forward: tokens expire, rate-limit windows end."""
        with self.lock:
            self._clock_offset += seconds

    # -- failure injection ---------------------------------------------------------------
    def fail_next(
        self,
        n: int = 1,
        status: int = 503,
        body: str | bytes | Mapping[str, Any] | list[Any] | None = None,
        *,
        headers: Mapping[str, str] | None = None,
        path: str | None = None,
        method: str | None = None,
        after: bool = False,
    ) -> None:
        """Answer the next ``n`` requests (matching ``path``, a glob, and ``method``) with
        ``status`` and ``body`` (a dict or list is sent as JSON, a str as plain text;
        None: the service's usual error body for that status).

        ``after=True``: the service does the work first and only its answer is replaced
        (a proxy that timed out, a connection lost on the way back), to test retries of
        requests that did succeed."""
        if body is None:
            raw, content_type = self.failure_body(status)
        elif isinstance(body, bytes):
            raw, content_type = body, "application/octet-stream"
        elif isinstance(body, str):
            raw, content_type = body.encode(), "text/plain; charset=utf-8"
        else:
            raw, content_type = json.dumps(body).encode(), "application/json; charset=utf-8"
        with self.lock:
            self._failures.append(
                _Failure(n, status, raw, content_type, dict(headers or {}), path, method, after)
            )

    def _take_failure(self, request: RecordedRequest) -> tuple[Response, bool] | None:
        with self.lock:
            for failure in self._failures:
                if failure.remaining > 0 and failure.matches(request):
                    failure.remaining -= 1
                    self._failures = [f for f in self._failures if f.remaining > 0]
                    response = Response(
                        failure.body,
                        status_code=failure.status,
                        headers=failure.headers,
                        media_type=failure.content_type,
                    )
                    return response, failure.after
        return None

    # -- inspection ----------------------------------------------------------------------
    def requests_to(self, path: str, method: str | None = None) -> list[RecordedRequest]:
        """The requests whose path matches ``path`` (a glob: ``/1/boards/*/actions``)."""
        with self.lock:
            return [
                r
                for r in self.requests
                if fnmatch.fnmatchcase(r.path, path) and (method is None or r.method == method)
            ]

    def count(self, path: str, method: str | None = None) -> int:
        """How many requests hit ``path`` (a glob), optionally with ``method`` only."""
        return len(self.requests_to(path, method))

    def hits(self) -> Counter[str]:
        """Requests per ``"METHOD /path"``, e.g. ``hits()["POST /api/v1/statuses"]``."""
        with self.lock:
            return Counter(f"{r.method} {r.path}" for r in self.requests)

    # -- lifecycle -----------------------------------------------------------------------
    def start(self) -> Self:
        """Serve in a thread (on the socket bound at construction); return once uvicorn
        serves, within STARTUP_TIMEOUT."""
        if self._thread is not None:
            raise RuntimeError("already started")
        sock = self._sock
        if sock is None:
            raise RuntimeError("closed: a stand-in serves once")
        app = Starlette(routes=list(self.routes()), exception_handlers=self.exception_handlers())
        config = uvicorn.Config(
            _Recorder(app, self),
            log_config=None,  # uvicorn's default would reconfigure the test run's logging
            access_log=False,
            lifespan="off",
            loop="asyncio",
            timeout_graceful_shutdown=1,
            timeout_keep_alive=5,
        )
        server = uvicorn.Server(config)
        self._server = server
        thread = threading.Thread(
            target=server.run,
            kwargs={"sockets": [sock]},
            name=f"{type(self).__name__}-{self.url}",
            daemon=True,  # a test that forgets close() does not keep pytest alive
        )
        self._thread = thread
        thread.start()
        deadline = time.monotonic() + self.STARTUP_TIMEOUT
        while not server.started:
            if not thread.is_alive():
                self._release()
                raise RuntimeError(f"{type(self).__name__} did not start")
            if time.monotonic() > deadline:
                self.close()
                raise TimeoutError(
                    f"{type(self).__name__} not serving after {self.STARTUP_TIMEOUT} s"
                )
            time.sleep(0.005)
        return self

    def close(self) -> None:
        """Stop serving and join the thread (bounded); safe to call twice."""
        server, thread = self._server, self._thread
        if server is not None and thread is not None:
            server.should_exit = True
            thread.join(self.SHUTDOWN_TIMEOUT)
            if thread.is_alive():
                server.force_exit = True  # open keep-alive connections: do not wait for them
                thread.join(self.SHUTDOWN_TIMEOUT)
        self._release()

    def _release(self) -> None:
        if self._sock is not None:
            self._sock.close()
        self._sock = None
        self._server = None
        self._thread = None

    def __enter__(self) -> Self:
        return self.start()

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.close()


class _Recorder:
    """ASGI middleware: buffer and record the request, then failures, gate, routes."""

    def __init__(self, app: ASGIApp, standin: StandIn) -> None:
        self.app = app
        self.standin = standin

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        chunks: list[bytes] = []
        size = 0
        more = True
        while more:  # ends: more_body=False, a disconnect, or too much
            message = await receive()
            if message["type"] == "http.disconnect":
                return
            chunk = message.get("body", b"")
            size += len(chunk)
            if size > MAX_BODY or len(chunks) >= MAX_CHUNKS:
                await Response("Payload Too Large", status_code=413)(scope, receive, send)
                return
            chunks.append(chunk)
            more = message.get("more_body", False)
        body = b"".join(chunks)
        request = Request(scope)
        headers: dict[str, str] = {}
        for name, value in scope["headers"]:
            key = name.decode("latin-1").lower()
            text = value.decode("latin-1")
            headers[key] = f"{headers[key]}, {text}" if key in headers else text
        recorded = RecordedRequest(
            method=request.method,
            path=request.url.path,
            query=request.url.query,
            headers=headers,
            body=body,
            time=self.standin.now(),
        )
        with self.standin.lock:
            self.standin.requests.append(recorded)

        replayed = False

        async def replay() -> Message:
            nonlocal replayed
            if not replayed:
                replayed = True
                return {"type": "http.request", "body": body, "more_body": False}
            return await receive()  # after the body: wait for the disconnect

        failure = self.standin._take_failure(recorded)
        if failure is not None:
            response, after = failure
            if after:  # the work is done, the answer lost

                async def discard(message: Message) -> None:
                    pass

                await self.app(scope, replay, discard)
                replayed = False
            await response(scope, replay, send)
            return
        gate = self.standin.gate(recorded)
        if gate.response is not None:
            for name, value in gate.headers.items():
                gate.response.headers[name] = value
            await gate.response(scope, replay, send)
            return
        if not gate.headers:
            await self.app(scope, replay, send)
            return
        extra = [
            (k.lower().encode("latin-1"), v.encode("latin-1")) for k, v in gate.headers.items()
        ]

        async def send_with_headers(message: Message) -> None:
            if message["type"] == "http.response.start":
                message = {**message, "headers": [*message.get("headers", []), *extra]}
            await send(message)

        await self.app(scope, replay, send_with_headers)
