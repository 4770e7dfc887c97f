"""The XMPP boundary: one connection per batch, and slixmpp's errors in our words.

Everything slixmpp-specific lives here (see shared notes/xmpp.md for the facts
this is built on):

- slixmpp reports failures only as events and retries a refused connection
  forever, so every step races a ``failure`` future and a timeout: a call always
  returns within a bounded time, whatever the server does;
- a message counts as sent only when stream management (XEP-0198) acknowledged it
  and no error bounce with its id came back (bounces arrive *before* the ack);
  in a room, only when the room reflected it back. slixmpp fires ``session_start``
  *before* it asks for stream management, so the send waits for that answer first;
  a server without stream management gets a ping as an in-order barrier instead;
- a batch goes out in chunks of at most ``ACK_EVERY`` messages (or ``ACK_INTERVAL``
  seconds of writing), each followed by an ack request, and no more than
  ``MAX_UNACKED`` messages are ever written without their final answer: a sender
  killed mid-batch leaves at most that many taken by the server but unreported;
- the ack request goes through slixmpp's send queue, behind the chunk it covers:
  slixmpp's own ``request_ack()`` (and its automatic one every ``window`` stanzas)
  is written at once, overtaking the stanzas still queued (a slixmpp quirk), so the
  automatic one is off;
- what got its final answer is reported as it happens (``on_progress``), once per
  message: confirmed or rejected;
- Prosody's MUC join errors lack the MUC payload, so ``join_muc_wait`` would wait
  for its timeout: the generic ``presence_error`` event is watched as well.

The password is never part of a message, a repr or a log line.
"""

from __future__ import annotations

import asyncio
import logging
import ssl
from collections.abc import Awaitable, Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, TypeVar

from ._async import run_sync
from .exceptions import (
    XMPPAuthError,
    XMPPError,
    XMPPRejected,
    XMPPTLSError,
    XMPPUnavailable,
)

__all__ = [
    "ACK_EVERY",
    "ACK_INTERVAL",
    "MAX_UNACKED",
    "Progress",
    "SendResult",
    "XMPPConnection",
    "send_messages",
    "send_messages_sync",
]

T = TypeVar("T")
DEFAULT_PORT = 5222

# The unacknowledged window, chosen with bench/xmpp.py (bench/README.md, "XMPP sink"): an
# ack request after every ACK_EVERY messages, or once building a chunk took ACK_INTERVAL
# seconds, whichever comes first; writing waits while the next chunk would leave more than
# MAX_UNACKED messages without their final answer. So a sender (or server) killed mid-batch
# leaves at most MAX_UNACKED messages the server took but nobody was told about.
# - ACK_EVERY: 2,000 messages over STARTTLS, medians of 11 interleaved runs: 100 cost ~9 %
#   against one ack request after the batch (25: ~19 %, 50: ~15 %, 200: ~9 %, 500: ~3 %);
#   smaller windows pay an <r/>/<a/> round and a wake-up per chunk.
# - MAX_UNACKED = 2 chunks: the next chunk is written while the last one's ack travels;
#   1 chunk waited a round trip each time (~10 % slower), 4 gained nothing measurable.
# - ACK_INTERVAL: a chunk of 100 builds in < 4 ms, > 10 ms now and then on a loaded 2-core
#   machine; 50 ms cuts a chunk short only when the process is starved.
ACK_EVERY = 100
ACK_INTERVAL = 0.05
MAX_UNACKED = 2 * ACK_EVERY

#: ``on_progress(confirmed_keys, rejected_keys_to_reason)``, see :func:`send_messages`.
Progress = Callable[[list[str], dict[str, str]], None]

# slixmpp asks for an ack by itself every `window` stanzas, written *before* the stanza
# that triggered it (see the module doc); a window it never reaches turns that off.
_NO_AUTO_ACK = 2**31
_REQUEST_ACK = "<r xmlns='urn:xmpp:sm:3'/>"

