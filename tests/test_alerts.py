"""Failure alerts: one when a trigger starts failing, one when it is back, none lost."""

from __future__ import annotations

import time
from datetime import timedelta
from typing import Any

import pytest

from triggerflow import trigger
from triggerflow.exceptions import TriggerRunFailed
from triggerflow.sinks import xmpp
from triggerflow.sources import rss

pytestmark = pytest.mark.usefixtures("prefect_api")


@pytest.fixture
def people(prosody: Any, receiver: Any, monkeypatch: pytest.MonkeyPatch) -> tuple[Any, Any]:
    """A reader of the items and an admin who gets the alerts, both listening."""
    reader_jid, reader_pw = prosody.new_user("reader")
    admin_jid, admin_pw = prosody.new_user("admin")
    for key, value in prosody.env(owner=reader_jid).items():
        monkeypatch.setenv(key, value)
    monkeypatch.setenv("TRIGGERFLOW_ALERTS", admin_jid)
    admin = receiver(admin_jid, admin_pw)
    admin.password = admin_pw
    return receiver(reader_jid, reader_pw), admin


def _settle(r: Any, n: int) -> list[str]:
    time.sleep(1.5)  # what would arrive late has arrived
    assert len(r.messages) == n, r.messages
    return r.messages


def test_one_alert_per_outage_and_one_when_back(
    feeds: Any, people: tuple[Any, Any], clock: Any
) -> None:
    reader, admin = people
    feeds.publish("/a.xml", ["first"])
    url = feeds.url("/a.xml")

    @trigger
    def watched() -> None:
        xmpp(rss(url), format="{title}")

    watched()
    assert reader.wait_for(1) == ["first"]
    _settle(admin, 0)

    feeds.broken("/a.xml", 404)
    for _ in range(3):  # three failing runs, one alert
        with pytest.raises(TriggerRunFailed, match="404"):
            watched()
    (alert,) = admin.wait_for(1)
    assert alert.startswith("⚠ triggerflow: watched is failing:") and "404" in alert
    _settle(admin, 1)

    feeds.publish("/a.xml", ["first", "second"])
    clock.advance(600)  # past the failing feed's backoff (test_polling.py)
    watched()
    assert reader.wait_for(2) == ["first", "second"]
    back = admin.wait_for(2)[1]
    assert back.startswith("✓ triggerflow: watched is back to normal")
    _settle(admin, 2)
    watched()  # healthy again: nothing more
    _settle(admin, 2)


def test_an_alert_about_the_xmpp_server_waits_for_it(
    feeds: Any, prosody: Any, receiver: Any, people: tuple[Any, Any]
) -> None:
    _, admin = people
    feeds.publish("/b.xml", ["x"])
    url = feeds.url("/b.xml")

    @trigger
    def fragile() -> None:
        xmpp(rss(url), format="{title}")

    with prosody.down():
        with pytest.raises(TriggerRunFailed, match="unreachable"):
            fragile()
    fragile()  # back: the item, the queued alert and the recovery all go out
    # The admin's client lost its connection with the server: it logs in again and
    # reads what the server kept for it, in order.
    again = receiver(admin.jid, admin.password, include_delayed=True)
    got = again.wait_for(2)
    _settle(again, 2)
    assert got[0].startswith("⚠ triggerflow: fragile is failing") and "unreachable" in got[0]
    assert got[1].startswith("✓ triggerflow: fragile is back to normal")


def test_dead_items_come_back_with_retry(
    feeds: Any, prosody: Any, people: tuple[Any, Any], monkeypatch: pytest.MonkeyPatch
) -> None:
    """After N failed attempts an item is dead; `triggerflow retry --dead` owes it again."""
    import os
    import subprocess
    import sys

    reader, _ = people
    monkeypatch.setenv("TRIGGERFLOW_MAX_ATTEMPTS", "2")
    monkeypatch.setenv("TRIGGERFLOW_RETRIES", "0")
    monkeypatch.setenv("TRIGGERFLOW_ALERTS", "off")
    feeds.publish("/d.xml", ["late"])
    url = feeds.url("/d.xml")

    @trigger
    def stubborn() -> None:
        xmpp(rss(url), format="{title}")

    with prosody.down():
        with pytest.raises(TriggerRunFailed, match="unreachable"):
            stubborn()
        with pytest.raises(TriggerRunFailed, match="gave up after 2 attempts"):
            stubborn()
    status = subprocess.run(
        [sys.executable, "-m", "triggerflow", "status"],
        capture_output=True, text=True, timeout=60, env=dict(os.environ),
    ).stdout  # fmt: skip
    assert "[dead] late" in status and "unreachable" in status
    assert stubborn().sinks[0].sent == 0  # dead items are not tried again by themselves
    out = subprocess.run(
        [sys.executable, "-m", "triggerflow", "retry", "--dead"],
        capture_output=True, text=True, timeout=60, env=dict(os.environ),
    ).stdout  # fmt: skip
    assert "Requeued 1 failed or dead item(s)" in out
    assert stubborn().sinks[0].sent == 1


def test_back_to_normal_says_what_still_waits_for_retry(
    feeds: Any,
    prosody: Any,
    receiver: Any,
    people: tuple[Any, Any],
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """Healthy again, but an item was given up: the recovery alert says so, and how to fix."""
    _, admin = people
    monkeypatch.setenv("TRIGGERFLOW_MAX_ATTEMPTS", "2")
    monkeypatch.setenv("TRIGGERFLOW_RETRIES", "0")
    feeds.publish("/w.xml", ["given up"])
    url = feeds.url("/w.xml")

    @trigger
    def waiting() -> None:
        xmpp(rss(url), format="{title}")

    with prosody.down():
        for _ in range(2):  # the second failed attempt gives the item up
            with pytest.raises(TriggerRunFailed):
                waiting()
    assert waiting().sinks[0].sent == 0  # dead items are not tried again by themselves
    again = receiver(admin.jid, admin.password, include_delayed=True)
    # The "failing" alert was given up with the item (same attempt limit): only this one.
    (back,) = again.wait_for(1)
    assert back.startswith("✓ triggerflow: waiting is back to normal")
    assert "1 item(s) still wait for `triggerflow retry waiting --dead`" in back


def test_a_feed_that_went_silent_is_noted_once_in_status_and_by_an_alert(
    feeds: Any, people: tuple[Any, Any], clock: Any, capsys: pytest.CaptureFixture[str]
) -> None:
    from triggerflow.cli import main

    _, admin = people
    url = feeds.publish_every("/daily.xml", clock.t, timedelta(days=1), 10)  # until now

    @trigger
    def quiet() -> None:
        xmpp(rss(url), format="{title}")

    quiet()
    clock.advance(9 * 86400)  # 9 days without an item: under 10x its daily rhythm
    quiet()
    _settle(admin, 0)
    clock.advance(2 * 86400)  # 11 days: more than 10x its rhythm, and more than a week
    quiet()
    (alert,) = admin.wait_for(1)
    assert f"quiet: 1 feed(s) went silent: {url} (no new item since" in alert, alert
    assert "usually one every 1 day" in alert, alert
    quiet()  # still silent: noted once
    _settle(admin, 1)
    capsys.readouterr()
    assert main(["status"]) == 0
    out = capsys.readouterr().out
    assert "Silent feeds: 1" in out and url in out, out

    feeds.publish_every("/daily.xml", clock.t, timedelta(days=1), 11)  # one today: not silent
    quiet()
    capsys.readouterr()
    assert main(["status"]) == 0
    assert "Silent feeds" not in capsys.readouterr().out
    _settle(admin, 1)
