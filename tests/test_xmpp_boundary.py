"""The XMPP boundary (triggerflow._xmpp) against a real Prosody on 127.0.0.1.

Each behaviour is checked from both ends where there is one: what ``send_messages_sync``
reports, and what a second real client (``receiver``) actually got.
"""

from __future__ import annotations

import time
from collections.abc import Callable

import pytest
from xmpp_support import Prosody, Receiver

import triggerflow._xmpp as tx
from triggerflow._xmpp import SendResult, XMPPConnection, send_messages_sync
from triggerflow.exceptions import (
    XMPPAuthError,
    XMPPRejected,
    XMPPTLSError,
    XMPPUnavailable,
)

ReceiverFactory = Callable[..., Receiver]


def batch(n: int, text: str = "msg") -> list[tuple[str, str]]:
    return [(f"k{i}", f"{text} {i}") for i in range(n)]


class Wire:
    """What went on the wire vs what ``on_progress`` reported, both on the sender's thread.

    ``written`` counts the message stanzas (bodies starting with ``marker``) slixmpp
    handed to the transport; at each one, ``written - reported`` is a message written
    without its final answer yet, and the largest such count is kept.
    """

    def __init__(self, marker: str) -> None:
        self.tag = f"<body>{marker} "
        self.written = 0
        self.reported = 0
        self.max_unanswered = 0
        # (messages written when reported, confirmed keys, rejected keys -> reason)
        self.reports: list[tuple[int, list[str], dict[str, str]]] = []

    def wrote(self, data: object) -> None:
        if isinstance(data, str | bytes):
            text = data.decode() if isinstance(data, bytes) else data
            if text.startswith("<message") and self.tag in text:
                self.written += 1
                self.max_unanswered = max(self.max_unanswered, self.written - self.reported)

    def on_progress(self, confirmed: list[str], rejected: dict[str, str]) -> None:
        self.reported += len(confirmed) + len(rejected)
        self.reports.append((self.written, list(confirmed), dict(rejected)))

    @property
    def confirmed(self) -> list[str]:
        return [k for _, ok, _ in self.reports for k in ok]

    @property
    def rejected(self) -> dict[str, str]:
        return {k: why for _, _, bad in self.reports for k, why in bad.items()}

    def assert_matches(self, result: SendResult) -> None:
        """Every key reported once, and the reports are exactly the result."""
        keys = self.confirmed + [k for _, _, bad in self.reports for k in bad]
        assert len(keys) == len(set(keys)), "a key was reported twice"
        assert sorted(self.confirmed) == sorted(result.sent)
        assert self.rejected == result.rejected


@pytest.fixture
def wire(monkeypatch: pytest.MonkeyPatch) -> Callable[[str], Wire]:
    import slixmpp.xmlstream.xmlstream as xmlstream

    made: list[Wire] = []
    send_raw = xmlstream.XMLStream.send_raw

    def counting_send_raw(self: object, data: str | bytes) -> None:
        send_raw(self, data)  # type: ignore[arg-type]
        for w in made:
            w.wrote(data)

    monkeypatch.setattr(xmlstream.XMLStream, "send_raw", counting_send_raw)

    def make(marker: str) -> Wire:
        made.append(Wire(marker))
        return made[-1]

    return make


def test_chat_over_starttls_is_delivered_and_confirmed(
    prosody: Prosody, receiver: ReceiverFactory
) -> None:
    jid, password = prosody.new_user("rcpt")
    r = receiver(jid, password)
    # Markup-like and non-ASCII text must arrive unchanged (slixmpp escapes it).
    messages = [("a", "hello 1"), ("b", "line two: üñíçødé <&> \"'"), ("c", "three\nlines\n!")]

    result = send_messages_sync(prosody.connection("sink"), jid, messages)

    assert result.error is None
    assert result.sent == ["a", "b", "c"]
    assert result.rejected == {}
    assert r.wait_for(3) == [body for _, body in messages]
    assert {frm.partition("/")[0] for frm, _, _ in r.received} == {"sink@localhost"}
    assert {mtype for _, mtype, _ in r.received} == {"chat"}


def test_offline_recipient_counts_as_sent_and_gets_it_later(
    prosody: Prosody, receiver: ReceiverFactory
) -> None:
    jid, password = prosody.new_user("rcpt")

    # Nobody logged in: the server stores the message; its ack still means "accepted".
    result = send_messages_sync(prosody.connection("sink"), jid, [("o1", "while away")])
    assert result.error is None and result.sent == ["o1"]

    later = receiver(jid, password, include_delayed=True)
    assert later.messages == ["while away"]  # delivered at login (before "ready")
    later.close()

    # By default a receiver ignores such leftovers, so earlier tests cannot leak in.
    send_messages_sync(prosody.connection("sink"), jid, [("o2", "leftover")])
    fresh = receiver(jid, password)
    assert fresh.messages == []


