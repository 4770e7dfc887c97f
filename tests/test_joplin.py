"""Joplin: notes through the app's Data API, exactly once, and new notes as a source.

Real parts: a stand-in of Joplin's Web Clipper service written from its code
(``standins.JoplinStandIn``), the account a real Prefect block on the session's Prefect
server, the store a real DuckDB file, triggers run as Prefect flows.
"""

from __future__ import annotations

import logging
import os
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest
from standins import JoplinStandIn, NotifierStandIn
from test_services import example_reading

from triggerflow import sinks, trigger
from triggerflow.blocks import JoplinAccount
from triggerflow.exceptions import ConfigurationError, TriggerRunFailed
from triggerflow.services.joplin.connect import connect_joplin
from triggerflow.sources import joplin_notes, rss

pytestmark = pytest.mark.usefixtures("prefect_api")


def quiet(_: str) -> None:
    pass


def connected(j: JoplinStandIn, account: str = "default") -> JoplinAccount:
    return connect_joplin(j.url, account, token=j.token, say=quiet)


def cli(*args: str, **env: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "triggerflow", *args], capture_output=True, text=True,
        timeout=120, stdin=subprocess.DEVNULL, env={**os.environ, **env},
    )  # fmt: skip


# -- connect ------------------------------------------------------------------------------
def test_connect_asks_the_app_and_saves_the_token(joplin: JoplinStandIn) -> None:
    done = cli("connect", "joplin", "--url", joplin.url, "--account", "laptop")
    assert done.returncode == 0, done.stderr
    assert "answer in the Joplin window" in done.stdout
    assert f"Connected Joplin on 127.0.0.1:{joplin.url.rsplit(':', 1)[1]} as 'joplin-laptop'" in (
        done.stdout
    )
    saved = JoplinAccount.load("joplin-laptop")
    assert saved.access_token is not None and saved.access_token.get_secret_value() == joplin.token
    accounts = cli("accounts")
    assert "joplin laptop" in accounts.stdout, accounts.stdout
    assert joplin.token not in done.stdout + done.stderr + accounts.stdout + accounts.stderr

    joplin.answer = False
    refused = cli("connect", "joplin", "--url", joplin.url)
    assert refused.returncode == 1 and "access was refused in the Joplin window" in refused.stderr


def test_connect_errors_name_the_cause(joplin: JoplinStandIn, notifier: NotifierStandIn) -> None:
    with pytest.raises(ConfigurationError, match=r'Joplin answered 403: Invalid "token"'):
        connect_joplin(joplin.url, token="wrong", say=quiet)
    with pytest.raises(ConfigurationError, match="not Joplin's Web Clipper service"):
        connect_joplin(notifier.url, token=joplin.token, say=quiet)
    with pytest.raises(ConfigurationError, match="cannot be reached.*enable its Web Clipper"):
        connect_joplin("http://127.0.0.1:9", token="x", say=quiet)
    with pytest.raises(ConfigurationError, match="must use https"):
        connect_joplin("http://joplin.example.org:41184", token="x", say=quiet)
    joplin.answer = None  # nobody answers in the window
    with pytest.raises(ConfigurationError, match="no answer in the Joplin window within 1 s"):
        connect_joplin(joplin.url, say=quiet, wait=1.0)


# -- the sink -----------------------------------------------------------------------------
def test_a_note_per_item_once_across_a_lost_answer_and_a_rerun(
    joplin: JoplinStandIn, feeds: Any
) -> None:
    connected(joplin)
    feeds.publish("/j.xml", ["one", "two"])
    url = feeds.url("/j.xml")
    joplin.fail_next(1, 504, path="/notes", method="POST", after=True)  # made; answer lost
    joplin.fail_next(1, 504, path="/folders", method="POST", after=True)

    @trigger
    def keep() -> None:
        sinks.joplin(rss(url), "Reading", tags=["feed", "python"])

    assert keep().sinks[0].sent == 2
    notes = joplin.notes()
    assert [n.title for n in notes] == ["one", "two"]
    (reading,) = [f for f in joplin.folders() if f["title"] == "Reading"]  # made once
    assert {n.parent_id for n in notes} == {reading["id"]}
    assert all(n.tags == ["feed", "python"] for n in notes)
    assert notes[0].source_url == f"{url}#0"
    assert notes[0].body_html is not None and f'href="{url}#0"' in notes[0].body_html
    assert joplin.count("/notes", "POST") == 2  # the lost one was found, not sent again
    assert joplin.count("/folders", "POST") == 1
    assert keep().sinks[0].sent == 0 and len(joplin.notes()) == 2  # a rerun: nothing
    feeds.publish("/j.xml", ["one", "two", "three"])
    assert keep().sinks[0].sent == 1
    assert [n.title for n in joplin.notes()] == ["one", "two", "three"]


def test_a_note_made_by_an_unrecorded_attempt_is_not_made_twice(
    joplin: JoplinStandIn, feeds: Any
) -> None:
    """A run killed after Joplin made the note: the note's id is the delivery's, so the
    next attempt is refused as a duplicate and counted as sent, whatever the ledger says."""
    from triggerflow._outbox import delivery_id
    from triggerflow.types import Route

    connected(joplin)
    feeds.publish("/k.xml", ["kept"])
    url = feeds.url("/k.xml")

    @trigger
    def keep() -> None:
        sinks.joplin(rss(url))

    route = Route("keep", "joplin", "the default notebook")
    joplin.add_note("kept", note_id=delivery_id(route, _item(url, "kept")))
    assert keep().sinks[0].sent == 1
    assert [n.title for n in joplin.notes()] == ["kept"]


