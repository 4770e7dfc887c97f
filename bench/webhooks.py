"""GitHub webhooks, measured end to end: ``python bench/webhooks.py``.

Starts a Prosody on 127.0.0.1 (the tests' own, ``tests/xmpp_support.py``) and a real
``triggerflow serve`` with one webhook trigger that sends to an XMPP user, then:

* **latency**: ``--rounds`` times a new serve and ``--deliveries`` signed pushes, one
  after the other; for each, the time from the start of the HTTP POST to the message
  arriving in a real XMPP client (median and p95 over all). ``--baseline REV`` runs
  serve of that git revision too (a worktree on ``PYTHONPATH``), in the same rounds,
  interleaved: before and after on the same machine under the same load;
* **throughput**: ``--burst`` signed deliveries posted by 32 concurrent clients to the same
  serve (a repository no trigger listens to, so no runs start), then the inbox is counted:
  none may be lost. Beside it, the floor: the same uvicorn + FastAPI in this process
  answering a POST that only reads the body.

Every loop is bounded in count and time; everything is stopped at the end.
"""

from __future__ import annotations

import argparse
import hashlib
import hmac
import json
import os
import platform
import statistics
import subprocess
import sys
import tempfile
import threading
import time
from concurrent.futures import ThreadPoolExecutor
from importlib.metadata import version
from pathlib import Path
from typing import Any

import httpx

# At module level: FastAPI resolves the handler's annotation (``Request``) in these globals.
from fastapi import FastAPI, Request, Response

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT / "tests"))

from serve_support import Serve, free_port  # noqa: E402
from xmpp_support import Prosody, Receiver  # noqa: E402

from triggerflow._store import Store  # noqa: E402

SECRET = "bench secret"
FIXTURE = ROOT / "tests" / "fixtures" / "github-webhooks" / "push" / "with-new-branch.payload.json"
PUSH = json.loads(FIXTURE.read_text())


def push(n: int, repo: str) -> bytes:
    p = json.loads(json.dumps(PUSH))
    p.update(created=False, compare=f"https://github.com/{repo}/compare/{n}")
    p["repository"].update(full_name=repo, name=repo.split("/")[1])
    p["commits"][0]["message"] = f"Change {n}"
    return json.dumps(p).encode()


def headers(body: bytes, delivery: str) -> dict[str, str]:
    sig = "sha256=" + hmac.new(SECRET.encode(), body, hashlib.sha256).hexdigest()
    return {"X-GitHub-Event": "push", "X-GitHub-Delivery": delivery,
            "Content-Type": "application/json", "X-Hub-Signature-256": sig}  # fmt: skip


def p95(xs: list[float]) -> float:
    xs = sorted(xs)
    return xs[min(len(xs) - 1, round(0.95 * (len(xs) - 1)))]


def latency(
    root: Path, prosody: Prosody, n: int, tag: str, code: Path | None = None
) -> list[float]:
    """``n`` pushes one after the other, each timed until the XMPP client has it; serve
    runs this tree's triggerflow, or the one in ``code`` (a checkout of another revision)."""
    jid, password = prosody.new_user("dev")
    flows = root / f"flows-{tag}"
    flows.mkdir()
    (flows / "bench_hook.py").write_text(
        "from triggerflow import trigger\nfrom triggerflow.sinks import xmpp\n"
        "from triggerflow.sources import github_webhook\n\n"
        "@trigger(on=github_webhook(repo='bench/latency', events='push'))\n"
        f"def bench_hook(events):\n    xmpp(events, to={jid!r})\n"
    )
    extra = {"PYTHONPATH": str(code)} if code is not None else {}
    serve = Serve(
        root / f"data-{tag}", flows, TRIGGERFLOW_GITHUB_SECRET=SECRET, **extra,
        **prosody.env(owner=jid),
    )  # fmt: skip
    if code is not None:
        serve.cwd = code
    got = Receiver(prosody, jid, password)
    out: list[float] = []
    try:
        serve.start()
        serve.deployments(1)
        url = f"{serve.web}/hooks/github"
        with httpx.Client(timeout=10) as client:
            for i in range(n):
                body = push(i, "bench/latency")
                t = time.perf_counter()
                # A new connection each time, as GitHub does: a kept-alive one idle for
                # the seconds in between may be closed by the server as it is reused.
                hdrs = {**headers(body, f"{tag}-{i}"), "Connection": "close"}
                r = client.post(url, content=body, headers=hdrs)
                assert r.status_code == 200, r.text
                got.wait_for(i + 1, timeout=120)
                out.append(time.perf_counter() - t)
                print(f"  {tag} {i + 1}/{n}: {out[-1]:.2f} s", file=sys.stderr, flush=True)
        serve.stop()
    finally:
        serve.kill()
        got.close()
    return out


def _checkout(where: Path, rev: str) -> Path:
    """A checkout of ``rev`` (a git worktree) whose ``triggerflow`` serve imports first."""
    subprocess.run(["git", "-C", str(ROOT), "worktree", "add", "--detach", str(where), rev],
                   check=True, capture_output=True)  # fmt: skip
    return where


