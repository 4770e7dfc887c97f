"""X: OAuth 2 with PKCE, refresh tokens that work once refreshed by one process at a time,
posts exactly once and cut as X counts, a budget, and timelines as sources.

Real parts: a stand-in of X's API v2 written from its documentation
(``standins.XStandIn``), the connect command run as a process with its loopback
callback, the account a real Prefect block, the store a real DuckDB file, triggers run
as Prefect flows.
"""

from __future__ import annotations

import os
import queue
import subprocess
import sys
import threading
import time
from typing import Any

import pytest
from standins import XStandIn
from standins.x import weighted_length
from test_services import example_reading, follow_browser

from triggerflow import sinks, trigger
from triggerflow.blocks import XAccount
from triggerflow.exceptions import TriggerRunFailed
from triggerflow.services._client import ServiceClient
from triggerflow.sources import rss, x_mentions, x_posts, x_search

pytestmark = pytest.mark.usefixtures("prefect_api")


def connect(x: XStandIn, account: str = "default", *extra: str) -> str:
    """``triggerflow connect x`` as a user runs it, the browser's part played here."""
    cmd = [sys.executable, "-m", "triggerflow", "connect", "x", "--client-id", x.client_id,
           "--account", account, "--url", x.url, "--authorize-url",
           f"{x.url}/i/oauth2/authorize", "--port", str(x.callback_port), "--no-browser",
           "--wait", "60", *extra]  # fmt: skip
    env = {**os.environ, "TRIGGERFLOW_X_CLIENT_SECRET": x.client_secret}
    proc = subprocess.Popen(cmd, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True,
                            env=env, stdin=subprocess.DEVNULL)  # fmt: skip
    lines: queue.Queue[str] = queue.Queue()
    reader = threading.Thread(target=lambda: [lines.put(s) for s in proc.stdout], daemon=True)
    reader.start()
    url, deadline = "", time.monotonic() + 60
    while not url and time.monotonic() < deadline:
        try:
            line = lines.get(timeout=max(0.1, deadline - time.monotonic()))
        except queue.Empty:
            break
        if "/i/oauth2/authorize?" in line:
            url = line.strip()
    assert url, "connect printed no authorization address"
    assert "code_challenge_method=S256" in url and "offline.access" in url
    assert follow_browser(url).status_code == 200
    assert proc.wait(timeout=60) == 0
    reader.join(10)
    return url + "".join(lines.queue)


def saved(account: str = "default") -> XAccount:
    block = XAccount.load(f"x-{account}")
    assert isinstance(block, XAccount)
    return block


def test_connect_through_the_cli_saves_the_user_and_tokens(x_api: XStandIn) -> None:
    out = connect(x_api, "main")
    assert "Connected X account @tester as 'x-main'" in out
    block = saved("main")
    assert block.user_id == "2244994945" and block.refresh_token is not None
    assert block.token_auth_method() == "client_secret_basic"
    accounts = subprocess.run([sys.executable, "-m", "triggerflow", "accounts"],
                              capture_output=True, text=True, timeout=120).stdout  # fmt: skip
    assert "x main" in accounts
    for secret in (x_api.client_secret, block.access_token.get_secret_value()):
        assert secret not in out + accounts


def test_each_item_posted_once_across_a_lost_answer_and_a_rerun(
    x_api: XStandIn, feeds: Any
) -> None:
    connect(x_api)
    feeds.publish("/x.xml", ["one", "two"])
    url = feeds.url("/x.xml")
    x_api.fail_next(1, 503, path="/2/tweets", method="POST", after=True)  # posted, answer lost

    @trigger
    def share() -> None:
        sinks.x_post(rss(url))

    assert share().sinks[0].sent == 2
    assert x_api.posted_by() == [f"one\n{url}#0", f"two\n{url}#1"]  # the lost one not again
    assert share().sinks[0].sent == 0 and len(x_api.posted_by()) == 2
    feeds.publish("/x.xml", ["one", "two", "three"])
    assert share().sinks[0].sent == 1 and len(x_api.posted_by()) == 3