def _item(url: str, title: str) -> Any:
    (item,) = [i for i in rss(url) if i.title == title]
    return item


def test_default_notebook_bodies_without_html_and_refused_items(
    joplin: JoplinStandIn, feeds: Any
) -> None:
    connected(joplin)
    feeds.publish("/d.xml", ["bare"])
    url = feeds.url("/d.xml")
    joplin.fail_next(1, 400, {"error": "Invalid property"}, path="/notes", method="POST")

    @trigger
    def keep() -> None:
        sinks.joplin(rss(url), title=lambda i: f"Feed: {i.title}")

    with pytest.raises(TriggerRunFailed, match="Joplin refused a note in the default notebook"):
        keep()
    assert joplin.notes() == []
    assert keep().sinks[0].sent == 0  # refused for good, not retried


def test_preview_makes_nothing_and_names_problems(joplin: JoplinStandIn) -> None:
    connected(joplin)

    @trigger
    def keep() -> None:
        items = rss(joplin.url + "/none.xml")
        sinks.joplin(items, "Inbox", tags=["a,b"])
        sinks.joplin(items, account="nobody")

    problems = keep.check()
    assert any("a tag cannot contain a comma" in p for p in problems), problems
    assert any("triggerflow connect joplin --account nobody" in p for p in problems)
    assert joplin.count("/notes", "POST") == 0 and joplin.count("/folders", "POST") == 0


# -- the source ---------------------------------------------------------------------------
def test_new_notes_come_from_the_change_events(joplin: JoplinStandIn) -> None:
    connected(joplin)
    work = joplin.add_folder("Work")["id"]
    for i in range(3):
        joplin.add_note(f"old {i}", body=f"**{i}**")
    seen: list[list[str]] = []

    @trigger
    def notes() -> None:
        seen.append([i.title for i in joplin_notes()])

    @trigger
    def work_notes() -> None:
        seen.append([i.title for i in joplin_notes(notebook="Work")])

    notes()
    assert seen[-1] == ["old 0", "old 1", "old 2"]  # the first read: the newest notes
    made = [joplin.add_note(f"new {i}", folder=work if i % 2 else None) for i in range(130)]
    joplin.delete_note(made[0].id)  # deleted before the next read: skipped
    notes()
    assert seen[-1] == [f"new {i}" for i in range(1, 130)]  # past a page of 100 events
    notes()
    assert seen[-1] == []
    work_notes()  # its own cursor: the first read takes the notebook's newest
    assert seen[-1] == [f"new {i}" for i in range(91, 130, 2)]
    joplin.add_note("in work", folder=work)
    joplin.add_note("elsewhere")
    work_notes()
    assert seen[-1] == ["in work"]


def test_a_note_as_an_item(joplin: JoplinStandIn) -> None:
    connected(joplin)
    note = joplin.add_note("Plan", body="- [ ] write\n- [x] read")
    got = list(joplin_notes())
    (item,) = got
    assert (item.title, item.content, item.id) == ("Plan", "- [ ] write\n- [x] read", note.id)
    assert item.link == f"joplin://x-callback-url/openNote?id={note.id}"
    assert item.published is not None and "body" not in item.raw


# -- secrets ------------------------------------------------------------------------------
def test_the_token_is_never_logged_shown_or_stored(
    joplin: JoplinStandIn, feeds: Any, data_dir: Path, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.DEBUG)
    account = connected(joplin)
    feeds.publish("/s.xml", ["a"])
    url = feeds.url("/s.xml")

    @trigger
    def keep() -> None:
        sinks.joplin(rss(url), "Inbox")
        joplin_notes()

    keep()
    assert "HTTP Request: POST http://127.0.0.1" in caplog.text  # httpx logged, by origin
    joplin.token = "rotated-" + joplin.token[:20]  # the app's token was changed
    feeds.publish("/s.xml", ["a", "b"])
    with pytest.raises(TriggerRunFailed) as failed:
        keep()
    assert 'refused (403: Invalid "token" parameter)' in str(failed.value)
    assert "triggerflow connect joplin --account default" in str(failed.value)
    token = account.access_token.get_secret_value() if account.access_token else ""
    kept = caplog.text + str(failed.value) + repr(failed.value) + repr(account)
    assert len(token) == 128 and token not in kept
    assert token.encode() not in (data_dir / "triggerflow.duckdb").read_bytes()


# -- the example ---------------------------------------------------------------------------
def test_the_example_keeps_python_news_in_a_notebook(
    joplin: JoplinStandIn, feeds: Any, monkeypatch: pytest.MonkeyPatch
) -> None:
    connected(joplin)
    feeds.publish("/py.xml", ["Python 3.15.0a1", "Python 3.14.2"])
    example = example_reading("news_to_joplin", feeds.url("/py.xml"), monkeypatch)
    assert example().sinks[0].sent == 2
    (folder,) = [f for f in joplin.folders() if f["title"] == "Python news"]
    assert [(n.title, n.parent_id, n.tags) for n in joplin.notes()] == [
        ("Python 3.15.0a1", folder["id"], ["python", "news"]),
        ("Python 3.14.2", folder["id"], ["python", "news"]),
    ]
