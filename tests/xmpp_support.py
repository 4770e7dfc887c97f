"""A real Prosody for tests, and a real XMPP client that receives (shared notes/xmpp.md).

Loaded as a pytest plugin (``pytest_plugins = ["xmpp_support"]``). Provides:

- ``prosody`` (session): a running :class:`Prosody` on 127.0.0.1 with users ``sink``,
  ``alice`` and ``bob``; tests that stop it use ``with prosody.down():``, which starts it
  again on exit;
- ``prosody_variant`` (session): ``prosody_variant(tls=False)`` / ``(smacks=False)`` starts
  (once per session) a Prosody without STARTTLS / without stream management;
  ``kill()`` SIGKILLs a server (``start()`` brings it back);
- ``receiver`` (function): a factory of :class:`Receiver` clients, closed at teardown.

A missing ``prosody`` binary FAILS the tests that need it (CI installs it; a skip would
hide that the XMPP path went untested).
"""

from __future__ import annotations

import asyncio
import contextlib
import itertools
import os
import shutil
import signal
import socket
import subprocess
import threading
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest

CONFIG = Path(__file__).with_name("prosody.cfg.lua")
DOMAIN = "localhost"
MUC = "conference.localhost"  # anyone may create rooms
LOCKED_MUC = "locked.localhost"  # room creation refused: not-allowed
HOST = "127.0.0.1"
USERS = {"sink": "sinkpw", "alice": "alicepw", "bob": "bobpw"}
INSTALL_HINT = "prosody is not installed: run `apt-get install -y prosody` (the XMPP tests need it)"


def _free_port() -> int:
    with socket.socket() as s:
        s.bind((HOST, 0))
        return int(s.getsockname()[1])


def _tail(path: Path, lines: int = 30) -> str:
    try:
        return "\n".join(path.read_text(errors="replace").splitlines()[-lines:])
    except OSError:
        return "(none)"


