"""Mastodon, Wallabag and Trello: connecting accounts, sources, sinks, limits, secrets.

Each service is a stand-in on 127.0.0.1 (tests/standins/, written from the services'
API documentation, with Authlib's server components behind the OAuth endpoints); the
accounts are real Prefect blocks on the session's Prefect server, the store a real
DuckDB file, and triggers run as Prefect flows.
"""

from __future__ import annotations

import copy
import os
import queue
import subprocess
import sys
import threading
import time
from dataclasses import replace
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import httpx
import pytest
from standins import MastodonStandIn, WallabagStandIn
from test_github import SECRET, Hook, fixture

from triggerflow import sinks, trigger
from triggerflow._discovery import discover
from triggerflow.blocks import MastodonAccount, TrelloAccount, WallabagAccount
from triggerflow.exceptions import ConfigurationError, ServiceAuthError, TriggerRunFailed
from triggerflow.services.mastodon.connect import connect_mastodon
from triggerflow.services.trello.connect import connect_trello
from triggerflow.services.wallabag.connect import connect_wallabag
from triggerflow.sources import (
    mastodon_favourites,
    mastodon_hashtag,
    mastodon_home,
    mastodon_mentions,
    rss,
    trello_cards,
    wallabag_entries,
)

pytestmark = pytest.mark.usefixtures("prefect_api")


# -- accounts ---------------------------------------------------------------------------
def mastodon_account(m: MastodonStandIn, account: str = "default") -> str:
    """An account connected to the stand-in, as `connect` saves it; its token."""
    app = m.register_app(scopes="read write")
    token = m.issue_token(app)
    MastodonAccount(
        url=m.url, user="@tester@127.0.0.1", client_id=app.client_id,
        client_secret=app.client_secret, access_token=token,
    ).save(f"mastodon-{account}", overwrite=True)  # fmt: skip
    return token


def wallabag_account(w: Any, account: str = "default") -> WallabagAccount:
    return connect_wallabag(
        w.url, account, client_id=w.client.client_id, client_secret=w.client.client_secret,
        username=w.username, password=w.password, say=lambda _: None,
    )  # fmt: skip


def trello_account(t: Any, account: str = "default") -> str:
    token = t.issue_token()
    connect_trello(t.api_key, token, account, say=lambda _: None, api=t.url)
    return token


def follow_browser(url: str) -> httpx.Response:
    """The browser's part: open the authorization page, follow it back to the loopback."""
    r = httpx.get(url, follow_redirects=False, timeout=10)
    assert r.status_code in (302, 303), r.text
    return httpx.get(r.headers["location"], timeout=10)


# -- connect ------------------------------------------------------------------------------
def test_connect_mastodon_end_to_end_through_the_cli(
    mastodon: MastodonStandIn, data_dir: Path
) -> None:
    cmd = [sys.executable, "-m", "triggerflow", "connect", "mastodon", "--url", mastodon.url,
           "--account", "cli", "--no-browser", "--wait", "60"]  # fmt: skip
    env = {k: v for k, v in os.environ.items() if k != "PYTHONUNBUFFERED"}  # as in a pipe
    proc = subprocess.Popen(
        cmd, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True, env=env
    )
    lines: queue.Queue[str] = queue.Queue()
    reader = threading.Thread(target=lambda: [lines.put(x) for x in proc.stdout], daemon=True)
    reader.start()
    url = ""
    deadline = time.monotonic() + 60
    while not url and time.monotonic() < deadline:
        try:
            line = lines.get(timeout=deadline - time.monotonic())
        except queue.Empty:
            break
        if "/oauth/authorize?" in line:
            url = line.strip()
    assert url, "connect printed no authorization address"
    assert "code_challenge_method=S256" in url and "state=" in url
    page = follow_browser(url)
    assert page.status_code == 200 and "You can close this tab" in page.text
    assert proc.wait(timeout=60) == 0
    reader.join(10)  # the rest of its output, up to the end of the pipe
    out = "".join(lines.queue)
    assert "Connected Mastodon account @tester@" in out

    saved = MastodonAccount.load("mastodon-cli")
    token = saved.access_token.get_secret_value()
    assert mastodon.token_info(token) is not None  # the token the instance issued
    accounts = subprocess.run(
        [sys.executable, "-m", "triggerflow", "accounts"], capture_output=True, text=True,
        timeout=120, check=True,
    ).stdout  # fmt: skip
    assert "mastodon cli" in accounts and "@tester@" in accounts
    assert token not in accounts and saved.client_secret.get_secret_value() not in accounts


