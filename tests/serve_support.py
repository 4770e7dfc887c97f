"""`triggerflow serve` as a real subprocess, the way a user runs it in a terminal."""

from __future__ import annotations

import os
import signal
import socket
import subprocess
import sys
import threading
import time
from pathlib import Path

import httpx

ROOT = Path(__file__).resolve().parent.parent


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def port_free(port: int) -> bool:
    """Whether a server could listen on ``port`` of 127.0.0.1 now (as serve checks it)."""
    with socket.socket() as sock:
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        try:
            sock.bind(("127.0.0.1", port))
        except OSError:
            return False
    return True


def prefect_api(
    method: str, url: str, body: dict | None = None, patience: float = 60
) -> httpx.Response:
    """Ask Prefect's API as its own client does: on a busy 2-core machine its SQLite server
    answers 503 ("database is locked", shared notes/prefect.md §2) or late for a moment, so a
    503 or a transport error is asked again, for up to ``patience`` seconds."""
    deadline = time.monotonic() + patience
    while True:
        try:
            got = httpx.request(method, url, json=body, timeout=10)
        except httpx.TransportError:
            if time.monotonic() > deadline:
                raise
        else:
            if got.status_code != 503 or time.monotonic() > deadline:
                return got
        time.sleep(0.5)


class Serve:
    """One `triggerflow serve` process with its own data dir and Prefect port."""

    def __init__(self, data_dir: Path, flows: Path | None = None, **env: str) -> None:
        self.port = free_port()
        self.api = f"http://127.0.0.1:{self.port}/api"
        self.env = {
            k: v for k, v in os.environ.items() if not k.startswith(("PREFECT_", "TRIGGERFLOW_"))
        }
        self.web_port = free_port()
        self.web = f"http://127.0.0.1:{self.web_port}"
        self.env.update(
            TRIGGERFLOW_DATA_DIR=str(data_dir),
            TRIGGERFLOW_PREFECT_PORT=str(self.port),
            TRIGGERFLOW_WEB_PORT=str(self.web_port),
        )
        if flows is not None:
            self.env["TRIGGERFLOW_FLOWS_DIR"] = str(flows)
        self.env.update(env)
        self.proc: subprocess.Popen[str] | None = None
        self.output: list[str] = []
        # `python -m` puts the working directory first on sys.path: a checkout of another
        # revision (bench --baseline) is run from its own folder.
        self.cwd = ROOT

    def start(self, timeout: float = 240, banner: str = "Serving", *args: str) -> str:
        """Start (``serve ARGS``) and wait for its banner (a line with ``banner``);
        returns what it printed until then."""
        self.proc = subprocess.Popen(
            [sys.executable, "-m", "triggerflow", "serve", *args],
            cwd=self.cwd, env=self.env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True,
            start_new_session=True,  # like a terminal: Ctrl-C goes to the whole group
            preexec_fn=lambda: signal.signal(signal.SIGINT, signal.SIG_DFL),
        )  # fmt: skip
        self.output = []
        # Read all along (a full pipe would block serve), so tests can wait for a line.
        self._reader = threading.Thread(target=self._read, args=(self.proc,), daemon=True)
        self._reader.start()
        self._seen = 0
        out = self.wait_for(banner, timeout)
        assert banner in out, out
        return out

    def _read(self, proc: subprocess.Popen[str]) -> None:
        assert proc.stdout is not None
        for line in proc.stdout:
            self.output.append(line)

    def wait_for(self, text: str, timeout: float = 60) -> str:
        """Wait until serve prints a line containing ``text`` (or stops, or ``timeout``);
        returns what it printed since the last wait."""
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if any(text in line for line in self.output[self._seen :]):
                break
            if (
                self.proc is not None
                and self.proc.poll() is not None
                and not self._reader.is_alive()
            ):
                break
            time.sleep(0.1)
        end = len(self.output)
        if any(text in line for line in self.output[self._seen :]):
            end = self._seen + next(
                i + 1 for i, line in enumerate(self.output[self._seen :]) if text in line
            )
        out, self._seen = "".join(self.output[self._seen : end]), end
        return out

    def deployments(self, count: int, timeout: float = 30) -> dict[str, dict]:
        """The deployments by name, once ``count`` of them are registered."""
        by_name: dict[str, dict] = {}
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            got = prefect_api("POST", f"{self.api}/deployments/filter", {}).json()
            by_name = {d["name"]: d for d in got}
            if len(by_name) >= count:
                break
            time.sleep(0.5)
        return by_name

    def runs(self, flow: str) -> list[dict]:
        """Flow runs of ``flow`` that started (not merely scheduled)."""
        body = {"flows": {"name": {"any_": [flow]}}}
        got = prefect_api("POST", f"{self.api}/flow_runs/filter", body).json()
        return [r for r in got if r["state_type"] not in ("SCHEDULED",)]

    def create_run(self, deployment_id: str) -> dict:
        """A run of the deployment, due now."""
        made = prefect_api("POST", f"{self.api}/deployments/{deployment_id}/create_flow_run", {})
        assert made.status_code == 201, made.text
        return made.json()

    def wait_port_free(self, timeout: float = 60) -> None:
        """Until this serve's Prefect port is free again (after a kill its server follows)."""
        deadline = time.monotonic() + timeout
        while not port_free(self.port):
            if time.monotonic() > deadline:
                raise AssertionError(f"port {self.port} still taken after {timeout:g} s")
            time.sleep(0.2)

    def cli(self, *args: str) -> subprocess.CompletedProcess[str]:
        """Another `triggerflow` command, finding this serve through its state file."""
        return subprocess.run(
            [sys.executable, "-m", "triggerflow", *args],
            cwd=self.cwd, env=self.env, capture_output=True, text=True, timeout=120,
        )  # fmt: skip

    def stop(self, sig: int = signal.SIGINT, timeout: float = 30) -> str:
        """Stop it like a terminal or a service manager would; what it printed since."""
        assert self.proc is not None
        if sig == signal.SIGINT:
            os.killpg(self.proc.pid, sig)  # what a terminal does on Ctrl-C
        else:
            self.proc.send_signal(sig)
        try:
            self.proc.wait(timeout=timeout)
        except subprocess.TimeoutExpired:
            self.kill()
            raise
        self._reader.join(10)
        rest, self._seen = "".join(self.output[self._seen :]), len(self.output)
        return rest

    def kill(self) -> None:
        if self.proc is not None and self.proc.poll() is None:
            os.killpg(self.proc.pid, signal.SIGKILL)
            self.proc.wait()


def prefect_cli(args: list[str], env: dict[str, str], cwd: Path) -> str:
    """``prefect ARGS`` as a user types it (its output; AssertionError with it on failure)."""
    r = subprocess.run(
        [sys.executable, "-m", "prefect", *args],
        env=env, cwd=cwd, capture_output=True, text=True, timeout=180,
    )  # fmt: skip
    assert r.returncode == 0, f"prefect {' '.join(args)} failed:\n{r.stdout}\n{r.stderr}"
    return r.stdout


def spawn(args: list[str], env: dict[str, str]) -> subprocess.Popen[str]:
    """``python <args>`` started now, its output collected (``communicate()`` to wait)."""
    return subprocess.Popen(
        [sys.executable, *args], env=env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT,
        text=True,
    )  # fmt: skip