# slixmpp logs failed logins and bad certificates at ERROR level on top of the
# events we translate; the translated error is what users should read.
logging.getLogger("slixmpp").setLevel(logging.CRITICAL)


@dataclass(frozen=True)
class XMPPConnection:
    """Where and as whom to connect."""

    jid: str
    password: str = field(repr=False)
    host: str | None = None
    port: int | None = None
    ca_file: str | None = None
    allow_plaintext: bool = False
    timeout: float = 15.0

    @property
    def address(self) -> str:
        """``host:port`` as connected to, for messages."""
        host = self.host or self.jid.partition("@")[2].partition("/")[0]
        return f"{host}:{self.port or DEFAULT_PORT}"


@dataclass
class SendResult:
    """What happened to each message of a batch, by the caller's keys."""

    sent: list[str] = field(default_factory=list)
    rejected: dict[str, str] = field(default_factory=dict)
    error: XMPPError | None = None


def new_client(conn: XMPPConnection, resource: str | None = None) -> Any:
    """A slixmpp client for ``conn``: STARTTLS (or plaintext where allowed), its CA file."""
    import slixmpp  # imported here: ~40 ms, and only XMPP code needs it

    plugin_config = (
        {"feature_mechanisms": {"unencrypted_scram": True}} if conn.allow_plaintext else None
    )
    jid = f"{conn.jid}/{resource}" if resource else conn.jid
    x = slixmpp.ClientXMPP(jid, conn.password, plugin_config=plugin_config)
    x.enable_direct_tls = False  # else it tries xmpps on the STARTTLS port first
    if conn.allow_plaintext:
        x.enable_starttls = False
        x.enable_plaintext = True
    if conn.ca_file:
        x.ca_certs = Path(conn.ca_file)
    return x


def connect_args(conn: XMPPConnection, x: Any) -> tuple[Any, ...]:
    """What to pass to ``x.connect()``: the address when given, else SRV lookup."""
    if conn.host or conn.port:
        return (conn.host or x.boundjid.domain, conn.port or DEFAULT_PORT)
    return ()


