"""The one place that talks HTTP for sources: client settings and error mapping.

httpx exceptions never leave this module: they become :class:`FeedUnavailable`
(worth retrying: no answer, timeout, 5xx, 429) or :class:`FeedInvalid` (an
answer that retrying will not change: 4xx, too many redirects, a bad URL, a TLS
certificate that is not trusted). Each request has one deadline, the feed timeout,
for all of it: connecting, waiting and reading the body.
"""

from __future__ import annotations

import asyncio
import logging
import socket
import ssl
import sys
from collections import Counter, deque
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from datetime import UTC, datetime
from email.utils import parsedate_to_datetime
from urllib.parse import urlsplit

if "httpx" not in sys.modules:
    # httpx imports its command-line client (click, rich, pygments) whenever those are
    # installed, and Prefect installs them: 36 ms and 6 MB of every run, for a tool
    # triggerflow never runs. Kept out of this one import (httpx.main is then httpx's
    # own stub), and importable again afterwards.
    sys.modules["httpx._main"] = None  # type: ignore[assignment]
    try:
        import httpx
    finally:
        del sys.modules["httpx._main"]
import httpx  # noqa: E402  (the line above imported it; this one is for readers and mypy)

from . import __version__
from .exceptions import FeedError, FeedInvalid, FeedUnavailable

USER_AGENT = (
    f"triggerflow/{__version__} (self-hosted feed reader; "
    "+https://github.com/triggerflow/triggerflow)"
)
_ACCEPT = (
    "application/atom+xml, application/rss+xml, application/feed+json, "
    "application/rdf+xml;q=0.9, application/json;q=0.8, "
    "application/xml;q=0.8, text/xml;q=0.8, */*;q=0.5"
)
MAX_BODY = 20 * 1024 * 1024  # a "feed" larger than this is not one; stop reading
_CONNECT_TIMEOUT = 10.0  # at most; a longer feed timeout is for slow answers, not connects
_PERMANENT_REDIRECTS = {301, 308}


class _OriginOnly(logging.Filter):
    """httpx logs every request's full address (at INFO); a web hook's address often
    holds its token (``…/hooks/T0KEN``). Its log keeps only the origin: ``https://host/…``.
    """

    def filter(self, record: logging.LogRecord) -> bool:
        if isinstance(record.args, tuple) and any(isinstance(a, httpx.URL) for a in record.args):
            record.args = tuple(
                f"{a.scheme}://{a.host}{f':{a.port}' if a.port else ''}/…"
                if isinstance(a, httpx.URL)
                else a
                for a in record.args
            )
        return True


logging.getLogger("httpx").addFilter(_OriginOnly())  # every client: sinks', services', feeds'


@dataclass(frozen=True)
class FeedRequest:
    """One conditional GET: the feed's key, where to fetch it, what we saw last time."""

    source: str
    url: str
    etag: str | None = None
    last_modified: str | None = None


@dataclass
class FeedResponse:
    """What one request gave: content, "not modified", or an error."""

    request: FeedRequest
    url: str  # where to fetch next time (a permanent redirect changes it)
    body: bytes | None = None
    headers: dict[str, str] = field(default_factory=dict)
    etag: str | None = None
    last_modified: str | None = None
    not_modified: bool = False
    error: FeedError | None = None
    status: int | None = None  # the HTTP status of the final answer, None without one
    retry_after: float | None = None  # seconds the server asked us to wait (429, 503)
    fresh_for: float | None = None  # seconds the answer stays fresh (Cache-Control, Expires)


def _status_error(url: str, response: httpx.Response) -> FeedError:
    status = f"server answered {response.status_code} {response.reason_phrase}".rstrip()
    if response.status_code >= 500 or response.status_code in (408, 429):
        return FeedUnavailable(url, status)
    return FeedInvalid(url, status)


