"""What Joplin's sink and source share: notebooks found by title, notes as items.

Joplin's Data API lists in pages (``{"items": [...], "has_more": true}``, ``limit`` at
most 100, ``page`` from 1); its ids are 32 lowercase hex digits, and a client may choose
the id of what it creates.
"""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Any

from ...types import Item
from .._client import ServiceClient

__all__ = ["NOTE_FIELDS", "PAGE", "find_notebook", "note_item", "pages"]

PAGE = 100  # the most Joplin lists at once
MAX_LIST_PAGES = 100  # 10,000 notebooks: a bound on the loop, not a limit anyone meets
NOTE_FIELDS = "id,parent_id,title,body,source_url,author,user_created_time,is_todo"


def pages(client: ServiceClient, path: str, what: str, **params: Any) -> list[dict[str, Any]]:
    """Every entry of a paged list (at most ``MAX_LIST_PAGES`` pages)."""
    found: list[dict[str, Any]] = []
    for page in range(1, MAX_LIST_PAGES + 1):
        body = client.get(path, params={**params, "limit": PAGE, "page": page}, what=what).json()
        if isinstance(body, list):  # Joplin before 1.6 did not page
            return found + body
        found += body.get("items") or []
        if not body.get("has_more"):
            break
    return found


def find_notebook(client: ServiceClient, name: str) -> dict[str, Any] | None:
    """The notebook whose id or title is ``name`` (the first such title), or None."""
    folders = pages(client, "/folders", "the notebooks", fields="id,title,parent_id")
    for match in (lambda f: f.get("id") == name, lambda f: f.get("title") == name):
        for folder in folders:
            if match(folder):
                return folder
    return None


def note_item(source: str, note: dict[str, Any]) -> Item:
    """A Joplin note as an item: its Markdown body is the content."""
    created = note.get("user_created_time")
    return Item(
        source=source,
        id=str(note["id"]),
        title=note.get("title") or "",
        # The app opens a note from this address (x-callback-url, as its "Copy external link").
        link=note.get("source_url") or f"joplin://x-callback-url/openNote?id={note['id']}",
        content=note.get("body") or "",
        author=note.get("author") or "",
        published=datetime.fromtimestamp(created / 1000, UTC) if created else None,
        raw={k: v for k, v in note.items() if k != "body"},
    )
