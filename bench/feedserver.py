"""Generated feeds over HTTP on 127.0.0.1, for the polling benchmark (its own process).

``python bench/feedserver.py --feeds 500 --seed 1 [--latency 0.1] [--gzip]`` prints
``ready http://127.0.0.1:<port>`` once it listens, then serves until SIGTERM/SIGINT:

* ``/feeds/<i>.xml`` for ``i`` in ``range(feeds)``: RSS 2.0 for even ``i``, Atom for odd,
  20 entries each; realistic entries (1-3 KB HTML descriptions with entities, CDATA,
  non-ASCII text, an enclosure, authors, categories), deterministic for a seed;
* a strong ``ETag`` and ``Last-Modified`` per feed, ``304`` on ``If-None-Match`` /
  ``If-Modified-Since``; gzip when asked for and ``--gzip`` is on; ``--latency`` seconds
  of delay before each answer (a stand-in for the network);
* ``POST /bump?share=0.1&items=2``: that share of the feeds (every ``1/share``-th) gains
  that many new entries (round 2 of the benchmark); ``GET /stats`` counts requests,
  200s and 304s since the last ``POST /stats/reset``.
"""

from __future__ import annotations

import argparse
import gzip
import hashlib
import random
import signal
import sys
import threading
import time
from datetime import UTC, datetime, timedelta
from email.utils import format_datetime, parsedate_to_datetime
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from urllib.parse import parse_qs, urlsplit
from xml.sax.saxutils import escape

WORDS = (
    "kernel release security update feed parser reader python duckdb prefect server "
    "network latency cache index search query stream message bot webhook commit branch "
    "café naïve façade smörgåsbord 東京 Zürich déjà vu — “quotes” & <tags> ‘single’"
).split()
# Entries are dated from yesterday (midnight UTC): feeds that publish, as most polled feeds
# do; fixed dates would make every feed "silent" (triggerflow notes those) a week later.
BASE = datetime.now(UTC).replace(hour=0, minute=0, second=0, microsecond=0) - timedelta(days=1)


class Feeds:
    """The feeds' state: how many entries each has had; bodies rendered on demand."""

    def __init__(self, count: int, seed: int, per_feed: int = 20) -> None:
        self.count = count
        self.seed = seed
        self.per_feed = per_feed
        self.total = [per_feed] * count  # entries ever published per feed
        self.changed = [BASE] * count
        self._cache: dict[int, tuple[bytes, str, str]] = {}
        self._lock = threading.Lock()

    def bump(self, share: float, items: int) -> int:
        step = max(1, round(1 / share)) if share > 0 else self.count + 1
        bumped = 0
        with self._lock:
            for i in range(0, self.count, step):
                self.total[i] += items
                self.changed[i] = self.changed[i] + timedelta(hours=1)
                self._cache.pop(i, None)
                bumped += 1
        return bumped

    def get(self, i: int) -> tuple[bytes, str, str]:
        """Body, ETag and Last-Modified of feed ``i``."""
        with self._lock:
            if i not in self._cache:
                body = self._render(i).encode()
                etag = '"' + hashlib.sha256(body).hexdigest()[:32] + '"'
                self._cache[i] = (body, etag, format_datetime(self.changed[i], usegmt=True))
            return self._cache[i]

    def _entry(self, i: int, n: int) -> dict[str, str]:
        rnd = random.Random(f"{self.seed}-{i}-{n}")
        title = " ".join(rnd.choice(WORDS) for _ in range(rnd.randint(4, 10)))
        paragraphs = []
        while sum(len(p) for p in paragraphs) < rnd.randint(1000, 3000):
            text = " ".join(rnd.choice(WORDS) for _ in range(rnd.randint(20, 60)))
            paragraphs.append(f"<p>{escape(text)} &amp; more&hellip;</p>")
        return {
            "title": title,
            "link": f"https://example.org/{i}/{n}",
            "html": "".join(paragraphs),
            "author": rnd.choice(["Ada Lovelace", "Grace Hopper", "Zoë Ünal", "李雷"]),
            "category": rnd.choice(["news", "security", "release", "notes"]),
            "when": format_datetime(BASE + timedelta(minutes=n * 37 + i), usegmt=True),
            "iso": (BASE + timedelta(minutes=n * 37 + i)).isoformat(),
        }

    def _render(self, i: int) -> str:
        newest = self.total[i]
        entries = [self._entry(i, n) for n in range(newest, newest - self.per_feed, -1)]
        if i % 2 == 0:
            items = "".join(
                f"<item><title>{escape(e['title'])}</title><link>{e['link']}</link>"
                f'<guid isPermaLink="true">{e["link"]}</guid><pubDate>{e["when"]}</pubDate>'
                f"<author>noreply@example.org ({escape(e['author'])})</author>"
                f"<category>{e['category']}</category>"
                f"<description><![CDATA[{e['html']}]]></description>"
                f'<enclosure url="{e["link"]}.mp3" length="12345" type="audio/mpeg"/>'
                "</item>"
                for e in entries
            )
            return (
                '<?xml version="1.0" encoding="utf-8"?><rss version="2.0"><channel>'
                f"<title>Feed {i}</title><link>https://example.org/{i}</link>"
                f"<description>Generated feed {i}</description>{items}</channel></rss>"
            )
        entries_xml = "".join(
            f"<entry><title>{escape(e['title'])}</title><id>{e['link']}</id>"
            f'<link href="{e["link"]}"/><updated>{e["iso"]}</updated>'
            f"<author><name>{escape(e['author'])}</name></author>"
            f'<category term="{e["category"]}"/>'
            f'<content type="html">{escape(e["html"])}</content>'
            f'<link rel="enclosure" href="{e["link"]}.mp3" type="audio/mpeg"/></entry>'
            for e in entries
        )
        return (
            '<?xml version="1.0" encoding="utf-8"?><feed xmlns="http://www.w3.org/2005/Atom">'
            f"<title>Feed {i}</title><id>urn:feed:{i}</id>"
            f"<updated>{self.changed[i].isoformat()}</updated>{entries_xml}</feed>"
        )


