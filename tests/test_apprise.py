"""Apprise: any notifier by its URL, through the outbox like every sink.

Real parts: Apprise's own generic ``json://`` and ``form://`` notifiers post to a local
web hook (``standins.NotifierStandIn``), the account is a real Prefect block on the
session's Prefect server, the store a real DuckDB file.
"""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest
from standins import NotifierStandIn
from test_services import example_reading

from triggerflow import sinks, trigger
from triggerflow.blocks import AppriseAccount
from triggerflow.exceptions import ConfigurationError, TriggerRunFailed
from triggerflow.services.apprise.connect import connect_apprise
from triggerflow.sources import rss

pytestmark = pytest.mark.usefixtures("prefect_api")

PASSWORD = "pw-S3cret-never-shown"


@pytest.fixture
def guarded() -> Any:
    """A web hook that wants basic auth: the URL holds a password."""
    with NotifierStandIn(user="bot", password=PASSWORD) as standin:
        yield standin


def test_notify_sends_each_item_once_through_a_connected_account(
    guarded: NotifierStandIn, feeds: Any
) -> None:
    connect_apprise(f"json://bot:{PASSWORD}@{guarded.host}/hook", "phone", say=lambda _: None)
    feeds.publish("/n.xml", ["one", "two"])
    url = feeds.url("/n.xml")

    @trigger
    def ping() -> None:
        sinks.notify(rss(url), "phone", title="news: {title}")

    assert ping().sinks[0].sent == 2
    got = guarded.received()
    assert [(g["path"], g["title"], g["message"]) for g in got] == [
        ("/hook", "news: one", f"{url}#0"),
        ("/hook", "news: two", f"{url}#1"),
    ]
    assert ping().sinks[0].sent == 0 and len(guarded.received()) == 2  # a rerun: nothing
    feeds.publish("/n.xml", ["one", "two", "three"])
    assert ping().sinks[0].sent == 1 and guarded.received()[-1]["title"] == "news: three"


def test_a_failed_notification_waits_and_goes_out_once_later(
    notifier: NotifierStandIn, feeds: Any
) -> None:
    feeds.publish("/f.xml", ["a", "b"])
    url = feeds.url("/f.xml")
    hook = f"form://{notifier.host}/form"
    notifier.fail_next(3, 503)  # the step and Prefect's retries all fail on the first item

    @trigger
    def ping() -> None:
        sinks.notify(rss(url), url=hook, type="warning")

    with pytest.raises(TriggerRunFailed, match=r"Apprise Form \(form://…\).*503"):
        ping()
    assert notifier.received() == []
    assert ping().sinks[0].sent == 2  # the next run sends what waited, each once
    assert [(g["title"], g["type"]) for g in notifier.received()] == [
        ("a", "warning"), ("b", "warning"),
    ]  # fmt: skip
    assert ping().sinks[0].sent == 0


def test_a_refused_item_is_failed_for_good_and_the_others_go(
    notifier: NotifierStandIn, feeds: Any
) -> None:
    feeds.publish("/r.xml", ["bad", "good"])
    url = feeds.url("/r.xml")
    notifier.fail_next(1, 400, "message refused")

    @trigger
    def ping() -> None:
        sinks.notify(rss(url), url=f"json://{notifier.host}/x")

    with pytest.raises(TriggerRunFailed, match=r"bad: Apprise JSON .* refused it: .*error=400"):
        ping()  # the run says which item was refused, and why
    assert [g["title"] for g in notifier.received()] == ["good"]
    assert ping().sinks[0].sent == 0 and len(notifier.received()) == 1  # not retried


def test_preview_sends_nothing_and_bad_urls_are_clear(notifier: NotifierStandIn) -> None:
    @trigger
    def ping() -> None:
        items = rss(notifier.url + "/none.xml")
        sinks.notify(items, url=f"json://{notifier.host}/x")
        sinks.notify(items, url="nosuch://token-1234567")
        sinks.notify(items, "nobody")

    problems = ping.check()
    assert any("Apprise cannot use a nosuch:// URL" in p for p in problems), problems
    assert not any("token-1234567" in p for p in problems)
    assert any("triggerflow connect apprise --account nobody" in p for p in problems)
    with pytest.raises(ConfigurationError, match="Apprise cannot use this text"):
        connect_apprise("not a url", say=lambda _: None)
    assert notifier.requests == []


def test_connect_through_the_cli_keeps_the_url_secret(
    guarded: NotifierStandIn, feeds: Any, data_dir: Path, caplog: pytest.LogCaptureFixture
) -> None:
    secret_url = f"json://bot:{PASSWORD}@{guarded.host}/hook"

    def cli(*args: str, url: str) -> subprocess.CompletedProcess[str]:
        return subprocess.run(
            [sys.executable, "-m", "triggerflow", *args], capture_output=True, text=True,
            timeout=120, stdin=subprocess.DEVNULL,
            env={**os.environ, "TRIGGERFLOW_APPRISE_URL": url},
        )  # fmt: skip

    wrong = cli("connect", "apprise", "--send-test", url=secret_url.replace(PASSWORD, "nope-Wr0ng"))
    assert wrong.returncode == 1 and "test notification failed" in wrong.stderr, wrong.stderr
    assert "nope-Wr0ng" not in wrong.stderr + wrong.stdout
    right = cli("connect", "apprise", "--account", "team", "--send-test", url=secret_url)
    assert right.returncode == 0, right.stderr
    assert "Connected Apprise notifier JSON (json://…) as 'apprise-team'" in right.stdout
    assert guarded.received()[0]["title"] == "triggerflow"
    accounts = cli("accounts", url="")
    assert "apprise team" in accounts.stdout and "URL saved encrypted" in accounts.stdout
    saved = AppriseAccount.load("apprise-team")
    assert saved.apprise_url.get_secret_value() == secret_url

    feeds.publish("/s.xml", ["a"])
    url = feeds.url("/s.xml")

    @trigger
    def ping() -> None:
        sinks.notify(rss(url), "team")

    guarded.password = "changed"  # the saved URL's password no longer works
    with pytest.raises(TriggerRunFailed) as failed:
        ping()
    kept = caplog.text + str(failed.value) + repr(failed.value) + repr(saved)
    kept += right.stdout + right.stderr + accounts.stdout + accounts.stderr
    assert "refused" in str(failed.value) and "401" in str(failed.value)
    assert PASSWORD not in kept
    assert PASSWORD.encode() not in (data_dir / "triggerflow.duckdb").read_bytes()


def test_the_example_sends_releases_to_the_phone(
    notifier: NotifierStandIn, feeds: Any, monkeypatch: pytest.MonkeyPatch
) -> None:
    connect_apprise(f"json://{notifier.host}/phone", "phone", say=lambda _: None)
    monkeypatch.setenv("TRIGGERFLOW_FIRST_RUN", "10")
    feeds.publish("/py.xml", [f"3.14.{i}" for i in range(7)])
    example = example_reading("releases_to_phone", feeds.url("/py.xml"), monkeypatch)
    run = example()
    assert (run.sinks[0].sent, run.sinks[0].queued) == (5, 2)  # "5/day": the rest waits
    assert [g["title"] for g in notifier.received()] == [f"Python: 3.14.{i}" for i in range(5)]