class _Session:
    """One slixmpp client for one batch, with failures gathered in one future."""

    def __init__(self, conn: XMPPConnection, on_progress: Progress | None = None) -> None:
        self.conn = conn
        x = new_client(conn)
        x.whitespace_keepalive = False
        # Our own ack requests, in the send queue behind each chunk (send()); slixmpp's
        # automatic ones (every 5 stanzas by default) would come before the stanza.
        x.register_plugin("xep_0198", {"window": _NO_AUTO_ACK})
        # No MUC plugin unless a room is joined (join()): through its dependencies it loads
        # entity caps (xep_0115), whose async out filter costs every stanza a task and a
        # loop round (bench/README.md).
        x.register_plugin("xep_0199")  # ping: the barrier when the server has no SM
        self.x = x
        loop = asyncio.get_running_loop()
        self.failure: asyncio.Future[None] = loop.create_future()
        # True once the server enabled stream management, False if it refused.
        self.sm_settled: asyncio.Future[bool] = loop.create_future()
        # Whether the batch went out under SM; kept because slixmpp resets its flag on
        # disconnect, and the result is read after close().
        self.sm_used = False
        self.mtype = "chat"
        self.acked: set[str] = set()
        self.reflected: set[str] = set()
        self.ids: list[str] = []  # of the messages queued for writing, in order
        self.keys: dict[str, str] = {}  # message id -> the caller's key
        # The final answer per message id: None = confirmed, else why it was rejected.
        self.decided: dict[str, str | None] = {}
        self._on_progress = on_progress
        self._new_sent: list[str] = []  # keys decided but not yet reported
        self._new_rejected: dict[str, str] = {}
        self._flush_handle: asyncio.Handle | None = None
        self._reporting = True  # False once send_messages returns: no report after that
        self.callback_error: Exception | None = None  # raised by on_progress
        self._changed = asyncio.Event()  # set at every decision: wakes the sending loop
        self._barriers: set[asyncio.Task[None]] = set()  # pings in flight (no SM)
        x.add_event_handler("connection_failed", self._on_connection_failed)
        x.add_event_handler("failed_all_auth", self._on_auth_failed)
        x.add_event_handler("ssl_invalid_chain", self._on_tls_failed)
        x.add_event_handler("disconnected", self._on_disconnected)
        x.add_event_handler("stanza_acked", self._on_acked)
        x.add_event_handler("message_error", self._on_bounce)
        x.add_event_handler("groupchat_message", self._on_reflected)
        x.add_event_handler("sm_enabled", lambda _: self._settle_sm(True))
        x.add_event_handler("sm_failed", lambda _: self._settle_sm(False))

    # -- events -> one failure ------------------------------------------------
    def _settle_sm(self, enabled: bool) -> None:
        if not self.sm_settled.done():
            self.sm_settled.set_result(enabled)

    def fail(self, exc: XMPPError) -> None:
        if not self.failure.done():
            self.failure.set_exception(exc)

    def _on_connection_failed(self, err: Any) -> None:
        self.x.cancel_connection_attempt()  # stop slixmpp's endless reconnect loop
        if isinstance(err, ssl.SSLError):
            self.fail(XMPPTLSError(f"XMPP server {self.conn.address}: TLS failed: {_reason(err)}"))
        else:
            self.fail(
                XMPPUnavailable(f"XMPP server {self.conn.address} unreachable: {_reason(err)}")
            )

    def _on_auth_failed(self, _: Any) -> None:
        if not self.conn.allow_plaintext and "starttls" not in self.x.features:
            # slixmpp found no mechanism it may use unencrypted: nothing was even tried.
            self.fail(
                XMPPTLSError(
                    f"XMPP server {self.conn.address} offers no TLS (STARTTLS); refusing to "
                    "send the password in plaintext (allow plaintext only for a server on "
                    "this machine)"
                )
            )
            return
        self.fail(
            XMPPAuthError(
                f"XMPP server {self.conn.address} refused the password of {self.conn.jid} "
                "(check the account's password)"
            )
        )

    def _on_tls_failed(self, err: Any) -> None:
        # slixmpp reports every failed STARTTLS handshake as "ssl_invalid_chain".
        text = _reason(err)
        if isinstance(err, ssl.SSLCertVerificationError) or "CERTIFICATE_VERIFY_FAILED" in text:
            self.fail(
                XMPPTLSError(
                    f"XMPP server {self.conn.address}: certificate not trusted ({text}); "
                    "set the account's CA file for a self-hosted server"
                )
            )
        else:
            self.fail(XMPPTLSError(f"XMPP server {self.conn.address}: TLS failed: {text}"))

    def _on_disconnected(self, reason: Any) -> None:
        text = _reason(reason)
        if isinstance(reason, ssl.SSLError) or "certificate" in text.lower() or "[SSL" in text:
            self._on_tls_failed(reason)
        else:
            self.fail(
                XMPPUnavailable(f"XMPP server {self.conn.address} closed the connection: {text}")
            )

    def _on_bounce(self, msg: Any) -> None:
        err = msg["error"]
        text = err["text"]
        why = f"{err['type']}/{err['condition']}" + (f": {text}" if text else "")
        # Bounces come before the ack that covers them: decided here, the ack changes nothing.
        self._decide(msg["id"], why)

    def _on_acked(self, stanza: Any) -> None:
        i = stanza["id"]
        if i in self.keys:  # not the join presence or a ping
            self.acked.add(i)
            self._maybe_confirm(i)

    def _on_reflected(self, msg: Any) -> None:
        i = msg["id"]
        if i in self.keys:
            self.reflected.add(i)
            self._maybe_confirm(i)

    # -- decisions and their reports ----------------------------------------------
    def _maybe_confirm(self, i: str) -> None:
        if self.mtype == "groupchat":  # the reflection is the proof; with SM, the ack as well
            if i in self.reflected and (i in self.acked or not self.sm_used):
                self._decide(i, None)
        elif i in self.acked:
            self._decide(i, None)

    def _decide(self, i: str, why: str | None) -> None:
        """Record the final answer for message ``i`` (the first one counts)."""
        key = self.keys.get(i)
        if key is None or i in self.decided:
            return
        self.decided[i] = why
        if why is None:
            self._new_sent.append(key)
        else:
            self._new_rejected[key] = why
        self._changed.set()
        if self._on_progress is not None and self._flush_handle is None and self._reporting:
            # One report per burst of answers (one <a/> confirms a chunk), not per message.
            self._flush_handle = asyncio.get_running_loop().call_soon(self.flush)

    def flush(self) -> None:
        """Hand what was decided since the last report to ``on_progress``."""
        self._flush_handle = None
        if not (self._new_sent or self._new_rejected) or not self._reporting:
            return
        sent, rejected = self._new_sent, self._new_rejected
        self._new_sent, self._new_rejected = [], {}
        if self._on_progress is not None:
            try:
                self._on_progress(sent, rejected)
            except Exception as e:  # the caller's bug: stop sending; send_messages raises it
                self._reporting = False
                self.callback_error = e
                if not self.failure.done():
                    self.failure.set_exception(e)

    def stop_reporting(self) -> None:
        """Report what is left, then nothing more (send_messages is returning)."""
        if self._flush_handle is not None:
            self._flush_handle.cancel()
        self.flush()
        self._reporting = False

    @property
    def unanswered(self) -> int:
        """Messages queued for writing (so possibly written) without their final answer."""
        return len(self.ids) - len(self.decided)

    # -- steps ------------------------------------------------------------------
    async def step(self, aw: Awaitable[T], what: str) -> T:
        """Await ``aw`` unless a failure or the timeout comes first."""
        t = asyncio.ensure_future(aw)
        done, _ = await asyncio.wait(
            {t, self.failure}, timeout=self.conn.timeout, return_when=asyncio.FIRST_COMPLETED
        )
        if t in done:
            return t.result()
        t.cancel()
        await asyncio.gather(t, return_exceptions=True)
        if self.failure in done:
            self.failure.result()  # raises the translated error
        raise XMPPUnavailable(
            f"XMPP server {self.conn.address}: no answer within {self.conn.timeout:g} s ({what})"
        )

    async def connect(self) -> None:
        # No address given: slixmpp looks up the domain's SRV records (falling back to
        # domain:5222); passing the domain explicitly would skip that lookup.
        self.x.connect(*connect_args(self.conn, self.x))
        await self.step(self.x.wait_until("session_start", self.conn.timeout), "logging in")
        # session_start fires before slixmpp sends <enable/>: messages sent now would not be
        # counted by the server, their acks would never come. Wait for the SM answer when
        # the server offered SM (the post-login features are kept by the bind plugin).
        features = getattr(self.x.plugin["feature_bind"], "features", None)
        if features is not None and "sm" in features["features"]:
            await self.step(self.sm_settled, "enabling stream management")

    async def join(self, room: str, nick: str) -> None:
        import slixmpp
        from slixmpp.exceptions import PresenceError

        room_jid = slixmpp.JID(room)
        self.x.register_plugin("xep_0045")
        refused: asyncio.Future[Any] = asyncio.get_running_loop().create_future()

        def on_presence_error(p: Any) -> None:
            if p["from"].bare == room_jid.bare and not refused.done():
                refused.set_result(p)

        self.x.add_event_handler("presence_error", on_presence_error)
        join = asyncio.ensure_future(
            self.x.plugin["xep_0045"].join_muc_wait(
                room_jid, nick, maxstanzas=0, timeout=self.conn.timeout
            )
        )
        try:
            # The failure future too: a connection lost mid-join must not wait the timeout.
            done, _ = await asyncio.wait(
                {join, refused, self.failure},
                timeout=self.conn.timeout,
                return_when=asyncio.FIRST_COMPLETED,
            )
            if refused in done or (join in done and isinstance(join.exception(), PresenceError)):
                # A server that marks its join error as MUC makes slixmpp raise instead.
                err = join.exception() if join in done else PresenceError(refused.result())
                assert isinstance(err, PresenceError)
                text = f" ({err.text})" if err.text else ""
                raise XMPPRejected(f"cannot join room {room}: {err.condition}{text}")
            if self.failure in done:
                self.failure.result()
            if join not in done or isinstance(join.exception(), TimeoutError):
                raise XMPPUnavailable(
                    f"XMPP room {room}: no answer to the join within {self.conn.timeout:g} s"
                )
            join.result()
        finally:
            if not join.done():
                join.cancel()
            await asyncio.gather(join, return_exceptions=True)
            self.x.del_event_handler("presence_error", on_presence_error)

    async def send(self, to: str, messages: Sequence[tuple[str, str]], mtype: str) -> None:
        """Send in chunks, each closed by an ack request (or a ping), the window bounded."""
        self.mtype = mtype
        self.sm_used = bool(self.x.plugin["xep_0198"].enabled_out)
        # No SM: the server answers a ping after it handled everything sent before it
        # (bounces included), so a pong confirms the chunks before it. In a room without
        # SM the reflection alone confirms (as before).
        barrier = not self.sm_used and mtype != "groupchat"
        loop = asyncio.get_running_loop()
        todo = iter(messages)
        left = len(messages)
        while left:
            if self.failure.done():  # lost connection, or on_progress raised: no more chunks
                self.failure.result()
            size = max(1, min(ACK_EVERY, MAX_UNACKED, left))
            await self._wait_unanswered(MAX_UNACKED - size, "waiting for the server to confirm")
            chunk: list[str] = []
            started = loop.time()
            # slixmpp writes nothing until we yield: the chunk is what goes out next, and
            # the interval counts the time spent building it (a starved machine).
            while len(chunk) < size and (not chunk or loop.time() - started < ACK_INTERVAL):
                key, body = next(todo)
                m = self.x.make_message(mto=to, mbody=body, mtype=mtype)
                i = m["id"]
                self.keys[i] = key
                self.ids.append(i)
                chunk.append(i)
                m.send()
            left -= len(chunk)
            if self.sm_used:
                # Through the send queue, behind the chunk: covers every message of it.
                self.x.send(_REQUEST_ACK)
            elif barrier:
                t = asyncio.ensure_future(self._ping_barrier(chunk))
                self._barriers.add(t)
                t.add_done_callback(self._barrier_done)
            await asyncio.sleep(0)  # let slixmpp write the chunk before building the next
        await self._wait_unanswered(0, "waiting for the server to confirm")

    async def _wait_unanswered(self, at_most: int, what: str) -> None:
        """Wait until at most ``at_most`` messages lack an answer; each answer restarts
        the timeout (a server that keeps answering is not a server that is gone)."""
        while self.unanswered > at_most:
            self._changed.clear()
            await self.step(self._changed.wait(), what)

    async def _ping_barrier(self, chunk: list[str]) -> None:
        from slixmpp.exceptions import IqError

        try:
            await self.x.plugin["xep_0199"].ping(
                jid=self.x.boundjid.host, timeout=self.conn.timeout
            )
        except IqError:
            pass  # an error reply (no ping support) is just as much "in order" as a pong
        for i in chunk:  # bounced ones are decided already
            self._decide(i, None)

    def _barrier_done(self, t: asyncio.Task[None]) -> None:
        self._barriers.discard(t)
        if not t.cancelled() and t.exception() is not None:
            self.fail(
                XMPPUnavailable(
                    f"XMPP server {self.conn.address}: no answer within "
                    f"{self.conn.timeout:g} s (waiting for the server to confirm)"
                )
            )

    async def close(self) -> None:
        x = self.x
        x.cancel_connection_attempt()
        if x.is_connected():
            try:
                await asyncio.wait_for(x.disconnect(wait=1.0), timeout=3)
            except (TimeoutError, asyncio.CancelledError):  # pragma: no cover - best effort
                x.abort()
        t = getattr(x, "_run_out_filters", None)  # its send-queue task, see notes §2
        if t is not None:
            t.cancel()
            await asyncio.gather(t, return_exceptions=True)
        if not self.failure.done():
            self.failure.cancel()
        elif not self.failure.cancelled():
            self.failure.exception()  # retrieved: no "exception never retrieved"
        if not self.sm_settled.done():
            self.sm_settled.cancel()
        for t in list(self._barriers):
            t.cancel()
        await asyncio.gather(*self._barriers, return_exceptions=True)


