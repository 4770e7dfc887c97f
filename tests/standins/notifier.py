"""A web hook that Apprise's generic ``json://`` and ``form://`` notifiers post to.

Apprise's wiki (Notify_Custom_JSON, Notify_Custom_Form): ``json://[user:password@]host
[:port]/path`` POSTs ``{"version": "1.0", "title": ..., "message": ..., "attachments":
[], "type": "info"}`` with basic auth when a user is given; ``form://`` POSTs the same
fields form-encoded. Any 2xx is success; anything else is a failed notification (Apprise
logs ``error=<status>``). This stand-in takes every POST on every path, answers 200 (or
what :meth:`~standins.StandIn.fail_next` says), and checks basic auth when told to.
"""

from __future__ import annotations

import base64
import json
from urllib.parse import parse_qsl

from starlette.requests import Request
from starlette.responses import JSONResponse, Response
from starlette.routing import BaseRoute, Route

from ._server import StandIn

__all__ = ["NotifierStandIn"]


class NotifierStandIn(StandIn):
    """A web hook on ``http://127.0.0.1:<port>/<any path>``."""

    def __init__(self, user: str | None = None, password: str | None = None) -> None:
        super().__init__()
        self.user, self.password = user, password
        self._taken: list[dict[str, str]] = []

    @property
    def host(self) -> str:
        """``127.0.0.1:<port>``, for Apprise URLs (``json://{host}/hook``)."""
        return self.url.removeprefix("http://")

    def received(self) -> list[dict[str, str]]:
        """The notifications it took (answered 200): their path, title, message, type."""
        with self.lock:
            return list(self._taken)

    def routes(self) -> list[BaseRoute]:
        return [Route("/{path:path}", self._post, methods=["POST"])]

    async def _post(self, request: Request) -> Response:
        if self.user is not None:
            expected = base64.b64encode(f"{self.user}:{self.password}".encode()).decode()
            if request.headers.get("authorization") != f"Basic {expected}":
                return JSONResponse({"error": "unauthorized"}, status_code=401)
        body = await request.body()
        try:
            data = json.loads(body)
        except ValueError:
            data = dict(parse_qsl(body.decode()))
        fields = {k: str(data.get(k, "")) for k in ("title", "message", "type")}
        with self.lock:
            self._taken.append({"path": request.url.path, **fields})
        return JSONResponse({"ok": True})