class Stats:
    def __init__(self) -> None:
        self.lock = threading.Lock()
        self.counts = {"requests": 0, "200": 0, "304": 0}

    def add(self, key: str) -> None:
        with self.lock:
            self.counts["requests"] += 1
            self.counts[key] = self.counts.get(key, 0) + 1


def serve(feeds: Feeds, latency: float, use_gzip: bool) -> ThreadingHTTPServer:
    stats = Stats()

    class Handler(BaseHTTPRequestHandler):
        protocol_version = "HTTP/1.1"

        def log_message(self, format: str, *args: object) -> None:  # noqa: A002
            pass

        def _send(
            self, status: int, body: bytes = b"", headers: dict[str, str] | None = None
        ) -> None:
            self.send_response(status)
            for k, v in (headers or {}).items():
                self.send_header(k, v)
            self.send_header("Content-Length", str(len(body)))
            self.end_headers()
            self.wfile.write(body)

        def do_GET(self) -> None:  # noqa: N802 - http.server's naming
            if latency:
                time.sleep(latency)
            path = urlsplit(self.path).path
            if path == "/stats":
                with stats.lock:
                    text = " ".join(f"{k}={v}" for k, v in sorted(stats.counts.items()))
                return self._send(200, text.encode())
            name = path.removeprefix("/feeds/").removesuffix(".xml")
            if not path.startswith("/feeds/") or not name.isdigit() or int(name) >= feeds.count:
                return self._send(404)
            body, etag, modified = feeds.get(int(name))
            inm = self.headers.get("If-None-Match")
            ims = self.headers.get("If-Modified-Since")
            fresh = (inm is not None and inm == etag) or (
                inm is None and ims is not None and _not_after(modified, ims)
            )
            headers = {"ETag": etag, "Last-Modified": modified}
            if fresh:
                stats.add("304")
                return self._send(304, b"", headers)
            stats.add("200")
            kind = "application/rss+xml" if int(name) % 2 == 0 else "application/atom+xml"
            headers["Content-Type"] = f"{kind}; charset=utf-8"
            if use_gzip and "gzip" in self.headers.get("Accept-Encoding", ""):
                body = gzip.compress(body, compresslevel=5, mtime=0)
                headers["Content-Encoding"] = "gzip"
            self._send(200, body, headers)

        def do_POST(self) -> None:  # noqa: N802
            url = urlsplit(self.path)
            q = {k: v[0] for k, v in parse_qs(url.query).items()}
            if url.path == "/bump":
                n = feeds.bump(float(q.get("share", "0.1")), int(q.get("items", "2")))
                return self._send(200, f"bumped {n}".encode())
            if url.path == "/stats/reset":
                with stats.lock:
                    stats.counts = {"requests": 0, "200": 0, "304": 0}
                return self._send(200, b"reset")
            self._send(404)

    class Server(ThreadingHTTPServer):
        # socketserver's default backlog is 5: a poller opening 20+ connections at once
        # would see SYNs dropped and retried a second later, timing the kernel, not us.
        request_queue_size = 1024

    server = Server(("127.0.0.1", 0), Handler)
    server.daemon_threads = True
    return server


def _not_after(modified: str, since: str) -> bool:
    try:
        return parsedate_to_datetime(modified) <= parsedate_to_datetime(since)
    except (TypeError, ValueError):
        return False


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--feeds", type=int, default=500, help="number of feeds (500)")
    ap.add_argument("--seed", type=int, default=1, help="what the entries say (1)")
    ap.add_argument("--latency", type=float, default=0.0, help="seconds before each answer (0)")
    ap.add_argument("--gzip", action="store_true", help="gzip bodies for clients that accept it")
    args = ap.parse_args(argv)
    server = serve(Feeds(args.feeds, args.seed), args.latency, args.gzip)
    signal.signal(signal.SIGTERM, lambda *_: threading.Thread(target=server.shutdown).start())
    print(f"ready http://127.0.0.1:{server.server_address[1]}", flush=True)
    try:
        server.serve_forever(poll_interval=0.2)
    except KeyboardInterrupt:
        pass
    finally:
        server.server_close()
    return 0


if __name__ == "__main__":
    sys.exit(main())
