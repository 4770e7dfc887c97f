"""Evernote: hostile HTML reduced to valid ENML, notes written once as ENEX files that the
Joplin stand-in imports, and (below) notes made through Evernote's Thrift API.

Real parts: files in a temporary folder, lxml to check the XML independently of how it
was written, the Joplin stand-in's ENEX import, the store a real DuckDB file, triggers
run as Prefect flows.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest
from lxml import etree
from standins import EvernoteStandIn, JoplinStandIn
from standins.evernote import PERMITTED, PROHIBITED_ATTRIBUTES
from test_joplin import cli, quiet
from test_services import example_reading

from triggerflow import sinks, trigger
from triggerflow.blocks import EvernoteAccount
from triggerflow.exceptions import ConfigurationError, TriggerRunFailed
from triggerflow.services.evernote.connect import connect_evernote
from triggerflow.services.evernote.enex import _EnexFolder
from triggerflow.services.evernote.enml import enex_document, enml, enml_tag, enml_title
from triggerflow.sources import rss

pytestmark = pytest.mark.usefixtures("prefect_api")

BLOCKS = set("address blockquote center dd div dl dt h1 h2 h3 h4 h5 h6 hr li ol p pre table "
             "tbody td tfoot th thead tr ul".split())  # fmt: skip
INLINE = set("a abbr acronym b bdo big cite code del dfn em font i ins kbd q s samp small "
             "span strike strong sub sup tt u var".split())  # fmt: skip

HOSTILE = [
    '<p onclick="steal()" id="x" class="y">Hello <script>alert("no")</script>world</p>',
    '<a href="javascript:alert(1)">click</a> <a href=" JavaScript:x">two</a>',
    '<img src="data:image/png;base64,AAAA" onerror="x()"><img src="https://e.org/a.png">',
    "<iframe src='https://evil.example'>inside</iframe><form><input name=a>gone</form>kept",
    "<style>p { position: fixed }</style><p style='color: red'>styled</p>",
    "<div><p>unclosed <b>bold <i>both</div> after",
    "<p>para<div>block in a paragraph</div><table><tr><td>cell</table></p>",
    "<a href='https://a.example'>outer <a href='https://b.example'>inner</a></a>",
    "<li>stray item</li><td>stray cell</td><ul>text in a list<li>ok</ul>",
    "control \x01\x08\x0b characters \ufffe and ]]> a CDATA end",
    "<svg><script>x()</script><text>svg text</text></svg><math>m</math>tail",
    "<html><head><title>t</title><meta charset=utf-8><link rel=x></head><body>body</body></html>",
    "&lt;script&gt; as text &amp; entities &eacute; &#x1F600; &bogus;",
    "<p>a<br>b<hr>c<br/>d</p><object data=x><param name=a>o</object><embed src=x>e",
    "<b><p>block in inline</p></b><span><ul><li>list in span</li></ul></span>",
    "</p></div></b>stray end tags<p",
]


def check_enml(document: str) -> etree._Element:
    """``document`` is ENML: XML, <en-note>, permitted elements and attributes only,
    links and images to http(s)/mailto only, no block inside a paragraph or inline."""
    head = '<?xml version="1.0" encoding="UTF-8"?><!DOCTYPE en-note SYSTEM '
    assert document.startswith(head + '"http://xml.evernote.com/pub/enml2.dtd">')
    root = etree.fromstring(document.encode(), etree.XMLParser(resolve_entities=False))
    assert root.tag == "en-note"
    for el in root.iter():
        assert el.tag in PERMITTED, el.tag
        for name, value in el.attrib.items():
            assert name not in PROHIBITED_ATTRIBUTES and not name.startswith("on"), name
            assert name != "style"
            if name in ("href", "src"):
                assert value.startswith(("http://", "https://", "mailto:")), value
        if el.tag in BLOCKS:
            for up in el.iterancestors():
                assert up.tag != "p" and up.tag not in INLINE, f"<{el.tag}> in <{up.tag}>"
        if el.tag == "li":
            assert el.getparent().tag in ("ul", "ol")
        if el.tag in ("td", "th"):
            assert el.getparent().tag == "tr"
        if el.tag == "a":
            assert not any(up.tag == "a" for up in el.iterancestors())
    return root


@pytest.mark.parametrize("html", HOSTILE)
def test_hostile_html_becomes_valid_enml(html: str) -> None:
    root = check_enml(enml(html))
    text = "".join(root.itertext())
    assert "alert" not in text and "steal" not in text and "x()" not in text
    for kept in ("Hello", "world", "kept", "styled", "after", "cell", "stray item", "tail",
                 "body", "as text", "entities", "list in span", "stray end tags"):  # fmt: skip
        if kept in html:
            assert kept in text, (kept, text)
    assert "inside" not in text and "gone" not in text and "svg text" not in text


def test_titles_and_tags_are_what_evernote_takes() -> None:
    assert enml_title("  Two\nlines\t\x01 ") == "Two lines"
    assert enml_title("") == "Untitled" and len(enml_title("x" * 300)) == 255
    assert enml_tag(" a, b ") == "a b" and len(enml_tag("t" * 200)) == 100


# -- the ENEX sink ------------------------------------------------------------------------
def enex_files(folder: Path) -> list[Path]:
    return sorted(folder.glob("*.enex"))


def test_notes_are_written_once_a_file_per_run_and_joplin_imports_them(
    tmp_path: Path, feeds: Any, joplin: JoplinStandIn
) -> None:
    feeds.publish("/e.xml", ["one <b>bold</b>", "two"])
    url = feeds.url("/e.xml")
    folder = tmp_path / "Evernote imports"

    @trigger
    def keep() -> None:
        sinks.enex(rss(url), folder, tags=["feed", "py,thon"])

    assert keep().sinks[0].sent == 2
    (first,) = enex_files(folder)
    assert first.name.startswith("keep-")
    root = etree.parse(str(first)).getroot()
    assert root.tag == "en-export"
    notes = root.findall("note")
    assert [n.findtext("title") for n in notes] == ["one <b>bold</b>", "two"]
    for note in notes:  # the DTD's order of a note's elements
        assert [c.tag for c in note] == ["title", "content", "created", "updated", "tag", "tag",
                                         "note-attributes"]  # fmt: skip
        check_enml(note.findtext("content") or "")
    assert notes[0].findtext("created") == "20260101T000000Z"
    assert [t.text for t in notes[0].findall("tag")] == ["feed", "py thon"]
    assert notes[0].findtext("note-attributes/source-url") == f"{url}#0"

    imported = joplin.import_enex(first.read_bytes())
    assert [n.title for n in imported] == ["one <b>bold</b>", "two"]
    assert imported[0].source_url == f"{url}#0" and imported[0].tags == ["feed", "py thon"]
    assert imported[0].body_html is not None and "about one" in imported[0].body_html

    assert keep().sinks[0].sent == 0 and len(enex_files(folder)) == 1  # a rerun: no file
    feeds.publish("/e.xml", ["one <b>bold</b>", "two", "three"])
    assert keep().sinks[0].sent == 1
    second = enex_files(folder)[-1]
    assert second != first
    assert [n.findtext("title") for n in etree.parse(str(second)).getroot()] == ["three"]


def test_a_note_written_by_a_killed_run_is_not_written_again(tmp_path: Path, feeds: Any) -> None:
    """A run killed after writing the file and before the ledger heard of the note: the
    next run finds the note's delivery id in the folder and counts it as sent."""
    from triggerflow._outbox import delivery_id
    from triggerflow.types import Route

    feeds.publish("/k.xml", ["kept"])
    url = feeds.url("/k.xml")
    folder = tmp_path / "notes"

    @trigger
    def keep() -> None:
        sinks.enex(rss(url), folder)

    (item,) = rss(url)
    delivery = delivery_id(Route("keep", "enex", str(folder)), item)
    folder.mkdir()
    earlier = _EnexFolder(folder, None, ()).note(item, delivery)
    (folder / "keep-killed.enex").write_text(enex_document([earlier]))
    assert keep().sinks[0].sent == 1
    assert [p.name for p in enex_files(folder)] == ["keep-killed.enex"]  # no second file


