"""A sink and a source of the user's own, through the public protocols only.

The sink is the shipped example ``flows/webhook_post.py``, loaded the way ``triggerflow
serve`` loads a flows file; it POSTs to a stand-in web-hook receiver on 127.0.0.1 (below)
whose address holds a token. Triggers run as real Prefect flows on the session's Prefect
server, the ledger is a real DuckDB file. What is shown is what the outbox gives a sink of
one's own for free: the ledger, the first-run cut, publication limits, retries, previews,
``triggerflow status``, exactly-once across a lost answer, one refused item staying small,
a clear configuration error, and an address that never shows.
"""

from __future__ import annotations

import json
import logging
import threading
from collections.abc import Iterable, Iterator
from dataclasses import dataclass
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from types import TracebackType
from typing import Any, Self

import duckdb
import pytest

from triggerflow import Item, TransientError, trigger
from triggerflow._discovery import load_file
from triggerflow.cli import main
from triggerflow.exceptions import ConfigurationError, TriggerRunFailed
from triggerflow.sources import collect, rss

pytestmark = pytest.mark.usefixtures("prefect_api")

FLOWS = Path(__file__).resolve().parents[1] / "flows"
SECRET = "SECRET-TOKEN-123"
HOST = "127.0.0.1"
LOST = 0  # an "answer" of the receiver: read the body, keep it, close without answering


# -- a web-hook receiver ----------------------------------------------------------------
@dataclass(frozen=True)
class Received:
    """One request as the receiver read it; ``answer`` None: it never answered."""

    path: str
    key: str
    body: dict[str, Any]
    answer: int | None


class WebhookReceiver:
    """A web hook on 127.0.0.1 that keeps each item once per ``Idempotency-Key``.

    ``fail_next(503, LOST)`` sets the next answers (then 200 again); ``refuse[title] =
    400`` refuses an item for good. Only POSTs to :attr:`url` are taken (404 elsewhere).
    """

    def __init__(self, path: str = f"/hooks/{SECRET}") -> None:
        self.path = path
        self.requests: list[Received] = []
        self.taken: dict[str, dict[str, Any]] = {}  # by Idempotency-Key
        self.refuse: dict[str, int] = {}
        self._plan: list[int] = []
        self._lock = threading.Lock()
        receiver = self

        class Handler(BaseHTTPRequestHandler):
            timeout = 10  # a client that stops sending does not hold a thread for long

            def do_POST(self) -> None:  # noqa: N802 (the handler's protocol)
                raw = self.rfile.read(int(self.headers.get("Content-Length") or 0))
                key = self.headers.get("Idempotency-Key") or ""
                body = json.loads(raw or b"{}")
                with receiver._lock:
                    if self.path != receiver.path:
                        answer = 404
                    elif receiver._plan:
                        answer = receiver._plan.pop(0)
                    else:
                        answer = receiver.refuse.get(body.get("title"), 200)
                    if answer in (200, LOST):
                        receiver.taken.setdefault(key, body)  # a second one: answered, not kept
                    receiver.requests.append(
                        Received(self.path, key, body, None if answer == LOST else answer)
                    )
                if answer == LOST:  # the item arrived; its answer never does
                    self.close_connection = True
                    return
                text = b"ok" if answer == 200 else b"no such hook" if answer == 404 else b"nope"
                self.send_response(answer)
                self.send_header("Content-Type", "text/plain")
                self.send_header("Content-Length", str(len(text)))
                self.end_headers()
                self.wfile.write(text)

            def log_message(self, format: str, *args: Any) -> None:
                pass  # its request lines hold the token: the receiver's own logs stay quiet

        self.server = ThreadingHTTPServer((HOST, 0), Handler)
        self.server.daemon_threads = True
        self._thread = threading.Thread(
            target=self.server.serve_forever, kwargs={"poll_interval": 0.05}, daemon=True
        )

    @property
    def url(self) -> str:
        return f"http://{HOST}:{self.server.server_address[1]}{self.path}"

    def fail_next(self, *answers: int) -> None:
        with self._lock:
            self._plan += answers

    def titles(self) -> list[str]:
        """What the receiver kept, in the order it arrived."""
        with self._lock:
            return [b["title"] for b in self.taken.values()]

    def __enter__(self) -> Self:
        self._thread.start()
        return self

    def __exit__(
        self, t: type[BaseException] | None, e: BaseException | None, tb: TracebackType | None
    ) -> None:
        self.server.shutdown()
        self.server.server_close()
        self._thread.join(10)


