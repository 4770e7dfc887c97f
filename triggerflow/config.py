"""Settings: environment variables ``TRIGGERFLOW_*``, optionally a ``triggerflow.toml``.

The environment wins over the file; the file is looked up in the current
directory (beside ``flows/``). Defaults are for one person on one machine.
"""

from __future__ import annotations

import logging
import os
import stat
import tomllib
from dataclasses import dataclass, fields
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit, urlunsplit

from .exceptions import ConfigurationError

__all__ = ["Settings", "private_dir", "settings"]

_PREFIX = "TRIGGERFLOW_"
_TOML = "triggerflow.toml"
_log = logging.getLogger("triggerflow")


def _default_data_dir() -> Path:
    base = os.environ.get("XDG_DATA_HOME") or str(Path.home() / ".local" / "share")
    return Path(base) / "triggerflow"


@dataclass(frozen=True)
class Settings:
    """The effective settings (see ``triggerflow config``).

    Attributes:
        data_dir: where the DuckDB store, the Prefect server's SQLite database and
            the serve state live (``TRIGGERFLOW_DATA_DIR``).
        flows_dir: the folder whose ``*.py`` files hold the triggers (``TRIGGERFLOW_FLOWS_DIR``).
        prefect_port: port of the local Prefect server ``serve`` starts when no
            ``PREFECT_API_URL`` is set (``TRIGGERFLOW_PREFECT_PORT``).
        prefect_host: the address that server listens on: 127.0.0.1, or this host's
            address for workers and browsers on other hosts (``TRIGGERFLOW_PREFECT_HOST``).
        run_retention: seconds the Prefect server ``serve`` starts keeps a finished flow
            run (its task runs, logs, artifacts) before its vacuum deletes it; at least
            3600 (``TRIGGERFLOW_RUN_RETENTION``; Prefect alone keeps runs for good).
        web_port: port of triggerflow's own web app (generated feeds at ``/feeds/``)
            that ``serve`` starts on 127.0.0.1 (``TRIGGERFLOW_WEB_PORT``).
        retries: how often Prefect retries a source or sink task after a transient
            failure (``TRIGGERFLOW_RETRIES``).
        retry_delay: base delay in seconds of the exponential retry backoff
            (``TRIGGERFLOW_RETRY_DELAY``).
        max_attempts: failed sends after which an item is dead and no longer tried
            (``TRIGGERFLOW_MAX_ATTEMPTS``).
        first_run: how many of the newest items a new (trigger, target) pair gets;
            older ones are recorded as skipped (``TRIGGERFLOW_FIRST_RUN``).
        store_wait: seconds to wait for another process's lock on the store before
            giving up with a clear error (``TRIGGERFLOW_STORE_WAIT``).
        store_url: a PostgreSQL store shared by several machines,
            ``postgresql://user:password@host:5432/db`` (``TRIGGERFLOW_STORE_URL``;
            needs ``triggerflow[postgres]``); empty: the DuckDB file in ``data_dir``.
        http_timeout: deadline in seconds for the whole of one feed request, connecting
            and reading the body included (``TRIGGERFLOW_HTTP_TIMEOUT``); for the web
            services' APIs, the bound of each read.
        http_connections: concurrent connections of one source call
            (``TRIGGERFLOW_HTTP_CONNECTIONS``).
        http_per_host: of those, at most this many to any one host at once
            (``TRIGGERFLOW_HTTP_PER_HOST``).
        feed_cache_max: the longest, in seconds, that a feed's ``Cache-Control: max-age``
            or ``Expires`` keeps it from being fetched again (``TRIGGERFLOW_FEED_CACHE_MAX``).
        feed_backoff_max: the longest, in seconds, between two tries of a failing feed,
            also when its server's ``Retry-After`` asks for longer
            (``TRIGGERFLOW_FEED_BACKOFF_MAX``).
        feed_silent_min: a feed is noted silent (in ``status`` and by an alert) when it
            had no new item for 10 times its usual gap between items, and at least this
            many seconds (``TRIGGERFLOW_FEED_SILENT_MIN``, a week).
        rate_limit_wait: the longest a source or sink of a web service (Mastodon,
            Wallabag, Trello) waits for the service's rate limit to reset before it gives
            the step back to Prefect's retries (``TRIGGERFLOW_RATE_LIMIT_WAIT``).
        xmpp_timeout: bound of each XMPP step: connect, join, acks (``TRIGGERFLOW_XMPP_TIMEOUT``).
        alerts: who is told when a trigger starts failing and when it is back: ``owner``
            (the default XMPP account's owner), a JID, or ``off`` (``TRIGGERFLOW_ALERTS``).
        bot_owners: JIDs (comma-separated) whose chat commands the bot obeys, besides
            the bot account's owner (``TRIGGERFLOW_BOT_OWNERS``). The bot is the XMPP
            account ``bot`` (``TRIGGERFLOW_XMPP_BOT_JID``…); without it there is none.
        github_allow_unsigned: 1 to accept GitHub webhook deliveries without a secret
            (only behind something else that authenticates them;
            ``TRIGGERFLOW_GITHUB_ALLOW_UNSIGNED``). The secret itself is
            ``TRIGGERFLOW_GITHUB_SECRET`` (see :mod:`triggerflow.blocks`).
        webhook_max_bytes: larger webhook bodies are refused with 413 (GitHub sends at
            most 25 MB; ``TRIGGERFLOW_WEBHOOK_MAX_BYTES``).
        webhook_wait: seconds a webhook waits for the store before it is kept in the
            spool folder instead, so that GitHub gets its answer within its 10 s
            (``TRIGGERFLOW_WEBHOOK_WAIT``).
        search_reindex: seconds between checks by ``serve`` for items that wait for the
            search index, rebuilt then in the background; 0 turns it off
            (``TRIGGERFLOW_SEARCH_REINDEX``).
        backups: how many daily backups of the store ``serve`` keeps in
            ``<data dir>/backups``; 0 turns them off (``TRIGGERFLOW_BACKUPS``).
        event_runs: how many runs of event triggers (webhooks, chat messages) ``serve``
            runs at once, in its own process; each trigger has one at a time
            (``TRIGGERFLOW_EVENT_RUNS``).
        watchdog: seconds between ``serve``'s looks for crashed runs, late triggers and
            workers gone, each told once by an alert; 0 turns it off
            (``TRIGGERFLOW_WATCHDOG``).
    """

    data_dir: Path
    flows_dir: Path
    prefect_port: int = 4200
    prefect_host: str = "127.0.0.1"
    run_retention: float = 30 * 86400.0
    web_port: int = 4201
    retries: int = 2
    retry_delay: float = 10.0
    max_attempts: int = 5
    first_run: int = 5
    store_wait: float = 30.0
    store_url: str = ""
    http_timeout: float = 20.0
    http_connections: int = 50
    http_per_host: int = 4
    feed_cache_max: float = 4 * 3600.0
    feed_backoff_max: float = 86400.0
    feed_silent_min: float = 7 * 86400.0
    rate_limit_wait: float = 300.0
    xmpp_timeout: float = 15.0
    alerts: str = "owner"
    bot_owners: str = ""
    github_allow_unsigned: int = 0
    webhook_max_bytes: int = 25 * 1024 * 1024
    webhook_wait: float = 3.0
    search_reindex: float = 600.0
    backups: int = 7
    event_runs: int = 2
    watchdog: float = 30.0

    @property
    def store_path(self) -> Path:
        """The DuckDB file."""
        return self.data_dir / "triggerflow.duckdb"

    @property
    def spool_dir(self) -> Path:
        """Webhook deliveries that arrived while the store was busy, until they are stored."""
        return self.data_dir / "spool"

    @property
    def prefect_home(self) -> Path:
        """``PREFECT_HOME`` of the Prefect server that ``serve`` starts."""
        return self.data_dir / "prefect"

    @property
    def backup_dir(self) -> Path:
        """Where ``serve``'s daily backups and ``triggerflow store backup`` copies go."""
        return self.data_dir / "backups"

    @property
    def serve_state(self) -> Path:
        """Where a running ``serve`` writes its PID and Prefect API URL."""
        return self.data_dir / "serve.json"

    def describe(self) -> dict[str, str]:
        """Every setting with its effective value, as shown by ``triggerflow config``."""
        shown = {f.name: str(getattr(self, f.name)) for f in fields(self)}
        if self.store_url:
            shown["store_url"] = mask_url(self.store_url)
        return shown


