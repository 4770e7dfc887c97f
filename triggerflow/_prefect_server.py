"""The local Prefect server that ``triggerflow serve`` starts when none is configured.

It runs ``prefect server start`` on 127.0.0.1 with its SQLite database under the
data dir, in its own process group, so that stopping it also stops the
processes it starts itself.
"""

from __future__ import annotations

import json
import os
import signal
import socket
import subprocess
import sys
import time
from collections.abc import Callable
from typing import Any

import httpx

from .config import Settings, private_dir
from .exceptions import ConfigurationError, TriggerflowError

STARTUP_TIMEOUT = 180.0  # a first start migrates an empty database: ~25 s on 2 busy cores


def prefect_environment(s: Settings) -> dict[str, str]:
    """Variables for our own Prefect processes: home under the data dir, no telemetry.

    Also makes sure the data dir and Prefect's home are private (0700) before Prefect
    creates its database there: it holds the key that decrypts saved blocks.
    """
    private_dir(s.data_dir)
    private_dir(s.prefect_home)
    return {
        "PREFECT_HOME": str(s.prefect_home),
        "PREFECT_SERVER_ANALYTICS_ENABLED": "false",
        "DO_NOT_TRACK": "1",
        # Ephemeral mode needs ~30 s on a fresh home here; Prefect's default is 20.
        "PREFECT_SERVER_EPHEMERAL_STARTUP_TIMEOUT_SECONDS": "120",
        # How often serve's runner asks for runs to start: a run asked for by `triggerflow
        # run` or the UI waits for the next poll (Prefect's default is 10 s; shared
        # notes/prefect.md §8). Event triggers do not wait for it (_event_runs).
        "PREFECT_RUNNER_POLL_FREQUENCY": "1",
        # Concurrency leases in files in the home, not in one server's memory: the
        # temporary server of the next `run --here` still knows a killed run's lease, so
        # the account slot it held can be given back (_slots.py).
        "PREFECT_SERVER_CONCURRENCY_LEASE_STORAGE": (
            "prefect.server.concurrency.lease_storage.filesystem"
        ),
    }


def running_serve(s: Settings) -> dict[str, str] | None:
    """The state a live ``triggerflow serve`` wrote (``api_url``, ``ui_url``, ``pid``), if any."""
    try:
        state = json.loads(s.serve_state.read_text())
        os.kill(int(state["pid"]), 0)
    except (OSError, ValueError, KeyError):
        return None
    return {k: str(v) for k, v in state.items()}


def _die_with_parent() -> None:
    """In the server's process, before it starts: SIGTERM when serve dies (Linux).

    serve stops its server on Ctrl-C and SIGTERM; this covers the rest (SIGKILL, a
    crash), which would otherwise leave the server holding the port and its database.
    """
    try:
        import ctypes

        libc = ctypes.CDLL(None, use_errno=True)
        libc.prctl(1, signal.SIGTERM)  # PR_SET_PDEATHSIG
    except (OSError, AttributeError):  # not Linux: serve's own stop is all there is
        pass


def _port_free(port: int, host: str = "127.0.0.1") -> bool:
    # SO_REUSEADDR as the server itself uses it: connections of a server that just
    # stopped (TIME_WAIT) must not count as "in use".
    with socket.socket() as sock:
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        try:
            sock.bind((host, port))
        except OSError:
            return False
    return True


def healthy(api_url: str) -> bool:
    """True when the Prefect API at ``api_url`` answers its health check."""
    try:
        return httpx.get(api_url.rstrip("/") + "/health", timeout=2.0).status_code == 200
    except httpx.HTTPError:
        return False


