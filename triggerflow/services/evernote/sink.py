"""The Evernote sinks: ``enex`` (files to import, no account) and ``evernote`` (the API).

``evernote(items, "Reading")`` makes a note per item with ``NoteStore.createNote``: the
title, the item's HTML reduced to ENML with its link on top, its date, tags (made by
name if missing), the link as the note's source URL. Evernote takes no idempotency key,
so each note carries one of ours, ``tf`` + 30 hex digits of the delivery's id, as an
``applicationData`` key; after an attempt that got no answer the note is searched for
(``applicationData:<key>``) before it is made again. Evernote's search may take a moment
to see a new note: a retry within that moment can make a second one (the documented
window).
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from typing import Any

from ..._format import Format, render
from ...exceptions import ServiceUnavailable
from ...limits import Limit
from ...types import Item, SinkReport
from .._client import ServiceClient
from .._sink import Send, ServicePoster, deliver
from .api import THRIFT, EdamError, count_spec, edam_call, find_filter, note_fields
from .enex import enex, note_html
from .enml import enml, enml_tag, enml_title
from .thrift import I32, STRING, STRUCT, Field, ThriftError

__all__ = ["enex", "evernote"]

DATA_CONFLICT = 10  # EDAMErrorCode: a notebook of that name exists


def evernote(
    items: Iterable[Item],
    notebook: str | None = None,
    *,
    account: str = "default",
    title: Format | None = None,
    tags: Sequence[str] = (),
    first_run: int | None = None,
    limit: str | Limit | None = None,
) -> SinkReport:
    """Make an Evernote note of each item, through Evernote's API.

    Args:
        items: what to make notes of.
        notebook: the notebook's name (made if there is none); default: the account's
            default notebook.
        account: the account's name (``triggerflow connect evernote --account NAME``).
        title: the note's title: ``callable(item) -> str`` or a template; default: the
            item's title.
        tags: tags to put on every note (made if missing).
        first_run: how many of the newest items the first run makes notes of (default 5).
        limit: a publication limit, e.g. ``"50/day"``.

    Returns:
        How many notes were made, queued or failed (in a preview: their titles).
    """
    return deliver(
        _Note(account, notebook, title, tuple(tags)), items, first_run=first_run, limit=limit
    )


class _Store:
    """The account's NoteStore, through the client (so rate limits and errors are shared)."""

    def __init__(self, client: ServiceClient) -> None:
        self.client = client
        self.url = str(getattr(client.block, "note_store_url", ""))
        token = client.block.access_token
        self.token = token.get_secret_value() if token is not None else ""
        self.seqid = 0

    def call(self, method: str, args: list[Field], what: str) -> Any:
        """The result of ``method``, or a :class:`ServiceError` for ``what``."""
        try:
            return self.edam(method, args, what)
        except EdamError as e:
            raise e.as_service_error(what, self.client.auth_error) from None

    def edam(self, method: str, args: list[Field], what: str) -> Any:
        """The same, Evernote's own exceptions raised as they came (:class:`EdamError`)."""
        self.seqid += 1

        def post(body: bytes) -> Any:
            return self.client.post(self.url, content=body, headers=THRIFT, what=what)

        try:
            return edam_call(post, method, [(1, STRING, self.token), *args], self.seqid)
        except ThriftError as e:
            raise ServiceUnavailable("evernote", f"Evernote ({self.client.base}): {e}") from None


@dataclass(frozen=True)
class _Note(ServicePoster):
    account: str
    notebook: str | None
    title: Format | None
    tags: tuple[str, ...]
    service: str = "evernote"

    @property
    def target(self) -> str:
        return f"notebook {self.notebook}" if self.notebook else "the default notebook"

    def problem(self) -> str | None:
        bad = [t for t in self.tags if "," in t or not enml_tag(t)]
        if bad:
            return f"evernote(tags=...): {bad[0]!r} is no tag name (no commas, not empty)"
        if self.notebook is not None and not self.notebook.strip():
            return "evernote(notebook=...): give a notebook's name, or None for the default one"
        return None

    def note_title(self, item: Item) -> str:
        return enml_title(render(item, self.title) if self.title else item.display_title)

    def preview(self, item: Item) -> str:
        return self.note_title(item)

    def start(self, client: ServiceClient) -> Send:
        store = _Store(client)
        notebook: list[str | None] = []  # found (or made) at the first note of the run

        def send(item: Item, delivery: str, retried: bool) -> None:
            if not notebook:
                notebook.append(None if self.notebook is None else self._notebook(store))
            key = "tf" + delivery[:30]
            what = f"the note for {item.title or item.link or item.id!r}"
            if retried:  # the last attempt got no answer: it may have made the note
                found = store.call("findNotesMetadata", [
                    (2, STRUCT, find_filter(f"applicationData:{key}")), (3, I32, 0), (4, I32, 1),
                    (5, STRUCT, count_spec()),
                ], what)  # fmt: skip
                if (found or {}).get(2):  # totalNotes
                    return
            link = item.link if item.link.startswith(("http://", "https://")) else ""
            note = note_fields(
                title=self.note_title(item), content=enml(note_html(item)),
                created_ms=int(item.published.timestamp() * 1000) if item.published else None,
                notebook=notebook[0], tags=[enml_tag(t) for t in self.tags],
                author=item.author, source_url=link, data_key=key,
            )  # fmt: skip
            store.call("createNote", [(2, STRUCT, note)], what)

        return send

    def _notebook(self, store: _Store) -> str:
        """The notebook's guid; made if the account has none of that name."""
        assert self.notebook is not None
        name = self.notebook.strip()
        what = f"the notebook {name!r}"
        for _ in range(2):  # made by someone else in between (DATA_CONFLICT): look again
            for book in store.call("listNotebooks", [], what) or []:
                if str(book.get(2, "")).casefold() == name.casefold():
                    return str(book[1])
            try:
                made = store.edam("createNotebook", [(2, STRUCT, [(2, STRING, name)])], what)
                return str(made[1])
            except EdamError as e:
                if e.code != DATA_CONFLICT:
                    raise e.as_service_error(what, store.client.auth_error) from None
        raise ServiceUnavailable("evernote", f"Evernote: {what} could not be found or made")
