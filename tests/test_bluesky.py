"""Bluesky: posts as records put exactly once, a session that is refreshed and never
signed in per run, facets by UTF-8 byte offsets, and an author's posts as a source.

Real parts: a stand-in of a PDS written from the lexicons and the reference PDS
(``standins.BlueskyStandIn``), the account a real Prefect block on the session's Prefect
server, the store a real DuckDB file, triggers run as Prefect flows.
"""

from __future__ import annotations

import logging
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import httpx
import pytest
from standins import BlueskyStandIn
from standins.bluesky import is_tid
from test_joplin import cli, quiet
from test_services import example_reading

from triggerflow import sinks, trigger
from triggerflow._text import grapheme_count
from triggerflow.blocks import BlueskyAccount
from triggerflow.exceptions import ConfigurationError, TriggerRunFailed
from triggerflow.services._client import ServiceClient
from triggerflow.services.bluesky.connect import connect_bluesky
from triggerflow.services.bluesky.sink import record_key
from triggerflow.sources import bluesky_posts, rss
from triggerflow.types import Item

pytestmark = pytest.mark.usefixtures("prefect_api")


def connected(b: BlueskyStandIn, account: str = "default") -> BlueskyAccount:
    return connect_bluesky("alice.test", account, app_password=b.app_password, url=b.url,
                           say=quiet)  # fmt: skip


def saved(account: str = "default") -> BlueskyAccount:
    block = BlueskyAccount.load(f"bluesky-{account}")
    assert isinstance(block, BlueskyAccount)
    return block


# -- connect ------------------------------------------------------------------------------
def test_connect_signs_in_once_and_saves_the_session(bluesky: BlueskyStandIn) -> None:
    password = {"TRIGGERFLOW_BLUESKY_APP_PASSWORD": bluesky.app_password}
    done = cli("connect", "bluesky", "--handle", "@alice.test", "--url", bluesky.url,
               "--account", "main", **password)  # fmt: skip
    assert done.returncode == 0, done.stderr
    assert "Connected Bluesky account @alice.test as 'bluesky-main'" in done.stdout
    block = saved("main")
    assert block.did == "did:plc:alice" and block.url == bluesky.url
    assert block.access_token is not None and block.refresh_token is not None
    assert block.expires_at is not None and block.expires_at > datetime.now(UTC).timestamp()
    assert block.app_password is not None
    accounts = cli("accounts")
    assert "bluesky main" in accounts.stdout, accounts.stdout
    everything = done.stdout + done.stderr + accounts.stdout + accounts.stderr
    assert bluesky.app_password not in everything
    assert block.access_token.get_secret_value() not in everything
    assert bluesky.session_count() == 1


def test_connect_errors_name_the_cause(bluesky: BlueskyStandIn) -> None:
    with pytest.raises(ConfigurationError, match="refused the handle 'alice.test' or the app"):
        connect_bluesky("alice.test", app_password="wrong", url=bluesky.url, say=quiet)
    bluesky.accounts["did:plc:alice"].sign_in_codes = True
    with pytest.raises(ConfigurationError, match="account's own password.*code by e-mail"):
        connect_bluesky("alice.test", app_password="main-password", url=bluesky.url, say=quiet)
    bluesky.accounts["did:plc:alice"].sign_in_codes = False
    said: list[str] = []
    connect_bluesky("alice.test", app_password="main-password", url=bluesky.url, say=said.append)
    assert "looks like the account's own password" in said[0]
    with pytest.raises(ConfigurationError, match="cannot be reached.*check --url"):
        connect_bluesky("alice.test", app_password="x", url="http://127.0.0.1:9", say=quiet)
    with pytest.raises(ConfigurationError, match="must use https"):
        connect_bluesky("alice.test", app_password="x", url="http://pds.example.org", say=quiet)
    for _ in range(30):  # Bluesky's limit: 30 sign-ins in 5 minutes (3 made above)
        httpx.post(f"{bluesky.url}/xrpc/com.atproto.server.createSession",
                   json={"identifier": "alice.test", "password": "wrong"})  # fmt: skip
    with pytest.raises(ConfigurationError, match=r"too many sign-ins .*30 in 5 minutes.* until"):
        connected(bluesky)