def test_connect_wallabag_and_trello_through_the_cli(wallabag: Any, trello: Any) -> None:
    def cli(*args: str, **env: str) -> subprocess.CompletedProcess[str]:
        return subprocess.run(
            [sys.executable, "-m", "triggerflow", "connect", *args],
            capture_output=True, text=True, timeout=120, stdin=subprocess.DEVNULL,
            env={**os.environ, **env},
        )  # fmt: skip

    secret = wallabag.client.client_secret
    wrong = cli("wallabag", "--url", wallabag.url, "--client-id", wallabag.client.client_id,
                "--username", "wallabag", TRIGGERFLOW_WALLABAG_CLIENT_SECRET=secret,
                TRIGGERFLOW_WALLABAG_PASSWORD="not-the-Passw0rd")  # fmt: skip
    assert wrong.returncode == 1
    assert "Invalid username and password combination" in wrong.stderr
    assert "not-the-Passw0rd" not in wrong.stderr + wrong.stdout and secret not in wrong.stderr
    right = cli("wallabag", "--url", wallabag.url, "--client-id", wallabag.client.client_id,
                "--username", "wallabag", TRIGGERFLOW_WALLABAG_CLIENT_SECRET=secret,
                TRIGGERFLOW_WALLABAG_PASSWORD=wallabag.password)  # fmt: skip
    assert right.returncode == 0, right.stderr
    assert "Connected Wallabag account wallabag on 127.0.0.1" in right.stdout

    token = trello.issue_token()
    bad = cli("trello", "--key", trello.api_key, "--url", trello.url, "--token", "0" * 64)
    assert bad.returncode == 1 and "Trello answered 401: invalid token" in bad.stderr
    good = cli("trello", "--key", trello.api_key, "--url", trello.url,
               TRIGGERFLOW_TRELLO_TOKEN=token)  # fmt: skip
    assert good.returncode == 0, good.stderr
    assert TrelloAccount.load("trello-default").access_token.get_secret_value() == token


def test_a_forged_state_is_rejected_and_nothing_is_saved(mastodon: MastodonStandIn) -> None:
    said: queue.Queue[str] = queue.Queue()
    errors: list[BaseException] = []

    def run() -> None:
        try:
            connect_mastodon(mastodon.url, "forged", say=said.put, open_browser=False, wait=30)
        except BaseException as e:  # noqa: BLE001 - handed to the test thread
            errors.append(e)

    worker = threading.Thread(target=run)
    worker.start()
    url = ""
    while not url:
        line = said.get(timeout=30)
        url = line.strip() if "/oauth/authorize?" in line else ""
    back = httpx.get(url, follow_redirects=False, timeout=10).headers["location"]
    # An attacker's page sends the browser back with its own code and state.
    forged = back.split("?")[0] + "?code=attacker-code&state=forged-state"
    httpx.get(forged, timeout=10)
    worker.join(30)
    assert errors and isinstance(errors[0], ConfigurationError)
    assert "different state" in str(errors[0])
    assert mastodon.count("/oauth/token") == 0  # the code was never exchanged
    with pytest.raises(ValueError):
        MastodonAccount.load("mastodon-forged")


def test_https_is_required_for_other_machines() -> None:
    with pytest.raises(ConfigurationError, match="must use https"):
        connect_mastodon("http://mastodon.example", say=lambda _: None, open_browser=False)


def test_wallabag_token_refreshed_when_refused_and_the_new_one_saved(wallabag: Any) -> None:
    first = wallabag_account(wallabag)
    wallabag.add_entry("https://example.org/a", title="A")
    wallabag.advance(3700)  # the hour is over on the server; the client does not know yet

    @trigger
    def read_later() -> None:
        wallabag_entries()

    assert len(read_later()) == 1
    assert len(wallabag.refreshed_tokens) == 1
    saved = WallabagAccount.load("wallabag-default")
    new = wallabag.refreshed_tokens[0]
    assert saved.access_token.get_secret_value() == new["access_token"]
    assert saved.refresh_token.get_secret_value() == new["refresh_token"]  # rotated, kept
    assert saved.refresh_token.get_secret_value() != first.refresh_token.get_secret_value()