@dataclass
class _Progress:
    """How far one request got, for an error that says where it stopped."""

    response: httpx.Response | None = None  # set once the status line and headers are in

    def received(self) -> str:
        """E.g. "10 of 402 bytes" (as sent, before any decompression); "" before headers."""
        r = self.response
        if r is None:
            return ""
        size = r.headers.get("content-length", "")
        of = f" of {size}" if size.isdigit() else ""
        return f"{r.num_bytes_downloaded}{of} bytes"

    def so_far(self) -> str:
        return f" ({self.received()})" if self.response is not None else ""


async def _fetch_one(client: httpx.AsyncClient, req: FeedRequest, timeout: float) -> FeedResponse:
    shown = req.source  # errors name the feed as the user wrote it
    progress = _Progress()
    try:
        # One deadline for the whole request, body included. httpx's timeouts are per
        # read, so a server sending one byte every few seconds held a run for minutes
        # and kept the good feeds of the same call waiting (issue 15).
        async with asyncio.timeout(timeout):
            return await _get(client, req, shown, progress)
    except (TimeoutError, httpx.TimeoutException) as e:
        err: FeedError = FeedUnavailable(shown, _timeout_reason(e, progress, timeout))
        err.__cause__ = e
    except httpx.TooManyRedirects as e:
        err = FeedInvalid(shown, "too many redirects")
        err.__cause__ = e
    except (httpx.InvalidURL, httpx.UnsupportedProtocol) as e:
        err = FeedInvalid(shown, f"not a usable URL ({e})")
        err.__cause__ = e
    except httpx.ConnectError as e:
        cause = _root_cause(e)
        if cause.startswith(_UNTRUSTED):  # a person must fix the certificate or the CA
            err = FeedInvalid(shown, cause)
        else:
            err = FeedUnavailable(shown, f"cannot connect ({cause})")
        err.__cause__ = e
    except httpx.RemoteProtocolError as e:
        err = FeedUnavailable(shown, _protocol_reason(e, progress))
        err.__cause__ = e
    except httpx.TransportError as e:  # e.g. the connection reset while reading
        where = "while sending the answer" if progress.response else "before answering"
        err = FeedUnavailable(
            shown, f"connection lost {where}{progress.so_far()}: {_root_cause(e)}"
        )
        err.__cause__ = e
    except httpx.HTTPError as e:
        err = FeedUnavailable(shown, f"{type(e).__name__}: {_root_cause(e)}")
        err.__cause__ = e
    return FeedResponse(req, req.url, error=err)


async def _get(
    client: httpx.AsyncClient, req: FeedRequest, shown: str, progress: _Progress
) -> FeedResponse:
    headers = {}
    if req.etag:
        headers["If-None-Match"] = req.etag
    if req.last_modified:
        headers["If-Modified-Since"] = req.last_modified
    async with client.stream("GET", req.url, headers=headers) as r:
        progress.response = r
        next_url = req.url
        hops = [h.status_code for h in r.history]
        if hops and all(code in _PERMANENT_REDIRECTS for code in hops):
            next_url = str(r.url)
        if r.status_code == 304:
            # Reading the (empty) body lets the connection go back to the pool;
            # an unread response closes it, and the next feed pays a new connect.
            await r.aread()
            return FeedResponse(  # a 304 may carry new validators (RFC 9110 15.4.5)
                req, next_url, etag=r.headers.get("etag") or req.etag,
                last_modified=r.headers.get("last-modified") or req.last_modified,
                not_modified=True, status=304, fresh_for=fresh_for(r.headers),
            )  # fmt: skip
        if r.status_code >= 400:
            return FeedResponse(
                req, req.url, error=_status_error(shown, r), status=r.status_code,
                retry_after=retry_after(r.headers) if r.status_code in (429, 503) else None,
            )  # fmt: skip
        chunks, size = [], 0
        async for chunk in r.aiter_bytes():
            size += len(chunk)
            if size > MAX_BODY:
                err = FeedInvalid(shown, f"larger than {MAX_BODY // 2**20} MiB, not read")
                return FeedResponse(req, req.url, error=err)
            chunks.append(chunk)
        return FeedResponse(
            req,
            next_url,
            body=b"".join(chunks),
            headers={k.lower(): v for k, v in r.headers.items()},
            etag=r.headers.get("etag"),
            last_modified=r.headers.get("last-modified"),
            status=r.status_code,
            fresh_for=fresh_for(r.headers),
        )