def mask_url(url: str) -> str:
    """``url`` with its password replaced by ``***`` (for messages and ``config``)."""
    try:
        parts = urlsplit(url)
        port = parts.port
    except ValueError:
        return "postgresql://***"
    if parts.password is None:
        return url
    host = parts.hostname or ""
    if port:
        host = f"{host}:{port}"
    return urlunsplit(parts._replace(netloc=f"{parts.username or ''}:***@{host}"))


def private_dir(path: Path) -> Path:
    """``path`` as a folder only its owner may enter (0700), created if needed.

    The data dir holds Prefect's database, and with it the key that decrypts saved
    blocks (passwords, tokens): under the usual umask 022 it would be readable by every
    local user. An existing folder that lets others in is tightened too, with a warning:
    nothing in it is meant for anyone else, and a folder that is readable once leaks
    the key for good. Only the folder itself changes, never its parents or its files.
    """
    path.mkdir(mode=0o700, parents=True, exist_ok=True)
    mode = stat.S_IMODE(path.stat().st_mode)
    if mode & 0o077:
        try:
            path.chmod(mode & 0o700)
        except OSError as e:
            _log.warning(
                "triggerflow: %s can be read by other users (mode %o) and could not be "
                "made private (%s); saved secrets are not protected",
                path,
                mode,
                e.strerror,
            )
        else:
            _log.warning(
                "triggerflow: made %s private (mode %o, was %o): it holds the key to saved secrets",
                path,
                mode & 0o700,
                mode,
            )
    return path


def _read_toml(path: Path) -> dict[str, Any]:
    if not path.is_file():
        return {}
    try:
        with path.open("rb") as fh:
            data = tomllib.load(fh)
    except tomllib.TOMLDecodeError as e:
        raise ConfigurationError(f"settings file {path}: not valid TOML: {e}") from e
    return dict(data.get("triggerflow", data))


def settings() -> Settings:
    """Read the settings now (the environment wins over ``triggerflow.toml``)."""
    raw: dict[str, Any] = _read_toml(Path.cwd() / _TOML)
    for f in fields(Settings):
        env = os.environ.get(_PREFIX + f.name.upper())
        if env not in (None, ""):
            raw[f.name] = env
    values: dict[str, Any] = {}
    for f in fields(Settings):
        if f.name not in raw:
            continue
        value = raw[f.name]
        kind = {"int": int, "float": float, "str": str}.get(str(f.type))
        try:
            values[f.name] = kind(value) if kind else Path(str(value)).expanduser()
        except ValueError as e:
            raise ConfigurationError(
                f"setting {f.name} ({_PREFIX}{f.name.upper()}): {value!r} is not a number"
            ) from e
    values.setdefault("data_dir", _default_data_dir())
    values.setdefault("flows_dir", Path("flows"))
    return Settings(**values)
