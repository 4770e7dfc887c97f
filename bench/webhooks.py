"""GitHub webhooks, measured end to end: ``python bench/webhooks.py``.

Starts a Prosody on 127.0.0.1 (the tests' own, ``tests/xmpp_support.py``) and a real
``triggerflow serve`` with one webhook trigger that sends to an XMPP user, then:

* **latency**: ``--rounds`` times a new serve and ``--deliveries`` signed pushes, one
  after the other; for each, the time from the start of the HTTP POST to the message
  arriving in a real XMPP client (median and p95 over all). ``--baseline REV`` runs
  serve of that git revision too (a worktree on ``PYTHONPATH``), in the same rounds,
  interleaved: before and after on the same machine under the same load;
* **burst** (``--burst N``, 10,000): N signed deliveries, one in ten a redelivery of an
  earlier one (same id), posted by 32 concurrent clients to a serve whose trigger sends
  each to an XMPP user; every answer timed, then until the client has a message for
  every delivery that got a 2xx: answer p50/p99/max, 5xx, rows and ids stored, messages
  delivered and delivered again, and how long after the last answer the backlog was
  gone. ``--kill``: the same again with serve SIGKILLed half-way, restarted, and what
  was refused meanwhile posted again; ``--baseline REV --burst-baseline``: also into
  serve of REV.
  ``--burst-runs`` of each (3), interleaved: medians, and the worst of what must never
  happen. Beside it, the floor: the same uvicorn + FastAPI in this process answering a
  POST that only reads the body.

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

from burst_support import REPO as BURST_REPO  # noqa: E402
from burst_support import SECRET as BURST_SECRET  # noqa: E402
from burst_support import Burst, body, flows, plan  # noqa: E402
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


def chat_latency(
    root: Path, prosody: Prosody, n: int, tag: str, code: Path | None = None
) -> list[float]:
    """``n`` chat messages to the bot one after the other, each timed until the trigger's
    message (``on=xmpp_message()`` → ``xmpp()``) reaches another XMPP client; serve of
    ``code`` if given (a checkout of another revision)."""
    bot_jid, _ = prosody.new_user("bot")
    owner_jid, owner_pw = prosody.new_user("owner")
    dest_jid, dest_pw = prosody.new_user("dest")
    flows = root / f"flows-{tag}"
    flows.mkdir()
    (flows / "bench_chat.py").write_text(
        "from triggerflow import trigger\nfrom triggerflow.sinks import xmpp\n"
        "from triggerflow.sources import xmpp_message\n\n"
        "@trigger(on=xmpp_message(contains='bench'))\n"
        f"def bench_chat(messages):\n    xmpp(messages, to={dest_jid!r})\n"
    )
    env = {
        **prosody.env(owner=dest_jid),
        **prosody.env(account="bot", user=bot_jid, owner=owner_jid),
    }
    if code is not None:
        env["PYTHONPATH"] = str(code)
    serve = Serve(root / f"data-{tag}", flows, **env)
    if code is not None:
        serve.cwd = code
    owner = Receiver(prosody, owner_jid, owner_pw)
    got = Receiver(prosody, dest_jid, dest_pw)
    out: list[float] = []
    try:
        serve.start()
        serve.deployments(1)
        owner.send(bot_jid, "list")  # its answer: the bot is connected (in the background)
        owner.wait_for(1, timeout=60)
        for i in range(n):
            t = time.perf_counter()
            owner.send(bot_jid, f"bench {tag} {i}")
            got.wait_for(i + 1, timeout=120)
            out.append(time.perf_counter() - t)
            print(f"  {tag} {i + 1}/{n}: {out[-1]:.2f} s", file=sys.stderr, flush=True)
        serve.stop()
    finally:
        serve.kill()
        owner.close()
        got.close()
    return out


def _checkout(where: Path, rev: str) -> Path:
    """A checkout of ``rev`` (a git worktree) whose ``triggerflow`` serve imports first."""
    subprocess.run(["git", "-C", str(ROOT), "worktree", "add", "--detach", str(where), rev],
                   check=True, capture_output=True)  # fmt: skip
    return where


def burst(
    root: Path, prosody: Prosody, n: int, kill: bool, tag: str, code: Path | None = None
) -> dict[str, Any]:
    """``n`` signed deliveries (one in ten a redelivery) from 32 clients into a serve
    whose trigger sends each to an XMPP user; ``kill``: SIGKILL serve half-way, restart,
    post again what was refused. Then until every accepted delivery arrived (or 5 min).
    ``code``: serve of that checkout (another revision)."""
    jid, password = prosody.new_user("burst")
    data = root / f"data-{tag}"
    extra = {"PYTHONPATH": str(code)} if code is not None else {}
    serve = Serve(
        data, flows(root / f"flows-{tag}", jid), TRIGGERFLOW_GITHUB_SECRET=BURST_SECRET,
        **extra, **prosody.env(owner=jid),
    )  # fmt: skip
    if code is not None:
        serve.cwd = code
    got = Receiver(prosody, jid, password)
    b = Burst(serve, plan(n), clients=32, kill_at=0.5 if kill else None, limit=600)
    try:
        serve.start()
        serve.deployments(1)
        started = time.perf_counter()
        b.post()
        posting = time.perf_counter() - started
        print(f"  {tag}: {n} posted in {posting:.1f} s; waiting for the messages…",
              file=sys.stderr, flush=True)  # fmt: skip
        counts, drained = b.wait_delivered(got, timeout=300)
        serve.stop()
    finally:
        serve.kill()
        got.close()
    with Store(data / "triggerflow.duckdb").transaction(commit=False) as tx:
        rows, ids = tx.con.execute(
            f"SELECT count(*), count(DISTINCT id) FROM inbox WHERE repo = '{BURST_REPO}'"
        ).fetchone()
    accepted = b.accepted()
    return {
        "posts": n, "clients": 32, "unique_ids": len(set(b.numbers)),
        "killed_after_answers": b.killed_after, "posting_s": posting,
        "accepted_per_s": len(b.answers) / posting, "answer_s": b.times(),
        "codes": dict(b.codes()), "refused": len(b.refused),
        "stored_rows": rows, "stored_ids": ids, "accepted_ids": len(accepted),
        "delivered_ids": len(accepted & set(counts)),
        "messages_again": sum(c - 1 for c in counts.values()),
        "drained_s_after_last_answer": drained,
    }  # fmt: skip


def summary(runs: list[dict[str, Any]]) -> dict[str, Any]:
    """Medians over the runs of a burst; the worst for what must never happen."""
    med = statistics.median
    return {
        "runs": len(runs), "posts": runs[0]["posts"], "unique_ids": runs[0]["unique_ids"],
        "accepted_per_s": med(r["accepted_per_s"] for r in runs),
        "answer_s": {
            "p50": med(r["answer_s"].get("p50", 0.0) for r in runs),
            "p99": med(r["answer_s"].get("p99", 0.0) for r in runs),
            "max": max(r["answer_s"].get("max", 0.0) for r in runs),
        },
        "5xx": sum(v for r in runs for k, v in r["codes"].items() if int(k) >= 500),
        "stored_rows": max(r["stored_rows"] for r in runs),
        "stored_ids": min(r["stored_ids"] for r in runs),
        "accepted_ids": min(r["accepted_ids"] for r in runs),
        "delivered_ids": min(r["delivered_ids"] for r in runs),
        "messages_again": max(r["messages_again"] for r in runs),
        "drained_s_after_last_answer": med(r["drained_s_after_last_answer"] for r in runs),
        "each": runs,
    }  # fmt: skip


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
    ap.add_argument("--rounds", type=int, default=3, help="rounds, each a new serve (3; 0: none)")
    ap.add_argument(
        "--baseline", default="",
        help="also serve of this git revision, in the same rounds (e.g. d34593a: before "
        "event triggers ran in serve's process)",
    )  # fmt: skip
    ap.add_argument("--burst", type=int, default=10000,
                    help="deliveries in the burst (10000; 0: no burst)")  # fmt: skip
    ap.add_argument("--burst-runs", type=int, default=3,
                    help="bursts of each kind, each a new serve; medians (3)")  # fmt: skip
    ap.add_argument("--burst-baseline", action="store_true",
                    help="also the burst into serve of --baseline REV (slow)")  # fmt: skip
    ap.add_argument("--kill", action="store_true",
                    help="also the burst with serve SIGKILLed half-way and restarted")  # fmt: skip
    ap.add_argument("--chat", action="store_true",
                    help="also a chat message to the bot → trigger → XMPP message")  # fmt: skip
    ap.add_argument("--out", default=str(Path(__file__).parent / "results" / "webhooks.json"))
    args = ap.parse_args(argv)
    os.environ.setdefault("PREFECT_SERVER_ANALYTICS_ENABLED", "false")
    bursts: dict[str, dict[str, Any]] = {}
    floor = 0.0
    with tempfile.TemporaryDirectory(prefix="tf-bench-hooks-") as tmp:
        root = Path(tmp)
        (root / "prosody").mkdir()
        prosody = Prosody(root / "prosody")
        prosody.start()
        code = _checkout(root / "baseline", args.baseline) if args.baseline else None
        rows: dict[str, list[float]] = {"ours": [], "chat": []}
        if code is not None:
            rows[f"at {args.baseline}"] = []
            rows[f"chat at {args.baseline}"] = []
        try:
            for r in range(args.rounds):  # interleaved: the machine's load varies
                rows["ours"] += latency(root, prosody, args.deliveries, f"ours{r}")
                if args.chat:
                    rows["chat"] += chat_latency(root, prosody, args.deliveries, f"chat{r}")
                if code is not None:
                    rows[f"at {args.baseline}"] += latency(
                        root, prosody, args.deliveries, f"base{r}", code
                    )
                    if args.chat:
                        rows[f"chat at {args.baseline}"] += chat_latency(
                            root, prosody, args.deliveries, f"chatbase{r}", code
                        )
            if args.burst:
                variants: dict[str, list[dict[str, Any]]] = {}
                for r in range(args.burst_runs):  # interleaved, as the latency rounds
                    variants.setdefault("burst", []).append(
                        burst(root, prosody, args.burst, False, f"burst{r}")
                    )
                    if args.kill:
                        variants.setdefault("burst, serve SIGKILLed half-way", []).append(
                            burst(root, prosody, args.burst, True, f"burst-kill{r}")
                        )
                    if code is not None and args.burst_baseline:
                        variants.setdefault(f"burst, serve at {args.baseline}", []).append(
                            burst(root, prosody, args.burst, False, f"burst-base{r}", code)
                        )
                bursts = {k: summary(v) for k, v in variants.items()}
                floor = _floor([body(n) for n in plan(args.burst)])
        finally:
            prosody.stop()
            if code is not None:
                subprocess.run(["git", "-C", str(ROOT), "worktree", "remove", "--force",
                                str(code)], check=False)  # fmt: skip
    rows = {k: v for k, v in rows.items() if v}
    report = {
        "machine": {
            "cores": os.cpu_count(), "python": platform.python_version(),
            "packages": {p: version(p) for p in ("prefect", "slixmpp", "duckdb", "triggerflow")},
        },
        "latency_s": {
            k: {"p50": statistics.median(v), "p95": p95(v), "samples": v}
            for k, v in rows.items()
        },
        "bursts": bursts,
        "floor_per_s": floor,
    }  # fmt: skip
    Path(args.out).parent.mkdir(parents=True, exist_ok=True)
    Path(args.out).write_text(json.dumps(report, indent=2))
    print(f"\nWebhook → XMPP message, {os.cpu_count()} cores\n")
    if rows:
        print("| serve | deliveries | p50 s | p95 s |\n|---|---|---|---|")
        for name, xs in rows.items():
            label = {"ours": "this tree", "chat": "this tree, a chat message to the bot"}.get(
                name, name.replace("chat at", "a chat message to the bot, at")
            )
            print(f"| {label} | {len(xs)} | {statistics.median(xs):.2f} | {p95(xs):.2f} |")
    ok = True
    if bursts:
        print("\n| burst | runs | posts (ids) | answers/s | answer p50 / p99 / max s | 5xx | "
              "stored (ids) | delivered | again | all delivered after |")  # fmt: skip
        print("|---|---|---|---|---|---|---|---|---|---|")
        for name, b in bursts.items():
            t = b["answer_s"]
            print(f"| {name} | {b['runs']} | {b['posts']} ({b['unique_ids']}) | "
                  f"{b['accepted_per_s']:.0f} | {t['p50']:.2f} / {t['p99']:.2f} / {t['max']:.2f} | "
                  f"{b['5xx']} | {b['stored_rows']} ({b['stored_ids']}) | "
                  f"{b['delivered_ids']}/{b['accepted_ids']} | {b['messages_again']} | "
                  f"{b['drained_s_after_last_answer']:.1f} s |")  # fmt: skip
            if name.startswith("burst, serve at"):
                continue  # the revision compared with: what it did is the measurement
            ok = ok and not b["5xx"] and b["delivered_ids"] == b["accepted_ids"]
            ok = ok and b["stored_rows"] == b["stored_ids"] == b["accepted_ids"]
        print(f"| uvicorn + FastAPI, body read only | 1 | {args.burst} | {floor:.0f} | "
              "| | | | | |")  # fmt: skip
    print(f"\nJSON: {args.out}")
    return 0 if ok else 1


if __name__ == "__main__":
    sys.exit(main())
