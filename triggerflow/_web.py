"""triggerflow's own web app, run by ``triggerflow serve`` beside Prefect's.

It serves the generated feeds: ``/feeds/`` (an index), ``/feeds/<name>.xml`` (Atom)
and ``/feeds/<name>.rss`` (RSS 2.0), with ETag and Last-Modified so that readers
that poll every few minutes get a cheap 304. FastAPI and uvicorn come with Prefect.
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

from .exceptions import ConfigurationError, TriggerflowError


def create_app(base_url: str) -> Any:
    """The ASGI app; ``base_url`` is where it is reachable (for the feeds' self links)."""
    from . import feeds

    app = FastAPI(title="triggerflow", docs_url=None, redoc_url=None, openapi_url=None)

    @app.get("/feeds/", response_class=HTMLResponse)
    def index() -> str:
        rows = "".join(
            f"<li>{html.escape(n)} ({count} entries): "
            f'<a href="{html.escape(n)}.xml">Atom</a> · <a href="{html.escape(n)}.rss">RSS</a></li>'
            for n, count, _ in feeds.names()
        )
        return f"<!doctype html><title>triggerflow feeds</title><h1>Feeds</h1><ul>{rows}</ul>"

    @app.get("/feeds/{filename}")
    def one(filename: str, request: Request) -> Response:
        name, dot, ext = filename.rpartition(".")
        kinds = {"xml": ("atom", "application/atom+xml"), "rss": ("rss", "application/rss+xml")}
        if not dot or ext not in kinds:
            return Response("use <name>.xml (Atom) or <name>.rss (RSS 2.0)\n", 404)
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


class WebServer:
    """uvicorn in a thread, stopped with the serve process."""

    def __init__(self, port: int) -> None:
        import uvicorn

        self.port = port
        self.url = f"http://127.0.0.1:{port}"
        config = uvicorn.Config(
            create_app(self.url), host="127.0.0.1", port=port, log_level="warning", lifespan="off"
        )
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
