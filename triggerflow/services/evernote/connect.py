"""``triggerflow connect evernote``: a developer token, checked, and its NoteStore URL.

Evernote gives a developer token for one's own account (dev.evernote.com; new API keys
have been hard to get for years, so this is the path that works); ``UserStore.getUser``
checks it and says who it is, ``UserStore.getNoteStoreUrl`` where the account's notes
live. No key at all: the ``enex`` sink writes files that Evernote imports.
"""

from __future__ import annotations

import argparse
from typing import TYPE_CHECKING, Any

import httpx

from ...exceptions import ConfigurationError
from .._connect import TIMEOUT, Say, refused, save, secret
from .._oauth import require_https

if TYPE_CHECKING:  # the account imports Prefect: the CLI loads this module for every command
    from .account import EvernoteAccount

__all__ = ["DEFAULT_URL", "EXAMPLES", "add_arguments", "connect_evernote", "run"]

DEFAULT_URL = "https://www.evernote.com"
EXAMPLES = [
    "triggerflow connect evernote                  (then paste the developer token)",
    "TRIGGERFLOW_EVERNOTE_TOKEN=S=s1:U=... triggerflow connect evernote --url "
    "https://sandbox.evernote.com",
]


def connect_evernote(
    account: str = "default", *, token: str | None = None, url: str = DEFAULT_URL,
    say: Say = print,
) -> EvernoteAccount:  # fmt: skip
    """Check a developer token with Evernote, find its NoteStore, save the account."""
    from .api import THRIFT, EdamError, edam_call
    from .thrift import STRING, ThriftError

    base = require_https(url, "Evernote")
    token = secret(token, "TRIGGERFLOW_EVERNOTE_TOKEN", "Evernote developer token: ").strip()
    with httpx.Client(timeout=TIMEOUT) as http:

        def post(body: bytes) -> httpx.Response:
            try:
                r = http.post(f"{base}/edam/user", content=body, headers=THRIFT)
            except httpx.HTTPError as e:
                raise ConfigurationError(
                    f"Evernote ({base}) cannot be reached ({type(e).__name__}); check --url"
                ) from None
            if r.status_code != 200:
                raise refused(f"Evernote ({base})", r)
            return r

        try:
            user: dict[int, Any] = edam_call(post, "getUser", [(1, STRING, token)])
            store = str(edam_call(post, "getNoteStoreUrl", [(1, STRING, token)], seqid=2))
        except EdamError as e:
            raise ConfigurationError(f"Evernote refused the token ({e}); make a new one") from None
        except ThriftError as e:
            raise ConfigurationError(f"Evernote ({base}) is not Evernote's API: {e}") from None
    from .account import EvernoteAccount

    block = EvernoteAccount(
        url=base, user=str(user.get(2) or user.get(4) or "Evernote user"),
        note_store_url=require_https(store, "Evernote's NoteStore"),
    )  # fmt: skip
    block.set_token({"access_token": token})
    say(f"Connected Evernote account {block.user} as {save(block, 'evernote', account)!r}.")
    return block


def add_arguments(p: argparse.ArgumentParser) -> None:
    p.add_argument("--url", default=DEFAULT_URL,
                   help=f"Evernote ({DEFAULT_URL}, or https://sandbox.evernote.com)")  # fmt: skip


def run(args: argparse.Namespace, say: Say) -> None:
    connect_evernote(args.account, url=args.url, say=say)