def test_preview_writes_nothing_and_a_file_is_no_folder(tmp_path: Path, feeds: Any) -> None:
    feeds.publish("/p.xml", ["shown"])
    url = feeds.url("/p.xml")
    not_a_folder = tmp_path / "file.txt"
    not_a_folder.write_text("x")

    @trigger
    def keep() -> None:
        sinks.enex(rss(url), tmp_path / "out")

    @trigger
    def wrong() -> None:
        sinks.enex(rss(url), not_a_folder)

    assert keep.preview().sinks[0].would_send == ["shown"]
    assert not (tmp_path / "out").exists()
    assert any("is a file, not a folder" in p for p in wrong.check())


# -- the API sink -------------------------------------------------------------------------
def connected(e: EvernoteStandIn, account: str = "default") -> EvernoteAccount:
    return connect_evernote(account, token=e.token, url=e.url, say=quiet)


def test_connect_checks_the_token_and_finds_the_note_store(evernote: EvernoteStandIn) -> None:
    done = cli("connect", "evernote", "--url", evernote.url, "--account", "work",
               TRIGGERFLOW_EVERNOTE_TOKEN=evernote.token)  # fmt: skip
    assert done.returncode == 0, done.stderr
    assert "Connected Evernote account tester as 'evernote-work'" in done.stdout
    block = EvernoteAccount.load("evernote-work")
    assert block.note_store_url == f"{evernote.url}/shard/s1/notestore"
    accounts = cli("accounts")
    assert "evernote work" in accounts.stdout, accounts.stdout
    assert evernote.token not in done.stdout + done.stderr + accounts.stdout + accounts.stderr
    with pytest.raises(ConfigurationError, match="Evernote refused the token .INVALID_AUTH"):
        connect_evernote(token="S=s1:U=1:wrong", url=evernote.url, say=quiet)
    with pytest.raises(ConfigurationError, match="cannot be reached.*check --url"):
        connect_evernote(token="x", url="http://127.0.0.1:9", say=quiet)


