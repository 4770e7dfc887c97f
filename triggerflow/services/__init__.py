"""Web services, one folder each, so that adding a service touches one folder.

``services/<name>/`` holds everything of one service:

* ``__init__.py``: ``SERVICE``, a :class:`Service` of plain words and numbers (no Prefect,
  no httpx), which the CLI reads to build ``triggerflow connect`` and the
  ``triggerflow.sources`` / ``triggerflow.sinks`` facades read for their names, without
  importing the service itself;
* ``account.py``: its account, a Prefect block (how a request is signed);
* ``connect.py``: ``triggerflow connect <name>`` (its options and how it gets a token);
* ``source.py`` / ``sink.py``: its sources and sinks, on the shared halves here
  (:mod:`._source`: a cursor in the store; :mod:`._sink`: the outbox's ``Poster``) and
  the one HTTP boundary (:mod:`._client`).

Its stand-in (a fake of the API for the tests) is ``tests/standins/<name>.py``.
"""

from __future__ import annotations

import importlib
import pkgutil
from dataclasses import dataclass
from functools import cache
from typing import TYPE_CHECKING, Literal

if TYPE_CHECKING:
    from ._account import ServiceAccount

__all__ = ["Service", "public_names", "service", "services"]


@dataclass(frozen=True)
class Service:
    """What triggerflow knows of a service before importing it."""

    name: str  # as users type it: triggerflow connect NAME
    title: str  # as people write it, in messages
    account: str  # the account block's class, defined in the folder's account.py
    connect: str  # one line for `triggerflow connect --help`
    sources: tuple[str, ...] = ()  # public names that the folder's source.py defines
    sinks: tuple[str, ...] = ()  # ... and its sink.py
    # Requests per window we allow ourselves (the service's documented limit), counted
    # because the service tells nothing before it refuses: in this process, or for every
    # host in the PostgreSQL store (_pacing).
    window: tuple[int, float] | None = None
    token_path: str | None = None  # OAuth 2 token endpoint, under the account's URL
    wait_after_429: float | None = None  # a 429 that says nothing about when: wait this long
    # Refresh tokens that work once (X): refreshed ahead of expiry, one process at a time.
    rotating_refresh: bool = False

    def module(self, part: str) -> str:
        """A module of the service's folder, under ``triggerflow``: ``services.x.sink``."""
        return f"services.{self.name}.{part}"

    def account_class(self) -> type[ServiceAccount]:
        """The account's block class (imports Prefect)."""
        module = importlib.import_module(f"triggerflow.{self.module('account')}")
        cls: type[ServiceAccount] = getattr(module, self.account)
        return cls


@cache
def services() -> dict[str, Service]:
    """Every service, by name: the folders of this package, each read for its ``SERVICE``."""
    found: dict[str, Service] = {}
    for info in sorted(pkgutil.iter_modules(__path__), key=lambda i: i.name):
        if info.ispkg and not info.name.startswith("_"):
            spec = importlib.import_module(f"{__name__}.{info.name}").SERVICE
            assert spec.name == info.name, f"{info.name}/__init__.py names {spec.name!r}"
            found[spec.name] = spec
    return found


def service(name: str) -> Service:
    """The service called ``name`` (a KeyError names the ones there are)."""
    try:
        return services()[name]
    except KeyError:
        raise KeyError(f"no service {name!r}; there are {', '.join(services())}") from None


def public_names(kind: Literal["sources", "sinks"]) -> dict[str, tuple[str, str]]:
    """For a facade: each service's public name -> (its module under triggerflow, name)."""
    part = "source" if kind == "sources" else "sink"
    return {
        name: (spec.module(part), name)
        for spec in services().values()
        for name in getattr(spec, kind)
    }
