"""The XMPP bot on a real Prosody: commands from owners only, messages stored, offline
messages picked up, a server restart survived; and serve running a trigger on its messages.
"""

from __future__ import annotations

import json
import logging
import time
import uuid
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest

from triggerflow._bot import Bot
from triggerflow._commands import Commands
from triggerflow._store import Store
from triggerflow.config import settings


def wait_until(check: Callable[[], Any], timeout: float = 30.0, every: float = 0.2) -> Any:
    """``check()``'s first truthy value, polled for at most ``timeout`` seconds."""
    deadline = time.monotonic() + timeout
    while True:
        value = check()
        if value or time.monotonic() > deadline:
            return value
        time.sleep(every)


def inbox(data_dir: Path) -> list[tuple[str, bool, dict[str, Any]]]:
    with Store(data_dir / "triggerflow.duckdb").transaction(commit=False) as tx:
        rows = tx.con.execute(
            "SELECT event, ignored, payload FROM inbox WHERE kind = 'xmpp' ORDER BY seq"
        ).fetchall()
    return [(r[0], bool(r[1]), json.loads(r[2])) for r in rows]


@pytest.fixture
def bot_account(prosody: Any) -> tuple[str, str]:
    return prosody.new_user("bot")


@pytest.fixture
def make_bot(prosody: Any, bot_account: tuple[str, str]) -> Iterator[Callable[..., Bot]]:
    made: list[Bot] = []

    def make(owners: list[str], wake: Callable[[str], None] | None = None) -> Bot:
        jid, _ = bot_account
        conn = prosody.connection(jid)
        bot = Bot(settings(), conn, owners, Commands(settings(), {}), wake=wake)
        bot.start()
        assert bot.online.wait(15), "the bot did not log in"
        made.append(bot)
        return bot

    yield make
    for b in made:
        b.stop()


def test_owners_get_answers_others_are_logged_and_ignored(
    prosody: Any,
    receiver: Callable[..., Any],
    make_bot: Callable[..., Bot],
    bot_account: tuple[str, str],
    data_dir: Path,
    caplog: Any,
) -> None:
    owner_jid, owner_pw = prosody.new_user("owner")
    stranger_jid, stranger_pw = prosody.new_user("stranger")
    woken: list[str] = []
    make_bot([owner_jid], wake=woken.append)
    owner = receiver(owner_jid, owner_pw)
    stranger = receiver(stranger_jid, stranger_pw)
    bot_jid = bot_account[0]

    caplog.set_level(logging.INFO, logger="triggerflow.bot")
    owner.send(bot_jid, "status")
    assert owner.wait_for(1, timeout=15) == ["Nothing collected yet."]
    owner.send(bot_jid, "help")
    assert owner.wait_for(2, timeout=15)[1].startswith("Commands:\n  status")
    owner.send(bot_jid, "run nope")
    assert owner.wait_for(3, timeout=15)[2] == "✗ run: no trigger named 'nope' (triggers: none)"

    stranger.send(bot_jid, "status")
    owner.send(bot_jid, "have a look: https://example.org/article")
    wait_until(lambda: len(inbox(data_dir)) == 5, timeout=15)
    time.sleep(1.5)  # an answer to the stranger would have come by now
    assert stranger.messages == []
    assert "command from " + stranger_jid + " (not an owner): stored, not answered" in caplog.text
    events = sorted((e, ignored, p["from"]) for e, ignored, p in inbox(data_dir))
    assert events == sorted([
        ("command", True, owner_jid), ("command", True, owner_jid), ("command", True, owner_jid),
        ("message", False, stranger_jid), ("message", False, owner_jid),
    ])  # fmt: skip
    assert len(woken) == 2  # the two plain messages woke the triggers; commands did not


def test_the_bot_survives_a_server_restart_and_reads_what_came_meanwhile(
    prosody: Any,
    receiver: Callable[..., Any],
    make_bot: Callable[..., Bot],
    bot_account: tuple[str, str],
    data_dir: Path,
) -> None:
    owner_jid, owner_pw = prosody.new_user("owner")
    bot = make_bot([owner_jid])
    bot_jid = bot_account[0]
    prosody.restart()
    assert wait_until(lambda: not bot.online.is_set(), timeout=5) is not None
    assert bot.online.wait(30), "the bot did not reconnect after the restart"
    owner = receiver(owner_jid, owner_pw)
    owner.send(bot_jid, "status")
    assert owner.wait_for(1, timeout=15) == ["Nothing collected yet."]

    # Messages sent while the bot is away are kept by the server and read on login.
    bot.stop()
    owner.send(bot_jid, "sent while the bot was away https://example.org/later")
    time.sleep(0.5)
    make_bot([owner_jid])
    stored = wait_until(lambda: [p for e, _, p in inbox(data_dir) if e == "message"], timeout=15)
    assert stored and stored[0]["body"] == "sent while the bot was away https://example.org/later"
    assert stored[0]["stamp"] is not None  # delivered late, with the server's delay stamp


def test_serve_runs_a_trigger_on_a_link_sent_to_the_bot(
    tmp_path: Path, prosody: Any, receiver: Callable[..., Any], bot_account: tuple[str, str]
) -> None:
    from serve_support import Serve

    owner_jid, owner_pw = prosody.new_user("owner")
    flows = tmp_path / "flows"
    flows.mkdir()
    (flows / "reading.py").write_text(
        "from triggerflow import trigger\nfrom triggerflow.sinks import feed\n"
        "from triggerflow.sources import xmpp_message\n\n"
        "@trigger(on=xmpp_message(contains='http'))\n"
        "def reading_list(messages):\n    feed(messages, name='reading')\n"
    )
    env = prosody.env(account="bot", user=bot_account[0], owner=owner_jid)
    serve = Serve(tmp_path / "data", flows, **env)
    owner = receiver(owner_jid, owner_pw)
    try:
        out = serve.start()
        assert f"XMPP bot: {bot_account[0]}, taking commands from {owner_jid}" in out
        when = "on messages to the bot from the owners containing 'http'; every 10m"
        assert f"✓ reading_list ({when})" in out
        serve.deployments(1)
        link = f"https://example.org/{uuid.uuid4().hex}"
        owner.send(bot_account[0], f"read this later {link}")

        def exported() -> str:
            r = serve.cli("feeds", "export", "reading")
            return r.stdout if r.returncode == 0 and link in r.stdout else ""

        assert link in wait_until(exported, timeout=90, every=2)
        owner.send(bot_account[0], "list")
        assert owner.wait_for(1, timeout=20) == [f"reading_list ({when}): active"]
        owner.send(bot_account[0], "run reading_list")
        assert owner.wait_for(2, timeout=30)[1].startswith("Started reading_list (run ")
        serve.stop()
    finally:
        serve.kill()
