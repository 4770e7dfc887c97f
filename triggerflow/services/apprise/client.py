"""Apprise at one boundary: a URL made a notifier, its answers in words, no secret shown.

Apprise (it comes with Prefect) speaks to some 150 services; an Apprise URL names one
and holds its credentials (``tgram://BOT_TOKEN/CHAT``, ``ntfys://user:pass@host/topic``).
Apprise answers a notification with True or False and says why in its log, so the log
of the ``apprise`` logger is read here: what it says while a notification is sent
becomes the error (with every part of the URL that could be a secret masked), and goes
nowhere else: a plugin's lines may quote a token.
"""

from __future__ import annotations

import logging
import re
import threading
from collections.abc import Iterator
from contextlib import contextmanager
from typing import TYPE_CHECKING
from urllib.parse import urlsplit

from ...exceptions import ConfigurationError

if TYPE_CHECKING:
    from apprise import NotifyBase

__all__ = ["URLS_HELP", "describe", "notifier", "scrub", "what_apprise_said"]

URLS_HELP = "https://github.com/caronc/apprise/wiki (each service's URL)"

_said = threading.local()  # what Apprise logged in this thread while we listened


class _Listener(logging.Filter):
    """On the ``apprise`` logger: what it logs while we listen (in this thread) is kept
    for our error and goes no further, to no handler, so never to a console or a log
    file; what it logs for others (Prefect's own notifications) passes."""

    def filter(self, record: logging.LogRecord) -> bool:
        heard = getattr(_said, "lines", None)
        if heard is None:
            return True
        if record.levelno >= logging.WARNING:
            heard.append(record.getMessage())
        return False


logging.getLogger("apprise").addFilter(_Listener())


@contextmanager
def what_apprise_said() -> Iterator[list[str]]:
    """The warnings and errors Apprise logs in this thread within the block."""
    _said.lines = lines = []
    try:
        yield lines
    finally:
        _said.lines = None


def scrub(text: str, url: str) -> str:
    """``text`` with every part of ``url`` that could be a secret replaced by ``***``."""
    parts = urlsplit(url)
    public = {parts.scheme, str(parts.port or "")}
    host = parts.hostname or ""
    if "." in host or host == "localhost":  # a machine's name; else often a token (tgram://)
        public.add(host)
    for piece in sorted(re.split(r"[/:@?&=#,;+]+", url), key=len, reverse=True):
        if len(piece) >= 4 and piece not in public:
            text = text.replace(piece, "***")
    return text


def describe(url: str) -> str:
    """What a URL is, for people and logs, without anything that could be a secret."""
    plugin = notifier(url)
    return f"{plugin.service_name} ({urlsplit(url).scheme}://…)"


def notifier(url: str) -> NotifyBase:
    """The Apprise notifier of ``url``.

    Raises:
        ConfigurationError: Apprise does not know it (the message shows its scheme only).
    """
    import apprise

    scheme = urlsplit(url).scheme if "://" in url else ""
    with what_apprise_said() as said:
        plugin = apprise.Apprise.instantiate(url.strip())
    if plugin is None:
        why = scrub(said[-1], url) if said else "unknown"
        what = f"a {scheme}:// URL" if scheme else "this text (no scheme://)"
        raise ConfigurationError(f"Apprise cannot use {what}: {why}; see {URLS_HELP}")
    return plugin
