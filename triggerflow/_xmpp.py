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
- the ack request is written after the send queue drained, or it overtakes the
  last stanzas (a slixmpp quirk);
- Prosody's MUC join errors lack the MUC payload, so ``join_muc_wait`` would wait
  for its timeout: the generic ``presence_error`` event is watched as well.

The password is never part of a message, a repr or a log line.
"""

from __future__ import annotations

import asyncio
import logging
import ssl
from collections.abc import Awaitable, Sequence
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

__all__ = ["SendResult", "XMPPConnection", "send_messages", "send_messages_sync"]

T = TypeVar("T")
DEFAULT_PORT = 5222

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

    def __init__(self, conn: XMPPConnection) -> None:
        self.conn = conn
        x = new_client(conn)
        x.whitespace_keepalive = False
        # slixmpp asks for an ack every 5 stanzas by default; the batch needs one request
        # after its last message (sent in send()). Fewer requests: ~2,300 -> ~3,000
        # acknowledged messages per second (bench/xmpp.py).
        x.register_plugin("xep_0198", {"window": 1000})
        x.register_plugin("xep_0045")
        x.register_plugin("xep_0199")  # ping: the barrier when the server has no SM
        self.x = x
        loop = asyncio.get_running_loop()
        self.failure: asyncio.Future[None] = loop.create_future()
        # True once the server enabled stream management, False if it refused.
        self.sm_settled: asyncio.Future[bool] = loop.create_future()
        self.barrier_passed = False  # without SM: the ping after the messages came back
        # Whether the batch went out under SM; kept because slixmpp resets its flag on
        # disconnect, and the result is read after close().
        self.sm_used = False
        self.acked: set[str] = set()
        self.bounced: dict[str, str] = {}
        self.reflected: set[str] = set()
        self.ids: list[str] = []  # of the messages written, in order
        x.add_event_handler("connection_failed", self._on_connection_failed)
        x.add_event_handler("failed_all_auth", self._on_auth_failed)
        x.add_event_handler("ssl_invalid_chain", self._on_tls_failed)
        x.add_event_handler("disconnected", self._on_disconnected)
        x.add_event_handler("stanza_acked", lambda st: self.acked.add(st["id"]))
        x.add_event_handler("message_error", self._on_bounce)
        x.add_event_handler("groupchat_message", lambda m: self.reflected.add(m["id"]))
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
        self.bounced.setdefault(msg["id"], why)

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

    async def send(self, to: str, bodies: Sequence[str], mtype: str) -> None:
        ids = self.ids
        for body in bodies:
            m = self.x.make_message(mto=to, mbody=body, mtype=mtype)
            ids.append(m["id"])
            m.send()
        await self.step(self.x.waiting_queue.join(), "sending")
        self.sm_used = bool(self.x.plugin["xep_0198"].enabled_out)
        if self.sm_used:
            self.x.plugin["xep_0198"].request_ack()  # after the queue drained, see module doc
        elif mtype != "groupchat":
            # No SM: the server answers a ping after it handled everything sent before it
            # (bounces included), so the pong confirms the batch.
            await self.step(self._ping_barrier(), "waiting for the server to confirm")
            self.barrier_passed = True

        async def all_confirmed() -> None:
            while not all(self.confirmed(i, mtype) for i in ids):
                await asyncio.sleep(0.005)

        await self.step(all_confirmed(), "waiting for the server to confirm")

    async def _ping_barrier(self) -> None:
        from slixmpp.exceptions import IqError

        try:
            await self.x.plugin["xep_0199"].ping(
                jid=self.x.boundjid.host, timeout=self.conn.timeout
            )
        except IqError:
            pass  # an error reply (no ping support) is just as much "in order" as a pong

    def confirmed(self, i: str, mtype: str) -> bool:
        """Whether message ``i`` got its final answer (sent or bounced)."""
        if i in self.bounced:
            return True
        if mtype == "groupchat":  # the reflection is the proof; with SM, the ack as well
            return i in self.reflected and (i in self.acked or not self.sm_used)
        return i in self.acked or self.barrier_passed

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
) -> SendResult:
    """Send ``(key, body)`` messages to ``to`` over one connection.

    With ``room_nick``, ``to`` is a chat room: it is joined under that nick and a
    message counts as sent when the room reflects it. Never raises for the
    server's behaviour: failures are in :attr:`SendResult.error` (what was
    confirmed before the failure stays in ``sent``).
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
    session = _Session(conn)
    try:
        await session.connect()
        mtype = "chat"
        if room_nick:
            await session.join(to, room_nick)
            mtype = "groupchat"
        await session.send(to, [body for _, body in messages], mtype)
    except XMPPError as e:
        result.error = e
    finally:
        await session.close()
    # What was confirmed before a failure counts; the rest stays owed.
    mtype = "groupchat" if room_nick else "chat"
    for (key, _), i in zip(messages, session.ids, strict=False):
        if i in session.bounced:
            result.rejected[key] = session.bounced[i]
        elif session.confirmed(i, mtype):
            result.sent.append(key)
    return result


def send_messages_sync(
    conn: XMPPConnection,
    to: str,
    messages: Sequence[tuple[str, str]],
    *,
    room_nick: str | None = None,
) -> SendResult:
    """:func:`send_messages` from synchronous code (also inside Jupyter)."""
    return run_sync(send_messages(conn, to, messages, room_nick=room_nick))
