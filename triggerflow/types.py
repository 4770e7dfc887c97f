"""The data that flows through a trigger: items and the reports of one run."""

from __future__ import annotations

import html
import json
from collections.abc import Callable, Iterable, Iterator, Mapping, Sequence
from dataclasses import dataclass, field
from datetime import date, datetime
from html.parser import HTMLParser
from typing import Any, overload

__all__ = ["Failure", "Item", "ItemKey", "Items", "Route", "SinkReport", "SourceReport", "Table"]


# An item's identity in the store: (source, id).
ItemKey = tuple[str, str]


@dataclass(frozen=True)
class Route:
    """Where one trigger's sink delivers: the delivery ledger's key (with the item's).

    ``sink`` is the sink's name (``"xmpp"``, ``"feed"``, ``"mastodon"``, a user's own),
    ``target`` whom it delivers to (a JID, a feed's name, ``"account default"``).
    """

    trigger: str
    sink: str
    target: str

    def __str__(self) -> str:
        return f"{self.sink} → {self.target}"


@dataclass(frozen=True)
class Item:
    """One collected thing: a feed entry, a webhook event, a chat message.

    Attributes:
        source: the key of the source that produced it (for a feed, its URL as written
            in the trigger, even after a permanent redirect).
        id: stable id within the source: the entry's guid/id, else its link, else a
            hash of its content; the same entry gets the same id on every run.
        title: one-line title (may be empty).
        link: URL of the thing itself (may be empty).
        summary: short text or HTML.
        content: full text or HTML when the source has it.
        author: author name (may be empty).
        published: when it was published or last updated, timezone-aware, or None.
        tags: category terms.
        enclosures: URLs of attached media.
        raw: the source's own record, for format functions that need more (for a feed
            entry: feedparser's entry, without the texts already in title, summary and
            content).
    """

    source: str
    id: str
    title: str = ""
    link: str = ""
    summary: str = ""
    content: str = ""
    author: str = ""
    published: datetime | None = None
    tags: tuple[str, ...] = ()
    enclosures: tuple[str, ...] = ()
    raw: Mapping[str, Any] = field(default_factory=dict, repr=False, compare=False, hash=False)

    @property
    def key(self) -> tuple[str, str]:
        """``(source, id)``: the identity of the item in the store."""
        return (self.source, self.id)

    @property
    def display_title(self) -> str:
        """The title to show: ``title``, else the first words of the text, else the link.

        Previews, tables and generated feeds all show this, so an untitled entry reads
        the same everywhere, and never as its ``sha256:…`` id. The text is the summary
        (else the content) with its HTML tags removed, cut at a word near 60 characters.

        Example::

            Item("notes", "sha256:1f…", summary="<p>Buy <b>milk</b></p>").display_title
            # 'Buy milk'

        Returns:
            A one-line text; ``"(untitled)"`` when the item has no text and no link.
        """
        if self.title.strip():
            return " ".join(self.title.split())
        for text in (self.summary, self.content):
            words = plain_text(text)
            if words:
                return _cut_words(words, 60)
        return self.link or "(untitled)"


class RawJSON(Mapping[str, Any]):
    """A source's record kept as JSON text and decoded on first use.

    Most triggers never look at ``Item.raw``; decoding it for every item read back from
    the store (10,000 of them when 500 unchanged feeds answer 304) cost more than the
    rest of the read. The text also goes back into the store as it is.
    """

    __slots__ = ("_data", "text")

    def __init__(self, text: str) -> None:
        self.text = text
        self._data: dict[str, Any] | None = None

    def _decoded(self) -> dict[str, Any]:
        if self._data is None:
            self._data = json.loads(self.text) if self.text else {}
        return self._data

    def __getitem__(self, key: str) -> Any:
        return self._decoded()[key]

    def __iter__(self) -> Iterator[str]:
        return iter(self._decoded())

    def __len__(self) -> int:
        return len(self._decoded())

    def __repr__(self) -> str:
        return repr(self._decoded())

    def __reduce__(self) -> tuple[type[RawJSON], tuple[str]]:
        return (RawJSON, (self.text,))  # pickled as its text, not decoded


_COLUMNS = ("title", "link", "published", "author", "source")