@pytest.fixture
def hook(monkeypatch: pytest.MonkeyPatch) -> Iterator[WebhookReceiver]:
    """A receiver, and WEBHOOK_POST_URL pointing at it."""
    with WebhookReceiver() as receiver:
        monkeypatch.setenv("WEBHOOK_POST_URL", receiver.url)
        yield receiver


# -- the example, as serve loads it ---------------------------------------------------------
@pytest.fixture(scope="module")
def example_module() -> dict[str, Any]:
    """The globals of flows/webhook_post.py, imported as `triggerflow serve` imports it."""
    (example,) = load_file(FLOWS / "webhook_post.py")
    assert example.name == "python_news_to_webhook"
    return example.user_fn.__globals__


@pytest.fixture
def example(example_module: dict[str, Any], feeds: Any, monkeypatch: pytest.MonkeyPatch) -> Any:
    """The shipped trigger, reading the local feed /python.xml instead of the Python blog."""
    monkeypatch.setitem(example_module, "rss", lambda _url: rss(feeds.url("/python.xml")))
    (t,) = [
        v for v in example_module.values() if getattr(v, "name", "") == "python_news_to_webhook"
    ]
    return t


def to_webhook(example_module: dict[str, Any], trigger_name: str, url: str, **options: Any) -> Any:
    """A trigger of the user's: ``webhook_post(rss(url), **options)``."""
    webhook_post = example_module["webhook_post"]

    @trigger(name=trigger_name)
    def t() -> None:
        webhook_post(rss(url), **options)

    return t


def titles(n: int, start: int = 0) -> list[str]:
    return [f"post {i}" for i in range(start, start + n)]


def deliveries(data_dir: Path) -> list[tuple[Any, ...]]:
    """(title, state, attempts, last_error) per ledger row of the web hook, by title."""
    con = duckdb.connect(str(data_dir / "triggerflow.duckdb"), read_only=True)
    try:
        return con.execute(
            "SELECT i.title, d.state, d.attempts, d.last_error FROM deliveries d "
            "JOIN items i ON i.source = d.source AND i.id = d.item_id "
            "WHERE d.sink = 'webhook' ORDER BY i.title"
        ).fetchall()
    finally:
        con.close()


def status(capsys: pytest.CaptureFixture[str], *args: str) -> str:
    capsys.readouterr()
    assert main(["status", *args]) == 0
    return capsys.readouterr().out


def route_row(out: str, trigger_name: str) -> list[str]:
    """The status table's row of ``trigger_name``: target, items, sent, queued, failed, skipped.

    (The table's columns: TRIGGER TARGET ITEMS SENT QUEUED FAILED DEAD SKIPPED LAST SENT.)
    """
    (row,) = [line.split() for line in out.splitlines() if line.startswith(trigger_name + " ")]
    return [*row[1:6], row[7]]


# -- what the outbox gives the example sink ---------------------------------------------------
def test_the_ledger_a_second_run_sends_nothing_again(
    hook: WebhookReceiver, feeds: Any, example_module: dict[str, Any], data_dir: Path
) -> None:
    feeds.publish("/a.xml", titles(3))
    t = to_webhook(example_module, "again", feeds.url("/a.xml"))
    assert t().sinks[0].sent == 3
    again = t().sinks[0]
    assert (again.sent, again.queued) == (0, 0)
    assert len(hook.requests) == 3  # nothing was even asked the second time
    feeds.publish("/a.xml", titles(4))  # one new: only it goes
    assert t().sinks[0].sent == 1
    assert [r.body["title"] for r in hook.requests] == titles(4)
    assert all(r.path == hook.path and r.answer == 200 for r in hook.requests)
    assert deliveries(data_dir) == [(x, "sent", 1, None) for x in titles(4)]