class Prosody:
    """One Prosody process with its own directory, port, users and certificate.

    The port is chosen once, so a stop/start keeps the address every client was given.
    """

    def __init__(self, directory: Path, *, tls: bool = True, smacks: bool = True) -> None:
        binary = shutil.which("prosody")
        if binary is None or shutil.which("prosodyctl") is None:
            pytest.fail(INSTALL_HINT, pytrace=False)
        self._binary = binary
        self.dir = directory
        self.tls = tls
        self.smacks = smacks
        self.users: dict[str, str] = {}
        self._port = _free_port()
        self._proc: subprocess.Popen[bytes] | None = None
        self._counter = itertools.count(1)
        (directory / "data").mkdir(mode=0o700, exist_ok=True)
        (directory / "certs").mkdir(exist_ok=True)  # empty without TLS: no "missing dir" error
        if tls:
            self._make_cert()
        for user, password in USERS.items():
            self.register(user, password)

    # -- properties -----------------------------------------------------------------
    @property
    def host(self) -> str:
        return HOST

    @property
    def port(self) -> int:
        return self._port

    @property
    def domain(self) -> str:
        return DOMAIN

    @property
    def muc(self) -> str:
        return MUC

    @property
    def locked_muc(self) -> str:
        return LOCKED_MUC

    @property
    def cafile(self) -> str:
        return str(self.dir / "certs" / "localhost.crt")

    @property
    def log(self) -> Path:
        return self.dir / "prosody.log"

    @property
    def running(self) -> bool:
        return self._proc is not None and self._proc.poll() is None

    def _env(self) -> dict[str, str]:
        # The config file reads these through ENV_<NAME>.
        return dict(
            os.environ,
            XMPP_TEST_DIR=str(self.dir),
            XMPP_TEST_PORT=str(self._port),
            XMPP_TEST_NO_TLS="0" if self.tls else "1",
            XMPP_TEST_NO_SMACKS="0" if self.smacks else "1",
        )

    def _make_cert(self) -> None:
        certs = self.dir / "certs"
        # slixmpp checks the name against the JID domain; the MUC names are there for clients
        # that connect to components by name.
        san = f"subjectAltName=DNS:{DOMAIN},DNS:{MUC},DNS:{LOCKED_MUC}"
        subprocess.run(
            ["openssl", "req", "-x509", "-newkey", "rsa:2048", "-nodes", "-days", "30",
             "-keyout", str(certs / "localhost.key"), "-out", str(certs / "localhost.crt"),
             "-subj", f"/CN={DOMAIN}", "-addext", san],
            check=True, capture_output=True,
        )  # fmt: skip

    # -- users ----------------------------------------------------------------------
    def register(self, user: str, password: str) -> str:
        """Create (or reset the password of) ``user``; works with the server up or down."""
        proc = subprocess.run(
            ["prosodyctl", "--config", str(CONFIG), "register", user, DOMAIN, password],
            env=self._env(),
            capture_output=True,
            text=True,
            timeout=30,
        )
        if proc.returncode != 0:
            raise RuntimeError(f"prosodyctl register {user} failed: {proc.stdout}{proc.stderr}")
        self.users[user] = password
        return f"{user}@{DOMAIN}"

    def new_user(self, prefix: str = "user") -> tuple[str, str]:
        """A user no earlier test has seen (so no offline messages): ``(jid, password)``."""
        # pid + counter: unique within the session and across reruns on the same dir.
        name = f"{prefix}{os.getpid()}x{next(self._counter)}"
        password = f"{name}-pw"
        return self.register(name, password), password

    def password(self, user: str) -> str:
        """The password of a user name or bare JID registered here."""
        return self.users[user.partition("@")[0]]

    # -- lifecycle ------------------------------------------------------------------
    def start(self, timeout: float = 15.0) -> None:
        if self.running:
            return
        out = (self.dir / "prosody.out").open("ab")
        try:
            self._proc = subprocess.Popen(
                [self._binary, "-F", "--config", str(CONFIG)],
                env=self._env(),
                stdout=out,
                stderr=subprocess.STDOUT,
            )
        finally:
            out.close()  # the child has its own copy
        deadline = time.monotonic() + timeout
        while True:
            if self._proc.poll() is not None:
                code = self._proc.returncode
                self._proc = None
                raise RuntimeError(f"prosody exited with {code} while starting\n{self._logs()}")
            try:
                socket.create_connection((HOST, self._port), timeout=0.2).close()
                return
            except OSError:
                pass
            if time.monotonic() > deadline:
                self.stop()
                raise TimeoutError(
                    f"prosody not listening on {HOST}:{self._port} after {timeout:g} s\n"
                    f"{self._logs()}"
                )
            time.sleep(0.02)

    def stop(self) -> None:
        proc, self._proc = self._proc, None
        if proc is None or proc.poll() is not None:
            return
        proc.send_signal(signal.SIGTERM)  # clean shutdown; measured at ~10 ms
        try:
            proc.wait(timeout=10)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()

    def kill(self) -> None:
        """SIGKILL: no clean shutdown, every session cut at once; ``start()`` brings it back."""
        proc, self._proc = self._proc, None
        if proc is not None and proc.poll() is None:
            proc.kill()
            proc.wait(timeout=10)

    def restart(self) -> None:
        self.stop()
        self.start()

    @contextlib.contextmanager
    def down(self) -> Iterator[None]:
        """Stopped inside the block, running again after it (also when the test fails)."""
        self.stop()
        try:
            yield
        finally:
            self.start()

    def _logs(self) -> str:
        return (
            f"--- prosody.log (tail) ---\n{_tail(self.log)}\n"
            f"--- prosody stdout/stderr (tail) ---\n{_tail(self.dir / 'prosody.out')}"
        )

    # -- for the code under test ----------------------------------------------------
    def env(
        self, account: str = "default", user: str = "sink", owner: str | None = "alice@localhost"
    ) -> dict[str, str]:
        """Environment variables for ``triggerflow.blocks.load_xmpp_account(account)``."""
        prefix = "TRIGGERFLOW_XMPP_" + "".join(c if c.isalnum() else "_" for c in account).upper()
        jid = user if "@" in user else f"{user}@{DOMAIN}"
        env = {
            f"{prefix}_JID": jid,
            f"{prefix}_PASSWORD": self.password(user),
            f"{prefix}_HOST": HOST,
            f"{prefix}_PORT": str(self._port),
        }
        if self.tls:
            env[f"{prefix}_CA_FILE"] = self.cafile
        else:
            env[f"{prefix}_ALLOW_PLAINTEXT"] = "true"
        if owner:
            env[f"{prefix}_OWNER"] = owner
        return env

    def connection(self, user: str = "sink", **overrides: Any) -> Any:
        """A ``triggerflow._xmpp.XMPPConnection`` for ``user`` on this server."""
        from triggerflow._xmpp import XMPPConnection

        jid = user if "@" in user else f"{user}@{DOMAIN}"
        kwargs: dict[str, Any] = {
            "password": self.password(user),
            "host": HOST,
            "port": self._port,
            "timeout": 10.0,
        }
        if self.tls:
            kwargs["ca_file"] = self.cafile
        else:
            kwargs["allow_plaintext"] = True
        kwargs.update(overrides)
        return XMPPConnection(jid, **kwargs)


