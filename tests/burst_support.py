"""A burst of signed GitHub deliveries into a real serve, and what came out in XMPP.

Shared by ``tests/test_burst.py`` (small) and ``bench/webhooks.py --burst`` (10,000):

- ``plan(n)``: ``n`` POSTs, one in ten a redelivery (the same delivery id and body
  again, as GitHub's "Redeliver" sends it) of an earlier one;
- ``Burst.post()``: ``clients`` threads post them, each on its own connection, every
  answer timed; optionally serve is SIGKILLed once ``kill_at`` of them were answered,
  and what was refused meanwhile is posted again after the restart (as a sender
  retries);
- ``Burst.wait_delivered()``: until the XMPP client has a message for every delivery id
  that got a 2xx, or the deadline; then who came how often.

Every loop is bounded in count and time.
"""

from __future__ import annotations

import hashlib
import hmac
import json
import os
import random
import re
import signal
import statistics
import threading
import time
from collections import Counter
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import httpx
from serve_support import Serve

ROOT = Path(__file__).resolve().parent.parent
SECRET = "burst secret"
REPO = "bench/burst"
FIXTURE = ROOT / "tests" / "fixtures" / "github-webhooks" / "push" / "with-new-branch.payload.json"
_ID = re.compile(r"burst-(\d+)\b")

FLOW = f"""from triggerflow import trigger
from triggerflow.sinks import xmpp
from triggerflow.sources import github_webhook


@trigger(on=github_webhook(repo={REPO!r}, events="push"))
def burst_hook(events):
    xmpp(events, to={{to!r}})
"""


def body(n: int) -> bytes:
    """A push whose message names delivery ``n`` (``burst-<n>``)."""
    p = json.loads(FIXTURE.read_text())
    p.update(created=False, compare=f"https://github.com/{REPO}/compare/burst-{n}")
    p["repository"].update(full_name=REPO, name=REPO.split("/")[1])
    p["commits"][0]["message"] = f"Change burst-{n}"
    p["head_commit"] = {**(p.get("head_commit") or {}), "message": f"Change burst-{n}"}
    return json.dumps(p).encode()


def headers(data: bytes, delivery: str) -> dict[str, str]:
    sig = "sha256=" + hmac.new(SECRET.encode(), data, hashlib.sha256).hexdigest()
    return {"X-GitHub-Event": "push", "X-GitHub-Delivery": delivery,
            "Content-Type": "application/json", "X-Hub-Signature-256": sig}  # fmt: skip


def plan(n: int, seed: int = 17) -> list[int]:
    """Delivery numbers to post, in order: one in ten repeats an earlier one."""
    rnd, out, fresh = random.Random(seed), [], 0
    for i in range(n):
        if i % 10 == 9 and fresh:
            out.append(rnd.randrange(fresh))
        else:
            out.append(fresh)
            fresh += 1
    return out


def flows(folder: Path, to: str) -> Path:
    folder.mkdir(parents=True, exist_ok=True)
    (folder / "burst_hook.py").write_text(FLOW.format(to=to))
    return folder


@dataclass
class Burst:
    serve: Serve
    numbers: list[int]
    clients: int = 32
    kill_at: float | None = None  # fraction of answers after which serve is SIGKILLed
    limit: float = 600.0  # seconds for all the posting
    answers: list[tuple[int, int, float]] = field(default_factory=list)  # (number, code, s)
    refused: list[tuple[int, str]] = field(default_factory=list)  # (number, why): no answer
    killed_after: int | None = None
    ended: float = 0.0  # monotonic time of the last answer
    _bodies: dict[int, bytes] = field(default_factory=dict)

    def post(self) -> None:
        """Post every planned delivery (see the module); returns when all were tried."""
        self._bodies = {n: body(n) for n in set(self.numbers)}
        deadline = time.monotonic() + self.limit
        self._post_all(list(self.numbers), deadline, self.kill_at)
        if self.kill_at is not None:
            again = [n for n, _ in self.refused]
            assert self.serve.proc is not None and self.killed_after is not None
            self.serve.proc.wait(30)
            self.serve.wait_port_free()  # its Prefect server follows it
            self.serve.start()
            self.refused = []
            self._post_all(again, deadline, None)
        self.ended = time.monotonic()

    def _post_all(self, numbers: list[int], deadline: float, kill_at: float | None) -> None:
        local = threading.local()
        lock = threading.Lock()
        kill_after = None if kill_at is None else int(len(numbers) * kill_at)

        def one(n: int) -> None:
            if time.monotonic() > deadline:
                with lock:
                    self.refused.append((n, "over the time limit"))
                return
            client = getattr(local, "client", None)
            if client is None:
                client = local.client = httpx.Client(timeout=30)
            data = self._bodies[n]
            t = time.perf_counter()
            try:
                r = client.post(
                    f"{self.serve.web}/hooks/github", content=data,
                    headers=headers(data, f"burst-{n}"),
                )  # fmt: skip
            except httpx.HTTPError as e:  # the client stays: a new one costs ~30 ms of CPU
                with lock:
                    self.refused.append((n, type(e).__name__))
                return
            took = time.perf_counter() - t
            with lock:
                self.answers.append((n, r.status_code, took))
                if kill_after is not None and self.killed_after is None:
                    if len(self.answers) >= kill_after:
                        self.killed_after = len(self.answers)
                        assert self.serve.proc is not None
                        os.kill(self.serve.proc.pid, signal.SIGKILL)  # serve alone

        with ThreadPoolExecutor(self.clients) as pool:
            list(pool.map(one, numbers))

    # -- what came of it ---------------------------------------------------------------

    def accepted(self) -> set[int]:
        return {n for n, code, _ in self.answers if 200 <= code < 300}

    def codes(self) -> Counter[int]:
        return Counter(code for _, code, _ in self.answers)

    def times(self) -> dict[str, float]:
        xs = sorted(t for _, code, t in self.answers if code < 500)
        if not xs:
            return {}
        return {
            "p50": statistics.median(xs),
            "p99": xs[min(len(xs) - 1, round(0.99 * (len(xs) - 1)))],
            "max": xs[-1],
        }

    def wait_delivered(self, receiver: Any, timeout: float) -> tuple[Counter[int], float]:
        """(messages per delivery number, seconds from the last answer to the last one
        wanted); waits until every accepted number came, at most ``timeout`` seconds."""
        wanted = self.accepted()
        deadline = time.monotonic() + timeout
        got: Counter[int] = Counter()
        while True:
            got = delivered(receiver.messages)
            if wanted <= set(got) or time.monotonic() > deadline:
                break
            time.sleep(0.2)
        return got, time.monotonic() - self.ended


def delivered(messages: list[str]) -> Counter[int]:
    """How often each delivery number arrived."""
    out: Counter[int] = Counter()
    for text in messages:
        out.update({int(m) for m in _ID.findall(text)})
    return out