# -- the sink -----------------------------------------------------------------------------
def test_each_item_posted_once_across_a_lost_answer_a_retry_and_a_rerun(
    bluesky: BlueskyStandIn, feeds: Any
) -> None:
    connected(bluesky)
    feeds.publish("/b.xml", ["one", "two"])
    url = feeds.url("/b.xml")
    bluesky.fail_next(1, 502, path="/xrpc/com.atproto.repo.putRecord", after=True)  # posted

    @trigger
    def share() -> None:
        sinks.bluesky(rss(url), langs=["en"])

    assert share().sinks[0].sent == 2
    posts = bluesky.posts()
    assert [p.text for p in posts] == [f"one\n{url[7:]}#0", f"two\n{url[7:]}#1"]
    assert posts[0].record["langs"] == ["en"]
    assert posts[0].record["embed"]["external"] == {
        "uri": f"{url}#0", "title": "one", "description": "about one",
    }  # fmt: skip
    assert posts[0].facet_texts() == [
        (f"{url[7:]}#0", {"$type": "app.bsky.richtext.facet#link", "uri": f"{url}#0"})
    ]
    assert all(is_tid(p.rkey) for p in posts)
    assert bluesky.overwrites == 0  # never an edit
    assert bluesky.count("/xrpc/com.atproto.repo.getRecord") >= 1  # the lost one looked up
    assert share().sinks[0].sent == 0 and len(bluesky.posts()) == 2  # a rerun: nothing
    feeds.publish("/b.xml", ["one", "two", "three"])
    assert share().sinks[0].sent == 1 and len(bluesky.posts()) == 3
    assert bluesky.session_count() == 1  # connect signed in; the runs never did


def test_a_post_made_by_an_unrecorded_attempt_is_not_made_twice(
    bluesky: BlueskyStandIn, feeds: Any
) -> None:
    """A run killed after the PDS made the post: the same record key again, and
    ``swapRecord: null`` makes the PDS refuse it (InvalidSwap): counted as sent."""
    from triggerflow._outbox import delivery_id
    from triggerflow.types import Route

    connected(bluesky)
    feeds.publish("/k.xml", ["kept"])
    url = feeds.url("/k.xml")

    @trigger
    def share() -> None:
        sinks.bluesky(rss(url), card=False)

    (item,) = rss(url)
    rkey = record_key(item, delivery_id(Route("share", "bluesky", "account default"), item))
    bluesky.add_post("alice.test", "kept (first attempt)", rkey=rkey)
    assert share().sinks[0].sent == 1
    assert [p.text for p in bluesky.posts()] == ["kept (first attempt)"]
    assert bluesky.overwrites == 0
    assert bluesky.requests_to("/xrpc/com.atproto.repo.putRecord")[-1].json()["swapRecord"] is None


def test_long_text_mentions_and_tags_fit_by_graphemes_and_bytes(
    bluesky: BlueskyStandIn, feeds: Any
) -> None:
    connected(bluesky)
    bluesky.add_account("bob.test", "did:plc:bob")
    feeds.publish("/l.xml", ["x"])
    url = feeds.url("/l.xml")
    family = "👨‍👩‍👧‍👦"  # one grapheme of 25 bytes
    long_link = "https://example.org/articles/2026/a-rather-long-path?utm=1"

    @trigger
    def share() -> None:
        sinks.bluesky(
            rss(url),
            format=lambda i: f"Thanks @bob.test and @nobody.test #Python #1 {long_link} "
            + " ".join([f"wörd{family}"] * 200) + f" {i.link}",
            card=False,
        )  # fmt: skip

    assert share().sinks[0].sent == 1
    (post,) = bluesky.posts()
    assert grapheme_count(post.text) <= 300 and len(post.text.encode()) <= 3000
    assert family in post.text and "\ufffd" not in post.text  # never half an emoji
    assert post.text.endswith(f"…\n{url[7:]}#0")  # cut at a word, the item's link kept
    facets = post.facet_texts()
    assert ("@bob.test", {"$type": "app.bsky.richtext.facet#mention", "did": "did:plc:bob"}) in (
        facets
    )
    assert not any(text == "@nobody.test" for text, _ in facets)  # does not resolve: text
    assert ("#Python", {"$type": "app.bsky.richtext.facet#tag", "tag": "Python"}) in facets
    assert not any(text == "#1" for text, _ in facets)
    assert ("example.org/articles/202...", {
        "$type": "app.bsky.richtext.facet#link", "uri": long_link,
    }) in facets  # fmt: skip
    assert (f"{url[7:]}#0", {"$type": "app.bsky.richtext.facet#link", "uri": f"{url}#0"}) in (
        facets
    )


