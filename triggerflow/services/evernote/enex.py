"""The ENEX sink: ``enex(items, "~/Evernote imports")`` writes the new items as notes in an
``.enex`` file, which Evernote (*File > Import*) and Joplin (*File > Import > ENEX*) import.

Each run that has items writes one file of its own, ``<trigger>-<time>.enex`` in the
folder, so importing a file never brings a note twice; the folder is the ledger's
target. The file is rewritten (atomically) after each note, before the ledger records
that note as sent: a run killed at any moment leaves a valid file with every note it
recorded. A note carries its delivery's id (``application-data``, key ``triggerflow``), and a
run first reads which ids the folder's files hold: a note written by a run killed
before the ledger heard of it is not written again.
"""

from __future__ import annotations

import os
import re
from collections.abc import Callable, Iterable, Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass
from datetime import UTC, datetime
from html import escape
from pathlib import Path

from ... import _runtime
from ..._files import write_atomic
from ..._format import Format, render
from ..._outbox import Attempt
from ..._steps import run_sink
from ...exceptions import ConfigurationError
from ...limits import Limit
from ...types import Item, SinkReport
from .enml import EnexNote, enex_document, enml, enml_title

__all__ = ["enex", "note_html"]

DATA_KEY = "triggerflow"  # the application-data key of a note's delivery id
_WRITTEN = re.compile(rb'<application-data key="triggerflow">([0-9a-f]{32})</application-data>')


def enex(
    items: Iterable[Item],
    folder: str | os.PathLike[str],
    *,
    title: Format | None = None,
    tags: Sequence[str] = (),
    first_run: int | None = None,
    limit: str | Limit | None = None,
) -> SinkReport:
    """Write items as notes of an ENEX file in ``folder`` (a file per run with items).

    Args:
        items: what to make notes of.
        folder: where the files go (made if missing); ``~`` is your home.
        title: the note's title: ``callable(item) -> str`` or a template like
            ``"{title}"``; default: the item's title.
        tags: tags to put on every note.
        first_run: how many of the newest items the first run writes (default 5).
        limit: a publication limit, e.g. ``"50/day"``.

    Returns:
        How many notes were written, queued or failed (in a preview: their titles).
    """
    path = Path(os.path.abspath(Path(folder).expanduser()))
    return run_sink(_EnexFolder(path, title, tuple(tags)), items, first_run=first_run, limit=limit)


def note_html(item: Item) -> str:
    """The HTML of an item's note: its link on top, then its content (else summary)."""
    link = item.link if item.link.startswith(("http://", "https://")) else ""
    head = f'<p><a href="{escape(link)}">{escape(link)}</a></p>' if link else ""
    return head + (item.content or item.summary or "")


@dataclass(frozen=True)
class _EnexFolder:
    folder: Path
    title: Format | None
    tags: tuple[str, ...]
    sink: str = "enex"

    @property
    def target(self) -> str:
        return str(self.folder)

    def problem(self) -> str | None:
        if self.folder.exists() and not self.folder.is_dir():
            return f"enex(folder=...): {self.folder} is a file, not a folder"
        return None

    def note_title(self, item: Item) -> str:
        return enml_title(render(item, self.title) if self.title else item.display_title)

    def preview(self, item: Item) -> str:
        return self.note_title(item)

    def note(self, item: Item, delivery: str) -> EnexNote:
        return EnexNote(
            title=self.note_title(item),
            content=enml(note_html(item)),
            created=item.published,
            updated=item.published,
            tags=(*self.tags, *item.tags),
            author=item.author,
            source_url=item.link if item.link.startswith(("http://", "https://")) else "",
            application_data=((DATA_KEY, delivery),),
        )

    def written(self) -> set[str]:
        """The deliveries whose notes the folder's files hold."""
        found: set[str] = set()
        for f in self.folder.glob("*.enex"):
            if f.is_file():
                found.update(m.decode() for m in _WRITTEN.findall(f.read_bytes()))
        return found

    @contextmanager
    def open(self) -> Iterator[Callable[[Item, Attempt], None]]:
        try:
            self.folder.mkdir(parents=True, exist_ok=True)
        except OSError as e:
            why = e.strerror or type(e).__name__
            raise ConfigurationError(f"enex: cannot make the folder {self.folder}: {why}") from None
        ctx = _runtime.current()
        name = re.sub(r"[^\w.-]+", "-", ctx.trigger if ctx else "notes").strip("-") or "notes"
        started = datetime.now(UTC)
        path = self.folder / f"{name}-{started:%Y%m%d-%H%M%S-%f}.enex"
        notes: list[EnexNote] = []
        written: list[set[str]] = []  # read at the first note of the run

        def send(item: Item, attempt: Attempt) -> None:
            if not written:
                written.append(self.written())
            if attempt.id in written[0]:
                return
            notes.append(self.note(item, attempt.id))
            try:
                write_atomic(path, enex_document(notes, exported=started).encode())
            except OSError as e:
                notes.pop()
                raise ConfigurationError(f"enex: cannot write {path}: {e.strerror}") from None

        yield send