def test_wallabag_signs_in_again_when_the_refresh_token_expired_too(wallabag: Any) -> None:
    wallabag_account(wallabag)
    wallabag.add_entry("https://example.org/b", title="B")
    wallabag.advance(15 * 86400)  # two weeks: both tokens are dead

    @trigger
    def read_later() -> None:
        wallabag_entries()

    assert len(read_later()) == 1
    grants = [r.form().get("grant_type") for r in wallabag.requests_to("/oauth/v2/token")]
    assert grants == ["password", "refresh_token", "password"]


# -- sources ------------------------------------------------------------------------------
def test_mastodon_sources_are_incremental(mastodon: MastodonStandIn) -> None:
    mastodon_account(mastodon)
    first = mastodon.add_status("first #python post")
    mastodon.add_mention("hello there")
    mastodon.favourite(first["id"])

    @trigger
    def watch() -> None:
        mastodon_home()
        mastodon_hashtag("python")
        mastodon_mentions()
        mastodon_favourites()

    one = watch()
    assert [r.new for r in one.sources] == [1, 1, 1, 1]
    again = watch()
    assert [r.new for r in again.sources] == [0, 0, 0, 0] and len(again) == 0

    newer = mastodon.add_status("second #python post")
    mastodon.add_mention("again")
    mastodon.favourite(newer["id"])
    three = watch()
    assert [r.new for r in three.sources] == [1, 1, 1, 1]
    assert {i.title for i in three} >= {"second #python post"}
    # Read from where the last run stopped: min_id of the newest status / favourite.
    home = mastodon.requests_to("/api/v1/timelines/home")
    assert home[0].param("min_id") is None and home[-1].param("min_id") == first["id"]
    assert mastodon.requests_to("/api/v1/favourites")[-1].param("min_id") is not None


def test_wallabag_source_is_incremental_and_dedupes_updates(wallabag: Any) -> None:
    wallabag_account(wallabag)
    old = wallabag.add_entry("https://example.org/old", title="Old", created_at=time.time() - 60)

    @trigger
    def saved() -> None:
        wallabag_entries()

    assert saved().new == 1
    assert saved().new == 0
    wallabag.star(old["id"])  # an update: `since` returns it again, the store knows it
    wallabag.add_entry("https://example.org/new", title="New")
    run = saved()
    assert run.new == 1 and {i.title for i in run} == {"Old", "New"}
    assert wallabag.requests_to("/api/entries.json")[-1].param("since") is not None


def test_trello_source_is_incremental(trello: Any) -> None:
    trello_account(trello)
    board = trello.add_board("Team")
    todo = trello.add_list(board["id"], "Inbox")
    trello.add_card(todo["id"], "first card")

    @trigger
    def cards() -> None:
        trello_cards(board["id"])

    assert [i.title for i in cards()] == ["first card"]
    assert cards().new == 0
    trello.add_card(todo["id"], "second card")
    assert [i.title for i in cards()] == ["second card"]


# -- sinks --------------------------------------------------------------------------------
def test_feed_to_mastodon_posts_once_across_a_lost_answer_a_retry_and_a_rerun(
    mastodon: MastodonStandIn, feeds: Any
) -> None:
    mastodon_account(mastodon)
    feeds.publish("/news.xml", ["one", "two", "three"])
    url = feeds.url("/news.xml")
    # The second status is made, but its answer is lost; then a 503: Prefect retries.
    mastodon.fail_next(1, 504, path="/api/v1/statuses", after=True)

    @trigger
    def toot() -> None:
        sinks.mastodon(rss(url), visibility="unlisted")

    run = toot()
    assert run.sinks[0].sent == 3
    texts = [s["content"] for s in mastodon.posted]
    assert len(texts) == 3 and len(set(texts)) == 3
    keys = [r.headers.get("idempotency-key") for r in mastodon.requests_to("/api/v1/statuses")]
    assert len(keys) == 4 and len(set(keys)) == 3  # the retry repeated its key
    assert all(s["visibility"] == "unlisted" for s in mastodon.posted)
    assert toot().sinks[0].sent == 0 and len(mastodon.posted) == 3  # a rerun: nothing


