"""GitHub webhooks: the receiver over real HTTP, the messages for all 273 real payloads,
and delivery through the inbox, the ledger and a real Prosody.
"""

from __future__ import annotations

import copy
import hashlib
import hmac
import json
import os
import socket
import subprocess
import sys
import threading
import time
import urllib.error
import urllib.parse
import urllib.request
import uuid
from collections.abc import Callable, Iterator
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any

import httpx
import pytest

import triggerflow
from triggerflow import _github, trigger
from triggerflow._store import Store
from triggerflow._web import WebServer
from triggerflow._webhooks import GitHubReceiver
from triggerflow.config import settings
from triggerflow.exceptions import ConfigurationError, TriggerRunFailed
from triggerflow.sinks import feed, xmpp
from triggerflow.sources import github_webhook

# 273 real payloads from octokit/webhooks (MIT; see the folder's README), copied into the
# repository so that a clean clone tests with them.
FIXTURES = Path(__file__).resolve().parent / "fixtures" / "github-webhooks"
SECRET = "It's a Secret to Everybody"


def fixture(path: str) -> dict[str, Any]:
    return json.loads((FIXTURES / path).read_text())


def sign(body: bytes, secret: str = SECRET) -> str:
    return "sha256=" + hmac.new(secret.encode(), body, hashlib.sha256).hexdigest()


class Hook:
    """triggerflow's web app with a GitHub receiver, on a free loopback port."""

    def __init__(self, secret: str | None) -> None:
        from serve_support import free_port

        self.web = WebServer(free_port(), GitHubReceiver(settings(), secret))
        self.web.start()
        self.url = f"{self.web.url}/hooks/github"

    def post(
        self,
        event: str,
        payload: dict[str, Any] | bytes,
        *,
        delivery: str | None = None,
        secret: str | None = SECRET,
        signature: str | None = None,
        form: bool = False,
    ) -> httpx.Response:
        raw = payload if isinstance(payload, bytes) else json.dumps(payload).encode()
        body = b"payload=" + urllib.parse.quote(raw).encode() if form else raw
        headers = {
            "X-GitHub-Event": event,
            "X-GitHub-Delivery": delivery or str(uuid.uuid4()),
            "Content-Type": "application/x-www-form-urlencoded" if form else "application/json",
            "User-Agent": "GitHub-Hookshot/test",
        }
        if signature is not None:
            headers["X-Hub-Signature-256"] = signature
        elif secret is not None:
            headers["X-Hub-Signature-256"] = sign(body, secret)
        # GitHub gives up after 10 s: every answer must come sooner.
        return httpx.post(self.url, content=body, headers=headers, timeout=10)


@pytest.fixture
def hook() -> Iterator[Hook]:
    h = Hook(SECRET)
    yield h
    h.web.stop()


def inbox(data_dir: Path) -> list[tuple[str, str, bool]]:
    with Store(data_dir / "triggerflow.duckdb").transaction(commit=False) as tx:
        rows = tx.con.execute("SELECT id, event, ignored FROM inbox ORDER BY seq").fetchall()
    return [(r[0], r[1], bool(r[2])) for r in rows]


# -- the receiver ------------------------------------------------------------------------


def test_signature_right_wrong_missing(hook: Hook, data_dir: Path, caplog: Any) -> None:
    pr = fixture("pull_request/opened.payload.json")
    assert hook.post("pull_request", pr, delivery="good").status_code == 200
    wrong = hook.post("pull_request", pr, delivery="bad1", secret="not the secret")
    assert (wrong.status_code, wrong.text) == (401, "wrong signature\n")
    missing = hook.post("pull_request", pr, delivery="bad2", secret=None)
    assert (missing.status_code, missing.text) == (401, "no X-Hub-Signature-256 header\n")
    sha1 = hook.post("pull_request", pr, delivery="bad3", signature="sha1=" + "0" * 40)
    assert sha1.status_code == 401
    assert inbox(data_dir) == [("good", "pull_request", False)]  # nothing else stored
    logged = caplog.text
    assert "GitHub webhook refused: wrong signature (delivery bad1" in logged
    assert SECRET not in logged and "Update the README" not in logged  # no secret, no body


