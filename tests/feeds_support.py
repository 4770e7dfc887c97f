"""A real HTTP feed server on 127.0.0.1 for the tests (a pytest plugin).

``feeds.publish("/news.xml", ["title 0", "title 1"])`` serves an RSS 2.0 feed whose item
``i`` has guid ``<url>#i``, link ``<url>#i`` and a publication date ``i`` minutes after a
fixed start (so the last title is the newest). Responses carry ETag and Last-Modified and
answer conditional requests with 304; gzip when the client accepts it. Other routes:
``raw`` (any body), ``broken`` (an error status), ``slow`` (answers after a delay),
``redirect``, ``trickle`` (the body one byte at a time) and ``cut_short`` (the connection
closes halfway through the body). ``tls_feeds`` is the same server over HTTPS with a
self-signed certificate, which no client trusts.
"""

from __future__ import annotations

import gzip
import hashlib
import ssl
import subprocess
import tempfile
import threading
from collections import Counter
from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from email.utils import format_datetime
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from types import SimpleNamespace
from typing import Any
from xml.sax.saxutils import escape

import pytest

START = datetime(2026, 1, 1, tzinfo=UTC)


@dataclass
class Route:
    body: bytes = b""
    content_type: str = "application/rss+xml; charset=utf-8"
    status: int = 200
    delay: float = 0.0
    location: str | None = None
    etag: str | None = None
    last_modified: str | None = None
    trickle: float = 0.0  # seconds between the body's bytes
    cut_short: bool = False  # close the connection after half of the body
    headers: dict[str, str] | None = None  # sent with every answer (Retry-After, Cache-Control)