class Receiver:
    """A slixmpp client that logs in, sends presence (optionally joins a room) and records.

    It runs in its own thread with its own event loop, so tests stay synchronous and the
    code under test can run its own loop meanwhile. The constructor returns once the
    server has delivered any stored (offline) messages. ``messages`` are the bodies of chat
    and groupchat messages in arrival order; delayed ones (offline storage, room history)
    and our own room messages are left out unless ``include_delayed``, so what earlier
    tests left behind does not show up.
    """

    def __init__(
        self,
        server: Prosody,
        user: str = "alice",
        password: str | None = None,
        *,
        room: str | None = None,
        nick: str = "watcher",
        include_delayed: bool = False,
        timeout: float = 10.0,
    ) -> None:
        self.jid = user if "@" in user else f"{user}@{DOMAIN}"
        self._password = password if password is not None else server.password(user)
        self._server = server
        self.room = room
        self.nick = nick
        self._include_delayed = include_delayed
        self._cond = threading.Condition()
        self._received: list[tuple[str, str, str]] = []  # (from, type, body)
        self._at_count: list[tuple[int, Callable[[], None]]] = []  # see at_count()
        self._ready = threading.Event()
        self._error: BaseException | None = None
        self._loop: asyncio.AbstractEventLoop | None = None
        self._stop: asyncio.Event | None = None
        self._thread = threading.Thread(target=self._run, name=f"receiver-{self.jid}", daemon=True)
        self._thread.start()
        if not self._ready.wait(timeout):
            self.close()
            raise TimeoutError(f"receiver {self.jid} not logged in after {timeout:g} s")
        if self._error is not None:
            self._thread.join(5)
            raise RuntimeError(f"receiver {self.jid} could not start: {self._error!r}")

    # -- the thread -----------------------------------------------------------------
    def _run(self) -> None:
        try:
            # asyncio.run also cancels what slixmpp leaves behind and closes the loop.
            asyncio.run(self._main())
        except BaseException as e:  # reported to the constructor or close()
            self._error = self._error or e
        finally:
            self._ready.set()

    async def _main(self) -> None:
        import slixmpp

        self._loop = asyncio.get_running_loop()
        self._stop = asyncio.Event()
        # Created inside the loop: a ClientXMPP binds to the loop current at construction.
        s = self._server
        plugin_config = None if s.tls else {"feature_mechanisms": {"unencrypted_scram": True}}
        x = slixmpp.ClientXMPP(self.jid + "/receiver", self._password, plugin_config=plugin_config)
        x.enable_direct_tls = False
        x.whitespace_keepalive = False
        if s.tls:
            x.ca_certs = Path(s.cafile)
        else:
            x.enable_starttls = False
            x.enable_plaintext = True
        x.register_plugin("xep_0203")  # delay stamps tell offline/history messages apart
        x.register_plugin("xep_0045")
        x.register_plugin("xep_0199")
        self._x = x
        failed: asyncio.Future[str] = self._loop.create_future()

        def fail(why: str) -> None:
            if not failed.done():
                failed.set_result(why)

        def on_connection_failed(err: Any) -> None:
            x.cancel_connection_attempt()  # slixmpp would retry forever
            fail(f"connection failed: {err!r}")

        x.add_event_handler("connection_failed", on_connection_failed)
        x.add_event_handler("failed_all_auth", lambda _: fail("authentication failed"))
        x.add_event_handler("ssl_invalid_chain", lambda e: fail(f"TLS: {e!r}"))
        x.add_event_handler("message", self._on_message)
        try:
            x.connect(s.host, s.port)
            login = asyncio.ensure_future(x.wait_until("session_start", 10))
            done, _ = await asyncio.wait({login, failed}, return_when=asyncio.FIRST_COMPLETED)
            if failed in done:
                login.cancel()
                await asyncio.gather(login, return_exceptions=True)
                raise RuntimeError(failed.result())
            login.result()
            # Without presence the server treats us as offline and stores bare-JID messages.
            x.send_presence()
            if self.room:
                await x.plugin["xep_0045"].join_muc_wait(
                    slixmpp.JID(self.room), self.nick, maxstanzas=0, timeout=10
                )
            # Prosody delivers stored (offline) messages while it handles our presence, so
            # once a later ping is answered the backlog is in: "ready" is deterministic.
            await x.plugin["xep_0199"].ping(jid=x.boundjid.host, timeout=10)
            self._ready.set()
            await self._stop.wait()
        finally:
            x.cancel_connection_attempt()
            if x.is_connected():
                with contextlib.suppress(Exception):
                    await asyncio.wait_for(x.disconnect(wait=1.0), timeout=3)
            t = getattr(x, "_run_out_filters", None)  # send-queue task (shared notes §2)
            if t is not None:
                t.cancel()
                await asyncio.gather(t, return_exceptions=True)

    def _on_message(self, msg: Any) -> None:
        mtype = msg["type"]
        body = msg["body"]
        if mtype not in ("chat", "normal", "groupchat") or not body:
            return
        if not self._include_delayed and msg["delay"]["stamp"] is not None:
            return
        if mtype == "groupchat" and msg["mucnick"] == self.nick:
            return  # our own message reflected by the room
        with self._cond:
            self._received.append((str(msg["from"]), mtype, body))
            self._cond.notify_all()
            n = len(self._received)
            due = [action for count, action in self._at_count if count <= n]
            self._at_count = [(c, a) for c, a in self._at_count if c > n]
        for action in due:
            action()

    # -- the test's side --------------------------------------------------------------
    @property
    def messages(self) -> list[str]:
        """The bodies received so far (a copy)."""
        with self._cond:
            return [body for _, _, body in self._received]

    @property
    def received(self) -> list[tuple[str, str, str]]:
        """``(from, type, body)`` of each message received so far (a copy)."""
        with self._cond:
            return list(self._received)

    def wait_for(self, n: int, timeout: float = 10.0) -> list[str]:
        """The bodies, once at least ``n`` arrived; AssertionError with what did otherwise."""
        with self._cond:
            if not self._cond.wait_for(lambda: len(self._received) >= n, timeout):
                got = [body for _, _, body in self._received]
                raise AssertionError(
                    f"{self.jid} received {len(got)} of {n} messages in {timeout:g} s: {got[:20]}"
                )
            return [body for _, _, body in self._received]

    def at_count(self, n: int, action: Callable[[], None]) -> None:
        """Call ``action`` once ``n`` messages arrived: in the receiver's thread, right as
        the ``n``-th comes (no test thread to wake first); at once if they already did."""
        with self._cond:
            if len(self._received) < n:
                self._at_count.append((n, action))
                return
        action()

    def send(self, to: str, body: str) -> None:
        """Send a chat message as this client (e.g. a command to the bot)."""
        assert self._loop is not None
        self._loop.call_soon_threadsafe(
            lambda: self._x.send_message(mto=to, mbody=body, mtype="chat")
        )

    def close(self) -> None:
        loop, stop = self._loop, self._stop
        if loop is not None and stop is not None and not loop.is_closed():
            with contextlib.suppress(RuntimeError):  # loop closed meanwhile
                loop.call_soon_threadsafe(stop.set)
        self._thread.join(10)
        if self._thread.is_alive():
            raise RuntimeError(f"receiver {self.jid} did not stop within 10 s")