@dataclass(frozen=True)
class InStore:
    """Items that are in the store, by key: loaded only when someone looks at them."""

    keys: tuple[ItemKey, ...]
    load: Callable[[Sequence[ItemKey]], Sequence[Item]]


class Items(Sequence[Item]):
    """A sequence of :class:`Item` that renders as a table in Jupyter.

    Behaves like a tuple (index, slice, iterate, ``len``); ``.df()`` gives a pandas
    DataFrame when pandas is installed; ``.filter(fn)`` keeps the items ``fn``
    accepts.

    The items a source already had in the store (an unchanged feed's) are read from it
    when first looked at, not before: handed to a sink untouched, only their keys are
    needed, and an unchanged round costs no read of 10,000 items.
    """

    __slots__ = ("_parts", "_stored")

    def __init__(self, items: Iterable[Item] = ()) -> None:
        if isinstance(items, Items):
            self._parts: tuple[tuple[Item, ...] | InStore, ...] = items._parts
            self._stored: frozenset[ItemKey] = items._stored
        else:
            self._parts, self._stored = (tuple(items),), frozenset()

    @property
    def _items(self) -> tuple[Item, ...]:
        if len(self._parts) != 1 or isinstance(self._parts[0], InStore):
            loaded: list[Item] = []
            for part in self._parts:
                loaded.extend(part.load(part.keys) if isinstance(part, InStore) else part)
            self._parts = (tuple(loaded),)
        return self._parts[0] if self._parts else ()

    @overload
    def __getitem__(self, index: int) -> Item: ...
    @overload
    def __getitem__(self, index: slice) -> Items: ...
    def __getitem__(self, index: int | slice) -> Item | Items:
        if isinstance(index, slice):
            return items_of([self._items[index]], self._stored)
        return self._items[index]

    def __len__(self) -> int:
        return sum(len(p.keys) if isinstance(p, InStore) else len(p) for p in self._parts)

    def __iter__(self) -> Iterator[Item]:
        return iter(self._items)

    def __add__(self, other: Iterable[Item]) -> Items:
        if isinstance(other, Items):
            return items_of([*self._parts, *other._parts], self._stored | other._stored)
        return items_of([*self._parts, tuple(other)], self._stored)

    def __eq__(self, other: object) -> bool:
        if isinstance(other, Items):
            return self._items == other._items
        if isinstance(other, list | tuple):  # the same items, in the same order
            return list(self._items) == list(other)
        return NotImplemented

    def __getstate__(self) -> object:
        self._items  # noqa: B018 - read what is still in the store: a loader does not travel
        return object.__getstate__(self)

    __hash__ = None  # type: ignore[assignment]

    def filter(self, accept: Any) -> Items:
        """The items for which ``accept(item)`` is true."""
        return items_of([tuple(i for i in self._items if accept(i))], self._stored)

    def rows(self) -> list[dict[str, Any]]:
        """The items as plain dicts (every field but ``raw``)."""
        return [
            {k: getattr(i, k) for k in Item.__dataclass_fields__ if k != "raw"} for i in self._items
        ]

    def df(self) -> Any:
        """The items as a pandas DataFrame (needs pandas)."""
        try:
            import pandas as pd
        except ImportError as e:  # pragma: no cover - depends on the user's environment
            raise ImportError("Items.df() needs pandas: pip install pandas") from e
        return pd.DataFrame(self.rows())

    def __repr__(self) -> str:
        if not self._items:
            return "Items([])"
        lines = [f"Items({len(self._items)}):"]
        for i in self._items[:20]:
            when = i.published.strftime("%Y-%m-%d %H:%M") if i.published else "—"
            lines.append(f"  {when}  {_cut(i.display_title, 70)}  {i.link}")
        if len(self._items) > 20:
            lines.append(f"  … and {len(self._items) - 20} more")
        return "\n".join(lines)

    def _lead_columns(self) -> dict[str, list[str]]:
        """Extra columns shown first in the HTML table (subclasses add e.g. a score)."""
        return {}

    def _repr_html_(self) -> str:
        lead = self._lead_columns()
        head = "".join(f"<th>{html.escape(c)}</th>" for c in (*lead, *_COLUMNS))
        body = []
        for n, i in enumerate(self._items[:200]):
            cells = [f"<td>{html.escape(values[n])}</td>" for values in lead.values()]
            for c in _COLUMNS:
                v = i.display_title if c == "title" else getattr(i, c)
                text = v.isoformat(timespec="minutes") if isinstance(v, datetime) else str(v or "")
                if c == "link" and text:
                    text = f'<a href="{html.escape(text)}">{html.escape(_cut(text, 60))}</a>'
                else:
                    text = html.escape(_cut(text, 100))
                cells.append(f"<td>{text}</td>")
            body.append("<tr>" + "".join(cells) + "</tr>")
        more = f"<p>… and {len(self._items) - 200} more</p>" if len(self._items) > 200 else ""
        return (
            f"<p>{len(self._items)} items</p><table><thead><tr>{head}</tr></thead>"
            f"<tbody>{''.join(body)}</tbody></table>{more}"
        )