def test_first_run_takes_only_the_newest_few(
    hook: WebhookReceiver,
    feeds: Any,
    example_module: dict[str, Any],
    data_dir: Path,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    feeds.publish("/eight.xml", titles(8))
    first = to_webhook(example_module, "first", feeds.url("/eight.xml"))().sinks[0]
    assert (first.sent, first.skipped, first.queued) == (5, 3, 0)  # TRIGGERFLOW_FIRST_RUN=5
    assert sorted(hook.titles()) == titles(5, start=3)  # the newest five
    rows = deliveries(data_dir)
    assert [r[:2] for r in rows] == [(x, "skipped") for x in titles(3)] + [
        (x, "sent") for x in titles(5, start=3)
    ]
    # Configurable, and per new target: another trigger, TRIGGERFLOW_FIRST_RUN=2.
    monkeypatch.setenv("TRIGGERFLOW_FIRST_RUN", "2")
    other = to_webhook(example_module, "other", feeds.url("/eight.xml"), name="other-hook")()
    assert (other.sinks[0].sent, other.sinks[0].skipped) == (2, 6)
    assert len(hook.requests) == 7


def test_a_publication_limit_keeps_the_rest_for_later(
    hook: WebhookReceiver, feeds: Any, example_module: dict[str, Any], data_dir: Path
) -> None:
    feeds.publish("/limit.xml", titles(8))
    t = to_webhook(example_module, "limited", feeds.url("/limit.xml"), limit="2/hour")
    first = t().sinks[0]
    assert (first.sent, first.queued, first.held, first.skipped) == (2, 3, 3, 3)
    assert first.next_at is not None  # when the limit frees the next slot
    assert hook.titles() == ["post 3", "post 4"]  # the oldest of what is owed first
    later = t().sinks[0]  # within the hour
    assert (later.sent, later.queued) == (0, 3)
    assert len(hook.requests) == 2
    states = [r[1] for r in deliveries(data_dir)]
    assert states == ["skipped"] * 3 + ["sent"] * 2 + ["queued"] * 3


def test_a_503_is_retried_by_prefect_and_the_item_arrives_once(
    hook: WebhookReceiver,
    feeds: Any,
    example_module: dict[str, Any],
    data_dir: Path,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    from prefect.client.orchestration import get_client
    from prefect.client.schemas.filters import FlowRunFilter, FlowRunFilterId

    from triggerflow._async import run_sync

    monkeypatch.setenv("TRIGGERFLOW_RETRIES", "1")
    hook.fail_next(503)
    feeds.publish("/busy.xml", titles(2))
    state = to_webhook(example_module, "busy", feeds.url("/busy.xml"))(return_state=True)
    assert state.is_completed(), state.message
    assert state.result().sinks[0].sent == 2
    assert [r.answer for r in hook.requests] == [503, 200, 200]
    assert hook.requests[0].key == hook.requests[1].key  # the same delivery, retried
    assert sorted(hook.titles()) == titles(2)
    assert deliveries(data_dir) == [("post 0", "sent", 2, None), ("post 1", "sent", 2, None)]

    async def sink_runs() -> list[int]:
        async with get_client() as client:
            tasks = await client.read_task_runs(
                flow_run_filter=FlowRunFilter(
                    id=FlowRunFilterId(any_=[state.state_details.flow_run_id])
                )
            )
            return [t.run_count for t in tasks if t.name.startswith("webhook → ")]

    assert run_sync(sink_runs()) == [2]  # Prefect ran the sink step twice


def test_preview_lists_what_would_be_sent_and_sends_and_marks_nothing(
    hook: WebhookReceiver, feeds: Any, example_module: dict[str, Any], data_dir: Path
) -> None:
    feeds.publish("/p.xml", titles(7))
    t = to_webhook(example_module, "peek", feeds.url("/p.xml"), limit="3/hour")
    seen = t.preview()
    (sink,) = seen.sinks
    assert sink.dry_run and sink.would_send == [f"POST post {i}" for i in (2, 3, 4)]
    assert sink.held == 2  # the limit holds the rest back in the preview too
    assert "3 would be sent to 127.0.0.1" in seen.summary()
    assert t.preview().sinks[0].would_send == sink.would_send  # a preview marks nothing
    assert hook.requests == []
    con = duckdb.connect(str(data_dir / "triggerflow.duckdb"), read_only=True)
    try:
        assert con.execute("SELECT count(*) FROM deliveries").fetchone() == (0,)
    finally:
        con.close()
    run = t().sinks[0]  # the real run finds the route as new as the preview did
    assert (run.sent, run.skipped, run.queued) == (3, 2, 2)
    assert hook.titles() == ["post 2", "post 3", "post 4"]


def test_status_shows_the_example_route_with_its_counts(
    hook: WebhookReceiver,
    feeds: Any,
    example: Any,
    data_dir: Path,
    capsys: pytest.CaptureFixture[str],
) -> None:
    feeds.publish("/python.xml", titles(8))
    result = example()  # the shipped trigger: limit="10/hour", the first-run cut 5
    assert result.summary().endswith("5 sent to 127.0.0.1, 3 older skipped")
    out = status(capsys)
    assert route_row(out, "python_news_to_webhook") == [
        "webhook:127.0.0.1",
        "8",
        "5",
        "0",
        "0",
        "3",
    ]
    assert status(capsys, "python-news-to-webhook") == out  # as `list` writes the name
    feeds.publish("/python.xml", titles(15))  # 7 new: 5 more fit in the hour's 10
    assert (example().sinks[0].sent, example().sinks[0].sent) == (5, 0)
    out = status(capsys)
    assert route_row(out, "python_news_to_webhook") == [
        "webhook:127.0.0.1",
        "15",
        "10",
        "2",
        "0",
        "3",
    ]
    assert "python_news_to_webhook → 127.0.0.1: 2 wait for the limit 10/hour; next at" in out


def test_a_lost_answer_is_not_confirmed_and_the_rerun_has_the_same_key(
    hook: WebhookReceiver,
    feeds: Any,
    example_module: dict[str, Any],
    data_dir: Path,
    monkeypatch: pytest.MonkeyPatch,
    capsys: pytest.CaptureFixture[str],
) -> None:
    monkeypatch.setenv("TRIGGERFLOW_RETRIES", "0")
    feeds.publish("/lost.xml", titles(2))
    t = to_webhook(example_module, "lost", feeds.url("/lost.xml"))
    hook.fail_next(LOST)  # post 0 arrives, its answer does not
    with pytest.raises(TriggerRunFailed, match="RemoteProtocolError"):
        t()
    assert hook.titles() == ["post 0"] and len(hook.requests) == 1
    rows = deliveries(data_dir)  # not confirmed: owed again, post 1 never tried
    assert [r[:3] for r in rows] == [("post 0", "queued", 1), ("post 1", "queued", 1)]
    assert "RemoteProtocolError" in rows[0][3]
    assert "lost → 127.0.0.1: webhook 127.0.0.1: RemoteProtocolError" in status(capsys)

    run = t().sinks[0]  # the rerun sends it again, as the same delivery
    assert (run.sent, run.queued) == (2, 0)
    first, again, other = hook.requests
    assert again.key == first.key and again.body == first.body and other.key != first.key
    assert hook.titles() == ["post 0", "post 1"]  # a receiver that dedups by key: once
    assert [r[:2] for r in deliveries(data_dir)] == [("post 0", "sent"), ("post 1", "sent")]

    # The same inside one run: Prefect's retry of the step sends the same key.
    monkeypatch.setenv("TRIGGERFLOW_RETRIES", "1")
    feeds.publish("/lost.xml", titles(3))
    hook.fail_next(LOST)
    assert t().sinks[0].sent == 1
    assert hook.requests[-1].key == hook.requests[-2].key and hook.requests[-1].answer == 200
    assert hook.titles() == titles(3)
    assert deliveries(data_dir)[-1] == ("post 2", "sent", 2, None)
    assert t().sinks[0].sent == 0 and len(hook.requests) == 5


def test_a_refused_item_is_failed_in_status_and_the_others_go_on(
    hook: WebhookReceiver,
    feeds: Any,
    example_module: dict[str, Any],
    data_dir: Path,
    capsys: pytest.CaptureFixture[str],
) -> None:
    hook.refuse["post 1"] = 400
    feeds.publish("/r.xml", titles(3))
    t = to_webhook(example_module, "refused", feeds.url("/r.xml"))
    with pytest.raises(TriggerRunFailed, match="post 1: webhook 127.0.0.1 refused it: 400"):
        t()
    assert hook.titles() == ["post 0", "post 2"]
    rows = deliveries(data_dir)
    assert [r[:3] for r in rows] == [
        ("post 0", "sent", 1),
        ("post 1", "failed", 1),
        ("post 2", "sent", 1),
    ]
    assert "400" in rows[1][3]
    out = status(capsys)
    assert route_row(out, "refused") == ["webhook:127.0.0.1", "3", "2", "0", "1", "0"]
    assert "refused → 127.0.0.1 [failed] post 1: webhook 127.0.0.1 refused it: 400" in out
    assert t().sinks[0].sent == 0  # refused for good: not asked again
    assert len(hook.requests) == 3


def test_a_missing_address_is_a_clear_configuration_error(
    example: Any,
    feeds: Any,
    data_dir: Path,
    monkeypatch: pytest.MonkeyPatch,
    capsys: pytest.CaptureFixture[str],
) -> None:
    monkeypatch.delenv("WEBHOOK_POST_URL", raising=False)
    problem = "webhook_post(): no address: set WEBHOOK_POST_URL or pass url="
    assert example.check() == [problem]
    feeds.publish("/python.xml", titles(2))
    with pytest.raises(ConfigurationError, match="set WEBHOOK_POST_URL"):
        example()
    capsys.readouterr()
    main(["--flows", str(FLOWS), "list"])
    out = capsys.readouterr().out
    (row,) = [line for line in out.splitlines() if line.startswith("python_news_to_webhook ")]
    assert "not configured" in row
    assert f"  python_news_to_webhook: {problem}" in out.splitlines()
    monkeypatch.setenv("WEBHOOK_POST_URL", "ftp://127.0.0.1/hooks/x")
    assert example.check() == ["webhook_post(): 127.0.0.1: the address must start with https://"]


def test_the_address_with_its_token_shows_nowhere(
    hook: WebhookReceiver,
    feeds: Any,
    example_module: dict[str, Any],
    data_dir: Path,
    monkeypatch: pytest.MonkeyPatch,
    capsys: pytest.CaptureFixture[str],
    caplog: pytest.LogCaptureFixture,
) -> None:
    from prefect.client.orchestration import get_client
    from prefect.client.schemas.filters import LogFilter, LogFilterFlowRunId

    from triggerflow._async import run_sync

    caplog.set_level(logging.DEBUG)
    monkeypatch.setenv("TRIGGERFLOW_RETRIES", "1")
    feeds.publish("/s.xml", titles(3))
    t = to_webhook(example_module, "secretive", feeds.url("/s.xml"), limit="5/hour")
    hook.refuse["post 2"] = 400
    hook.fail_next(503, LOST, LOST)  # retried, then lost twice: the run fails
    failed = t(return_state=True)
    assert failed.is_failed()
    refused = t(return_state=True)  # the rerun: lost once more, retried, and the 400
    assert refused.is_failed()
    assert len(hook.taken) == 2 and hook.requests[-1].answer == 400
    kept = [str(s.message) + repr(s) for s in (failed, refused)]
    feeds.publish("/s.xml", titles(4))
    ok = t(return_state=True)
    assert ok.is_completed()
    result = ok.result()
    kept += [repr(result), result.summary(), result.markdown(), repr(result.sinks)]
    kept.append(status(capsys, "--failures", "10"))

    async def everything_prefect_kept() -> str:
        async with get_client() as client:
            texts = []
            for run_state in (failed, refused, ok):
                run_id = run_state.state_details.flow_run_id
                run = await client.read_flow_run(run_id)
                texts.append(repr(run.parameters) + repr(run.state))
                logs = await client.read_logs(
                    LogFilter(flow_run_id=LogFilterFlowRunId(any_=[run_id]))
                )
                texts += [log.message for log in logs]
            for task_run in await client.read_task_runs():
                texts.append(task_run.name + repr(task_run.task_inputs) + repr(task_run.state))
            texts += [repr(a.data) for a in await client.read_artifacts()]
            return "\n".join(texts)

    kept.append(run_sync(everything_prefect_kept()))
    kept.append(caplog.text)
    kept.append(repr(example_module["WebhookPost"](hook.url)))
    text = "\n".join(kept)
    # We did look where the words would be: the route, the 503, the lost answer, the 400.
    for said in (
        "webhook → 127.0.0.1",
        "answered 503",
        "RemoteProtocolError",
        "refused it: 400",
        f"HTTP Request: POST http://{HOST}:",  # httpx's own log, with the origin only
    ):
        assert said in text, said
    assert SECRET not in text and hook.url not in text
    store = data_dir / "triggerflow.duckdb"
    assert SECRET.encode() not in store.read_bytes()
    assert SECRET not in "\n".join(all_text_in(store))


def all_text_in(path: Path) -> Iterable[str]:
    """Every text value of every table of the DuckDB file at ``path``."""
    con = duckdb.connect(str(path), read_only=True)
    try:
        columns = con.execute(
            "SELECT table_name, column_name FROM information_schema.columns "
            "WHERE data_type IN ('VARCHAR', 'VARCHAR[]', 'JSON')"
        ).fetchall()
        for table, column in columns:
            for (value,) in con.execute(f'SELECT "{column}"::VARCHAR FROM "{table}"').fetchall():
                if value is not None:
                    yield value
    finally:
        con.close()


# -- a source of the user's own -----------------------------------------------------------------
@dataclass
class Numbers:
    """A tiny source: the numbers above the cursor, up to ``upto``; ``fail`` says how."""

    upto: int = 3
    fail: list[Exception] | None = None
    kind: str = "numbers"
    key: str = "numbers:counter"

    def __post_init__(self) -> None:
        self.cursors: list[str | None] = []

    def problem(self) -> str | None:
        return None

    def fetch(self, cursor: str | None) -> tuple[list[Item], str | None]:
        self.cursors.append(cursor)
        if self.fail:
            raise self.fail.pop(0)
        start = int(cursor) if cursor else 0
        got = [Item(self.key, str(n), title=f"number {n}") for n in range(start + 1, self.upto + 1)]
        return got, str(self.upto)


@dataclass
class Broken:
    kind: str = "broken"
    key: str = "broken:source"

    def problem(self) -> str | None:
        return None

    def fetch(self, cursor: str | None) -> tuple[list[Item], str | None]:
        raise ValueError("the page changed its layout")


def test_a_source_of_ones_own_through_collect(
    hook: WebhookReceiver,
    example_module: dict[str, Any],
    data_dir: Path,
    monkeypatch: pytest.MonkeyPatch,
    capsys: pytest.CaptureFixture[str],
) -> None:
    monkeypatch.setenv("TRIGGERFLOW_RETRIES", "1")
    webhook_post = example_module["webhook_post"]
    numbers = Numbers(fail=[TransientError("the counter is busy")])

    @trigger(name="counting")
    def counting() -> None:
        webhook_post([*collect(numbers), *collect(Broken())])

    # A TransientError is retried; the other source's plain error fails only that source.
    with pytest.raises(TriggerRunFailed, match="broken:source: ValueError: the page changed"):
        counting()
    assert numbers.cursors == [None, None]  # the retry read from the start again
    assert hook.titles() == ["number 1", "number 2", "number 3"]  # the sink went on
    con = duckdb.connect(str(data_dir / "triggerflow.duckdb"), read_only=True)
    try:
        stored = con.execute(
            "SELECT id, title FROM items WHERE source = 'numbers:counter' ORDER BY id"
        ).fetchall()
        cursor = con.execute(
            "SELECT kind, cursor FROM sources WHERE source = 'numbers:counter'"
        ).fetchone()
    finally:
        con.close()
    assert stored == [("1", "number 1"), ("2", "number 2"), ("3", "number 3")]
    assert cursor == ("numbers", "3")
    out = status(capsys)
    assert "✗ broken:source" in out and "the page changed its layout" in out

    numbers.upto = 5  # the next run starts at the cursor kept: only 4 and 5 are new
    with pytest.raises(TriggerRunFailed, match="broken:source"):
        counting()
    assert numbers.cursors == [None, None, "3"]
    assert hook.titles() == [f"number {n}" for n in range(1, 6)]
    assert len(hook.requests) == 5


def test_the_readmes_shortened_sink_delivers_the_same_way(
    hook: WebhookReceiver, feeds: Any, data_dir: Path
) -> None:
    readme = (FLOWS.parent / "README.md").read_text()
    (block,) = [b for b in readme.split("```python\n")[1:] if "class WebhookPost" in b]
    namespace: dict[str, Any] = {}
    exec(compile(block.split("```")[0], "README.md", "exec"), namespace)  # noqa: S102
    webhook_post = namespace["webhook_post"]
    feeds.publish("/readme.xml", titles(2))

    @trigger(name="readme_sink")
    def readme_sink() -> None:
        webhook_post(rss(feeds.url("/readme.xml")), url=hook.url, limit="1/hour")

    hook.fail_next(LOST)
    first = readme_sink().sinks[0]  # the lost answer is retried (same key), then the limit
    assert (first.sent, first.queued) == (1, 1)
    assert hook.requests[0].key and hook.requests[0].key == hook.requests[1].key
    assert hook.titles() == ["post 0"]
    assert readme_sink().sinks[0].sent == 0 and len(hook.requests) == 2


@dataclass(frozen=True)
class Crashing:
    """A sink of one's own with a bug: it raises what no sink should."""

    sink: str = "crashing"
    target: str = "nowhere"

    def problem(self) -> str | None:
        return None

    def preview(self, item: Item) -> str:
        return item.title

    def open(self) -> Any:
        from contextlib import contextmanager

        @contextmanager
        def session() -> Iterator[Any]:
            def post(item: Item, attempt: Any) -> None:
                raise KeyError("no such field: 'title2'")

            yield post

        return session()


def test_a_bug_in_ones_own_sink_is_named_once_with_its_route(
    feeds: Any, caplog: pytest.LogCaptureFixture
) -> None:
    from triggerflow.sinks import deliver

    feeds.publish("/bug.xml", titles(1))

    @trigger(name="buggy")
    def buggy() -> None:
        deliver(Crashing(), rss(feeds.url("/bug.xml")))

    with pytest.raises(TriggerRunFailed) as failed:
        buggy()
    message = str(failed.value)
    assert "KeyError: \"no such field: 'title2'\"" in message, message
    assert message.count("crashing → nowhere") <= 1, message
    logged = [r.getMessage() for r in caplog.records if "KeyError" in r.getMessage()]
    assert logged and all(m.count("crashing → nowhere") <= 1 for m in logged), logged
    assert logged[0].startswith("crashing → nowhere: KeyError"), logged