def _http_date(value: str) -> datetime | None:
    try:
        when = parsedate_to_datetime(value)
    except (TypeError, ValueError, IndexError):
        return None
    return when if when.tzinfo else when.replace(tzinfo=UTC)


def retry_after(headers: Mapping[str, str]) -> float | None:
    """``Retry-After`` in seconds from now (RFC 9110 10.2.3: seconds or an HTTP date)."""
    value = (headers.get("retry-after") or "").strip()
    if not value:
        return None
    if value.isdigit():
        return float(value)
    when = _http_date(value)
    return max(0.0, (when - datetime.now(UTC)).total_seconds()) if when else None


def fresh_for(headers: Mapping[str, str]) -> float | None:
    """How long an answer stays fresh (RFC 9111 4.2.1): ``Cache-Control: max-age``, else
    ``Expires`` minus ``Date``; 0 for ``no-cache``/``no-store``; None when it says nothing."""
    directives = {}
    for part in (headers.get("cache-control") or "").lower().split(","):
        name, _, arg = part.strip().partition("=")
        directives[name] = arg.strip().strip('"')
    if "no-store" in directives or "no-cache" in directives:
        return 0.0
    if directives.get("max-age", "").isdigit():
        return float(directives["max-age"])
    expires = headers.get("expires")
    if expires is None:
        return None
    until = _http_date(expires)
    if until is None:  # RFC 9111 5.3: an invalid date (e.g. "0") means already expired
        return 0.0
    date = _http_date(headers.get("date") or "") or datetime.now(UTC)
    return max(0.0, (until - date).total_seconds())


def _timeout_reason(e: Exception, progress: _Progress, timeout: float) -> str:
    if isinstance(e, httpx.ConnectTimeout):
        return f"cannot connect within {min(timeout, _CONNECT_TIMEOUT):g} s"
    if progress.response is None:
        return f"no answer within {timeout:g} s"
    return (
        f"answer not complete within {timeout:g} s, the deadline for one feed "
        f"(TRIGGERFLOW_HTTP_TIMEOUT): {progress.received()} had arrived"
    )


def _protocol_reason(e: httpx.RemoteProtocolError, progress: _Progress) -> str:
    text = _root_cause(e)
    if progress.response is not None and "complete message body" in text:
        return f"server closed the connection before the whole answer arrived{progress.so_far()}"
    if progress.response is None and "without sending a response" in text:
        return "server closed the connection without answering"
    return f"not a valid HTTP answer ({text})"


_UNTRUSTED = "TLS certificate not trusted"
# httpcore translates transport errors with ``raise ... from exc``, but its connection
# pool re-raises them ``from None``, which drops the cause and leaves it as the
# (suppressed) context: from httpx's and httpcore's own exceptions the context is the
# cause. Anywhere else an implicit context is whatever was being handled nearby, e.g. the
# RuntimeError of an event loop lookup, which once became every feed's "cause" (issue 15).
_CONTEXT_IS_CAUSE = ("httpx", "httpcore")


def _causes(e: BaseException) -> list[BaseException]:
    """``e`` and what caused it, outermost first, the root last."""
    chain: list[BaseException] = []
    nxt: BaseException | None = e
    while nxt is not None and all(nxt is not seen for seen in chain):
        e = nxt
        chain.append(e)
        if e.__cause__ is not None:
            nxt = e.__cause__
        elif isinstance(e, BaseExceptionGroup):  # anyio: every address that was tried
            nxt = e.exceptions[0]
        elif type(e).__module__.startswith(_CONTEXT_IS_CAUSE):
            nxt = e.__context__
        else:
            nxt = None
    return chain