class LocalPrefectServer:
    """``prefect server start`` as a child process group we own."""

    def __init__(self, s: Settings) -> None:
        if s.run_retention < 3600:
            raise ConfigurationError(
                f"setting run_retention (TRIGGERFLOW_RUN_RETENTION): {s.run_retention:g} s "
                "is less than Prefect's shortest, 3600 s"
            )
        self.settings = s
        self.port = s.prefect_port
        self.host = s.prefect_host
        # Listening on every address, it is reached here as 127.0.0.1.
        reach = "127.0.0.1" if self.host in ("0.0.0.0", "::", "") else self.host
        self.ui_url = f"http://{reach}:{self.port}"
        self.api_url = f"{self.ui_url}/api"
        self.process: subprocess.Popen[bytes] | None = None
        self.log_path = s.data_dir / "prefect-server.log"

    def start(self, progress: Callable[[str], None]) -> None:
        """Start and wait until healthy.

        Raises:
            ConfigurationError: the port is taken.
            TriggerflowError: the server exited or did not become healthy in time.
        """
        if not _port_free(self.port, self.host):
            raise ConfigurationError(
                f"Prefect server: port {self.port} on {self.host} is already in use; "
                "set TRIGGERFLOW_PREFECT_PORT to another port, or PREFECT_API_URL to use "
                "the server that runs there"
            )
        private_dir(self.settings.prefect_home)
        env = {**os.environ, **prefect_environment(self.settings)}
        env.pop("PREFECT_API_URL", None)
        # `--port` alone leaves the UI calling the default port 4200: tell the UI too.
        env.update(
            PREFECT_SERVER_API_HOST=self.host,
            PREFECT_SERVER_API_PORT=str(self.port),
            PREFECT_UI_API_URL=self.api_url,
        )
        # Prefect keeps every flow run for good (its vacuum deletes only events): runs
        # every few minutes for years fill its database. The user's own settings win.
        env.setdefault("PREFECT_SERVER_SERVICES_DB_VACUUM_ENABLED", "events,flow_runs")
        env.setdefault(
            "PREFECT_SERVER_SERVICES_DB_VACUUM_RETENTION_PERIOD",
            str(int(self.settings.run_retention)),
        )
        log = self.log_path.open("ab")
        self.process = subprocess.Popen(
            [sys.executable, "-m", "prefect", "server", "start",
             "--host", self.host, "--port", str(self.port), "--analytics-off"],
            env=env, stdout=log, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL,
            start_new_session=True,  # its own group: we stop it, and all it started, ourselves
            preexec_fn=_die_with_parent,
        )  # fmt: skip
        log.close()
        started = time.monotonic()
        said = 0.0
        while not healthy(self.api_url):
            waited = time.monotonic() - started
            if self.process.poll() is not None:
                raise TriggerflowError(
                    f"Prefect server exited with code {self.process.returncode} while starting; "
                    f"see {self.log_path}"
                )
            if waited > STARTUP_TIMEOUT:
                self.stop()
                raise TriggerflowError(
                    f"Prefect server did not answer within {STARTUP_TIMEOUT:g} s; "
                    f"see {self.log_path}"
                )
            if waited - said >= 5:
                said = waited
                progress(f"  still starting the Prefect server ({waited:.0f} s)…")
            time.sleep(0.25)

    def stop(self, timeout: float = 8.0) -> None:
        """SIGTERM the server's process group, SIGKILL what is left after ``timeout``."""
        p = self.process
        if p is None:
            return
        self.process = None
        for sig, wait in ((signal.SIGTERM, timeout), (signal.SIGKILL, 5.0)):
            try:
                os.killpg(p.pid, sig)
            except ProcessLookupError:
                break
            try:
                p.wait(wait)
            except subprocess.TimeoutExpired:
                continue
            # The leader is gone; make sure nothing else of its group lingers.
            try:
                os.killpg(p.pid, signal.SIGKILL)
            except ProcessLookupError:
                pass
            break


def write_state(s: Settings, api_url: str, ui_url: str) -> None:
    """Tell other ``triggerflow`` commands where the running serve's Prefect API is."""
    private_dir(s.data_dir)
    _write_state(s, {"pid": os.getpid(), "api_url": api_url, "ui_url": ui_url})


def _write_state(s: Settings, state: dict[str, Any]) -> None:
    # Written aside, then renamed: a reader never sees half a file.
    tmp = s.serve_state.with_suffix(".tmp")
    tmp.write_text(json.dumps(state))
    tmp.replace(s.serve_state)


def update_state(s: Settings, *, broken: dict[str, str]) -> None:
    """Record what serve could not serve (trigger or file -> why) for ``list``."""
    try:
        state = json.loads(s.serve_state.read_text())
    except (OSError, ValueError):
        return  # serve has not announced itself (yet): nothing to add to
    state["broken"] = broken
    _write_state(s, state)


def serve_problems(s: Settings) -> dict[str, str]:
    """What the running serve reported as not served (trigger or file -> why)."""
    if running_serve(s) is None:
        return {}
    try:
        broken = json.loads(s.serve_state.read_text()).get("broken", {})
    except (OSError, ValueError, AttributeError):
        return {}
    return {str(k): str(v) for k, v in broken.items()} if isinstance(broken, dict) else {}


def clear_state(s: Settings) -> None:
    """Forget the serve state (on exit)."""
    try:
        s.serve_state.unlink()
    except FileNotFoundError:
        pass
