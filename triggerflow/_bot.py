"""The XMPP bot that ``triggerflow serve`` keeps connected (the account named ``bot``).

- It sends presence (so the server delivers what it stored while the bot was away) and
  reconnects with backoff (1 s doubling to 60 s) whenever the connection is lost:
  slixmpp does not reconnect a lost session by itself (shared notes/xmpp.md §2).
- A message is stored in the inbox first. From an owner, a command (``help``,
  ``status``, ``list``, ``run NAME``…) is answered; any other message wakes the
  triggers that run ``on=xmpp_message(...)``. Others get no answer; their messages are
  logged and stored (a trigger may name them in ``senders=``).
- It runs on its own event loop in a thread; the store and Prefect are reached from
  worker threads so that the connection never waits for them.
"""

from __future__ import annotations

import asyncio
import contextlib
import hashlib
import json
import logging
import threading
from collections.abc import Callable, Iterable
from datetime import datetime
from typing import Any

from ._commands import Commands
from ._store import Store, now
from ._xmpp import XMPPConnection, connect_args, new_client
from .config import Settings

log = logging.getLogger("triggerflow.bot")

KIND = "xmpp"
_BACKOFF = (1.0, 60.0)  # first and longest wait before reconnecting
_AUTH_RETRY = 300.0  # a refused password is retried rarely (someone may fix it)