def test_record_keys_are_valid_tids_stable_per_delivery() -> None:
    item = Item("s", "1", published=datetime(2026, 5, 1, tzinfo=UTC))
    keys = {record_key(item, f"{n:032x}") for n in range(50)}
    assert len(keys) == 50 and all(is_tid(k) for k in keys)
    assert record_key(item, "ab" * 16) == record_key(item, "ab" * 16)
    assert all(is_tid(record_key(Item("s", "2"), f"{n:032x}")) for n in range(5))  # no date


def test_a_refused_post_is_a_clear_permanent_error(bluesky: BlueskyStandIn, feeds: Any) -> None:
    connected(bluesky)
    feeds.publish("/r.xml", ["refused"])
    url = feeds.url("/r.xml")
    bluesky.fail_next(1, 400, {"error": "InvalidRequest", "message": "Invalid app.bsky.feed"
                               ".post record: Record/text is bad"},
                      path="/xrpc/com.atproto.repo.putRecord")  # fmt: skip

    @trigger
    def share() -> None:
        sinks.bluesky(rss(url))

    with pytest.raises(TriggerRunFailed, match="Bluesky refused the post for 'refused'.*is bad"):
        share()
    assert bluesky.posts() == [] and share().sinks[0].sent == 0  # refused for good


def test_preview_posts_nothing_and_names_problems(bluesky: BlueskyStandIn, feeds: Any) -> None:
    connected(bluesky)
    feeds.publish("/p.xml", ["shown"])
    url = feeds.url("/p.xml")

    @trigger
    def share() -> None:
        items = rss(url)
        sinks.bluesky(items, langs=["en", "de", "fr", "it"])
        sinks.bluesky(items, account="nobody")

    problems = share.check()
    assert any("at most 3 languages, not 4" in p for p in problems), problems
    assert any("triggerflow connect bluesky --account nobody" in p for p in problems)

    @trigger
    def fine() -> None:
        sinks.bluesky(rss(url))

    assert fine.preview().sinks[0].would_send == [f"shown\n{url[7:]}#0"]
    assert bluesky.count("/xrpc/com.atproto.repo.putRecord") == 0


