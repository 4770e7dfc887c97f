"""HTML reduced to ENML, Evernote's note markup, and notes written as an ENEX export.

ENML (dev.evernote.com, "The Evernote Markup Language") is well-formed XHTML inside
``<en-note>`` with a fixed list of elements: prohibited ones (``script``, ``style``,
``form``, ``iframe``, ``object``, ...) are dropped with what they hold, unknown ones are
unwrapped (their text kept); the attributes ``id``, ``class``, ``on*``, ``accesskey``,
``data``, ``dynsrc`` and ``tabindex`` are prohibited, and we keep only a few harmless
ones per element (no ``style``: hostile CSS is not worth sanitising), and links and
images only to http(s) and mailto. The result is XML whatever the input: every element
closed, block elements never inside a paragraph or an inline element, list items and
table cells only where they may be, characters XML does not allow removed.

An ENEX file (``evernote-export4.dtd``) holds notes: ``title``, ``content`` (the ENML,
in CDATA), ``created``/``updated`` (``yyyymmddThhmmssZ``), ``tag``s and
``note-attributes`` (``author``, ``source-url``, ``source-application``,
``application-data``). Evernote and Joplin import it.
"""

from __future__ import annotations

import re
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime
from html import escape
from html.parser import HTMLParser

__all__ = ["EnexNote", "enex_document", "enml", "enml_title", "enml_tag"]

ENML_HEAD = (
    '<?xml version="1.0" encoding="UTF-8"?>'
    '<!DOCTYPE en-note SYSTEM "http://xml.evernote.com/pub/enml2.dtd">'
)
# The elements ENML permits, but en-media/en-crypt/en-todo (ours never carry resources).
BLOCK = frozenset(
    "address blockquote center dd div dl dt h1 h2 h3 h4 h5 h6 hr li ol p pre table "
    "tbody td tfoot th thead tr ul xmp caption col colgroup".split()
)
INLINE = frozenset(
    "a abbr acronym b bdo big br cite code del dfn em font i img ins kbd q s samp "
    "small span strike strong sub sup tt u var".split()
)
VOID = frozenset({"br", "hr", "img", "col"})
# HTML's elements without an end tag: a dropped one drops nothing after it.
HTML_VOID = VOID | frozenset(
    "area base basefont bgsound embed frame input isindex keygen link meta param source "
    "track wbr".split()
)
# Elements that hold elements only: text there is no valid ENML (whitespace aside).
ELEMENTS_ONLY = frozenset("ul ol dl table thead tbody tfoot tr colgroup".split())
# Dropped with everything inside them (their text is no text for a reader either).
DROP = frozenset(
    "applet base basefont bgsound blink button embed fieldset form frame frameset head "
    "iframe ilayer input isindex label layer legend link marquee menu meta noframes "
    "noscript object optgroup option param plaintext script select style textarea "
    "title xml svg math template audio video canvas".split()
)
_ATTRIBUTES = {  # what each element keeps (a subset of what enml2.dtd allows)
    "a": {"href", "title", "name"},
    "img": {"src", "alt", "title", "width", "height"},
    "td": {"colspan", "rowspan", "align", "valign"},
    "th": {"colspan", "rowspan", "align", "valign"},
    "ol": {"start", "type"},
    "table": {"border", "cellpadding", "cellspacing", "width", "summary"},
    "font": {"color", "face", "size"},
    "abbr": {"title"},
    "acronym": {"title"},
    "q": {"cite"},
    "blockquote": {"cite"},
}
_COMMON = {"title", "lang", "dir", "align"}
_URL_ATTRIBUTES = {"href", "src", "cite"}
_SAFE_URL = re.compile(r"^(https?:|mailto:)", re.I)
_INNER = {  # an element that may only be inside one of these
    "li": ("ul", "ol"),
    "dt": ("dl",),
    "dd": ("dl",),
    "tr": ("table", "thead", "tbody", "tfoot"),
    "td": ("tr",),
    "th": ("tr",),
    "thead": ("table",),
    "tbody": ("table",),
    "tfoot": ("table",),
    "caption": ("table",),
    "col": ("table", "colgroup"),
    "colgroup": ("table",),
}
_NOT_XML = re.compile("[^\t\n\r\x20-\ud7ff\ue000-\ufffd\U00010000-\U0010ffff]")
TITLE_MAX, TAG_MAX = 255, 100  # EDAM_NOTE_TITLE_LEN_MAX, EDAM_TAG_NAME_LEN_MAX


def xml_text(text: str) -> str:
    """``text`` without the characters XML 1.0 does not allow (control characters)."""
    return _NOT_XML.sub("", text)