def test_untrusted_certificate_is_a_tls_error(prosody: Prosody, receiver: ReceiverFactory) -> None:
    jid, password = prosody.new_user("rcpt")
    r = receiver(jid, password)

    result = send_messages_sync(prosody.connection("sink", ca_file=None), jid, batch(2))

    assert isinstance(result.error, XMPPTLSError)
    assert "certificate" in str(result.error)
    assert result.sent == [] and result.rejected == {}
    # Nothing may have gone out over an unverified connection.
    time.sleep(0.3)
    assert r.messages == []


def test_plaintext_when_allowed(prosody: Prosody, receiver: ReceiverFactory) -> None:
    jid, password = prosody.new_user("rcpt")
    r = receiver(jid, password)
    # No CA file: had it tried STARTTLS, the self-signed certificate would have failed it.
    conn = prosody.connection("sink", ca_file=None, allow_plaintext=True)

    result = send_messages_sync(conn, jid, batch(2, "plain"))

    assert result.error is None
    assert result.sent == ["k0", "k1"]
    assert r.wait_for(2) == ["plain 0", "plain 1"]


def test_no_plaintext_unless_allowed(prosody_variant: Callable[..., Prosody]) -> None:
    server = prosody_variant(tls=False)
    jid, password = server.new_user("rcpt")
    r = Receiver(server, jid, password)
    try:
        conn = server.connection("sink", allow_plaintext=False)

        result = send_messages_sync(conn, jid, batch(1))

        # A server without TLS is a TLS problem, not a wrong password.
        assert isinstance(result.error, XMPPTLSError), repr(result.error)
        assert "plaintext" in str(result.error)
        assert result.sent == []
        time.sleep(0.3)
        assert r.messages == []
        # The same account works once plaintext is allowed: the refusal was the client's.
        ok = send_messages_sync(server.connection("sink"), jid, batch(1, "now"))
        assert ok.error is None and ok.sent == ["k0"]
        assert r.wait_for(1) == ["now 0"]
    finally:
        r.close()


def test_many_messages_over_one_connection_all_confirmed(
    prosody: Prosody, receiver: ReceiverFactory
) -> None:
    jid, password = prosody.new_user("rcpt")
    r = receiver(jid, password)
    messages = batch(200, "bulk")

    result = send_messages_sync(prosody.connection("sink"), jid, messages)

    assert result.error is None
    assert result.sent == [k for k, _ in messages]
    assert r.wait_for(200) == [body for _, body in messages]  # all, once, in order


