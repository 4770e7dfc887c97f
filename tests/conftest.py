"""Shared fixtures: a temporary data dir per test, a real Prefect server per session.

Real parts only: Prosody (xmpp_support.py), HTTP feed servers (feeds_support.py), PostgreSQL
(postgres_support.py), a Prefect test server (prefect_test_harness: a real server process with
a temporary SQLite DB) and DuckDB files under each test's tmp_path.
"""

from __future__ import annotations

import os
import tempfile
from collections.abc import Iterator
from pathlib import Path

import pytest

# Prefect reads its settings on first import: give it a throw-away home, no telemetry,
# before anything imports it.
_PREFECT_HOME = tempfile.mkdtemp(prefix="triggerflow-tests-prefect-")
os.environ["PREFECT_HOME"] = _PREFECT_HOME
os.environ.setdefault("PREFECT_SERVER_ANALYTICS_ENABLED", "false")
os.environ.setdefault("DO_NOT_TRACK", "1")
os.environ.setdefault("PREFECT_SERVER_EPHEMERAL_STARTUP_TIMEOUT_SECONDS", "120")
os.environ.pop("PREFECT_API_URL", None)

pytest_plugins = ["xmpp_support", "feeds_support", "standins", "postgres_support"]


@pytest.fixture(autouse=True)
def data_dir(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    """Each test gets its own data dir (DuckDB store) and no account from the outside."""
    for key in list(os.environ):
        if key.startswith("TRIGGERFLOW_"):
            monkeypatch.delenv(key)
    d = tmp_path / "data"
    monkeypatch.setenv("TRIGGERFLOW_DATA_DIR", str(d))
    monkeypatch.setenv("TRIGGERFLOW_RETRY_DELAY", "0")  # retries still happen, without waiting
    monkeypatch.setenv("TRIGGERFLOW_XMPP_TIMEOUT", "10")
    # Failure alerts would reach the tests' recipients; test_alerts.py turns them on.
    monkeypatch.setenv("TRIGGERFLOW_ALERTS", "off")
    return d


@pytest.fixture(scope="session")
def prefect_api() -> Iterator[str]:
    """A real Prefect server (temporary database) for the whole session; its API URL."""
    from prefect.settings import (
        PREFECT_API_URL,
        PREFECT_FLOWS_HEARTBEAT_FREQUENCY,
        PREFECT_LOGGING_TO_API_WHEN_MISSING_FLOW,
        temporary_settings,
    )
    from prefect.testing.utilities import prefect_test_harness

    # Without a heartbeat every sync flow run costs >= 1 s (shared notes/prefect.md §10).
    with temporary_settings(
        updates={
            PREFECT_FLOWS_HEARTBEAT_FREQUENCY: None,
            PREFECT_LOGGING_TO_API_WHEN_MISSING_FLOW: "ignore",
        }
    ):
        with prefect_test_harness(server_startup_timeout=120):
            url = PREFECT_API_URL.value()
            # Subprocesses (second trigger process, worker) find the server through the env.
            os.environ["PREFECT_API_URL"] = url
            try:
                yield url
            finally:
                os.environ.pop("PREFECT_API_URL", None)
