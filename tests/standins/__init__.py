"""Stand-ins for the third-party web APIs triggerflow talks to: Mastodon, Wallabag, Trello,
Joplin's Data API, a Bluesky PDS, Evernote's Thrift API, X's API v2, and a web hook for
Apprise's generic notifiers.

Each is a small Starlette app served by uvicorn on ``127.0.0.1`` (a free port) in a
background thread, written from the service's public API documentation (see each
module's docstring), with Authlib's *server* components behind its OAuth endpoints. Tests
drive them through plain Python methods: seed data, move the clock, exhaust the rate
limit, inject failures, and inspect what was received.

Fixtures (function-scoped: a fresh, started stand-in per test, closed afterwards)::

    # conftest.py
    pytest_plugins = ["standins"]  # or: from standins import mastodon, trello, wallabag

    def test_toot(mastodon):
        token = mastodon.issue_token()
        ...

For other settings, build one: ``with MastodonStandIn(max_characters=11) as m: ...``.
(The fixture ``mastodon`` shadows the module of the same name as an attribute of this
package: import the classes with ``from standins import MastodonStandIn`` or ``from
standins.mastodon import ...``.)
"""

from __future__ import annotations

from collections.abc import Iterator

import pytest

from ._server import Gate, RecordedRequest, StandIn
from .bluesky import BlueskyStandIn
from .evernote import EvernoteStandIn
from .joplin import JoplinStandIn
from .mastodon import MastodonStandIn
from .notifier import NotifierStandIn
from .trello import TrelloStandIn
from .wallabag import WallabagStandIn
from .x import XStandIn

__all__ = [
    "BlueskyStandIn",
    "EvernoteStandIn",
    "Gate",
    "JoplinStandIn",
    "MastodonStandIn",
    "NotifierStandIn",
    "RecordedRequest",
    "StandIn",
    "TrelloStandIn",
    "WallabagStandIn",
    "XStandIn",
    "bluesky",
    "evernote",
    "joplin",
    "mastodon",
    "notifier",
    "trello",
    "wallabag",
    "x_api",
]


@pytest.fixture
def mastodon() -> Iterator[MastodonStandIn]:
    """A Mastodon instance (defaults: 500 characters, 300 requests / 5 min)."""
    with MastodonStandIn() as standin:
        yield standin


@pytest.fixture
def wallabag() -> Iterator[WallabagStandIn]:
    """A Wallabag server with user ``wallabag``/``wallabag`` and one API client."""
    with WallabagStandIn() as standin:
        yield standin


@pytest.fixture
def trello() -> Iterator[TrelloStandIn]:
    """Trello's API with an API key (``trello.api_key``) and member ``tester``."""
    with TrelloStandIn() as standin:
        yield standin


@pytest.fixture
def notifier() -> Iterator[NotifierStandIn]:
    """A web hook that takes Apprise's ``json://`` and ``form://`` notifications."""
    with NotifierStandIn() as standin:
        yield standin


@pytest.fixture
def joplin() -> Iterator[JoplinStandIn]:
    """The Joplin app's Data API with one notebook, "Notes" (``joplin.token``)."""
    with JoplinStandIn() as standin:
        yield standin


@pytest.fixture
def bluesky() -> Iterator[BlueskyStandIn]:
    """A Bluesky PDS with ``alice.test`` and its app password (``bluesky.app_password``)."""
    with BlueskyStandIn() as standin:
        yield standin


@pytest.fixture
def evernote() -> Iterator[EvernoteStandIn]:
    """Evernote's API with one account and its developer token (``evernote.token``)."""
    with EvernoteStandIn() as standin:
        yield standin


@pytest.fixture
def x_api() -> Iterator[XStandIn]:
    """X's API with user ``tester`` and a confidential app whose callback is on a free
    loopback port (``x_api.callback_port``)."""
    import socket

    with socket.socket() as s:  # a free port for the registered callback
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    with XStandIn(f"http://127.0.0.1:{port}/callback") as standin:
        standin.callback_port = port
        yield standin