def _reason(err: Any) -> str:
    if isinstance(err, BaseException):
        text = str(err) or type(err).__name__
        if isinstance(err, ConnectionRefusedError):
            return "connection refused (is the server running?)"
        return text
    return str(err) or "no reason given"


async def send_messages(
    conn: XMPPConnection,
    to: str,
    messages: Sequence[tuple[str, str]],
    *,
    room_nick: str | None = None,
    on_progress: Progress | None = None,
) -> SendResult:
    """Send ``(key, body)`` messages to ``to`` over one connection.

    With ``room_nick``, ``to`` is a chat room: it is joined under that nick and a
    message counts as sent when the room reflects it (with stream management: and
    the server acknowledged it). Never raises for the server's behaviour: failures
    are in :attr:`SendResult.error` (what was confirmed before the failure stays in
    ``sent``).

    ``on_progress(confirmed, rejected)`` is called each time messages got their
    final answer, before this returns: ``confirmed`` lists the keys newly sent
    (acknowledged and not bounced; in a room also reflected), ``rejected`` maps the
    keys newly bounced to the reason. Each key is reported once, in one of the two,
    and the reports together are exactly ``result.sent`` and ``result.rejected``.
    It runs on the event loop's thread between network reads, so it must be quick
    (hand the work to another thread); an exception in it stops the sending and is
    raised from here.
    """
    result = SendResult()
    if not messages:
        return result
    from slixmpp.jid import JID, InvalidJID

    for what, jid in (("recipient", to), ("account", conn.jid)):
        try:
            JID(jid)
        except InvalidJID as e:  # a typo in a trigger or an account: permanent
            result.error = XMPPRejected(f"XMPP {what} {jid!r} is not a valid address: {e}")
            return result
    session = _Session(conn, on_progress)
    try:
        await session.connect()
        mtype = "chat"
        if room_nick:
            await session.join(to, room_nick)
            mtype = "groupchat"
        await session.send(to, messages, mtype)
    except XMPPError as e:
        if session.callback_error is None:
            result.error = e
    finally:
        await session.close()
    # What was confirmed before a failure counts (and was reported); the rest stays owed.
    session.stop_reporting()
    if session.callback_error is not None:
        raise session.callback_error
    for i, why in session.decided.items():
        key = session.keys[i]
        if why is None:
            result.sent.append(key)
        else:
            result.rejected[key] = why
    return result


def send_messages_sync(
    conn: XMPPConnection,
    to: str,
    messages: Sequence[tuple[str, str]],
    *,
    room_nick: str | None = None,
    on_progress: Progress | None = None,
) -> SendResult:
    """:func:`send_messages` from synchronous code (also inside Jupyter)."""
    return run_sync(send_messages(conn, to, messages, room_nick=room_nick, on_progress=on_progress))