def test_preview_shows_what_would_be_posted_and_posts_nothing(
    mastodon: MastodonStandIn, feeds: Any
) -> None:
    mastodon_account(mastodon)
    feeds.publish("/p.xml", ["a", "b"])
    url = feeds.url("/p.xml")

    @trigger
    def toot() -> None:
        sinks.mastodon(rss(url), format="{title} {link}")
        sinks.trello(rss(url), "5f0000000000000000000000", account="nobody")

    preview = toot.preview()
    assert preview.sinks[0].would_send == [f"a {url}#0", f"b {url}#1"]
    assert "triggerflow connect trello --account nobody" in (preview.sinks[1].error or "")
    assert mastodon.count("/api/v1/statuses") == 0


def test_mastodon_long_text_is_cut_to_the_instance_limit_keeping_the_link(
    feeds: Any, monkeypatch: pytest.MonkeyPatch
) -> None:
    with MastodonStandIn(max_characters=80) as m:
        mastodon_account(m)
        feeds.publish("/long.xml", ["word " * 40])
        url = feeds.url("/long.xml")

        @trigger
        def toot() -> None:
            sinks.mastodon(rss(url))

        run = toot()
        assert run.sinks[0].sent == 1
        text = m.requests_to("/api/v1/statuses")[0].form()["status"]
        assert text.endswith("…\n" + run[0].link) and text.startswith("word word")
        assert len(text.replace(run[0].link, "x" * 23)) <= 80


def test_mastodon_429_waits_until_the_reset_it_names(mastodon: MastodonStandIn, feeds: Any) -> None:
    mastodon_account(mastodon)
    feeds.publish("/r.xml", ["a", "b"])
    url = feeds.url("/r.xml")
    reset = time.time() + 1.5
    iso = datetime.fromtimestamp(reset, UTC).isoformat().replace("+00:00", "Z")
    mastodon.fail_next(
        1, 429, {"error": "Too many requests"}, path="/api/v1/statuses",
        headers={"X-RateLimit-Remaining": "0", "X-RateLimit-Reset": iso},
    )  # fmt: skip

    @trigger
    def toot() -> None:
        sinks.mastodon(rss(url))

    assert toot().sinks[0].sent == 2
    posts = mastodon.requests_to("/api/v1/statuses")
    assert len(posts) == 3  # the refused one, then both, once
    assert posts[1].time >= reset  # not one request before the reset


def test_the_ietf_ratelimit_headers_are_read_too(
    wallabag: Any, feeds: Any, caplog: pytest.LogCaptureFixture
) -> None:
    """RateLimit-Remaining / RateLimit-Reset (seconds from now, or Unix time as Bluesky
    sends it), as a proxy in front of a service may answer."""
    wallabag_account(wallabag)
    feeds.publish("/i.xml", ["a"])
    url = feeds.url("/i.xml")
    reset = time.time() + 1.5
    wallabag.fail_next(
        1, 429, {"code": 429, "message": "Too many requests"}, path="/api/entries.json",
        method="POST", headers={"RateLimit-Remaining": "0", "RateLimit-Reset": f"{reset:.3f}"},
    )  # fmt: skip

    @trigger
    def save() -> None:
        sinks.wallabag(rss(url))

    assert save().sinks[0].sent == 1
    # It waited for the reset inside the step, instead of failing it for Prefect to retry.
    assert "Wallabag answered 429 (too many requests): waiting" in caplog.text
    posts = wallabag.requests_to("/api/entries.json", "POST")
    assert len(posts) == 2 and posts[1].time >= reset


def test_mastodon_remaining_zero_waits_before_the_next_request(feeds: Any) -> None:
    with MastodonStandIn(rate_period=4) as m:
        mastodon_account(m)
        feeds.publish("/z.xml", ["a", "b", "c"])
        url = feeds.url("/z.xml")
        m.set_remaining(2)  # the instance read and one status, then the window is used up
        reset = m.rate_limit_reset

        @trigger
        def toot() -> None:
            sinks.mastodon(rss(url))

        assert toot().sinks[0].sent == 3
        api = [r for r in m.requests if r.path.startswith("/api/")]
        assert len(api) == 4  # no request was refused: we waited instead
        assert all(r.time >= reset for r in api[2:])


def test_a_refused_token_fails_once_and_says_reconnect(
    mastodon: MastodonStandIn, feeds: Any
) -> None:
    mastodon_account(mastodon)
    mastodon.revoke_tokens()
    feeds.publish("/x.xml", ["a", "b", "c"])
    url = feeds.url("/x.xml")

    @trigger
    def toot() -> None:
        sinks.mastodon(rss(url))

    with pytest.raises(TriggerRunFailed, match="reconnect the account: triggerflow connect"):
        toot()
    assert mastodon.count("/api/v1/statuses") == 1  # no retries, no attempt per item
    with pytest.raises(ServiceAuthError):
        from triggerflow.services._client import ServiceClient

        with ServiceClient("mastodon") as client:
            client.get("/api/v1/accounts/verify_credentials")


