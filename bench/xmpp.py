"""The XMPP sink on a real Prosody: ``python bench/xmpp.py``.

Side by side in one run, sending ``--messages`` (1,000) chat messages to one JID:

* **triggerflow's sender** (``_xmpp.send_messages``, what the sink calls): connect,
  STARTTLS, log in, send, each message counted only once the server acknowledged it
  (XEP-0198) and nothing bounced, disconnect: all inside the time;
* **raw slixmpp**, the library alone on an open connection: ``send_message`` in a loop,
  then one ack request, timed until every ack is in (the floor);
* **a connection per message** (what a naive sink does), for ``--per-connection`` (100)
  messages, reported per message.

Medians of ``--runs`` (3). The receiving client checks that every message arrived.

``--windows 100x2,50x2`` measures triggerflow's sender with other unacknowledged windows
(``ACK_EVERY`` x chunks in flight: ``MAX_UNACKED = ACK_EVERY * chunks``; ``0`` = one ack
request after the whole batch); ``--baseline REV`` adds the sender of git revision ``REV``
(its ``triggerflow/_xmpp.py``, loaded beside ours), so before and after are measured in
the same runs, interleaved (this machine's load varies more than the difference).
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import importlib.util
import json
import os
import platform
import statistics
import subprocess
import sys
import tempfile
import time
from collections.abc import Iterator
from importlib.metadata import version
from pathlib import Path
from types import ModuleType
from typing import Any

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT / "tests"))

from xmpp_support import Prosody, Receiver  # noqa: E402

import triggerflow._xmpp as tx  # noqa: E402
from triggerflow._xmpp import XMPPConnection, connect_args, new_client, send_messages  # noqa: E402

# CPU seconds of the sending thread per measurement (the receiver has its own thread): a
# figure the machine's other load disturbs less than the wall clock.
CPU: dict[str, list[float]] = {}


def ours(conn: XMPPConnection, to: str, n: int, tag: str, module: Any = tx) -> float:
    body = "a line of about ninety characters, like the title of a feed entry"
    msgs = [(f"{tag}-{i}", f"{tag} message {i}: {body}") for i in range(n)]
    t, cpu = time.perf_counter(), time.thread_time()
    result = asyncio.run(module.send_messages(conn, to, msgs))
    took = time.perf_counter() - t
    CPU.setdefault("last", []).append(time.thread_time() - cpu)
    assert result.error is None and len(result.sent) == n, (result.error, len(result.sent))
    return took


@contextlib.contextmanager
def window(spec: str) -> Iterator[None]:
    """Our sender with another window: ``"100x2"`` (ACK_EVERY x chunks), ``"0"`` = none."""
    saved = tx.ACK_EVERY, tx.MAX_UNACKED
    every, _, chunks = spec.partition("x")
    if int(every) == 0:  # one ack request after the batch, as before the window
        tx.ACK_EVERY = tx.MAX_UNACKED = 10**9
    else:
        tx.ACK_EVERY = int(every)
        tx.MAX_UNACKED = int(every) * int(chunks or 2)
    try:
        yield
    finally:
        tx.ACK_EVERY, tx.MAX_UNACKED = saved


def load_revision(rev: str) -> ModuleType:
    """``triggerflow/_xmpp.py`` of git revision ``rev``, as a module beside ours."""
    source = subprocess.run(
        ["git", "-C", str(ROOT), "show", f"{rev}:triggerflow/_xmpp.py"],
        check=True, capture_output=True, text=True,
    ).stdout  # fmt: skip
    path = Path(tempfile.mkdtemp(prefix="tf-bench-rev-")) / "_xmpp.py"
    path.write_text(source)
    # Inside the triggerflow package, so its relative imports (exceptions, _async) resolve.
    spec = importlib.util.spec_from_file_location("triggerflow._xmpp_at_rev", path)
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    sys.modules[spec.name] = module  # dataclasses look their module up there
    spec.loader.exec_module(module)
    return module


def raw(conn: XMPPConnection, to: str, n: int, tag: str) -> float:
    async def main() -> float:
        x = new_client(conn)
        x.register_plugin("xep_0198")
        done = asyncio.get_running_loop().create_future()
        acked = 0

        def on_ack(_: object) -> None:
            nonlocal acked
            acked += 1
            if acked == n and not done.done():
                done.set_result(None)

        x.add_event_handler("stanza_acked", on_ack)
        x.connect(*connect_args(conn, x))
        await x.wait_until("session_start", 15)
        await asyncio.sleep(0.2)  # stream management enabled
        t, cpu = time.perf_counter(), time.thread_time()
        for i in range(n):
            x.send_message(mto=to, mbody=f"{tag} raw {i}", mtype="chat")
        await x.waiting_queue.join()  # an ack request sent earlier overtakes the stanzas
        x.plugin["xep_0198"].request_ack()
        await asyncio.wait_for(done, 60)
        took = time.perf_counter() - t
        CPU.setdefault("last", []).append(time.thread_time() - cpu)
        await asyncio.wait_for(x.disconnect(wait=1.0), 5)
        return took

    return asyncio.run(main())


def per_connection(conn: XMPPConnection, to: str, n: int, tag: str) -> float:
    t = time.perf_counter()
    for i in range(n):
        result = asyncio.run(send_messages(conn, to, [(f"{tag}-{i}", f"{tag} alone {i}")]))
        assert result.error is None and result.sent, result.error
    return time.perf_counter() - t


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--messages", type=int, default=1000, help="messages per batch (1000)")
    ap.add_argument("--per-connection", type=int, default=100, help="naive sends (100)")
    ap.add_argument("--runs", type=int, default=3, help="runs of each (3)")
    ap.add_argument("--windows", default="", help="other windows of ours, e.g. 50x2,0")
    ap.add_argument("--baseline", default="", help="also the sender of this git revision")
    ap.add_argument("--out", default=str(Path(__file__).parent / "results" / "xmpp.json"))
    args = ap.parse_args(argv)
    n = args.messages
    windows = [w for w in args.windows.split(",") if w]
    baseline = load_revision(args.baseline) if args.baseline else None
    rows: dict[str, list[float]] = {"ours": [], "raw": [], "per_connection": []}
    for w in windows:
        rows[f"ours {w}"] = []
    if baseline is not None:
        rows[f"at {args.baseline}"] = []
    cpu: dict[str, list[float]] = {k: [] for k in rows if k != "per_connection"}

    def timed(name: str, took: float) -> None:
        rows[name].append(took)
        cpu[name].append(CPU.pop("last")[0])

    with tempfile.TemporaryDirectory(prefix="tf-bench-xmpp-") as tmp:
        prosody = Prosody(Path(tmp))
        prosody.start()
        try:
            rcpt, password = prosody.new_user("rcpt")
            conn = prosody.connection("sink")  # STARTTLS with the test CA, as users run it
            got = Receiver(prosody, rcpt, password)
            expected = 0
            for run in range(args.runs):
                timed("ours", ours(conn, rcpt, n, f"o{run}"))
                timed("raw", raw(conn, rcpt, n, f"r{run}"))
                for w in windows:
                    with window(w):
                        timed(f"ours {w}", ours(conn, rcpt, n, f"w{w}-{run}"))
                if baseline is not None:
                    timed(f"at {args.baseline}", ours(conn, rcpt, n, f"b{run}", baseline))
                if args.per_connection:
                    rows["per_connection"].append(
                        per_connection(conn, rcpt, args.per_connection, f"p{run}")
                    )
                expected += (2 + len(windows) + (baseline is not None)) * n + args.per_connection
                got.wait_for(expected, timeout=120)
                print(f"  run {run + 1}/{args.runs} done", file=sys.stderr, flush=True)
            got.close()
        finally:
            prosody.stop()
    rate = {k: n / statistics.median(v) for k, v in rows.items() if v and k != "per_connection"}
    if rows["per_connection"]:
        rate["per_connection"] = args.per_connection / statistics.median(rows["per_connection"])
    report = {
        "machine": {
            "cores": os.cpu_count(), "python": platform.python_version(),
            "packages": {p: version(p) for p in ("slixmpp", "triggerflow")},
            "prosody": "Debian package, tests/prosody.cfg.lua (STARTTLS, no mod_limits)",
        },
        "messages": n, "per_connection_messages": args.per_connection,
        "window": {"ACK_EVERY": tx.ACK_EVERY, "ACK_INTERVAL": tx.ACK_INTERVAL,
                   "MAX_UNACKED": tx.MAX_UNACKED},
        "seconds": rows, "messages_per_s": rate, "sender_cpu_seconds": cpu,
        "load_average": os.getloadavg(),
    }  # fmt: skip
    Path(args.out).parent.mkdir(parents=True, exist_ok=True)
    Path(args.out).write_text(json.dumps(report, indent=2))
    print(f"\nXMPP: chat messages to one JID, acknowledged (XEP-0198), {os.cpu_count()} cores\n")
    print("| sender | messages | median s | messages/s | sender CPU ms (median) |")
    print("|---|---|---|---|---|")
    labels = {
        "ours": "triggerflow (connect, STARTTLS, send, acks)",
        "raw": "raw slixmpp, sending only (connected before)",
    }
    for w in windows:
        labels[f"ours {w}"] = f"triggerflow, window {w}" if w != "0" else "triggerflow, no window"
    if baseline is not None:
        labels[f"at {args.baseline}"] = f"triggerflow at {args.baseline}"
    for k, label in labels.items():
        print(f"| {label} | {n} | {statistics.median(rows[k]):.3f} | {rate[k]:.0f} | "
              f"{1000 * statistics.median(cpu[k]):.0f} |")  # fmt: skip
    if rows["per_connection"]:
        per = statistics.median(rows["per_connection"])
        print(f"| a connection per message | {args.per_connection} | {per:.3f} | "
              f"{rate['per_connection']:.0f} | - |")  # fmt: skip
    print(f"\ntriggerflow's window: an ack request every {tx.ACK_EVERY} messages, at most "
          f"{tx.MAX_UNACKED} unacknowledged")  # fmt: skip
    print(f"\nload average during the runs: {' '.join(f'{x:.2f}' for x in os.getloadavg())}")
    print(f"\nJSON: {args.out}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