class FeedServer:
    """The server and its routes; one per session, routes reset per test."""

    def __init__(self, tls: ssl.SSLContext | None = None) -> None:
        self.scheme = "https" if tls else "http"
        self.routes: dict[str, Route] = {}
        self.requests: Counter[str] = Counter()
        self.not_modified: Counter[str] = Counter()
        self.headers: dict[str, dict[str, str]] = {}
        self.in_flight = 0  # requests being answered now, and the most at once
        self.most_in_flight = 0
        self._lock = threading.Lock()
        self._closing = threading.Event()
        server = self

        class Handler(BaseHTTPRequestHandler):
            protocol_version = "HTTP/1.1"

            def do_GET(self) -> None:  # noqa: N802 - http.server's naming
                server._handle(self)

            def log_message(self, format: str, *args: object) -> None:  # noqa: A002
                pass  # quiet test output

        class Server(ThreadingHTTPServer):
            def handle_error(self, request: object, client_address: object) -> None:
                import sys

                if not isinstance(sys.exc_info()[1], ConnectionError):
                    super().handle_error(request, client_address)  # type: ignore[arg-type]
                # a client that gave up on a slow answer: not worth a traceback

        self.httpd = Server(("127.0.0.1", 0), Handler)
        if tls is not None:
            self.httpd.socket = tls.wrap_socket(self.httpd.socket, server_side=True)
        self.httpd.daemon_threads = True
        self.port = self.httpd.server_address[1]
        self.thread = threading.Thread(target=self.httpd.serve_forever, daemon=True)
        self.thread.start()

    # -- the test's side --------------------------------------------------------------
    def url(self, path: str) -> str:
        return f"{self.scheme}://127.0.0.1:{self.port}{path}"

    def publish(self, path: str, titles: Sequence[str], *, kind: str = "rss") -> None:
        """Serve a feed with one item per title (item i: guid/link ``url#i``)."""
        url = self.url(path)
        if kind == "atom":
            entries = "".join(
                f"<entry><id>{url}#{i}</id><title>{escape(t)}</title>"
                f'<link href="{url}#{i}"/><updated>{(START + timedelta(minutes=i)).isoformat()}'
                f"</updated><summary>about {escape(t)}</summary></entry>"
                for i, t in enumerate(titles)
            )
            body = (
                '<?xml version="1.0" encoding="utf-8"?>'
                '<feed xmlns="http://www.w3.org/2005/Atom"><title>Test feed</title>'
                f"<id>{url}</id><updated>{START.isoformat()}</updated>{entries}</feed>"
            )
            ctype = "application/atom+xml; charset=utf-8"
        else:
            items = "".join(
                f"<item><guid>{url}#{i}</guid><title>{escape(t)}</title><link>{url}#{i}</link>"
                f"<pubDate>{format_datetime(START + timedelta(minutes=i))}</pubDate>"
                f"<description>about {escape(t)}</description></item>"
                for i, t in enumerate(titles)
            )
            body = (
                '<?xml version="1.0" encoding="utf-8"?><rss version="2.0"><channel>'
                f"<title>Test feed</title><link>{url}</link><description>tests</description>"
                f"{items}</channel></rss>"
            )
            ctype = "application/rss+xml; charset=utf-8"
        self.raw(path, body.encode(), ctype)

    def publish_every(self, path: str, last: datetime, every: timedelta, count: int) -> str:
        """Serve an RSS feed of ``count`` items published ``every`` apart, the newest at
        ``last`` (a feed's rhythm, for the silent-feed rule); returns its URL."""
        url = self.url(path)
        items = "".join(
            f"<item><guid>{url}#{n}</guid><title>item {n}</title><link>{url}#{n}</link>"
            f"<pubDate>{format_datetime(last - every * (count - 1 - n))}</pubDate></item>"
            for n in range(count)
        )
        body = (
            '<?xml version="1.0" encoding="utf-8"?><rss version="2.0"><channel><title>R'
            f"</title><link>{url}</link><description>r</description>{items}</channel></rss>"
        )
        self.raw(path, body.encode(), "application/rss+xml")
        return url

    def raw(self, path: str, body: bytes, content_type: str = "text/xml") -> None:
        """Serve ``body`` with validators (ETag from the content, Last-Modified now)."""
        with self._lock:
            self.routes[path] = Route(
                body=body,
                content_type=content_type,
                etag='"' + hashlib.sha1(body).hexdigest()[:16] + '"',
                last_modified=format_datetime(datetime.now(UTC), usegmt=True),
            )

    def broken(self, path: str, status: int = 500, headers: dict[str, str] | None = None) -> None:
        """Answer ``status`` (e.g. 503 with ``headers={"Retry-After": "120"}``)."""
        with self._lock:
            self.routes[path] = Route(
                body=b"error\n", content_type="text/plain", status=status, headers=headers
            )

    def with_headers(self, path: str, **headers: str) -> None:
        """Send ``headers`` with every answer of ``path`` (``Cache_Control="max-age=600"``)."""
        with self._lock:
            self.routes[path].headers = {k.replace("_", "-"): v for k, v in headers.items()}

    def slow(self, path: str, delay: float, titles: Sequence[str] = ("slow",)) -> None:
        self.publish(path, titles)
        self.routes[path].delay = delay

    def trickle(self, path: str, every: float, titles: Sequence[str] = ("trickled",)) -> None:
        """Serve a feed whose body comes one byte every ``every`` seconds."""
        self.publish(path, titles)
        self.routes[path].trickle = every

    def cut_short(self, path: str, titles: Sequence[str] = ("cut",)) -> None:
        """Announce the whole feed's length, send half of it and close the connection."""
        self.publish(path, titles)
        self.routes[path].cut_short = True

    def redirect(self, path: str, to: str, status: int = 301) -> None:
        with self._lock:
            self.routes[path] = Route(status=status, location=self.url(to))

    def reset(self) -> None:
        with self._lock:
            self.routes.clear()
            self.requests.clear()
            self.not_modified.clear()
            self.headers.clear()
            self.in_flight = self.most_in_flight = 0

    def close(self) -> None:
        self._closing.set()  # wakes slow handlers
        self.httpd.shutdown()
        self.httpd.server_close()

    # -- the server's side ------------------------------------------------------------
    def _handle(self, h: BaseHTTPRequestHandler) -> None:
        with self._lock:
            self.in_flight += 1
            self.most_in_flight = max(self.most_in_flight, self.in_flight)
        try:
            self._answer(h)
        finally:
            with self._lock:
                self.in_flight -= 1

    def _answer(self, h: BaseHTTPRequestHandler) -> None:
        path = h.path.split("?", 1)[0]
        with self._lock:
            self.requests[path] += 1
            self.headers[path] = dict(h.headers.items())
            route = self.routes.get(path)
        if route is None:
            return self._send(h, 404, b"not found\n", "text/plain")
        if route.delay:
            self._closing.wait(min(route.delay, 30.0))  # bounded, and cut short on close
        if route.location:
            h.send_response(route.status)
            h.send_header("Location", route.location)
            h.send_header("Content-Length", "0")
            h.end_headers()
            return None
        if route.status != 200:
            return self._send(h, route.status, route.body, route.content_type, route.headers)
        # RFC 9110 13.2.2: If-None-Match, when present, decides alone.
        inm, ims = h.headers.get("If-None-Match"), h.headers.get("If-Modified-Since")
        if (inm is not None and inm == route.etag) or (
            inm is None and ims is not None and ims == route.last_modified
        ):
            with self._lock:
                self.not_modified[path] += 1
            h.send_response(304)
            h.send_header("ETag", route.etag or "")
            for k, v in (route.headers or {}).items():
                h.send_header(k, v)
            h.send_header("Content-Length", "0")
            h.end_headers()
            return None
        extra = {"ETag": route.etag or "", "Last-Modified": route.last_modified or ""}
        extra.update(route.headers or {})
        if route.trickle or route.cut_short:
            return self._send_partly(h, path, route)
        return self._send(h, 200, route.body, route.content_type, extra)

    def _send_partly(self, h: BaseHTTPRequestHandler, path: str, route: Route) -> None:
        h.send_response(200)
        h.send_header("Content-Type", route.content_type)
        h.send_header("Content-Length", str(len(route.body)))
        h.end_headers()
        if route.cut_short:
            h.wfile.write(route.body[: len(route.body) // 2])
            h.wfile.flush()
            h.close_connection = True
            return
        for n in range(len(route.body)):
            # Stops when the client gives up (the write fails), the server closes or the
            # test is over (its routes are reset), so no trickle outlives its test for long.
            if self._closing.wait(route.trickle if n else 0) or self.routes.get(path) is not route:
                return
            try:
                h.wfile.write(route.body[n : n + 1])
                h.wfile.flush()
            except OSError:
                return

    @staticmethod
    def _send(
        h: BaseHTTPRequestHandler,
        status: int,
        body: bytes,
        ctype: str,
        extra: dict[str, str] | None = None,
    ) -> None:
        headers = dict(extra or {})
        if "gzip" in h.headers.get("Accept-Encoding", "") and body:
            body = gzip.compress(body)
            headers["Content-Encoding"] = "gzip"
        h.send_response(status)
        h.send_header("Content-Type", ctype)
        h.send_header("Content-Length", str(len(body)))
        for k, v in headers.items():
            if v:
                h.send_header(k, v)
        h.end_headers()
        h.wfile.write(body)


@pytest.fixture(scope="session")
def feed_server() -> Iterator[FeedServer]:
    server = FeedServer()
    try:
        yield server
    finally:
        server.close()


def self_signed_tls(folder: Path) -> ssl.SSLContext:
    """A server context with a fresh self-signed certificate for 127.0.0.1."""
    key, cert = folder / "feeds.key", folder / "feeds.crt"
    subprocess.run(
        ["openssl", "req", "-x509", "-newkey", "rsa:2048", "-nodes", "-days", "30",
         "-keyout", str(key), "-out", str(cert), "-subj", "/CN=127.0.0.1",
         "-addext", "subjectAltName=IP:127.0.0.1"],
        check=True, capture_output=True,
    )  # fmt: skip
    ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
    ctx.load_cert_chain(cert, key)
    return ctx


@pytest.fixture(scope="session")
def tls_feed_server() -> Iterator[FeedServer]:
    with tempfile.TemporaryDirectory() as folder:
        server = FeedServer(tls=self_signed_tls(Path(folder)))
    try:
        yield server
    finally:
        server.close()


@pytest.fixture
def tls_feeds(tls_feed_server: FeedServer) -> Iterator[FeedServer]:
    """Like ``feeds``, over HTTPS with a self-signed certificate (so: not trusted)."""
    tls_feed_server.reset()
    yield tls_feed_server
    tls_feed_server.reset()


@pytest.fixture
def feeds(feed_server: FeedServer) -> Iterator[FeedServer]:
    """The feed server with no routes; ``feeds.publish(path, titles)`` to add one."""
    feed_server.reset()
    yield feed_server
    feed_server.reset()


class Clock:
    """The time the rss() source sees (``triggerflow.sources._rss.now``): starts now, moves
    only when told, so that next-fetch times and backoff are tested without sleeping."""

    def __init__(self) -> None:
        self.t = datetime.now(UTC)

    def __call__(self) -> datetime:
        return self.t

    def advance(self, seconds: float) -> None:
        self.t += timedelta(seconds=seconds)


@pytest.fixture
def clock(monkeypatch: pytest.MonkeyPatch) -> Clock:
    c = Clock()
    monkeypatch.setattr("triggerflow.sources._rss.now", c)
    return c


def run_rss(
    trigger: str | None,
    feeds: tuple[str, ...],
    use_store: bool,
    write: bool,
    report: Any = None,
) -> SimpleNamespace:
    """What the rss() step's Prefect task runs, called directly: ``.items`` and ``.report``.

    ``report``: the step's report to fill (what a caller keeps when the step raises).
    """
    from triggerflow._steps import Reading
    from triggerflow.sources import _rss
    from triggerflow.types import SourceReport

    report = report if report is not None else SourceReport("rss")
    reading = Reading(trigger, use_store=use_store, write=write)
    got = _rss._fetch(tuple(feeds), reading, report)
    return SimpleNamespace(items=got.as_items(), report=report)