def test_a_repeated_text_is_refused_in_xs_words(x_api: XStandIn, feeds: Any) -> None:
    connect(x_api)
    feeds.publish("/d.xml", ["a", "b"])
    url = feeds.url("/d.xml")

    @trigger
    def share() -> None:
        sinks.x_post(rss(url), format="Same words every time")

    with pytest.raises(TriggerRunFailed, match="X refused the post for 'b'.*duplicate content"):
        share()
    assert x_api.posted_by() == ["Same words every time"]


def test_text_is_cut_as_x_counts_and_link_false_posts_no_url(x_api: XStandIn, feeds: Any) -> None:
    connect(x_api)
    feeds.publish("/l.xml", ["x"])
    url = feeds.url("/l.xml")
    family = "👨‍👩‍👧‍👦"

    @trigger
    def share() -> None:
        sinks.x_post(rss(url), format=lambda i: " ".join([f"日本語{family}"] * 80) + f" {i.link}")

    @trigger
    def bare() -> None:
        sinks.x_post(rss(url), format="Read {title}: {link}", link=False)

    assert share().sinks[0].sent == 1 and bare().sinks[0].sent == 1
    long, bare = x_api.posted_by()
    assert weighted_length(long) <= 280 and long.endswith(f"…\n{url}#0")
    assert family in long and "\ufffd" not in long
    assert bare == "Read x:"


def test_a_budget_is_a_limit_in_the_ledger(x_api: XStandIn, feeds: Any) -> None:
    connect(x_api)
    feeds.publish("/b.xml", [f"post {i}" for i in range(5)])
    url = feeds.url("/b.xml")

    @trigger
    def share() -> None:
        sinks.x_post(rss(url), link=False, budget="0.045/month")  # 3 posts at $0.015

    run = share()
    assert (run.sinks[0].sent, run.sinks[0].queued) == (3, 2)

    @trigger
    def wrong() -> None:
        sinks.x_post(rss(url), budget="0.10/month")  # not one post with a URL ($0.20)
        sinks.x_post(rss(url), budget="5/month", limit="5/hour")

    problems = wrong.check()
    assert any("buys no post at $0.200 a post" in p for p in problems), problems
    assert any("give limit= or budget=, not both" in p for p in problems), problems


def test_a_429_waits_for_the_x_rate_limit_reset(x_api: XStandIn, feeds: Any) -> None:
    connect(x_api)
    feeds.publish("/r.xml", ["a"])
    url = feeds.url("/r.xml")
    reset = str(int(time.time()) + 1)
    headers = {"x-rate-limit-remaining": "0", "x-rate-limit-reset": reset}
    x_api.fail_next(1, 429, {"title": "Too Many Requests"}, path="/2/tweets", headers=headers)

    @trigger
    def share() -> None:
        sinks.x_post(rss(url))

    assert share().sinks[0].sent == 1
    posts = x_api.requests_to("/2/tweets", "POST")
    assert len(posts) == 2 and posts[1].time >= int(reset) - 0.05


# -- refresh tokens that work once --------------------------------------------------------
def test_an_expired_token_is_refreshed_and_the_new_refresh_token_saved(
    x_api: XStandIn, feeds: Any
) -> None:
    connect(x_api)
    before = saved().refresh_token
    feeds.publish("/e.xml", ["a"])
    url = feeds.url("/e.xml")

    @trigger
    def share() -> None:
        sinks.x_post(rss(url))

    x_api.expire_tokens()
    assert share().sinks[0].sent == 1
    assert before is not None and before.get_secret_value() in x_api.spent_refresh
    assert saved().refresh_token != before  # the new one, saved


def test_two_processes_refreshing_at_once_spend_the_refresh_token_once(x_api: XStandIn) -> None:
    """Both hold the same saved token when it expires; the second must not spend the
    (already spent) refresh token: it takes the token the first saved."""
    connect(x_api)
    one = ServiceClient("x", account_block=saved())
    two = ServiceClient("x", account_block=saved())
    x_api.expire_tokens()
    try:
        results: list[Any] = []

        def call(client: ServiceClient) -> None:
            try:
                results.append(client.get("/2/users/me").json()["data"]["username"])
            except Exception as e:  # noqa: BLE001 - reported below
                results.append(e)

        threads = [threading.Thread(target=call, args=(c,)) for c in (one, two)]
        for t in threads:
            t.start()
        for t in threads:
            t.join(60)
        assert results == ["tester", "tester"]
    finally:
        one.close()
        two.close()
    assert x_api.count("/2/oauth2/token") == 2  # the code at connect, one refresh
    with ServiceClient("x") as later:  # the saved token is the newest, and works
        assert later.get("/2/users/me").json()["data"]["username"] == "tester"