def test_a_note_per_item_once_across_a_lost_answer_and_a_rerun(
    evernote: EvernoteStandIn, feeds: Any
) -> None:
    connected(evernote)
    feeds.publish("/n.xml", ["one", "two"])
    url = feeds.url("/n.xml")
    evernote.lose_answer("createNotebook")  # made, the answer lost
    evernote.lose_answer("createNote")  # the first note made, the answer lost

    @trigger
    def keep() -> None:
        sinks.evernote(rss(url), "Reading", tags=["feed"])

    assert keep().sinks[0].sent == 2
    notes = evernote.notes()
    assert [n.title for n in notes] == ["one", "two"]  # the lost one found, not made again
    assert list(evernote.notebooks.values()).count("Reading") == 1
    (reading,) = [g for g, n in evernote.notebooks.items() if n == "Reading"]
    assert {n.notebook for n in notes} == {reading}
    assert notes[0].tags == ["feed"] and notes[0].source_url == f"{url}#0"
    assert all(len(k) == 32 and k.startswith("tf") for n in notes for k in n.application_data)
    assert evernote.calls("findNotesMetadata") >= 1
    check_enml(notes[0].content)
    assert keep().sinks[0].sent == 0 and len(evernote.notes()) == 2  # a rerun: nothing
    feeds.publish("/n.xml", ["one", "two", "three"])
    assert keep().sinks[0].sent == 1 and len(evernote.notes()) == 3