# -- for the outbox, the sources and the run: internal, not part of the public API ------
def items_of(parts: Iterable[tuple[Item, ...] | InStore], stored: Iterable[ItemKey] = ()) -> Items:
    """Items made of ``parts`` in order; ``stored``: keys known to be in the store as
    they are here (a sink need not write them again); those of ``InStore`` parts are."""
    new = Items.__new__(Items)
    new._parts = tuple(p for p in parts if (p.keys if isinstance(p, InStore) else p))
    new._stored = frozenset(stored)
    for p in new._parts:
        if isinstance(p, InStore):
            new._stored |= frozenset(p.keys)
    return new


def item_keys(items: Items) -> list[ItemKey]:
    """Every item's key, in order, without reading any from the store."""
    return [
        k
        for part in items._parts
        for k in (part.keys if isinstance(part, InStore) else (i.key for i in part))
    ]


def items_at_hand(items: Items) -> list[Item]:
    """The items held in memory (not those still to be read from the store)."""
    return [i for part in items._parts if not isinstance(part, InStore) for i in part]


def stored_keys(items: Items) -> frozenset[ItemKey]:
    """Keys of ``items`` known to be in the store exactly as they are."""
    return items._stored


class Table:
    """Rows with named columns that render as a table in Jupyter (``.df()`` for pandas).

    What :func:`triggerflow.sql` returns. ``columns`` are the column names, ``rows`` the
    rows as tuples in that order; ``.column(name)`` gives one column's values.
    """

    def __init__(self, columns: Sequence[str], rows: Sequence[Sequence[Any]]) -> None:
        self.columns = list(columns)
        self.rows = [tuple(r) for r in rows]

    def __len__(self) -> int:
        return len(self.rows)

    def column(self, name: str) -> list[Any]:
        """One column's values, e.g. to plot them."""
        try:
            i = self.columns.index(name)
        except ValueError:
            raise KeyError(f"no column {name!r}; columns: {', '.join(self.columns)}") from None
        return [r[i] for r in self.rows]

    def df(self) -> Any:
        """A pandas DataFrame (needs pandas)."""
        try:
            import pandas as pd
        except ImportError as e:  # pragma: no cover - depends on the user's environment
            raise ImportError("Table.df() needs pandas: pip install pandas") from e
        return pd.DataFrame(self.rows, columns=self.columns)

    def __repr__(self) -> str:
        cells = [self.columns] + [[_cell_text(v) for v in r] for r in self.rows[:50]]
        widths = [min(40, max(len(c[i]) for c in cells)) for i in range(len(self.columns))]
        lines = [
            "  ".join(_cut(c, w).ljust(w) for c, w in zip(r, widths, strict=True)) for r in cells
        ]
        lines.insert(1, "  ".join("-" * w for w in widths))
        if len(self.rows) > 50:
            lines.append(f"… {len(self.rows) - 50} more rows")
        return "\n".join(line.rstrip() for line in lines)

    def _repr_html_(self) -> str:
        head = "".join(f"<th>{html.escape(c)}</th>" for c in self.columns)
        body = "".join(
            "<tr>"
            + "".join(f"<td>{html.escape(_cut(_cell_text(v), 100))}</td>" for v in r)
            + "</tr>"
            for r in self.rows[:500]
        )
        more = f"<p>… {len(self.rows) - 500} more rows</p>" if len(self.rows) > 500 else ""
        return (
            f"<p>{len(self.rows)} rows</p><table><thead><tr>{head}</tr></thead>"
            f"<tbody>{body}</tbody></table>{more}"
        )