def test_written_but_unanswered_messages_stay_within_the_window(
    prosody: Prosody, receiver: ReceiverFactory, wire: Callable[[str], Wire]
) -> None:
    jid, password = prosody.new_user("rcpt")
    r = receiver(jid, password)
    w = wire("win")
    messages = batch(2000, "win")

    result = send_messages_sync(
        prosody.connection("sink"), jid, messages, on_progress=w.on_progress
    )

    assert result.error is None
    assert result.sent == [k for k, _ in messages]
    assert w.written == 2000
    # A sender killed at any moment leaves at most this many taken but unreported.
    assert 0 < w.max_unanswered <= tx.MAX_UNACKED < 2000 // 4
    # Each chunk is answered as a whole: far fewer reports than messages.
    assert len(w.reports) <= 2 * (2000 // tx.ACK_EVERY)
    assert len(r.wait_for(2000, timeout=30)) == 2000


def test_progress_is_reported_while_sending_and_adds_up_to_the_result(
    prosody: Prosody, receiver: ReceiverFactory, wire: Callable[[str], Wire]
) -> None:
    jid, password = prosody.new_user("rcpt")
    r = receiver(jid, password)
    w = wire("prog")
    messages = batch(2000, "prog")

    result = send_messages_sync(
        prosody.connection("sink"), jid, messages, on_progress=w.on_progress
    )

    assert result.error is None and len(result.sent) == 2000
    first_written, first_confirmed, _ = w.reports[0]
    assert first_confirmed  # a confirmation came ...
    assert first_written < 2000  # ... before the last message went out
    # Reports come in order of sending, every key once, and add up to the result.
    assert w.confirmed == [k for k, _ in messages]
    w.assert_matches(result)
    r.wait_for(2000, timeout=30)


def test_a_bounce_mid_batch_is_reported_rejected_not_sent(
    prosody: Prosody,
    receiver: ReceiverFactory,
    wire: Callable[[str], Wire],
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    import slixmpp

    jid, password = prosody.new_user("rcpt")
    r = receiver(jid, password)
    w = wire("mid")
    messages = batch(2000, "mid")
    # One message of the batch goes to a user that does not exist: the server bounces it
    # (before the ack that covers it, which still counts it).
    make_message = slixmpp.BaseXMPP.make_message

    def misaddress_one(self: slixmpp.BaseXMPP, mto: str, mbody: str | None = None, **kw: object):
        if mbody == "mid 1000":
            mto = "nosuchuser@localhost"
        return make_message(self, mto, mbody, **kw)  # type: ignore[arg-type]

    monkeypatch.setattr(slixmpp.BaseXMPP, "make_message", misaddress_one)

    result = send_messages_sync(
        prosody.connection("sink"), jid, messages, on_progress=w.on_progress
    )

    assert result.error is None
    assert set(result.rejected) == {"k1000"}
    assert "service-unavailable" in result.rejected["k1000"]
    assert "k1000" not in result.sent and len(result.sent) == 1999
    assert "k1000" not in w.confirmed
    assert w.rejected == result.rejected
    # Reported while sending, not only at the end.
    [written_then] = [n for n, _, bad in w.reports if "k1000" in bad]
    assert written_then < 2000
    w.assert_matches(result)
    got = r.wait_for(1999, timeout=30)
    assert "mid 1000" not in got and len(got) == 1999


def test_an_exception_in_on_progress_stops_the_batch(
    prosody: Prosody, receiver: ReceiverFactory, wire: Callable[[str], Wire]
) -> None:
    jid, password = prosody.new_user("rcpt")
    receiver(jid, password)
    w = wire("boom")

    def boom(confirmed: list[str], rejected: dict[str, str]) -> None:
        w.on_progress(confirmed, rejected)
        raise RuntimeError("the caller's bug")

    with pytest.raises(RuntimeError, match="the caller's bug"):
        send_messages_sync(prosody.connection("sink"), jid, batch(2000, "boom"), on_progress=boom)
    assert len(w.reports) == 1  # not called again
    assert w.written <= tx.MAX_UNACKED + tx.ACK_EVERY  # and not much written after it


def test_without_stream_management_progress_comes_per_ping(
    prosody_variant: Callable[..., Prosody], wire: Callable[[str], Wire]
) -> None:
    server = prosody_variant(smacks=False)
    jid, password = server.new_user("rcpt")
    r = Receiver(server, jid, password)
    try:
        w = wire("nosmprog")
        messages = batch(1000, "nosmprog")

        result = send_messages_sync(
            server.connection("sink"), jid, messages, on_progress=w.on_progress
        )

        assert result.error is None, repr(result.error)
        assert result.sent == [k for k, _ in messages]
        assert w.reports[0][0] < 1000  # the first pong came before the last message went out
        assert w.max_unanswered <= tx.MAX_UNACKED
        w.assert_matches(result)
        r.wait_for(1000, timeout=30)
    finally:
        r.close()


def test_in_a_room_progress_is_reported_on_reflection(
    prosody: Prosody, receiver: ReceiverFactory, wire: Callable[[str], Wire]
) -> None:
    room = f"progress-{time.monotonic_ns()}@{prosody.muc}"
    r = receiver("alice", room=room, nick="watcher")
    w = wire("roomprog")
    messages = batch(500, "roomprog")

    result = send_messages_sync(
        prosody.connection("sink"),
        room,
        messages,
        room_nick="triggerflow",
        on_progress=w.on_progress,
    )

    assert result.error is None
    assert result.sent == [k for k, _ in messages]
    assert w.reports[0][0] < 500
    assert w.max_unanswered <= tx.MAX_UNACKED
    w.assert_matches(result)
    r.wait_for(500, timeout=30)


def test_without_stream_management_a_ping_confirms(
    prosody_variant: Callable[..., Prosody],
) -> None:
    server = prosody_variant(smacks=False)
    jid, password = server.new_user("rcpt")
    r = Receiver(server, jid, password)
    try:
        result = send_messages_sync(server.connection("sink"), jid, batch(50, "nosm"))
        assert result.error is None, repr(result.error)
        assert result.sent == [f"k{i}" for i in range(50)]
        assert r.wait_for(50) == [f"nosm {i}" for i in range(50)]
        # Bounces still count: they arrive before the pong.
        bounced = send_messages_sync(server.connection("sink"), "nosuchuser@localhost", batch(2))
        assert bounced.sent == [] and set(bounced.rejected) == {"k0", "k1"}
        # A room confirms by reflection alone.
        room = f"nosm-{time.monotonic_ns()}@{server.muc}"
        in_room = send_messages_sync(
            server.connection("sink"), room, batch(3), room_nick="triggerflow"
        )
        assert in_room.error is None and in_room.sent == ["k0", "k1", "k2"]
    finally:
        r.close()


def test_room_messages_are_sent_after_reflection(
    prosody: Prosody, receiver: ReceiverFactory
) -> None:
    room = f"alerts-{time.monotonic_ns()}@{prosody.muc}"
    r = receiver("alice", room=room, nick="watcher")

    result = send_messages_sync(
        prosody.connection("sink"), room, batch(5, "to room"), room_nick="triggerflow"
    )

    assert result.error is None
    assert result.sent == ["k0", "k1", "k2", "k3", "k4"]
    assert r.wait_for(5) == [f"to room {i}" for i in range(5)]
    assert {frm for frm, _, _ in r.received} == {f"{room}/triggerflow"}
    assert {mtype for _, mtype, _ in r.received} == {"groupchat"}


def test_unknown_recipient_is_rejected_with_a_reason(prosody: Prosody) -> None:
    result = send_messages_sync(
        prosody.connection("sink"), "nosuchuser@localhost", [("x", "a"), ("y", "b")]
    )

    assert result.sent == []
    assert set(result.rejected) == {"x", "y"}
    assert "service-unavailable" in result.rejected["x"]
    assert result.error is None or isinstance(result.error, XMPPRejected)


def test_wrong_password_is_an_auth_error_without_the_password(prosody: Prosody) -> None:
    secret = "Wr0ng-Secret-Value"
    conn = prosody.connection("sink", password=secret)

    result = send_messages_sync(conn, "alice@localhost", batch(1))

    assert isinstance(result.error, XMPPAuthError), repr(result.error)
    assert "sink@localhost" in str(result.error)
    assert "password" in str(result.error)
    for text in (str(result.error), repr(result.error), repr(result), repr(conn), str(conn)):
        assert secret not in text
    assert result.sent == []


def test_server_down_is_unavailable_quickly(prosody: Prosody) -> None:
    conn = prosody.connection("sink", timeout=5.0)
    with prosody.down():
        start = time.monotonic()
        result = send_messages_sync(conn, "alice@localhost", batch(3))
        elapsed = time.monotonic() - start

    assert isinstance(result.error, XMPPUnavailable), repr(result.error)
    assert f"{prosody.host}:{prosody.port}" in str(result.error)
    assert "connection refused" in str(result.error)
    chain, e = [], result.error  # nothing of run_sync's loop lookup in what the alert shows
    while e is not None and e not in chain:
        chain.append(e)
        e = e.__cause__ or e.__context__
    assert not any("event loop" in str(x) for x in chain), chain
    assert result.sent == [] and result.rejected == {}
    assert elapsed < conn.timeout + 5  # bounded: slixmpp alone would retry forever
    # down() brought it back on the same port: the same connection works again.
    assert send_messages_sync(conn, "alice@localhost", batch(1)).error is None


def test_refused_room_is_rejected_before_the_timeout(prosody: Prosody) -> None:
    conn = prosody.connection("sink", timeout=20.0)
    start = time.monotonic()

    result = send_messages_sync(
        conn, f"nope@{prosody.locked_muc}", batch(2), room_nick="triggerflow"
    )

    elapsed = time.monotonic() - start
    assert isinstance(result.error, XMPPRejected), repr(result.error)
    assert "not-allowed" in str(result.error)
    assert f"nope@{prosody.locked_muc}" in str(result.error)
    assert result.sent == []
    # Joining failed on the server's answer, not on our timeout (slixmpp alone waits 300 s).
    assert elapsed < conn.timeout / 2


def test_empty_batch_does_not_connect(prosody: Prosody) -> None:
    # Port 1 on loopback: nothing listens; a connection attempt would be an error.
    conn = XMPPConnection("sink@localhost", "pw", host="127.0.0.1", port=1)

    assert send_messages_sync(conn, "alice@localhost", []) == SendResult()


def test_connection_repr_hides_password() -> None:
    conn = XMPPConnection("sink@localhost", "s3cr3t-pw", host="127.0.0.1", port=5222)

    assert "s3cr3t-pw" not in repr(conn)
    assert "sink@localhost" in repr(conn)
    assert conn.address == "127.0.0.1:5222"
    assert XMPPConnection("bot@example.org", "x").address == "example.org:5222"


def test_env_configures_an_account_that_sends(
    prosody: Prosody, receiver: ReceiverFactory, monkeypatch: pytest.MonkeyPatch
) -> None:
    from triggerflow.blocks import load_xmpp_account

    jid, password = prosody.new_user("owner")
    r = receiver(jid, password)
    for name, value in prosody.env(account="alerts-2", owner=jid).items():
        monkeypatch.setenv(name, value)

    account = load_xmpp_account("alerts-2")
    assert account.owner == jid
    conn = XMPPConnection(
        account.jid,
        account.password.get_secret_value(),
        host=account.host,
        port=account.port,
        ca_file=account.ca_file,
        allow_plaintext=account.allow_plaintext,
        timeout=10.0,
    )
    result = send_messages_sync(conn, account.owner, [("only", "via env")])

    assert result.error is None and result.sent == ["only"]
    assert r.wait_for(1) == ["via env"]