def test_hostile_html_is_accepted_by_evernotes_enml_check(
    evernote: EvernoteStandIn, feeds: Any
) -> None:
    """The stand-in checks ENML as Evernote's server does (a DTD-free subset): every
    hostile input of the ENML tests, in a feed entry's content, makes a note."""
    connected(evernote)
    from xml.sax.saxutils import escape as xml_escape

    entries = "".join(
        f"<item><guid>h{i}</guid><title>hostile {i}</title><link>https://e.org/{i}</link>"
        f"<description>{xml_escape(html)}</description></item>"
        for i, html in enumerate(HOSTILE)
    )
    feeds.raw("/h.xml", f'<rss version="2.0"><channel><title>h</title>{entries}</channel></rss>'
              .encode())  # fmt: skip
    url = feeds.url("/h.xml")

    @trigger
    def keep() -> None:
        sinks.evernote(rss(url), first_run=len(HOSTILE))

    assert keep().sinks[0].sent == len(HOSTILE)
    assert len(evernote.notes()) == len(HOSTILE)


def test_errors_name_the_cause(evernote: EvernoteStandIn, feeds: Any) -> None:
    connected(evernote)
    feeds.publish("/x.xml", ["a"])
    url = feeds.url("/x.xml")

    @trigger
    def keep() -> None:
        sinks.evernote(rss(url))

    evernote.rate_limit(900)
    with pytest.raises(TriggerRunFailed, match="Evernote rate limit reached: no more calls for 9"):
        keep()
    evernote.advance(900)
    feeds.publish("/x.xml", ["a", "b"])
    assert keep().sinks[0].sent == 2  # the queued one and the new one
    evernote.token = "S=s1:U=1:E=revoked"
    feeds.publish("/x.xml", ["a", "b", "c"])
    with pytest.raises(TriggerRunFailed, match="reconnect the account: triggerflow connect"):
        keep()
    assert [n.title for n in evernote.notes()] == ["a", "b"]

    @trigger
    def wrong() -> None:
        sinks.evernote(rss(url), " ", tags=["a,b"])

    problems = wrong.check()
    assert any("'a,b' is no tag name" in p for p in problems), problems


def test_example_news_to_evernote(
    evernote: EvernoteStandIn, feeds: Any, monkeypatch: pytest.MonkeyPatch
) -> None:
    connected(evernote)
    feeds.publish("/py.xml", ["release 1", "release 2"])
    example = example_reading("news_to_evernote", feeds.url("/py.xml"), monkeypatch)
    assert example().sinks[0].sent == 2
    assert {n.notebook for n in evernote.notes()} == {
        g for g, n in evernote.notebooks.items() if n == "Python news"
    }
    assert all(n.tags == ["python", "news"] for n in evernote.notes())


def test_the_token_is_nowhere_and_a_preview_makes_nothing(
    evernote: EvernoteStandIn, feeds: Any, data_dir: Path, caplog: pytest.LogCaptureFixture
) -> None:
    import logging

    block = connected(evernote)
    feeds.publish("/t.xml", ["a"])
    url = feeds.url("/t.xml")

    @trigger
    def keep() -> None:
        sinks.evernote(rss(url), "Secret-free")

    assert keep.preview().sinks[0].would_send == ["a"]
    assert evernote.calls("createNote") == 0 and evernote.calls("createNotebook") == 0
    caplog.set_level(logging.DEBUG)
    assert keep().sinks[0].sent == 1
    token = evernote.token
    evernote.token = "S=s1:U=1:E=other"  # the saved one is refused now
    feeds.publish("/t.xml", ["a", "b"])
    with pytest.raises(TriggerRunFailed) as failed:
        keep()
    kept = caplog.text + str(failed.value) + repr(failed.value) + repr(block)
    assert "INVALID_AUTH" in kept and "reconnect the account" in kept
    stored = b"".join(p.read_bytes() for p in data_dir.rglob("*") if p.is_file())
    assert token not in kept and token.encode() not in stored