def _root_cause(e: BaseException) -> str:
    chain = _causes(e)
    for x in chain:
        if isinstance(x, ssl.SSLCertVerificationError):
            return f"{_UNTRUSTED}: {x.verify_message or x.reason}"
    root = chain[-1]
    text = str(root) or type(root).__name__
    if isinstance(root, ssl.SSLError):
        return f"TLS failed: {root.reason or text}"
    if isinstance(root, ConnectionRefusedError) or "Errno 111" in text:
        return "connection refused"
    if isinstance(root, socket.gaierror):
        if root.errno in _NO_SUCH_NAME:
            return "unknown host name"
        if root.errno == socket.EAI_AGAIN:
            return "host name lookup failed (is a DNS server reachable?)"
    if "Name or service not known" in text:
        return "unknown host name"
    return text


_NO_SUCH_NAME = {socket.EAI_NONAME, getattr(socket, "EAI_NODATA", socket.EAI_NONAME)}


# httpcore's pool re-examines every connection for every waiting request on each
# hand-over, so one pool of 20+ connections spends more CPU on bookkeeping than on HTTP
# (500 conditional GETs: 1.0 s with one pool of 20, 0.35 s with pools of 4). Requests are
# therefore spread over several small clients that share one TLS context.
_POOL = 4


def host_of(url: str) -> str:
    """The host that a per-host connection limit counts (its name, without the port)."""
    return (urlsplit(url).hostname or url).lower()


async def fetch_all(
    requests: list[FeedRequest],
    *,
    timeout: float,
    connections: int,
    per_host: int | None = None,
    on_response: Callable[[FeedResponse], None] | None = None,
) -> list[FeedResponse]:
    """Fetch every request concurrently over at most ``connections`` connections, and at
    most ``per_host`` at once to any one host (politeness: 500 feeds of one site are not
    500 connections to it, whatever the total).

    ``on_response`` is called with each response as soon as it is complete (on the
    fetching thread), e.g. to start parsing it while the others are still on the way.
    """
    if not requests:
        return []
    workers = max(1, min(connections, len(requests)))
    limit = max(1, per_host or workers)
    tls = httpx.create_ssl_context()
    clients = [
        httpx.AsyncClient(
            headers={"User-Agent": USER_AGENT, "Accept": _ACCEPT},
            # Per read, as httpx counts; _fetch_one adds the deadline for the whole request.
            timeout=httpx.Timeout(timeout, connect=min(timeout, _CONNECT_TIMEOUT)),
            limits=httpx.Limits(max_connections=_POOL, max_keepalive_connections=_POOL),
            follow_redirects=True,
            max_redirects=5,
            verify=tls,
        )
        for _ in range(-(-workers // _POOL))
    ]
    results: list[FeedResponse | None] = [None] * len(requests)
    waiting: dict[str, deque[tuple[int, FeedRequest]]] = {}  # per host, in the given order
    for n, req in enumerate(requests):
        waiting.setdefault(host_of(req.url), deque()).append((n, req))
    busy: Counter[str] = Counter()  # requests in flight per host
    freed = asyncio.Condition()

    def take() -> tuple[int, FeedRequest, str] | None:
        """The next request of the first host with room (then counted as busy)."""
        for host, queue in waiting.items():
            if busy[host] < limit:
                n, req = queue.popleft()
                if not queue:
                    del waiting[host]
                busy[host] += 1
                return n, req, host
        return None

    async def worker(client: httpx.AsyncClient) -> None:
        while True:
            async with freed:
                while (job := take()) is None:
                    if not waiting:
                        return
                    await freed.wait()  # every waiting request's host is at its limit
                if not waiting:  # the last one is taken: the idle workers may end
                    freed.notify_all()
            n, req, host = job
            try:
                results[n] = response = await _fetch_one(client, req, timeout)
            finally:
                async with freed:
                    busy[host] -= 1
                    # One slot is free: one waiting worker can use it. Waking them all
                    # (46 of 50 wait when every feed is on one host) cost 10-15% of the
                    # CPU of 500 conditional GETs.
                    freed.notify()
            if on_response is not None:
                on_response(response)

    try:
        await asyncio.gather(*(worker(clients[w // _POOL]) for w in range(workers)))
    finally:
        for client in clients:
            await client.aclose()
    return [r for r in results if r is not None]