class _ToEnml(HTMLParser):
    def __init__(self) -> None:
        super().__init__(convert_charrefs=True)
        self.out: list[str] = []
        self.open: list[str] = []  # elements written and not yet closed
        self.given: list[str] = []  # ... as the HTML named them (a stray <li> became a div)
        self.dropping = 0  # inside a dropped element: nothing is written

    def _close_to(self, depth: int) -> None:
        while len(self.open) > depth:
            self.out.append(f"</{self.open.pop()}>")
            self.given.pop()

    def handle_starttag(self, given: str, attrs: list[tuple[str, str | None]]) -> None:
        tag = given
        if self.dropping or tag in DROP:
            if tag in DROP and tag not in HTML_VOID:
                self.dropping += 1
            return
        if tag not in BLOCK and tag not in INLINE:
            return  # unknown (html, body, article, ...): unwrapped, its text kept
        if tag in BLOCK:  # a block never goes inside a paragraph or inline element
            keep = len(self.open)
            while keep and (self.open[keep - 1] == "p" or self.open[keep - 1] in INLINE):
                keep -= 1
            self._close_to(keep)
        if tag in _INNER:
            parents = _INNER[tag]
            inside = [i for i, t in enumerate(self.open) if t in parents]
            if not inside:
                tag = "div" if tag in BLOCK else "span"  # a stray <li>: its text kept
            elif tag in ("li", "dt", "dd", "tr", "td", "th"):
                self._close_to(inside[-1] + 1)  # a new item ends the last one
        if tag == "a" and "a" in self.open:
            self._close_to(self.open.index("a"))  # links do not nest
        kept = []
        for name, value in attrs:
            if value is None or (name not in _COMMON and name not in _ATTRIBUTES.get(tag, ())):
                continue
            if name in _URL_ATTRIBUTES and not _SAFE_URL.match(value.strip()):
                continue
            kept.append(f' {name}="{escape(xml_text(value), quote=True)}"')
        if tag == "img" and not any(k.startswith(" src=") for k in kept):
            return  # an image with no (safe) address shows nothing
        if tag in VOID:
            self.out.append(f"<{tag}{''.join(kept)}/>")
        else:
            self.out.append(f"<{tag}{''.join(kept)}>")
            self.open.append(tag)
            self.given.append(given)

    def handle_startendtag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        self.handle_starttag(tag, attrs)  # <x/>: opened and closed at once
        if tag not in HTML_VOID:
            self.handle_endtag(tag)

    def handle_endtag(self, tag: str) -> None:
        if tag in DROP:
            if self.dropping and tag not in HTML_VOID:
                self.dropping -= 1
            return
        if self.dropping or tag in VOID:
            return
        for depth in range(len(self.given) - 1, -1, -1):
            if self.given[depth] == tag:
                self._close_to(depth)
                return
        # an end tag of nothing open (or of an unwrapped element): ignored

    def handle_data(self, data: str) -> None:
        if self.dropping:
            return
        if self.open and self.open[-1] in ELEMENTS_ONLY and data.strip():
            return  # text between a list's items, a table's rows: not ENML
        self.out.append(escape(xml_text(data), quote=False))

    def result(self) -> str:
        self.close()
        self._close_to(0)
        return "".join(self.out)


def enml(html: str) -> str:
    """An ENML document (``<en-note>``) of ``html``, whatever ``html`` holds."""
    parser = _ToEnml()
    parser.feed(html)
    return f"{ENML_HEAD}<en-note>{parser.result()}</en-note>"


def enml_title(text: str) -> str:
    """A note title Evernote takes: one line, no space at either end, at most 255."""
    line = " ".join(xml_text(text).split())[:TITLE_MAX].strip()
    return line or "Untitled"


def enml_tag(text: str) -> str:
    """A tag name Evernote takes: no comma, no space at either end, at most 100."""
    return " ".join(xml_text(text).replace(",", " ").split())[:TAG_MAX].strip()


@dataclass(frozen=True)
class EnexNote:
    """One note of an ENEX file."""

    title: str
    content: str  # ENML
    created: datetime | None = None
    updated: datetime | None = None
    tags: Sequence[str] = ()
    author: str = ""
    source_url: str = ""
    application_data: tuple[tuple[str, str], ...] = ()


def _date(value: datetime) -> str:
    return value.astimezone(UTC).strftime("%Y%m%dT%H%M%SZ")


def _cdata(text: str) -> str:
    return "<![CDATA[" + text.replace("]]>", "]]]]><![CDATA[>") + "]]>"


def _element(name: str, text: str) -> str:
    return f"<{name}>{escape(xml_text(text), quote=False)}</{name}>"


def enex_document(notes: Iterable[EnexNote], *, exported: datetime | None = None) -> str:
    """An ENEX file of ``notes`` (``evernote-export4.dtd``), as text (UTF-8 when written)."""
    when = _date(exported or datetime.now(UTC))
    parts = [
        '<?xml version="1.0" encoding="UTF-8"?>\n'
        '<!DOCTYPE en-export SYSTEM "http://xml.evernote.com/pub/evernote-export4.dtd">\n'
        f'<en-export export-date="{when}" application="triggerflow" version="1">\n'
    ]
    for note in notes:
        parts.append("<note>")
        parts.append(_element("title", enml_title(note.title)))
        parts.append(f"<content>{_cdata(note.content)}</content>")
        if note.created:
            parts.append(_element("created", _date(note.created)))
        if note.updated:
            parts.append(_element("updated", _date(note.updated)))
        tags = dict.fromkeys(enml_tag(t) for t in note.tags)  # once each, in order
        parts.extend(_element("tag", t) for t in tags if t)
        attributes = []
        if note.author:
            attributes.append(_element("author", note.author))
        if note.source_url:
            attributes.append(_element("source-url", note.source_url))
        attributes.append(_element("source-application", "triggerflow"))
        attributes.extend(
            f'<application-data key="{escape(k, quote=True)}">'
            f"{escape(xml_text(v), quote=False)}</application-data>"
            for k, v in note.application_data
        )
        parts.append(f"<note-attributes>{''.join(attributes)}</note-attributes>")
        parts.append("</note>\n")
    parts.append("</en-export>\n")
    return "".join(parts)