def test_wallabag_saves_each_link_once_existing_urls_count_as_saved(
    wallabag: Any, feeds: Any
) -> None:
    wallabag_account(wallabag)
    url = feeds.url("/w.xml")
    wallabag.add_entry(f"{url}#1", title="already there")
    feeds.publish("/w.xml", ["1", "2", "3"])
    wallabag.fail_next(1, 502, path="/api/entries.json", method="POST")

    @trigger
    def later() -> None:
        sinks.wallabag(rss(url), tags=["from-feed", "triggerflow"])

    assert later().sinks[0].sent == 3
    assert later().sinks[0].sent == 0
    posts = wallabag.requests_to("/api/entries.json", "POST")
    assert len(posts) == 4 and posts[-1].form()["tags"] == "from-feed,triggerflow"
    assert len(wallabag.entries()) == 3


def test_trello_makes_one_card_per_item_even_when_an_answer_is_lost(
    trello: Any, feeds: Any
) -> None:
    trello_account(trello)
    board = trello.add_board("Work")
    inbox = trello.add_list(board["id"], "Incoming")
    feeds.publish("/t.xml", ["a", "b"])
    url = feeds.url("/t.xml")
    trello.fail_next(1, 504, path="/1/cards", method="POST", after=True)

    @trigger
    def cards() -> None:
        sinks.trello(rss(url), inbox["id"])

    assert cards().sinks[0].sent == 2
    assert sorted(c["name"] for c in trello.created_cards) == ["a", "b"]
    assert cards().sinks[0].sent == 0 and len(trello.created_cards) == 2


def test_trello_unknown_list_is_a_clear_permanent_error(trello: Any, feeds: Any) -> None:
    trello_account(trello)
    feeds.publish("/u.xml", ["a"])
    url = feeds.url("/u.xml")

    @trigger
    def cards() -> None:
        sinks.trello(rss(url), "5f0000000000000000000000")

    with pytest.raises(TriggerRunFailed, match="Trello refused a card in list"):
        cards()
    assert trello.count("/1/cards") == 1


# -- secrets ------------------------------------------------------------------------------
def test_no_token_or_secret_in_logs_errors_reprs_or_the_store(
    mastodon: MastodonStandIn, feeds: Any, data_dir: Path, caplog: pytest.LogCaptureFixture,
    request: pytest.FixtureRequest,
) -> None:  # fmt: skip
    wallabag = WallabagStandIn(password="pw-S3cret-never-shown").start()
    request.addfinalizer(wallabag.close)
    token = mastodon_account(mastodon)
    w = wallabag_account(wallabag)
    secrets = [token, w.access_token.get_secret_value(), w.refresh_token.get_secret_value(),
               wallabag.client.client_secret, wallabag.password]  # fmt: skip
    feeds.publish("/s.xml", ["a"])
    url = feeds.url("/s.xml")

    @trigger
    def everything() -> None:
        items = rss(url)
        sinks.mastodon(items)
        sinks.wallabag(items)
        wallabag_entries()

    everything()
    mastodon.revoke_tokens()
    wallabag.advance(15 * 86400)
    wallabag.password = "changed"  # the saved password no longer works either
    feeds.publish("/s.xml", ["a", "b"])
    with pytest.raises(TriggerRunFailed) as failed:
        everything()
    kept = caplog.text + str(failed.value) + repr(failed.value)
    kept += repr(MastodonAccount.load("mastodon-default")) + repr(w)
    assert "reconnect the account" in kept
    for secret in secrets:
        assert secret not in kept
        assert secret.encode() not in (data_dir / "triggerflow.duckdb").read_bytes()