def test_no_secret_refuses_unless_unsigned_is_allowed(
    data_dir: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    refusing = Hook(None)
    try:
        r = refusing.post("ping", fixture("ping/payload.json"), secret=None)
        assert (r.status_code, r.text) == (503, "webhook secret not configured on this server\n")
    finally:
        refusing.web.stop()
    assert not (data_dir / "triggerflow.duckdb").exists()

    monkeypatch.setenv("TRIGGERFLOW_GITHUB_ALLOW_UNSIGNED", "1")
    open_hook = Hook(None)
    try:
        assert open_hook.post("ping", fixture("ping/payload.json"), secret=None).status_code == 200
    finally:
        open_hook.web.stop()
    assert [e for _, e, _ in inbox(data_dir)] == ["ping"]


def test_a_trigger_on_webhooks_without_a_secret_is_not_configured(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    @trigger(on=github_webhook(repo="me/project"))
    def unsigned(events: Any) -> None:
        feed(events, name="unsigned")

    problems = unsigned.check()
    assert problems and "set TRIGGERFLOW_GITHUB_SECRET" in problems[0]
    monkeypatch.setenv("TRIGGERFLOW_GITHUB_SECRET", SECRET)
    assert unsigned.check() == []


def test_content_types_bad_bodies_and_the_size_cap(
    data_dir: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("TRIGGERFLOW_WEBHOOK_MAX_BYTES", "20000")
    h = Hook(SECRET)
    try:
        issue = fixture("issues/opened.payload.json")
        assert h.post("issues", issue, delivery="form", form=True).status_code == 200
        assert h.post("issues", issue, delivery="json").status_code == 200
        bad = h.post("issues", b'{"action": "opened",', delivery="broken")
        assert bad.status_code == 400 and bad.text.startswith("malformed JSON")
        assert h.post("issues", b"[1, 2]", delivery="list").status_code == 400
        no_payload = h.post("issues", b"x=1", delivery="noform", form=False)
        assert no_payload.status_code == 400
        big = {"action": "opened", "padding": "x" * 30000}
        too_big = h.post("issues", big, delivery="big")
        assert (too_big.status_code, too_big.text) == (413, "body over 20000 bytes\n")
        body = json.dumps(issue).encode()
        xml = httpx.post(
            h.url, content=body, timeout=10,
            headers={"X-GitHub-Event": "issues", "X-GitHub-Delivery": "xml",
                     "Content-Type": "text/xml", "X-Hub-Signature-256": sign(body)},
        )  # fmt: skip
        assert xml.status_code == 415
        no_id = httpx.post(
            h.url, content=body, timeout=10,
            headers={"X-GitHub-Event": "issues", "Content-Type": "application/json",
                     "X-Hub-Signature-256": sign(body)},
        )  # fmt: skip
        assert no_id.status_code == 400 and "X-GitHub-Delivery" in no_id.text
    finally:
        h.web.stop()
    assert [d for d, _, _ in inbox(data_dir)] == ["form", "json"]


def test_a_redelivery_is_answered_and_not_stored_again(hook: Hook, data_dir: Path) -> None:
    star = fixture("star/created.payload.json")
    first = hook.post("star", star, delivery="same")
    again = hook.post("star", star, delivery="same")
    assert (first.status_code, again.status_code) == (200, 200)
    assert again.text == "already received\n"
    assert len(inbox(data_dir)) == 1


def _raw_request(url: str, head: str, body: bytes = b"", timeout: float = 10) -> bytes:
    """Send a request as written and read until the server closes: what a client gets."""
    parts = urllib.parse.urlsplit(url)
    with socket.create_connection((parts.hostname, parts.port), timeout=timeout) as sock:
        sock.sendall(head.replace("\n", "\r\n").encode() + b"\r\n" + body)
        answer = b""
        while chunk := sock.recv(65536):
            answer += chunk
    return answer


def test_an_oversized_body_gets_a_413_the_client_can_read(
    data_dir: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Over the cap: the body is read and thrown away (to a bound), then 413 and close.

    Answering before the body is read made the server close a socket with unread data,
    which resets the connection: clients (GitHub included) saw an error, not the 413.
    """
    monkeypatch.setenv("TRIGGERFLOW_WEBHOOK_MAX_BYTES", str(1024 * 1024))
    h = Hook(SECRET)
    try:
        big = b'{"padding": "' + b"x" * (5 * 1024 * 1024) + b'"}'
        headers = {
            "X-GitHub-Event": "issues", "X-GitHub-Delivery": "big",
            "Content-Type": "application/json", "X-Hub-Signature-256": sign(big),
        }  # fmt: skip
        # The standard library's client (it asks for "Connection: close") saw a reset.
        request = urllib.request.Request(h.url, data=big, headers=headers)
        with pytest.raises(urllib.error.HTTPError) as refused:
            urllib.request.urlopen(request, timeout=10)
        assert refused.value.code == 413 and refused.value.read() == b"body over 1048576 bytes\n"
        declared = httpx.post(h.url, content=big, headers=headers, timeout=10)
        assert (declared.status_code, declared.text) == (413, "body over 1048576 bytes\n")
        assert declared.headers["connection"] == "close"

        def chunks() -> Iterator[bytes]:  # no Content-Length: Transfer-Encoding: chunked
            for start in range(0, len(big), 64 * 1024):
                yield big[start : start + 64 * 1024]

        chunked = httpx.post(h.url, content=chunks(), headers=headers, timeout=10)
        assert chunked.request.headers["transfer-encoding"] == "chunked"
        assert (chunked.status_code, chunked.text) == (413, "body over 1048576 bytes\n")
        assert chunked.headers["connection"] == "close"

        # A client that waits for "100 Continue" is refused on the declared length alone,
        # before it sends the body; so is a declared length past what is worth reading.
        host = urllib.parse.urlsplit(h.url).netloc
        for extra in ("Expect: 100-continue\n", ""):
            length = 5 * 1024 * 1024 if extra else 10**12
            head = (
                f"POST /hooks/github HTTP/1.1\nHost: {host}\nContent-Type: application/json\n"
                f"X-GitHub-Event: issues\nX-GitHub-Delivery: declared\n"
                f"Content-Length: {length}\n{extra}"
            )
            answer = _raw_request(h.url, head)
            assert answer.startswith(b"HTTP/1.1 413 "), answer[:200]
            assert b"100 Continue" not in answer and b"body over 1048576 bytes" in answer

        # The receiver is fine afterwards.
        ok = h.post("issues", fixture("issues/opened.payload.json"), delivery="after")
        assert ok.status_code == 200
    finally:
        h.web.stop()
    assert [d for d, _, _ in inbox(data_dir)] == ["after"]


def test_deeply_nested_json_is_a_400_and_the_receiver_stays_healthy(
    hook: Hook, data_dir: Path
) -> None:
    """100,000 levels of ``[`` used to be a RecursionError: a 500 for GitHub to retry."""
    for name, body, form in (
        ("lists", b"[" * 100_000, False),
        ("objects", b'{"a": ' * 100_000, False),
        ("form", b"[" * 100_000, True),
        ("closed", b'{"a": ' + b"[" * 50_000 + b"]" * 50_000 + b"}", False),
        # Deep enough to refuse, not so deep that the parser fails on it.
        ("101", b'{"a": ' + b"[" * 100 + b"]" * 100 + b"}", False),
    ):
        r = hook.post("issues", body, delivery=name, form=form)
        too_deep = "the JSON payload is nested too deeply (over 100 levels)\n"
        assert (r.status_code, r.text) == (400, too_deep), name
    deep_enough = b'{"a": ' + b"[" * 99 + b"]" * 99 + b"}"  # 100 levels: GitHub's are 7
    assert hook.post("issues", deep_enough, delivery="100").status_code == 202
    assert hook.post("issues", fixture("issues/opened.payload.json")).status_code == 200
    assert len(inbox(data_dir)) == 2


def hold_store(store: Path) -> subprocess.Popen[str]:
    """Another process holding the store's lock until it is killed."""
    with Store(store).transaction():
        pass
    holder = subprocess.Popen(
        [sys.executable, "-c",
         "import duckdb, sys, time; c = duckdb.connect(sys.argv[1]); print('held', flush=True);"
         " time.sleep(60)", str(store)],
        stdout=subprocess.PIPE, text=True,
    )  # fmt: skip
    assert holder.stdout is not None and holder.stdout.readline().strip() == "held"
    return holder


@pytest.mark.parametrize("store_wait", ["30", "1"], ids=["writer-waits", "writer-gives-up"])
def test_answer_within_10_s_while_another_process_holds_the_store(
    data_dir: Path, monkeypatch: pytest.MonkeyPatch, store_wait: str
) -> None:
    """Kept in the spool while the store is locked; in the inbox afterwards, once."""
    monkeypatch.setenv("TRIGGERFLOW_GITHUB_SECRET", SECRET)
    monkeypatch.setenv("TRIGGERFLOW_STORE_WAIT", store_wait)
    hook = Hook(SECRET)

    # Defined first: a trigger reads only what arrived since it existed.
    @trigger(on=github_webhook(events="issues"))
    def issues_feed(events: Any) -> None:
        feed(events, name="issues")

    store = data_dir / "triggerflow.duckdb"
    holder = hold_store(store)
    try:
        t = time.monotonic()
        busy = hook.post("issues", fixture("issues/opened.payload.json"), delivery="while-busy")
        assert (busy.status_code, busy.text) == (202, "accepted (stored once the store is free)\n")
        assert time.monotonic() - t < 10
        again = hook.post("issues", fixture("issues/opened.payload.json"), delivery="while-busy")
        assert again.text == "already received\n"
        assert len(list((data_dir / "spool").glob("github-*.json"))) == 1
    finally:
        holder.kill()
        holder.wait()

    # The writer that waited for the lock stores it too; moving the spool over finds it
    # there already: one delivery in the inbox, whichever got there first.
    from triggerflow._webhooks import drain_spool

    hook.web.stop()
    deadline = time.monotonic() + 30
    while store_wait == "30" and time.monotonic() < deadline and not inbox(data_dir):
        time.sleep(0.2)
    drain_spool(data_dir / "spool", Store(store))
    assert drain_spool(data_dir / "spool", Store(store)) == 0
    assert not list((data_dir / "spool").glob("github-*.json"))
    assert [d for d, _, _ in inbox(data_dir)] == ["while-busy"]
    assert [i.id for i in issues_feed.preview()] == ["while-busy"]


def test_one_delivery_sent_at_the_same_moment_many_times_is_spooled_once(
    data_dir: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Each request writes a spool file of its own: no 500 when two share a delivery id
    (they once shared one temporary name, and the second rename failed)."""
    monkeypatch.setenv("TRIGGERFLOW_GITHUB_SECRET", SECRET)
    monkeypatch.setenv("TRIGGERFLOW_STORE_WAIT", "1")
    hook = Hook(SECRET)
    holder = hold_store(data_dir / "triggerflow.duckdb")
    body = fixture("issues/opened.payload.json")
    try:
        for round_ in range(3):
            start = threading.Barrier(8)

            def post(
                _: int, delivery: str = f"same-{round_}", start: threading.Barrier = start
            ) -> tuple[int, str]:
                start.wait(10)
                r = hook.post("issues", body, delivery=delivery)
                return r.status_code, r.text

            with ThreadPoolExecutor(8) as pool:
                answers = sorted(pool.map(post, range(8)))
            assert answers == [(200, "already received\n")] * 7 + [
                (202, "accepted (stored once the store is free)\n")
            ], answers
        spool = data_dir / "spool"
        assert len(list(spool.glob("github-*.json"))) == 3
        assert not list(spool.glob(".*.tmp"))  # each request's own file is gone
    finally:
        holder.kill()
        holder.wait()
        hook.web.stop()
    st = triggerflow.status()
    assert st.spool.waiting == 3
    assert "GitHub webhooks received: 3" in str(st) and "in the spool: 3" in str(st)
    from triggerflow._webhooks import drain_spool

    assert drain_spool(data_dir / "spool", Store(data_dir / "triggerflow.duckdb")) == 3
    assert sorted(d for d, _, _ in inbox(data_dir)) == ["same-0", "same-1", "same-2"]


def test_a_torn_spool_file_is_reported_and_set_aside(
    data_dir: Path, caplog: pytest.LogCaptureFixture
) -> None:
    """A spooled file that cannot be read is an error in the log and in status, moved to
    spool/torn/; the good ones are stored all the same (it was skipped silently, for ever)."""
    from triggerflow._store import now
    from triggerflow._webhooks import _Entry, _spool_name, drain_spool, spool

    folder = data_dir / "spool"
    assert spool(folder, _Entry("good", "issues", "me/x", "{}", now(), False))
    torn = folder / _spool_name("torn")
    torn.write_text('{"id": "torn", "event": "iss')
    stale = folder / ".github-killed.tmp"  # a writer killed mid-write: its request got nothing
    stale.write_text("{")
    os.utime(stale, (time.time() - 3600, time.time() - 3600))
    with caplog.at_level("ERROR", logger="triggerflow.webhooks"):
        assert drain_spool(folder, Store(data_dir / "triggerflow.duckdb")) == 1
    assert [d for d, _, _ in inbox(data_dir)] == ["good"]
    assert not torn.exists() and (folder / "torn" / torn.name).exists()
    assert not stale.exists()
    assert any(torn.name in r.getMessage() and "cannot be read" in r.getMessage()
               for r in caplog.records)  # fmt: skip
    st = triggerflow.status()
    assert st.spool.torn == (str(folder / "torn" / torn.name),)
    assert "1 spooled delivery file(s) cannot be read" in str(st)
    assert drain_spool(folder, Store(data_dir / "triggerflow.duckdb")) == 0  # not again


def test_every_real_payload_is_a_short_message_or_deliberately_ignored(
    hook: Hook, data_dir: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("TRIGGERFLOW_GITHUB_SECRET", SECRET)

    @trigger(on=github_webhook())  # before the deliveries: it reads what came since
    def everything(events: Any) -> None:
        feed(events, name="everything")

    files = sorted(FIXTURES.glob("*/*.json"))
    assert len(files) == 273
    for f in files:
        r = hook.post(f.parent.name, f.read_bytes(), delivery=f"{f.parent.name}/{f.name}")
        assert r.status_code in (200, 202), (f, r.status_code, r.text)
        assert ("ignored" in r.text) == (r.status_code == 202)
    shown = everything.preview()
    stored = inbox(data_dir)
    assert len(stored) == 273
    announced = {d for d, _, ignored in stored if not ignored}
    assert {i.id for i in shown} == announced
    assert {e for d, e, ignored in stored if d in announced} <= set(_github.ANNOUNCED)
    # Events nobody announces are there, marked ignored (status shows them).
    assert {e for _, e, ignored in stored if ignored} >= {"label", "member", "gollum", "status"}
    for item in shown:
        text = item.raw["text"]
        for line in text.splitlines():
            assert 0 < len(line) <= _github.MAX_LINE, line
        assert text.startswith("[") and '{"' not in text and "\\n" not in text
        assert "None" not in text.split(": ")[0], text  # no missing field in the headline
    messages = {i.id: i.raw["text"] for i in shown}
    assert messages["pull_request/opened.payload.json"] == (
        "[Hello-World] Codertocat opened pull request #2: Update the README with new "
        "information. (changes → master) https://github.com/Codertocat/Hello-World/pull/2"
    )
    assert messages["ping/payload.json"].startswith("[Hello-World] webhook is set up")

    status = subprocess.run(
        [sys.executable, "-m", "triggerflow", "status"], capture_output=True, text=True,
        timeout=120,
    )  # fmt: skip
    assert status.returncode == 0, status.stderr
    assert "GitHub webhooks received: 273" in status.stdout
    assert "ignored (events that are not announced): " in status.stdout
    assert "label 5" in status.stdout


def _push(n: int, **changes: Any) -> dict[str, Any]:
    base = copy.deepcopy(fixture("push/with-new-branch.payload.json"))
    commit = base["commits"][0]
    base["commits"] = [
        dict(commit, id=f"{i:040x}", message=f"Change {i}\n\nlong description {i}")
        for i in range(1, n + 1)
    ]
    base.update(created=False, compare="https://github.com/Codertocat/Hello-World/compare/a...b")
    base.update(changes)
    return base


def test_push_messages_in_the_jabber_hook_format() -> None:
    a = _github.describe("push", _push(3))
    assert a is not None and a.lines == (
        "[Hello-World] Codertocat pushed 3 new commits to master: "
        "https://github.com/Codertocat/Hello-World/compare/a...b",
        "[Hello-World/master] Change 1 - Codertocat",
        "[Hello-World/master] Change 2 - Codertocat",
        "[Hello-World/master] Change 3 - Codertocat",
    )
    many = _github.describe("push", _push(12))
    assert many is not None and len(many.lines) == 2 + _github.MAX_COMMIT_LINES
    assert many.lines[1] == "[Hello-World/master] … 7 older commits not shown"
    assert many.lines[-1] == "[Hello-World/master] Change 12 - Codertocat"
    forced = _github.describe("push", _push(1, forced=True))
    assert forced is not None and forced.lines[0].startswith(
        "[Hello-World] Codertocat force-pushed master (1 new commit): "
    )
    gone = _github.describe("push", _push(0, deleted=True))
    assert gone is not None and gone.lines == ("[Hello-World] Codertocat deleted branch master",)
    tag = _github.describe("push", _push(0, ref="refs/tags/v1.0", created=True))
    assert tag is not None and tag.lines[0].startswith("[Hello-World] Codertocat pushed tag v1.0")
    long = _github.describe("push", _push(1, commits=[{"message": "x" * 1000, "author": {}}]))
    assert long is not None and all(len(line) <= _github.MAX_LINE for line in long.lines)


def test_push_messages_link_one_commit_name_empty_messages_and_skip_known_commits() -> None:
    """What GitHub's Jabber hook did: one commit links the commit; commits that were
    already on another branch (`distinct: false`) are not announced again as new."""
    one = _push(1)
    one["commits"][0].update(url="https://github.com/Codertocat/Hello-World/commit/abc1234")
    a = _github.describe("push", one)
    assert a is not None and a.lines[0] == (
        "[Hello-World] Codertocat pushed 1 new commit to master: "
        "https://github.com/Codertocat/Hello-World/commit/abc1234"
    )
    assert a.url.endswith("/commit/abc1234")
    empty = _push(1)
    empty["commits"][0].update(message="")
    e = _github.describe("push", empty)
    assert e is not None and e.lines[1] == "[Hello-World/master] (no message) - Codertocat"
    merged = _push(3)
    for c in merged["commits"][:2]:
        c["distinct"] = False  # already on another branch
    m = _github.describe("push", merged)
    assert m is not None and m.lines[0].startswith(
        "[Hello-World] Codertocat pushed 1 new commit to master: "
    )
    assert m.lines[1:] == ("[Hello-World/master] Change 3 - Codertocat",)
    ff = _push(2)
    ff["after"] = "0d1a26e67d8f5eaf1f6ba5c57fc3c7d91ac0fd1c"
    for c in ff["commits"]:
        c["distinct"] = False
    f = _github.describe("push", ff)
    assert f is not None and f.lines == (
        "[Hello-World] Codertocat fast-forwarded master to 0d1a26e (2 commits already on "
        "another branch): https://github.com/Codertocat/Hello-World/compare/a...b",
    )


def test_failures_of_workflows_and_checks_are_announced_successes_are_not() -> None:
    run = fixture("workflow_run/completed.payload.json")
    assert _github.describe("workflow_run", run) is None  # success
    run["workflow_run"].update(conclusion="failure", name="CI")
    failed = _github.describe("workflow_run", run)
    assert failed is not None and "CI #163 on master: failure" in failed.lines[0]
    suite = fixture("check_suite/completed.payload.json")
    assert _github.describe("check_suite", suite) is None
    suite["check_suite"]["conclusion"] = "timed_out"
    timed_out = _github.describe("check_suite", suite)
    assert timed_out is not None and "timed out" in timed_out.lines[0]


def test_filters_by_repository_event_and_branch() -> None:
    spec = github_webhook(repo="codertocat/*", events=["push"], branches=["release/*"])
    on_main = _github.describe("push", _push(1))
    on_release = _github.describe("push", _push(1, ref="refs/heads/release/2.0"))
    assert on_main is not None and on_release is not None
    assert not spec.accepts("push", on_main)
    assert spec.accepts("push", on_release)
    other = github_webhook(repo="someone/else")
    assert not other.accepts("push", on_release)
    with pytest.raises(ConfigurationError, match="label never produce a message"):
        github_webhook(events=["push", "label"])


# -- through the ledger to a real XMPP client ----------------------------------------------


@pytest.mark.usefixtures("prefect_api")
def test_redelivery_and_a_dead_server_deliver_each_push_exactly_once(
    hook: Hook,
    data_dir: Path,
    prosody: Any,
    receiver: Callable[..., Any],
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setenv("TRIGGERFLOW_GITHUB_SECRET", SECRET)
    jid, password = prosody.new_user("dev")
    for key, value in prosody.env(owner=jid).items():
        monkeypatch.setenv(key, value)
    dev = receiver(jid, password)

    @trigger(on=github_webhook(repo="Codertocat/Hello-World", events=["push"]))
    def pushes(events: Any) -> None:
        xmpp(events)

    hook.post("push", _push(1), delivery="p1")
    hook.post("push", _push(1), delivery="p1")  # GitHub's "redeliver" button
    assert pushes().sinks[0].sent == 1
    one_commit = _push(1)["commits"][0]["url"]  # a one-commit push links the commit
    assert dev.wait_for(1) == [
        f"[Hello-World] Codertocat pushed 1 new commit to master: {one_commit}\n"
        "[Hello-World/master] Change 1 - Codertocat"
    ]
    with prosody.down():
        for n in range(2, 5):
            assert hook.post("push", _push(n), delivery=f"p{n}").status_code == 200
        with pytest.raises(TriggerRunFailed):
            pushes()
    assert pushes().sinks[0].sent == 3
    assert pushes().sinks[0].sent == 0
    # The listening client lost its connection too: it logs in again and reads what the
    # server kept for it.
    back = receiver(jid, password, include_delayed=True)
    got = dev.messages + back.wait_for(3)
    time.sleep(1.0)
    assert len(back.messages) == 3
    assert [m.split(" pushed ")[1][:1] for m in got] == ["1", "2", "3", "4"]


def test_serve_turns_a_signed_post_into_messages_in_a_chat_and_a_room(
    tmp_path: Path, prosody: Any, receiver: Callable[..., Any]
) -> None:
    """The whole path: HTTP POST to serve's web app → inbox → Prefect event → the
    deployment's run → XMPP messages received by real clients, in a chat and a room."""
    from serve_support import Serve

    jid, password = prosody.new_user("dev")
    room = f"team{uuid.uuid4().hex[:8]}@{prosody.muc}"
    flows = tmp_path / "flows"
    flows.mkdir()
    (flows / "github_activity.py").write_text(
        "from triggerflow import trigger\nfrom triggerflow.sinks import xmpp\n"
        "from triggerflow.sources import github_webhook\n\n"
        "@trigger(on=github_webhook(repo='Codertocat/Hello-World', events=['push', 'issues']))\n"
        f"def to_dev(events):\n    xmpp(events, to={jid!r})\n\n"
        "@trigger(on=github_webhook(events='issues'))\n"
        f"def to_room(events):\n    xmpp(events, room={room!r})\n"
    )
    serve = Serve(
        tmp_path / "data", flows, TRIGGERFLOW_GITHUB_SECRET=SECRET, **prosody.env(owner=jid)
    )
    dev = receiver(jid, password)
    team = receiver("alice", room=room)
    try:
        out = serve.start()
        assert f"GitHub webhooks: {serve.web}/hooks/github" in out
        assert "✓ to_dev (on GitHub push, issues from Codertocat/Hello-World; every 10m)" in out
        assert "✓ to_room (on GitHub issues; every 10m)" in out
        assert set(serve.deployments(2)) == {"to_dev", "to_room"}

        def post(event: str, payload: dict[str, Any], delivery: str) -> httpx.Response:
            body = json.dumps(payload).encode()
            return httpx.post(
                f"{serve.web}/hooks/github", content=body, timeout=10,
                headers={"X-GitHub-Event": event, "X-GitHub-Delivery": delivery,
                         "Content-Type": "application/json", "X-Hub-Signature-256": sign(body)},
            )  # fmt: skip

        assert post("push", _push(2), "e2e-push").status_code == 200
        first = dev.wait_for(1, timeout=90)
        assert first[0].startswith("[Hello-World] Codertocat pushed 2 new commits to master: ")
        assert post("issues", fixture("issues/opened.payload.json"), "e2e-issue").status_code == 200
        issue = "[Hello-World] Codertocat opened issue #1: Spelling error in the README file"
        assert team.wait_for(1, timeout=90)[0].startswith(issue)
        assert dev.wait_for(2, timeout=90)[1].startswith(issue)
        assert post("issues", fixture("issues/opened.payload.json"), "e2e-issue").text == (
            "already received\n"
        )
        time.sleep(3)  # nothing more may come: no duplicates from the redelivery or reruns
        assert len(dev.messages) == 2 and len(team.messages) == 1

        # On vacation, deliveries are stored and wait; back, they go out (once).
        assert serve.cli("vacation", "on").returncode == 0
        assert post("push", _push(3), "during-vacation").status_code == 200
        time.sleep(8)  # a run woken by the event would have sent it by now
        assert len(dev.messages) == 2
        assert serve.cli("vacation", "off").returncode == 0
        assert post("push", _push(4), "after-vacation").status_code == 200
        got = dev.wait_for(4, timeout=90)
        assert [m.split(" pushed ")[1][:1] for m in got[2:]] == ["3", "4"]
        time.sleep(2)
        assert len(dev.messages) == 4
        serve.stop()
    finally:
        serve.kill()


@pytest.mark.usefixtures("prefect_api")
def test_go_sendxmpp_receives_the_push_message(
    hook: Hook, prosody: Any, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Interop with another XMPP implementation: Debian's go-sendxmpp in listen mode, over
    STARTTLS with the test certificate (it refuses plaintext)."""
    import os
    import select
    import shutil

    program = shutil.which("go-sendxmpp")
    assert program, "go-sendxmpp is missing: .ci/test installs it (apt-get install go-sendxmpp)"
    jid, password = prosody.new_user("gs")
    for key, value in prosody.env(owner=jid).items():
        monkeypatch.setenv(key, value)
    listen = subprocess.Popen(
        [program, "-l", "-u", jid, "-p", password, "-j", f"{prosody.host}:{prosody.port}"],
        stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True,
        env={**os.environ, "SSL_CERT_FILE": prosody.cafile},
    )  # fmt: skip
    try:

        @trigger(on=github_webhook(events="push"))
        def pushes_to_gs(events: Any) -> None:
            xmpp(events)

        assert hook.post("push", _push(2), delivery="interop").status_code == 200
        assert pushes_to_gs().sinks[0].sent == 1
        # Sent while it logs in or after: the server keeps it until then. Bounded wait.
        lines: list[str] = []
        deadline = time.monotonic() + 30
        assert listen.stdout is not None
        while time.monotonic() < deadline and not any("pushed 2 new commits" in x for x in lines):
            ready, _, _ = select.select([listen.stdout], [], [], 1.0)
            if ready:
                line = listen.stdout.readline()
                if not line:
                    break
                lines.append(line.rstrip("\n"))
        head = [x for x in lines if "pushed 2 new commits" in x]
        assert head, f"go-sendxmpp printed: {lines}"
        assert head[0].endswith(
            "sink@localhost: [Hello-World] Codertocat pushed 2 new commits to master: "
            "https://github.com/Codertocat/Hello-World/compare/a...b"
        )
    finally:
        listen.terminate()
        listen.wait(10)
        if listen.stdout:
            listen.stdout.close()


def test_a_burst_of_deliveries_wakes_a_trigger_twice_not_once_per_delivery() -> None:
    from triggerflow._wakeup import Coalescer

    sent: list[object] = []
    wake = Coalescer(sent.append, window=0.3)
    for _ in range(100):
        wake(("push", "me/a"))
    wake(("push", "me/b"))
    assert sent == [("push", "me/a"), ("push", "me/b")]  # the first of each at once
    deadline = time.monotonic() + 5
    while len(sent) < 3 and time.monotonic() < deadline:
        time.sleep(0.05)
    time.sleep(0.5)
    assert sent == [("push", "me/a"), ("push", "me/b"), ("push", "me/a")]  # one trailing
    wake(("push", "me/a"))  # a new window: at once again
    assert sent[-1] == ("push", "me/a") and len(sent) == 4


def test_a_cursor_only_moves_forward(data_dir: Path) -> None:
    """Runs of one event trigger may overlap; the slower one must not move it back."""
    store = Store(data_dir / "triggerflow.duckdb")
    with store.transaction() as tx:
        tx.set_inbox_cursor("t", "github", 10)
        tx.set_inbox_cursor("t", "github", 5)
        assert tx.inbox_cursor("t", "github") == 10
        tx.set_inbox_cursor("t", "github", 12)
        assert tx.inbox_cursor("t", "github") == 12


@pytest.mark.usefixtures("prefect_api")
def test_the_secret_can_be_a_prefect_secret_block() -> None:
    from prefect.blocks.system import Secret

    from triggerflow.blocks import GITHUB_SECRET_BLOCK, load_github_secret

    assert load_github_secret() is None
    Secret(value="from a block").save(GITHUB_SECRET_BLOCK, overwrite=True)
    try:
        secret = load_github_secret()
        assert secret is not None and secret.get_secret_value() == "from a block"
        assert "from a block" not in repr(secret)
    finally:
        Secret.delete(GITHUB_SECRET_BLOCK)  # type: ignore[attr-defined]


# -- when a trigger's events start (issue 15, item 10) -----------------------------------

PUSHES_FILE = """
from triggerflow import trigger
from triggerflow.sinks import xmpp
from triggerflow.sources import github_webhook


@trigger(on=github_webhook(repo="Codertocat/Hello-World", events=["push"]))
def new_pushes(events):
    xmpp(events)
"""


def _first_seen_by_serve(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Any:
    """The trigger in a flows file, loaded and planned the way ``serve`` deploys it."""
    from triggerflow._watch import ServedTriggers

    flows = tmp_path / "flows"
    flows.mkdir()
    (flows / "new_pushes.py").write_text(PUSHES_FILE)
    monkeypatch.setenv("TRIGGERFLOW_FLOWS_DIR", str(flows))
    served = ServedTriggers(settings(), print)
    assert list(served.scan().deploy) == ["new_pushes"]
    return served.triggers["new_pushes"]


@pytest.mark.usefixtures("prefect_api")
def test_every_push_after_serve_saw_a_new_trigger_is_delivered_none_from_before(
    hook: Hook,
    tmp_path: Path,
    prosody: Any,
    receiver: Callable[..., Any],
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """Live events are no backlog: the first-run cut (5) does not apply to them, and what
    the inbox held before the trigger existed is not replayed."""
    monkeypatch.setenv("TRIGGERFLOW_GITHUB_SECRET", SECRET)
    jid, password = prosody.new_user("dev")
    for key, value in prosody.env(owner=jid).items():
        monkeypatch.setenv(key, value)
    dev = receiver(jid, password)
    for n in range(1, 5):  # stored for other triggers, before this one existed
        assert hook.post("push", _push(n), delivery=f"old{n}").status_code == 200
    pushes = _first_seen_by_serve(tmp_path, monkeypatch)
    for n in range(1, 9):  # after serve deployed it, before its first run
        assert hook.post("push", _push(n), delivery=f"new{n}").status_code == 200
    report = pushes().sinks[0]
    assert (report.sent, report.skipped) == (8, 0)
    got = dev.wait_for(8)
    time.sleep(0.5)
    assert [m.split(" pushed ")[1].split(" ")[0] for m in dev.messages] == [
        str(n) for n in range(1, 9)
    ], got
    assert pushes().sinks[0].sent == 0


@pytest.mark.usefixtures("prefect_api")
def test_a_trigger_never_seen_before_does_not_replay_the_inbox(
    hook: Hook, data_dir: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Without serve (a notebook, a ``prefect deploy`` worker), the trigger starts when
    its process defined it: older deliveries are not replayed, later ones all go."""
    monkeypatch.setenv("TRIGGERFLOW_GITHUB_SECRET", SECRET)
    for n in range(1, 5):
        hook.post("push", _push(n), delivery=f"before{n}")

    @trigger(on=github_webhook(repo="Codertocat/Hello-World", events=["push"]))
    def late_pushes(events: Any) -> None:
        feed(events, name="late-pushes")

    assert late_pushes().sinks[0].sent == 0
    for n in range(1, 8):
        hook.post("push", _push(n), delivery=f"after{n}")
    assert late_pushes().sinks[0].sent == 7
    assert late_pushes().sinks[0].sent == 0
