"""The Joplin source: notes created since last time, from the app's change events.

``GET /events`` without a cursor answers only the latest change's id; with
``?cursor=N`` the changes after it, 100 at a time (``has_more``), each naming the note
(``item_type`` 1), and the kind (``type``: 1 created, 2 updated, 3 deleted). The first
read takes the newest notes and that cursor; later reads follow the events and load each
note created since (one deleted since is skipped).
"""

from __future__ import annotations

from dataclasses import dataclass, field

from ...exceptions import ServiceNotFound
from ...types import Item, Items
from .._client import ServiceClient
from .._source import MAX_PAGES, read
from .api import NOTE_FIELDS, find_notebook, note_item

__all__ = ["joplin_notes"]

FIRST_READ = 20  # notes the first read takes (the newest)
NOTE, CREATED = 1, 1  # Joplin's ModelType.Note and ItemChange.TYPE_CREATE


def joplin_notes(account: str = "default", *, notebook: str | None = None) -> Items:
    """Notes made in the Joplin app since the last run (in every notebook, or one).

    Args:
        account: the account's name (``triggerflow connect joplin --account NAME``).
        notebook: only notes in this notebook (its title or id).

    Example::

        xmpp(joplin_notes(notebook="Inbox"), to="me@example.org")
    """
    return read(_Notes(account, notebook))


@dataclass(frozen=True)
class _Notes:
    account: str
    notebook: str | None
    service: str = field(default="joplin", init=False)

    @property
    def label(self) -> str:
        return f"joplin {self.notebook or 'notes'} ({self.account})"

    def key(self, client: ServiceClient) -> str:
        return f"joplin:{client.block.user or client.base}:{self.notebook or ''}"

    def _folder(self, client: ServiceClient) -> str | None:
        if self.notebook is None:
            return None
        found = find_notebook(client, self.notebook)
        if found is None:
            raise ServiceNotFound("joplin", f"Joplin has no notebook {self.notebook!r}", 404)
        return str(found["id"])

    def fetch(self, client: ServiceClient, cursor: str | None) -> tuple[list[Item], str | None]:
        folder = self._folder(client)
        source = self.key(client)
        if cursor is None:  # first read: where the events are now, and the newest notes
            latest = client.get("/events", what="the change events").json()["cursor"]
            path = f"/folders/{folder}/notes" if folder else "/notes"
            newest = client.get(path, what="the notes", params={
                "fields": NOTE_FIELDS, "order_by": "user_created_time", "order_dir": "DESC",
                "limit": FIRST_READ,
            }).json()  # fmt: skip
            notes = newest.get("items") or [] if isinstance(newest, dict) else newest
            return [note_item(source, n) for n in reversed(notes)], str(latest)
        created: list[str] = []
        for _ in range(MAX_PAGES):
            body = client.get("/events", params={"cursor": cursor}, what="the change events")
            page = body.json()
            for event in page.get("items") or []:
                if event.get("item_type") == NOTE and event.get("type") == CREATED:
                    created.append(str(event["item_id"]))
            cursor = str(page.get("cursor") or cursor)
            if not page.get("has_more"):
                break
        items: list[Item] = []
        for note_id in dict.fromkeys(created):
            try:
                note = client.get(
                    f"/notes/{note_id}", params={"fields": NOTE_FIELDS}, what=f"note {note_id}"
                ).json()
            except ServiceNotFound:
                continue  # deleted since it was made
            if folder is None or note.get("parent_id") == folder:
                items.append(note_item(source, note))
        return items, cursor
