"""A real PostgreSQL for the tests: its own cluster on a random loopback port.

Like the Prosody fixture, nothing of the machine's own server is used or touched:
``initdb`` makes a cluster under a temporary folder and ``pg_ctl`` starts it on
127.0.0.1 with its socket in that folder. PostgreSQL refuses to run as root, so as root
(CI's containers) the cluster belongs to the ``postgres`` user the Debian package made.
Each test that asks for ``postgres_url`` gets a database of its own.
"""

from __future__ import annotations

import os
import pwd
import shutil
import socket
import subprocess
import tempfile
import uuid
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path

import pytest

# Debian puts the server's programs in a versioned folder, not on PATH.
_BIN_DIRS = sorted(Path("/usr/lib/postgresql").glob("*/bin"), reverse=True)


def _program(name: str) -> str:
    for d in _BIN_DIRS:
        if (d / name).exists():
            return str(d / name)
    found = shutil.which(name)
    if not found:
        pytest.fail(
            f"PostgreSQL's {name} is not installed: `apt-get install -y postgresql` "
            "(.ci/test installs it)"
        )
    return found


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


@dataclass
class Cluster:
    """A running PostgreSQL cluster: its port and how to make a database on it."""

    port: int
    folder: Path
    user: str = "postgres"

    def url(self, database: str = "postgres") -> str:
        return f"postgresql://{self.user}@127.0.0.1:{self.port}/{database}"

    def new_database(self) -> str:
        import psycopg

        name = "t_" + uuid.uuid4().hex[:12]
        with psycopg.connect(self.url(), autocommit=True) as con:
            con.execute(f"CREATE DATABASE {name}")
        return self.url(name)


def _run(cmd: list[str], owner: str | None, check: bool = True) -> None:
    """Run a server program, as ``owner`` when given (PostgreSQL refuses to run as root).

    subprocess switches the user itself: ``runuser`` lives in /usr/sbin, which a
    clean ``env -i`` PATH does not hold.
    """
    who: dict = {}
    if owner:
        pw = pwd.getpwnam(owner)
        who = {"user": pw.pw_uid, "group": pw.pw_gid, "extra_groups": []}
    done = subprocess.run(cmd, capture_output=True, text=True, cwd="/", **who)
    if check and done.returncode:
        pytest.fail(f"{Path(cmd[0]).name} failed ({done.returncode}): {done.stderr or done.stdout}")


@contextmanager
def running_cluster(durable: bool = False) -> Iterator[Cluster]:
    """A new cluster, started; stopped and removed on exit. Tests throw it away, so
    fsync is off; ``durable`` (``bench/run.py``'s ``pg`` variant) keeps PostgreSQL's
    defaults, committing to disk as the DuckDB store does."""
    owner = "postgres" if os.geteuid() == 0 else None
    folder = Path(tempfile.mkdtemp(prefix="triggerflow-pg-"))
    if owner:
        pw = pwd.getpwnam(owner)
        os.chown(folder, pw.pw_uid, pw.pw_gid)
    data = folder / "data"
    user = "postgres"
    _run(
        [_program("initdb"), "-D", str(data), "-U", user, "--auth=trust", "--no-sync",
         "-E", "UTF8", "--locale=C.UTF-8"],
        owner,
    )  # fmt: skip
    port = _free_port()
    options = f"-p {port} -c listen_addresses=127.0.0.1 -k {folder} -c max_connections=200"
    if not durable:
        options += " -c fsync=off -c synchronous_commit=off -c full_page_writes=off"
    _run(
        [_program("pg_ctl"), "-D", str(data), "-o", options, "-l", str(folder / "log"),
         "-w", "-t", "60", "start"],
        owner,
    )  # fmt: skip
    try:
        yield Cluster(port, folder, user)
    finally:
        _run([_program("pg_ctl"), "-D", str(data), "-m", "immediate", "stop"], owner, check=False)
        shutil.rmtree(folder, ignore_errors=True)


@pytest.fixture(scope="session")
def postgres() -> Iterator[Cluster]:
    """One PostgreSQL cluster for the whole session."""
    with running_cluster() as cluster:
        yield cluster


@pytest.fixture
def postgres_url(postgres: Cluster) -> str:
    """A new, empty database on the session's cluster: its URL."""
    return postgres.new_database()
