"""The Joplin sink: ``joplin(items, notebook="News")`` makes a note per item.

``POST /notes`` with ``title``, ``body_html`` (the item's HTML, which Joplin turns into
Markdown itself, as for a web clipping), ``source_url``, ``parent_id`` and ``tags``
(comma-separated titles). Exactly once: the note's ``id`` is the delivery's id (32 hex
digits, as Joplin's ids are): Joplin refuses a second note of an id, so a repeat never
makes one, and after any failure the note is looked up by that id: there, it is sent.
That covers a lost answer and a run killed before the ledger heard of the note.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from hashlib import sha256
from html import escape
from typing import Any

from ..._format import Format, render
from ...exceptions import ServiceError, ServiceNotFound
from ...limits import Limit
from ...types import Item, SinkReport
from .._client import ServiceClient
from .._sink import Send, ServicePoster, deliver
from .api import find_notebook

__all__ = ["joplin"]


def joplin(
    items: Iterable[Item],
    notebook: str | None = None,
    *,
    account: str = "default",
    title: Format | None = None,
    tags: Sequence[str] = (),
    first_run: int | None = None,
    limit: str | Limit | None = None,
) -> SinkReport:
    """Make a Joplin note of each item, in the Joplin app on this machine.

    Args:
        items: what to make notes of.
        notebook: the notebook's title (made if there is none) or id; default: the
            notebook Joplin puts web clippings in.
        account: the account's name (``triggerflow connect joplin --account NAME``).
        title: the note's title: ``callable(item) -> str`` or a template like
            ``"{title}"``; default: the item's title.
        tags: tags to put on every note.
        first_run: how many of the newest items the first run makes notes of (default 5).
        limit: a publication limit, e.g. ``"30/day"``.

    Returns:
        How many notes were made, queued or failed (in a preview: their titles).
    """
    return deliver(
        _Note(account, notebook, title, tuple(tags)), items, first_run=first_run, limit=limit
    )


@dataclass(frozen=True)
class _Note(ServicePoster):
    account: str
    notebook: str | None
    title: Format | None
    tags: tuple[str, ...]
    service: str = "joplin"

    @property
    def target(self) -> str:
        return f"notebook {self.notebook}" if self.notebook else "the default notebook"

    def problem(self) -> str | None:
        bad = [t for t in self.tags if "," in t]
        if bad:
            return f"joplin(tags=...): a tag cannot contain a comma: {bad[0]!r}"
        if self.notebook is not None and not self.notebook.strip():
            return "joplin(notebook=...): give a notebook's title, or None for the default one"
        return None

    def note_title(self, item: Item) -> str:
        text = render(item, self.title) if self.title else item.display_title
        return text.strip().split("\n", 1)[0]

    def preview(self, item: Item) -> str:
        return self.note_title(item)

    def note(self, item: Item, note_id: str, folder: str | None) -> dict[str, Any]:
        link = item.link if item.link.startswith(("http://", "https://")) else ""
        note: dict[str, Any] = {"id": note_id, "title": self.note_title(item)}
        html = item.content or item.summary
        if html:
            head = f'<p><a href="{escape(link)}">{escape(link)}</a></p>' if link else ""
            note["body_html"] = head + html
            if link:
                note["base_url"] = link  # relative links and images resolved against it
        else:
            note["body"] = f"<{link}>" if link else ""
        if link:
            note["source_url"] = link
        if item.author:
            note["author"] = item.author
        if item.published:
            note["user_created_time"] = int(item.published.timestamp() * 1000)
        if folder:
            note["parent_id"] = folder
        if self.tags:
            note["tags"] = ",".join(self.tags)
        return note

    def start(self, client: ServiceClient) -> Send:
        folder: list[str | None] = []  # found (or made) at the first note of the run

        def notebook() -> str | None:
            if not folder:
                folder.append(None if self.notebook is None else self._notebook(client))
            return folder[0]

        def made(note_id: str) -> bool:
            try:
                client.get(f"/notes/{note_id}", params={"fields": "id"}, what=f"note {note_id}")
            except ServiceNotFound:
                return False
            return True

        def send(item: Item, delivery: str, retried: bool) -> None:
            note = self.note(item, delivery, notebook())
            try:
                client.post("/notes", json=note, what=f"a note in {self.target}")
            except ServiceError:
                # Whatever went wrong (no answer, or Joplin refusing an id it has: 500
                # "UNIQUE constraint failed"), a note of this id is the item, sent.
                if made(delivery):
                    return
                raise

        return send

    def _notebook(self, client: ServiceClient) -> str:
        """The notebook's id; made if Joplin has none of that title."""
        assert self.notebook is not None
        found = find_notebook(client, self.notebook)
        if found is not None:
            return str(found["id"])
        # Its id is chosen from its title, so a request whose answer was lost makes no
        # second notebook: the repeat is refused and the listing then finds the first.
        folder_id = sha256(f"triggerflow notebook\x1f{self.notebook}".encode()).hexdigest()[:32]
        try:
            client.post(
                "/folders", json={"id": folder_id, "title": self.notebook},
                what=f"the notebook {self.notebook!r}",
            )  # fmt: skip
        except ServiceError:
            found = find_notebook(client, self.notebook)
            if found is None:
                raise
            return str(found["id"])
        return folder_id