class Bot:
    """The bot's connection, in a thread of its own. ``start()``, then ``stop()``."""

    def __init__(
        self,
        s: Settings,
        conn: XMPPConnection,
        owners: Iterable[str],
        commands: Commands,
        wake: Callable[[str], None] | None = None,
    ) -> None:
        self.settings = s
        self.conn = conn
        self.owners = {o.strip().lower() for o in owners if o.strip()}
        self.commands = commands
        self.wake = wake
        self.store = Store.default(s)
        self.online = threading.Event()
        self._thread = threading.Thread(target=self._run, name="triggerflow-bot", daemon=True)
        self._loop: asyncio.AbstractEventLoop | None = None
        self._stopping: asyncio.Event | None = None
        self._delay = _BACKOFF[0]
        self._retry: asyncio.TimerHandle | None = None

    def __repr__(self) -> str:
        return f"Bot({self.conn.jid!r}, owners={sorted(self.owners)})"

    def start(self) -> None:
        self._thread.start()

    def stop(self, timeout: float = 10.0) -> None:
        """Disconnect and end the thread (bounded)."""
        loop, stopping = self._loop, self._stopping
        if loop is not None and stopping is not None and not loop.is_closed():
            with contextlib.suppress(RuntimeError):  # closed meanwhile: stopped already
                loop.call_soon_threadsafe(stopping.set)
        if self._thread.is_alive():
            self._thread.join(timeout)

    # -- the connection ----------------------------------------------------------------
    def _run(self) -> None:
        asyncio.run(self._main())

    async def _main(self) -> None:
        self._loop = asyncio.get_running_loop()
        self._stopping = asyncio.Event()
        x = new_client(self.conn, resource="triggerflow")
        x.register_plugin("xep_0203")  # delay stamps on what was stored while away
        x.register_plugin("xep_0199", {"keepalive": True, "interval": 60, "timeout": 15})
        x.add_event_handler("session_start", self._on_session_start)
        x.add_event_handler("message", self._on_message)
        x.add_event_handler("disconnected", self._on_disconnected)
        x.add_event_handler("connection_failed", self._on_connection_failed)
        x.add_event_handler("failed_all_auth", self._on_auth_failed)
        self.x = x
        self._connect()
        await self._stopping.wait()
        if self._retry is not None:
            self._retry.cancel()
        x.cancel_connection_attempt()
        if x.is_connected():
            try:
                await asyncio.wait_for(x.disconnect(wait=1.0), timeout=3)
            except (TimeoutError, asyncio.CancelledError):
                x.abort()
        t = getattr(x, "_run_out_filters", None)  # its send-queue task (shared notes §2)
        if t is not None:
            t.cancel()
            await asyncio.gather(t, return_exceptions=True)

    def _connect(self) -> None:
        self._retry = None
        if self._stopping is not None and not self._stopping.is_set():
            self.x.connect(*connect_args(self.conn, self.x))

    def _reconnect_later(self, delay: float | None = None) -> None:
        if self._stopping is None or self._stopping.is_set() or self._retry is not None:
            return
        wait = delay if delay is not None else self._delay
        self._delay = min(self._delay * 2, _BACKOFF[1])
        assert self._loop is not None
        self._retry = self._loop.call_later(wait, self._connect)

    async def _on_session_start(self, _: Any) -> None:
        self.x.send_presence()  # without it the server keeps our messages offline
        await self.x.get_roster()
        self._delay = _BACKOFF[0]
        self.online.set()
        log.info("XMPP bot %s online", self.conn.jid)

    def _on_disconnected(self, reason: Any) -> None:
        was_online = self.online.is_set()
        self.online.clear()
        if self._stopping is not None and not self._stopping.is_set():
            if was_online:
                log.warning(
                    "XMPP bot %s lost its connection (%s); reconnecting", self.conn.jid, reason
                )
            self._reconnect_later()

    def _on_connection_failed(self, err: Any) -> None:
        self.x.cancel_connection_attempt()  # our backoff instead of slixmpp's endless loop
        log.warning(
            "XMPP bot %s: server %s unreachable (%s); retrying in %g s",
            self.conn.jid, self.conn.address, err, self._delay,
        )  # fmt: skip
        self._reconnect_later()

    def _on_auth_failed(self, _: Any) -> None:
        log.error(
            "XMPP bot %s: the server refused its password; retrying in %g s",
            self.conn.jid, _AUTH_RETRY,
        )  # fmt: skip
        self.x.cancel_connection_attempt()
        self._reconnect_later(_AUTH_RETRY)

    # -- messages ------------------------------------------------------------------------
    def _on_message(self, msg: Any) -> None:
        if msg["type"] not in ("chat", "normal") or not msg["body"]:
            return
        stamp = msg["delay"]["stamp"] if msg["delay"]["stamp"] else None
        sender = msg["from"].bare.lower()
        args = (sender, str(msg["body"]), str(msg["id"] or ""), stamp)
        asyncio.ensure_future(self._process(msg["from"], args))

    async def _process(self, reply_to: Any, args: tuple[str, str, str, datetime | None]) -> None:
        assert self._loop is not None
        try:
            answer = await self._loop.run_in_executor(None, self.handle, *args)
        except Exception as e:  # the store stayed busy: say so rather than nothing
            log.warning("XMPP bot: message from %s not handled: %s", args[0], e)
            answer = f"✗ not handled: {e}" if args[0] in self.owners else None
        if answer:
            self.x.send_message(mto=reply_to, mbody=answer, mtype="chat")

    def handle(self, sender: str, body: str, msg_id: str, stamp: datetime | None) -> str | None:
        """Store one message and return the answer to send, if any (in a worker thread)."""
        owner = sender in self.owners
        command = owner and self.commands.is_command(body)
        key = f"{sender}/{msg_id}" if msg_id else hashlib.sha256(
            f"{sender}\x1f{stamp}\x1f{body}".encode()
        ).hexdigest()[:32]  # fmt: skip
        payload = {
            "from": sender, "body": body, "stamp": stamp.isoformat() if stamp else None,
            "owners": sorted(self.owners),
        }  # fmt: skip
        with self.store.transaction() as tx:
            new = tx.inbox_add(
                KIND, key, "command" if command else "message", None, json.dumps(payload),
                now(), command,
            )  # fmt: skip
        if not new:
            return None  # the server handed us the same message again
        if command:
            log.info("XMPP bot: command from %s: %s", sender, body.split()[0].lower())
            return self.commands.answer(body)
        if not owner:
            what = "command" if self.commands.is_command(body) else "message"
            log.warning("XMPP bot: %s from %s (not an owner): stored, not answered", what, sender)
        if self.wake is not None:
            try:
                self.wake(key)
            except Exception as e:  # stored: the catch-up schedule delivers it anyway
                log.warning("XMPP bot: message stored, triggers not woken: %s", e)
        return None