def throughput(root: Path, prosody: Prosody, burst: int) -> dict[str, Any]:
    flows = root / "flows-burst"
    flows.mkdir()
    (flows / "bench_hook.py").write_text(
        "from triggerflow import trigger\nfrom triggerflow.sinks import feed\n"
        "from triggerflow.sources import github_webhook\n\n"
        "@trigger(on=github_webhook(repo='bench/latency', events='push'))\n"
        "def bench_hook(events):\n    feed(events, name='bench')\n"
    )
    data = root / "data-burst"
    serve = Serve(data, flows, TRIGGERFLOW_GITHUB_SECRET=SECRET)
    bodies = [push(i, "bench/burst") for i in range(burst)]
    try:
        serve.start()
        serve.deployments(1)
        ours = _post_all(f"{serve.web}/hooks/github", bodies, "burst")
        serve.stop()
    finally:
        serve.kill()
    with Store(data / "triggerflow.duckdb").transaction(commit=False) as tx:
        stored = tx.con.execute("SELECT count(*) FROM inbox WHERE repo = 'bench/burst'").fetchone()[
            0
        ]
    floor = _floor(bodies)
    return {"deliveries": burst, "ours_per_s": ours, "stored": stored, "floor_per_s": floor}


def _post_all(url: str, bodies: list[bytes], tag: str, workers: int = 32) -> float:
    deadline = time.monotonic() + 300
    local = threading.local()

    def one(i: int) -> int:
        if time.monotonic() > deadline:
            return 0
        client = getattr(local, "client", None) or httpx.Client(timeout=10)
        local.client = client
        r = client.post(url, content=bodies[i], headers=headers(bodies[i], f"{tag}-{i}"))
        return r.status_code

    t = time.perf_counter()
    with ThreadPoolExecutor(workers) as pool:
        codes = list(pool.map(one, range(len(bodies))))
    took = time.perf_counter() - t
    bad = [c for c in codes if c not in (200, 202)]
    assert not bad, f"{len(bad)} deliveries refused: {sorted(set(bad))}"
    return len(bodies) / took


def _floor(bodies: list[bytes]) -> float:
    """The same web stack answering without checking or storing anything."""
    import uvicorn

    app = FastAPI()

    @app.post("/hooks/github")
    async def hook(request: Request) -> Response:
        await request.body()
        return Response("ok\n")

    port = free_port()
    server = uvicorn.Server(uvicorn.Config(app, host="127.0.0.1", port=port, log_level="warning"))
    thread = threading.Thread(target=server.run, daemon=True)
    thread.start()
    for _ in range(100):
        if server.started:
            break
        time.sleep(0.05)
    try:
        return _post_all(f"http://127.0.0.1:{port}/hooks/github", bodies, "floor")
    finally:
        server.should_exit = True
        thread.join(5)


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--deliveries", type=int, default=20, help="latency samples per round (20)")
    ap.add_argument("--rounds", type=int, default=3, help="rounds, each a new serve (3)")
    ap.add_argument(
        "--baseline", default="",
        help="also serve of this git revision, in the same rounds (e.g. d34593a: before "
        "event triggers ran in serve's process)",
    )  # fmt: skip
    ap.add_argument("--burst", type=int, default=2000, help="deliveries in the burst (2000)")
    ap.add_argument("--out", default=str(Path(__file__).parent / "results" / "webhooks.json"))
    args = ap.parse_args(argv)
    os.environ.setdefault("PREFECT_SERVER_ANALYTICS_ENABLED", "false")
    with tempfile.TemporaryDirectory(prefix="tf-bench-hooks-") as tmp:
        root = Path(tmp)
        (root / "prosody").mkdir()
        prosody = Prosody(root / "prosody")
        prosody.start()
        code = _checkout(root / "baseline", args.baseline) if args.baseline else None
        rows: dict[str, list[float]] = {"ours": []}
        if code is not None:
            rows[f"at {args.baseline}"] = []
        try:
            for r in range(args.rounds):  # interleaved: the machine's load varies
                rows["ours"] += latency(root, prosody, args.deliveries, f"ours{r}")
                if code is not None:
                    rows[f"at {args.baseline}"] += latency(
                        root, prosody, args.deliveries, f"base{r}", code
                    )
            burst = throughput(root, prosody, args.burst)
        finally:
            prosody.stop()
            if code is not None:
                subprocess.run(["git", "-C", str(ROOT), "worktree", "remove", "--force",
                                str(code)], check=False)  # fmt: skip
    report = {
        "machine": {
            "cores": os.cpu_count(), "python": platform.python_version(),
            "packages": {p: version(p) for p in ("prefect", "slixmpp", "duckdb", "triggerflow")},
        },
        "latency_s": {
            k: {"p50": statistics.median(v), "p95": p95(v), "samples": v}
            for k, v in rows.items()
        },
        "throughput": burst,
    }  # fmt: skip
    Path(args.out).parent.mkdir(parents=True, exist_ok=True)
    Path(args.out).write_text(json.dumps(report, indent=2))
    print(f"\nWebhook → XMPP message, {os.cpu_count()} cores\n")
    print("| serve | deliveries | p50 s | p95 s |\n|---|---|---|---|")
    for name, xs in rows.items():
        label = "this tree" if name == "ours" else name
        print(f"| {label} | {len(xs)} | {statistics.median(xs):.2f} | {p95(xs):.2f} |")
    print("\n| receiver | deliveries | per second | stored |\n|---|---|---|---|")
    print(f"| triggerflow serve (verify, store, wake) | {burst['deliveries']} | "
          f"{burst['ours_per_s']:.0f} | {burst['stored']} |")  # fmt: skip
    print(f"| uvicorn + FastAPI, body read only | {burst['deliveries']} | "
          f"{burst['floor_per_s']:.0f} | - |")  # fmt: skip
    print(f"\nJSON: {args.out}")
    return 0 if burst["stored"] == burst["deliveries"] else 1


if __name__ == "__main__":
    sys.exit(main())