def test_a_service_quoting_a_saved_password_back_gets_it_masked(
    feeds: Any, request: pytest.FixtureRequest
) -> None:
    """Every secret of an account is masked in a service's answer, not only its tokens
    (Wallabag's kept password is one): services may quote what they were sent."""
    wallabag = WallabagStandIn(password="pw-Quoted-back-1").start()
    request.addfinalizer(wallabag.close)
    wallabag_account(wallabag)
    feeds.publish("/q.xml", ["a"])
    url = feeds.url("/q.xml")
    wallabag.fail_next(1, 422, {"message": "cannot save: user wallabag/pw-Quoted-back-1"},
                       path="/api/entries.json")  # fmt: skip

    @trigger
    def save() -> None:
        sinks.wallabag(rss(url))

    with pytest.raises(TriggerRunFailed) as failed:
        save()
    assert "cannot save: user wallabag/***" in str(failed.value)
    assert "pw-Quoted-back-1" not in str(failed.value) + repr(failed.value)


def test_check_names_the_unconnected_account() -> None:
    @trigger
    def unconnected() -> None:
        sinks.trello(rss("http://127.0.0.1:9/x.xml"), "abc", account="nobody")

    problems = unconnected.check()
    assert problems and "triggerflow connect trello --account nobody" in problems[0]


# -- the examples in flows/ -----------------------------------------------------------------
def _example(name: str) -> Any:
    found = discover(Path(__file__).resolve().parents[1] / "flows")
    assert not found.errors
    return found.triggers[name]


def example_reading(name: str, feed_url: str, monkeypatch: pytest.MonkeyPatch) -> Any:
    """The example trigger ``name`` of flows/, its ``rss(...)`` reading ``feed_url``."""
    example = _example(name)
    real_rss = example.user_fn.__globals__["rss"]
    monkeypatch.setitem(example.user_fn.__globals__, "rss", lambda _url: real_rss(feed_url))
    return example


def test_example_github_issue_opened_becomes_a_trello_card(
    trello: Any, data_dir: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("TRIGGERFLOW_GITHUB_SECRET", SECRET)
    trello_account(trello)
    board = trello.add_board("Triage")
    triage = trello.add_list(board["id"], "New issues")
    example = _example("github_issues_to_trello")
    monkeypatch.setitem(example.user_fn.__globals__, "LIST", triage["id"])
    hook = Hook(SECRET)
    try:
        for action in ("opened", "reopened", "labeled"):
            payload = copy.deepcopy(fixture(f"issues/{action}.payload.json"))
            payload["repository"]["full_name"] = "me/project"
            assert hook.post("issues", payload, delivery=f"d-{action}").is_success
    finally:
        hook.web.stop()
    assert example().sinks[0].sent == 1
    (card,) = trello.created_cards
    assert card["name"] == "#1 Spelling error in the README file"
    assert card["idList"] == triage["id"]
    assert example().sinks[0].sent == 0 and len(trello.created_cards) == 1


def test_example_favourites_go_to_wallabag(mastodon: MastodonStandIn, wallabag: Any) -> None:
    mastodon_account(mastodon)
    wallabag_account(wallabag)
    liked = mastodon.add_status("worth reading later https://example.org/article")
    mastodon.favourite(liked["id"])
    example = _example("favourites_to_wallabag")
    assert example().sinks[0].sent == 1
    (entry,) = wallabag.entries()
    assert entry["url"] == liked["url"] and entry["tags"][0]["label"] == "mastodon"
    mastodon.favourite(mastodon.add_status("another")["id"])
    assert example().sinks[0].sent == 1 and len(wallabag.entries()) == 2


def test_example_feed_to_mastodon_keeps_its_limit(
    mastodon: MastodonStandIn, feeds: Any, monkeypatch: pytest.MonkeyPatch
) -> None:
    mastodon_account(mastodon)
    monkeypatch.setenv("TRIGGERFLOW_FIRST_RUN", "10")
    feeds.publish("/blog.xml", [f"post {i}" for i in range(5)])
    example = example_reading("python_news_to_mastodon", feeds.url("/blog.xml"), monkeypatch)
    run = example()
    assert (run.sinks[0].sent, run.sinks[0].queued) == (3, 2)  # "3/hour": the rest waits
    assert {s["visibility"] for s in mastodon.posted} == {"unlisted"}


def fresh_python(*lines: str) -> str:
    """Run ``lines`` in a new interpreter (nothing imported yet); its stderr."""
    code = "\n".join(lines) + "\n"
    r = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=60)
    assert r.returncode == 0, r.stderr
    return r.stderr