# -- the session --------------------------------------------------------------------------
def test_an_expired_session_is_refreshed_saved_and_signed_in_only_when_dead(
    bluesky: BlueskyStandIn, feeds: Any, caplog: pytest.LogCaptureFixture, data_dir: Path
) -> None:
    connected(bluesky)
    before = saved()
    feeds.publish("/s.xml", ["a"])
    url = feeds.url("/s.xml")

    @trigger
    def share() -> None:
        sinks.bluesky(rss(url))

    bluesky.advance(3 * 3600)  # the access token expired on the PDS, not on our clock
    caplog.set_level(logging.INFO)
    assert share().sinks[0].sent == 1
    after = saved()
    assert after.refresh_token != before.refresh_token  # rotated, and saved
    assert bluesky.count("/xrpc/com.atproto.server.refreshSession") == 1
    assert bluesky.session_count() == 1  # not signed in again

    bluesky.expire_sessions()  # 90 days later: the refresh token is dead too
    feeds.publish("/s.xml", ["a", "b"])
    assert share().sinks[0].sent == 1
    assert bluesky.session_count() == 2  # signed in with the saved app password, once

    bluesky.expire_sessions()
    bluesky.accounts["did:plc:alice"].app_passwords.clear()  # the app password revoked
    feeds.publish("/s.xml", ["a", "b", "c"])
    with pytest.raises(TriggerRunFailed) as failed:
        share()
    message = str(failed.value)
    assert "the saved app password was refused" in message
    assert "triggerflow connect bluesky --account default" in message
    secrets = [bluesky.app_password, *(
        t.get_secret_value() for b in (before, after) for t in (b.access_token, b.refresh_token)
        if t is not None
    )]  # fmt: skip
    logged = caplog.text + message
    stored = b"".join(p.read_bytes() for p in data_dir.rglob("*") if p.is_file())
    for secret in secrets:
        assert secret not in logged and secret.encode() not in stored


def test_two_processes_refreshing_one_session_both_keep_working(
    bluesky: BlueskyStandIn,
) -> None:
    """Both load the saved session, both find it expired and refresh with the same refresh
    token: the PDS's grace period keeps the second one working, and what is saved last
    works afterwards."""
    connected(bluesky)
    bluesky.advance(3 * 3600)
    one = ServiceClient("bluesky", account_block=saved())
    two = ServiceClient("bluesky", account_block=saved())
    try:
        for client in (one, two):
            me = client.get("/xrpc/com.atproto.server.getSession", what="the session").json()
            assert me["did"] == "did:plc:alice"
    finally:
        one.close()
        two.close()
    assert bluesky.count("/xrpc/com.atproto.server.refreshSession") == 2
    with ServiceClient("bluesky") as later:  # the saved (newest) session
        assert later.get("/xrpc/com.atproto.server.getSession").json()["handle"] == "alice.test"
    assert bluesky.count("/xrpc/com.atproto.server.refreshSession") == 2
    assert bluesky.session_count() == 1


# -- the source ---------------------------------------------------------------------------
def test_an_authors_new_posts_page_back_to_the_last_read(bluesky: BlueskyStandIn) -> None:
    connected(bluesky)
    bob = bluesky.add_account("bob.test", "did:plc:bob")
    base = bluesky.now() - 10_000
    for i in range(3):
        bluesky.add_post("bob.test", f"old {i}", at=base + i)
    seen: list[list[str]] = []

    @trigger
    def read() -> None:
        seen.append([i.title for i in bluesky_posts("@bob.test")])

    read()
    assert seen[-1] == ["old 0", "old 1", "old 2"]
    alice = bluesky.add_post("alice.test", "by alice", at=base + 5)
    for i in range(130):
        bluesky.add_post("bob.test", f"new {i}", at=base + 10 + i)
    bluesky.add_post("bob.test", "", at=base + 200, repost_of=alice.uri)  # skipped
    read()
    assert seen[-1] == [f"new {i}" for i in range(130)]  # past a page of 100
    read()
    assert seen[-1] == []
    (item,) = bluesky_posts("bob.test")[:1]
    assert item.author == "@bob.test" and item.id.startswith(f"at://{bob.did}/app.bsky.feed.post/")
    assert item.link.startswith("https://bsky.app/profile/bob.test/post/")


def test_example_news_to_bluesky(
    bluesky: BlueskyStandIn, feeds: Any, monkeypatch: pytest.MonkeyPatch
) -> None:
    connected(bluesky)
    monkeypatch.setenv("TRIGGERFLOW_FIRST_RUN", "10")
    feeds.publish("/py.xml", [f"release {i}" for i in range(7)])
    example = example_reading("news_to_bluesky", feeds.url("/py.xml"), monkeypatch)
    run = example()
    assert (run.sinks[0].sent, run.sinks[0].queued) == (5, 2)  # "5/hour": the rest waits
    assert all(p.record["langs"] == ["en"] for p in bluesky.posts())