# -- sources ------------------------------------------------------------------------------
def test_posts_mentions_and_a_search_are_incremental(x_api: XStandIn) -> None:
    connect(x_api)
    x_api.add_user("other")
    for i in range(15):
        x_api.add_post("other", f"old {i} #python")
    seen: dict[str, list[str]] = {}

    @trigger
    def read() -> None:
        seen["posts"] = [i.title for i in x_posts("@other")]
        seen["mentions"] = [i.title for i in x_mentions()]
        seen["search"] = [i.title for i in x_search("#python")]

    read()
    assert seen["posts"] == [f"old {i} #python" for i in range(5, 15)]  # the newest 10 only
    assert seen["mentions"] == []
    for i in range(120):
        x_api.add_post("other", f"new {i}")
    x_api.add_post("other", "hello @tester #python")
    read()
    assert seen["posts"] == [f"new {i}" for i in range(120)] + ["hello @tester #python"]
    assert seen["mentions"] == ["hello @tester #python"]
    assert seen["search"] == ["hello @tester #python"]
    read()
    assert seen == {"posts": [], "mentions": [], "search": []}
    (item,) = [i for i in x_mentions() if "hello" in i.title] or [None]
    assert item is not None and item.author == "@other" and item.tags == ("python",)
    assert item.link == f"https://x.com/other/status/{item.id}"


def test_preview_posts_nothing(x_api: XStandIn, feeds: Any) -> None:
    connect(x_api)
    feeds.publish("/p.xml", ["shown"])
    url = feeds.url("/p.xml")

    @trigger
    def share() -> None:
        sinks.x_post(rss(url))

    assert share.preview().sinks[0].would_send == [f"shown\n{url}#0"]
    assert x_api.count("/2/tweets", "POST") == 0


def test_example_news_to_x(x_api: XStandIn, feeds: Any, monkeypatch: pytest.MonkeyPatch) -> None:
    connect(x_api)
    monkeypatch.setenv("TRIGGERFLOW_FIRST_RUN", "10")
    feeds.publish("/py.xml", [f"release {i}" for i in range(4)])
    example = example_reading("news_to_x", feeds.url("/py.xml"), monkeypatch)
    assert example().sinks[0].sent == 4
    assert all("http" not in text for text in x_api.posted_by())  # link=False: the cheap ones


def test_no_token_or_secret_in_logs_errors_reprs_or_the_store(
    x_api: XStandIn, feeds: Any, data_dir: Any, caplog: pytest.LogCaptureFixture
) -> None:
    import logging

    connect(x_api)
    before = saved()
    feeds.publish("/s.xml", ["a"])
    url = feeds.url("/s.xml")

    @trigger
    def share() -> None:
        sinks.x_post(rss(url))
        x_mentions()

    caplog.set_level(logging.DEBUG)
    x_api.expire_tokens()
    share()  # refreshed on the way: the old and the new tokens are secrets
    after = saved()
    x_api.expire_tokens()
    with x_api.lock:
        x_api._refresh.clear()  # the refresh token revoked too: reconnect
    feeds.publish("/s.xml", ["a", "b"])
    with pytest.raises(TriggerRunFailed) as failed:
        share()
    kept = caplog.text + str(failed.value) + repr(failed.value) + repr(after)
    kept += repr(ServiceClient("x", account_block=after))
    assert "reconnect the account: triggerflow connect x" in kept
    secrets = [x_api.client_secret] + [
        t.get_secret_value() for b in (before, after) for t in (b.access_token, b.refresh_token)
        if t is not None
    ]  # fmt: skip
    stored = b"".join(p.read_bytes() for p in data_dir.rglob("*") if p.is_file())
    for secret in secrets:
        assert secret not in kept and secret.encode() not in stored