def test_authlib_runs_on_httpx_without_warnings() -> None:
    # Authlib 1.9 switches to httpx2 whenever it can import it; Prefect needs httpx.
    stderr = fresh_python(
        "import httpx, importlib.util",
        "from triggerflow.services._oauth import authlib_client",
        "client = authlib_client(client_id='x')",
        "assert isinstance(client, httpx.Client), type(client).__mro__",
        "assert importlib.util.find_spec('httpx2') is None, 'httpx2 is installed'",
    )
    assert "deprecated" not in stderr  # Authlib's warning, filtered where it is expected


def test_trello_requests_are_paced_to_the_token_window(
    trello: Any, monkeypatch: pytest.MonkeyPatch
) -> None:
    from triggerflow.services import services
    from triggerflow.services._client import ServiceClient

    trello_account(trello)
    # Trello sends no rate headers: the client counts (100 per 10 s, here 3 per second).
    monkeypatch.setitem(services(), "trello", replace(services()["trello"], window=(3, 1.0)))
    with ServiceClient("trello") as client:
        for _ in range(7):
            client.get("/1/members/me")
    times = [r.time for r in trello.requests_to("/1/members/me")][-7:]
    assert times[3] - times[0] >= 1.0 and times[6] - times[3] >= 1.0


def test_trello_429_without_headers_waits_a_window(
    feeds: Any, monkeypatch: pytest.MonkeyPatch
) -> None:
    from standins import TrelloStandIn

    from triggerflow.services import services

    # The forced window starts at set_remaining(), before the run: 5 s (not 1) so that a
    # slow start on a busy machine still sends "a" inside it (CI saw the window over first).
    monkeypatch.setitem(services(), "trello", replace(services()["trello"], wait_after_429=5.0))
    with TrelloStandIn(rate_interval=5) as t:
        trello_account(t)
        board = t.add_board("B")
        inbox = t.add_list(board["id"], "L")
        feeds.publish("/q.xml", ["a", "b"])
        url = feeds.url("/q.xml")
        t.set_remaining(1)  # one more request, then 429 until the interval ends

        @trigger
        def cards() -> None:
            sinks.trello(rss(url), inbox["id"])

        assert cards().sinks[0].sent == 2
        posts = t.requests_to("/1/cards")
        assert len(posts) == 3  # a, the refused b, b once more after the wait
        assert posts[2].time - posts[1].time >= 1.0


def test_the_cli_loads_prefect_only_when_a_command_needs_it() -> None:
    # serve sets PREFECT_API_URL after starting its server; Prefect imported before that
    # would not see it and start a server of its own on the first block load.
    fresh_python(
        "import sys",
        "from triggerflow.cli import build_parser",
        "build_parser()",
        "assert not [m for m in sys.modules if m.startswith('prefect')]",
        "from triggerflow.services import services",
        "assert set(services()) >= {'mastodon', 'trello', 'wallabag'}, services()",
        "assert not [m for m in sys.modules if m.startswith('prefect')]",
    )


def test_the_token_is_never_sent_to_another_address(mastodon: MastodonStandIn) -> None:
    from triggerflow.services._client import ServiceClient

    mastodon_account(mastodon)
    with ServiceClient("mastodon") as client, pytest.raises(ConfigurationError, match="not on"):
        client.get("http://127.0.0.1:9/api/v1/timelines/home")  # e.g. a forged Link header
    assert repr(client) == f"ServiceClient('mastodon', account='default', url='{mastodon.url}')"


def test_accounts_lists_xmpp_accounts_from_the_environment_and_blocks(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """An XMPP account that works is no "No accounts connected yet"; never a secret."""
    from triggerflow.blocks import XMPPAccount

    XMPPAccount(jid="team@example.org", password="team-secret-pw").save("xmpp-team", overwrite=True)
    env = dict(os.environ)
    env.update(
        TRIGGERFLOW_XMPP_DEFAULT_JID="bot@example.org",
        TRIGGERFLOW_XMPP_DEFAULT_PASSWORD="env-secret-pw",
    )
    out = subprocess.run(
        [sys.executable, "-m", "triggerflow", "accounts"], capture_output=True, text=True,
        timeout=120, check=True, env=env,
    ).stdout  # fmt: skip
    assert "No accounts connected" not in out, out
    rows = [" ".join(line.split()) for line in out.splitlines()]  # padding varies
    assert "xmpp default bot@example.org (from the environment)" in rows, out
    assert "xmpp team team@example.org (saved block)" in rows, out
    assert "secret-pw" not in out
