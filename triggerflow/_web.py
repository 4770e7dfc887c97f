"""triggerflow's own web app, run by ``triggerflow serve`` beside Prefect's.

It serves the generated feeds: ``/feeds/`` (an index), ``/feeds/<name>.xml`` (Atom),
``/feeds/<name>.rss`` (RSS 2.0) and ``/feeds/<name>.json`` (JSON Feed 1.1), with ETag and
Last-Modified so that readers that poll every few minutes get a cheap 304; and it
receives GitHub webhooks at ``POST /hooks/github`` (``_webhooks.py``). FastAPI and
uvicorn come with Prefect.
"""

from __future__ import annotations

import hashlib
import html
import threading
from datetime import UTC
from email.utils import format_datetime
from typing import Any

# At module level: FastAPI resolves the handlers' annotations (``request: Request``)
# in this module's globals.
from fastapi import FastAPI, Request, Response
from fastapi.responses import HTMLResponse
from starlette.concurrency import run_in_threadpool
from starlette.requests import ClientDisconnect

from ._webhooks import Answer, GitHubReceiver
from .exceptions import ConfigurationError, TriggerflowError


def create_app(base_url: str, github: GitHubReceiver | None = None) -> Any:
    """The ASGI app; ``base_url`` is where it is reachable (for the feeds' self links)."""
    from . import feeds

    app = FastAPI(title="triggerflow", docs_url=None, redoc_url=None, openapi_url=None)

    @app.post("/hooks/github")
    async def github_hook(request: Request) -> Response:
        if github is None:
            return Response("no GitHub receiver here\n", 404, media_type="text/plain")
        length = request.headers.get("content-length", "")
        declared = int(length) if length.isdigit() else None
        answer = github.too_large(declared) if declared is not None else None
        waits = "100-continue" in request.headers.get("expect", "").lower()
        if answer is not None and declared is not None and (waits or declared > github.discard):
            # Refused on the declared length, before reading: a client that waits for
            # "100 Continue" never sends the body; one past ``discard`` is not worth it.
            return _refused(answer)
        body = bytearray()
        seen = 0
        try:
            async for chunk in request.stream():
                seen += len(chunk)
                if answer is None:
                    body += chunk  # bounded: kept only up to the cap
                    if (answer := github.too_large(len(body))) is not None:
                        body = bytearray()
                if answer is not None and seen > github.discard:
                    break
        except ClientDisconnect:  # the sender gave up: nobody to answer
            return Response(status_code=400)
        if answer is not None:
            return _refused(answer)
        headers = {k.lower(): v for k, v in request.headers.items()}
        # The store is blocking (and may wait for a lock): not on the event loop.
        answer = await run_in_threadpool(github.handle, headers, bytes(body))
        return Response(answer.text + "\n", answer.status, media_type="text/plain")

    # HEAD as well as GET (FastAPI routes only the methods they are given): readers and
    # proxies check a feed with HEAD; the server leaves the body out, headers stay.
    @app.api_route("/feeds/", methods=["GET", "HEAD"], response_class=HTMLResponse)
    def index() -> str:
        rows = "".join(
            f"<li>{html.escape(n)} ({count} entries): "
            f'<a href="{html.escape(n)}.xml">Atom</a> · <a href="{html.escape(n)}.rss">RSS</a> · '
            f'<a href="{html.escape(n)}.json">JSON Feed</a></li>'
            for n, count, _ in feeds.names()
        )
        return f"<!doctype html><title>triggerflow feeds</title><h1>Feeds</h1><ul>{rows}</ul>"

    @app.api_route("/feeds/{filename}", methods=["GET", "HEAD"])
    def one(filename: str, request: Request) -> Response:
        name, dot, ext = filename.rpartition(".")
        kinds = {
            "xml": ("atom", "application/atom+xml"),
            "rss": ("rss", "application/rss+xml"),
            "json": ("json", "application/feed+json"),
        }
        if not dot or ext not in kinds:
            return Response(
                "use <name>.xml (Atom), <name>.rss (RSS 2.0) or <name>.json (JSON Feed)\n", 404
            )
        kind, media = kinds[ext]
        try:
            body = feeds.render(name, kind, base_url=f"{base_url}/feeds")  # type: ignore[arg-type]
        except ConfigurationError as e:
            return Response(f"{e}\n", 404, media_type="text/plain")
        except TriggerflowError as e:  # the store is busy: readers retry later
            return Response(f"{e}\n", 503, media_type="text/plain", headers={"Retry-After": "60"})
        etag = '"' + hashlib.sha256(body).hexdigest()[:32] + '"'
        updated = feeds.last_added(name)
        headers = {"ETag": etag, "Cache-Control": "max-age=60"}
        if updated is not None:
            headers["Last-Modified"] = format_datetime(updated.astimezone(UTC), usegmt=True)
        inm = request.headers.get("if-none-match")
        ims = request.headers.get("if-modified-since")
        if (inm is not None and inm == etag) or (
            inm is None and ims is not None and ims == headers.get("Last-Modified")
        ):
            return Response(status_code=304, headers=headers)
        return Response(body, media_type=f"{media}; charset=utf-8", headers=headers)

    return app


def _refused(answer: Answer) -> Response:
    """A refusal before the body is read to its end; the connection closes after it.

    Answering while the client still sends, then keeping the connection, stalls it
    (uvicorn stops reading the unwanted rest); closing it with unread data makes the
    kernel reset it, and most clients report the reset instead of the 413. So the
    body is read and thrown away (up to ``GitHubReceiver.discard``) before this answer,
    and ``Connection: close`` ends the exchange cleanly.
    """
    return Response(
        answer.text + "\n", answer.status, media_type="text/plain", headers={"Connection": "close"}
    )


class WebServer:
    """uvicorn in a thread, stopped with the serve process."""

    def __init__(self, port: int, github: GitHubReceiver | None = None) -> None:
        import uvicorn

        self.port = port
        self.url = f"http://127.0.0.1:{port}"
        config = uvicorn.Config(
            create_app(self.url, github),
            host="127.0.0.1", port=port, log_level="warning", lifespan="off",
            # Feed readers and proxies keep connections open between requests: closing
            # them after uvicorn's 5 s default races with their next request.
            timeout_keep_alive=65,
        )  # fmt: skip
        self.server = uvicorn.Server(config)
        self.server.install_signal_handlers = lambda: None  # type: ignore[method-assign]
        self.thread = threading.Thread(target=self.server.run, name="triggerflow-web", daemon=True)

    def start(self, timeout: float = 10.0) -> None:
        self.thread.start()
        deadline = threading.Event()
        for _ in range(int(timeout / 0.05)):
            if self.server.started or not self.thread.is_alive():
                break
            deadline.wait(0.05)
        if not self.server.started:
            raise TriggerflowError(
                f"web app: could not listen on 127.0.0.1:{self.port} (port in use? set "
                "TRIGGERFLOW_WEB_PORT)"
            )

    def stop(self) -> None:
        self.server.should_exit = True
        self.thread.join(5)
