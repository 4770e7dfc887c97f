"""Local stand-ins for the notebooks: RSS feeds served on 127.0.0.1.

The notebooks must run anywhere, CI included, without the internet: they publish
their example feeds here instead of reading real ones. Swap the URL for a real feed
and the same cells work on it.
"""

from __future__ import annotations

import threading
from datetime import UTC, datetime, timedelta
from email.utils import format_datetime
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from xml.sax.saxutils import escape


class DemoFeeds:
    """RSS 2.0 feeds on http://127.0.0.1:<port>/<name>.xml, changed with ``publish``."""

    def __init__(self) -> None:
        self._feeds: dict[str, bytes] = {}
        feeds = self._feeds

        class Handler(BaseHTTPRequestHandler):
            def do_GET(self) -> None:  # noqa: N802 - http.server's naming
                body = feeds.get(self.path.lstrip("/"))
                self.send_response(200 if body else 404)
                self.send_header("Content-Type", "application/rss+xml; charset=utf-8")
                self.send_header("Content-Length", str(len(body or b"")))
                self.end_headers()
                self.wfile.write(body or b"")

            def log_message(self, format: str, *args: object) -> None:  # noqa: A002
                pass

        self._server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self._server.daemon_threads = True
        threading.Thread(target=self._server.serve_forever, daemon=True).start()

    def url(self, name: str) -> str:
        return f"http://127.0.0.1:{self._server.server_address[1]}/{name}.xml"

    def publish(self, name: str, entries: list[dict[str, str]], *, days: int = 1) -> str:
        """Serve ``entries`` (title, summary, author) as feed ``name``; newest first,
        spread over the last ``days`` days. Returns the feed's URL."""
        now = datetime(2026, 11, 20, 12, tzinfo=UTC)
        step = timedelta(days=days) / max(len(entries), 1)
        items = []
        for n, e in enumerate(entries):
            when = format_datetime(now - n * step, usegmt=True)
            link = f"https://example.org/{name}/{len(entries) - n}"
            items.append(
                f"<item><title>{escape(e['title'])}</title><link>{link}</link>"
                f"<guid>{link}</guid><pubDate>{when}</pubDate>"
                f"<author>{escape(e.get('author', 'editor@example.org (Editor)'))}</author>"
                f"<description>{escape(e.get('summary', ''))}</description></item>"
            )
        self._feeds[f"{name}.xml"] = (
            '<?xml version="1.0" encoding="utf-8"?><rss version="2.0"><channel>'
            f"<title>{escape(name)}</title><link>https://example.org/{name}</link>"
            f"<description>demo</description>{''.join(items)}</channel></rss>"
        ).encode()
        return self.url(name)

    def close(self) -> None:
        self._server.shutdown()
        self._server.server_close()


SECURITY = [
    {"title": "OpenSSL 3.4.1 fixes a high severity flaw in X.509 parsing",
     "summary": "CVE-2026-0001: upgrade now; the flaw allows remote code execution."},
    {"title": "Linux kernel 6.12.3 released", "summary": "Stable update with many fixes."},
    {"title": "Curl 8.11 adds HTTP/3 by default", "summary": "Faster transfers & fewer surprises."},
    {"title": "Security advisory: sudo privilege escalation",
     "summary": "CVE-2026-0002 affects sudo < 1.9.16; patches are available."},
    {"title": "PostgreSQL 17.2 and 16.6 released", "summary": "Fixes for two security issues."},
    {"title": "Café & croissants: the office moved", "summary": "Second floor, by the window."},
]  # fmt: skip

NEWS = [
    {"title": f"Daily note {n}: {topic}", "summary": f"Thoughts about {topic} on day {n}."}
    for n, topic in enumerate(
        ["gardening", "trains", "python packaging", "the kernel mailing list", "bread",
         "jazz", "the weather", "linux on old laptops", "feeds and readers", "rust"] * 3
    )
]  # fmt: skip