def _cell_text(v: Any) -> str:
    if v is None:
        return ""
    if isinstance(v, datetime):
        return v.isoformat(sep=" ", timespec="minutes")
    if isinstance(v, date):
        return v.isoformat()
    return str(v)


class _TextOnly(HTMLParser):
    """Collects the characters of an HTML text; scripts and styles are not text."""

    def __init__(self) -> None:
        super().__init__(convert_charrefs=True)
        self.parts: list[str] = []
        self._skip = 0

    def handle_starttag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        if tag in ("script", "style"):
            self._skip += 1
        elif tag in ("br", "p", "div", "li", "td", "h1", "h2", "h3", "h4", "h5", "h6"):
            self.parts.append(" ")  # block boundaries separate words

    def handle_endtag(self, tag: str) -> None:
        if tag in ("script", "style") and self._skip:
            self._skip -= 1

    def handle_data(self, data: str) -> None:
        if not self._skip:
            self.parts.append(data)


def plain_text(text: str) -> str:
    """``text`` (plain or HTML) as one line of words, tags removed, entities decoded."""
    if "<" not in text and "&" not in text:
        return " ".join(text.split())
    parser = _TextOnly()
    parser.feed(text)
    parser.close()
    return " ".join("".join(parser.parts).split())


def _cut_words(text: str, width: int) -> str:
    """``text`` cut at the last whole word that fits in ``width`` characters, with "…"."""
    if len(text) <= width:
        return text
    head = text[: width - 1]
    if " " in head and not text[width - 1].isspace():
        head = head.rsplit(" ", 1)[0]
    return head.rstrip(" ,;:.-–—") + "…"


def _cut(text: str, width: int) -> str:
    text = " ".join(text.split())
    return text if len(text) <= width else text[: width - 1] + "…"


@dataclass
class SourceReport:
    """What one source call did in one run.

    Attributes:
        source: ``"rss"`` and the like.
        fetched: items the source returned (new and already known).
        new: items stored for the first time in this run (0 in a dry run).
        failures: per feed or endpoint, the one-line reason it failed.
        warnings: things that worked but deserve a look
            (e.g. a malformed feed that still had entries).
        silent: feeds noted silent in this run (no new item for much longer than
            usual), with the note; each silence is noted once.
    """

    source: str
    fetched: int = 0
    new: int = 0
    failures: dict[str, str] = field(default_factory=dict)
    warnings: dict[str, str] = field(default_factory=dict)
    silent: dict[str, str] = field(default_factory=dict)


@dataclass(frozen=True)
class Failure:
    """One item a sink could not deliver: its title (for people) and why."""

    title: str
    reason: str


@dataclass
class SinkReport:
    """What one sink call did (or, in a dry run, would do) in one run.

    Attributes:
        sink: ``"xmpp"`` and the like.
        target: who receives (a JID, a room, a feed name).
        sent: items delivered and confirmed in this run.
        queued: items still owed after this run (over a limit, or after a transient failure).
        failed: items that failed permanently in this run, by item key (source, id).
        dead: items given up in this run after ``max_attempts`` failed attempts.
        skipped: items recorded as skipped (the first run of a new target only takes
            the newest few).
        would_send: in a dry run, the messages that would have been sent.
        error: what stopped the sink, if anything.
        dry_run: True for previews.
        held: of ``queued``, how many wait for the publication limit.
        next_at: when the limit lets the next one go (if some wait for it).
    """

    sink: str
    target: str
    sent: int = 0
    queued: int = 0
    failed: dict[ItemKey, Failure] = field(default_factory=dict)
    dead: int = 0
    max_attempts: int = 0
    skipped: int = 0
    would_send: list[str] = field(default_factory=list)
    error: str | None = None
    dry_run: bool = False
    held: int = 0
    next_at: datetime | None = None