# -- fixtures ---------------------------------------------------------------------------
@pytest.fixture(scope="session")
def prosody(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Prosody]:
    """A running Prosody for the session (same port across restarts)."""
    server = Prosody(tmp_path_factory.mktemp("prosody"))
    server.start()
    try:
        yield server
    finally:
        server.stop()


@pytest.fixture(scope="session")
def prosody_variant(
    tmp_path_factory: pytest.TempPathFactory,
) -> Iterator[Callable[..., Prosody]]:
    """``prosody_variant(tls=True, smacks=True)``: a running Prosody, one per variant."""
    servers: dict[tuple[bool, bool], Prosody] = {}

    def get(*, tls: bool = True, smacks: bool = True) -> Prosody:
        key = (tls, smacks)
        if key not in servers:
            name = f"prosody-{'tls' if tls else 'notls'}-{'sm' if smacks else 'nosm'}"
            servers[key] = Prosody(tmp_path_factory.mktemp(name), tls=tls, smacks=smacks)
        server = servers[key]
        server.start()  # no-op when running; restarts one a test left stopped
        return server

    try:
        yield get
    finally:
        for server in servers.values():
            server.stop()


@pytest.fixture(autouse=True)
def _prosody_running(request: pytest.FixtureRequest) -> None:
    """A test that stopped the server without ``down()`` does not break the next one."""
    if "prosody" in request.fixturenames:
        server: Prosody = request.getfixturevalue("prosody")
        if not server.running:
            server.start()


@pytest.fixture
def receiver(prosody: Prosody) -> Iterator[Callable[..., Receiver]]:
    """``receiver(user="alice", password=None, *, room=None, nick="watcher", ...)``."""
    made: list[Receiver] = []

    def make(user: str = "alice", password: str | None = None, **kwargs: Any) -> Receiver:
        r = Receiver(prosody, user, password, **kwargs)
        made.append(r)
        return r

    try:
        yield make
    finally:
        for r in made:
            r.close()
