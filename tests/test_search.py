"""Full-text search: fresh items found before a rebuild, BM25 ranking, filters, the CLI.

Real DuckDB files and the real fts extension (from the duckdb-ext-fts wheel); the
end-to-end test collects items from a real HTTP feed through a trigger run.
"""

from __future__ import annotations

import os
import subprocess
import sys
import time
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import duckdb
import pytest

from triggerflow import Item
from triggerflow import _search as tf_search
from triggerflow._store import Store, now, open_duckdb
from triggerflow._store._fts import index_path, load_fts
from triggerflow.exceptions import SearchError, SearchUnavailable

ROOT = Path(__file__).resolve().parent.parent
LONG_BODY = (
    "A long weekly round-up of many unrelated stories about gardening, cooking, trains, "
    "music and the weather, where one paragraph in the middle mentions that the linux "
    "kernel had a release, before going on about football, books and the local news. "
) * 2


def put(store: Store, *items: Item, when: datetime | None = None) -> None:
    with store.transaction() as tx:
        tx.upsert_items(items, when or now())


def filler(n: int) -> list[Item]:
    """Items about other things, so that the corpus statistics are not degenerate."""
    topics = ["garden tomatoes", "train timetable", "jazz concert", "bread recipe", "rain"]
    return [
        Item("https://other.example.org/feed", f"f{i}", title=f"{topics[i % 5]} {i}",
             summary=f"notes about {topics[(i + 2) % 5]} and {topics[(i + 3) % 5]}")
        for i in range(n)
    ]  # fmt: skip


@pytest.fixture
def store(data_dir: Path) -> Store:
    return Store(data_dir / "triggerflow.duckdb")


def titles(hits: Any) -> list[str]:
    return [i.title for i in hits]


def test_title_ranks_above_one_mention_in_the_body_before_and_after_a_rebuild(
    store: Store,
) -> None:
    put(
        store,
        *filler(30),
        Item("https://a.example.org/feed", "1", title="Linux kernel 6.9 released",
             summary="The release notes."),
        Item("https://b.example.org/feed", "2", title="Weekly round-up", summary=LONG_BODY),
    )  # fmt: skip
    assert not index_path(store).exists()
    fresh = tf_search.search("linux kernel", store=store)
    assert titles(fresh) == ["Linux kernel 6.9 released", "Weekly round-up"]

    assert tf_search.rebuild_search_index(store) == 32
    indexed = tf_search.search("linux kernel", store=store)
    assert titles(indexed) == titles(fresh)
    # The scan of waiting items computes exactly the extension's BM25: same scores.
    assert indexed.scores == pytest.approx(fresh.scores)
    assert indexed.scores[0] > indexed.scores[1] > 0


def test_scores_are_the_fts_extensions_own(store: Store) -> None:
    put(store, *filler(40), Item("s", "k", title="kernel kernel news", summary="a kernel"))
    tf_search.rebuild_search_index(store)
    ours = tf_search.search("kernel", store=store)
    # With triggerflow's settings: DuckDB refuses a second connection to a file that this
    # process has open (search keeps its index open) with other settings.
    with open_duckdb(index_path(store), read_only=True) as con:
        load_fts(con)
        raw = con.execute(
            "SELECT id, fts_main_docs.match_bm25(docid, 'kernel') AS s FROM docs "
            "WHERE s IS NOT NULL ORDER BY s DESC"
        ).fetchall()
    assert [i.id for i in ours] == [r[0] for r in raw] == ["k"]
    assert ours.scores == pytest.approx([r[1] for r in raw])


def test_an_item_stored_a_second_ago_is_found_before_any_rebuild(store: Store) -> None:
    put(store, *filler(20), Item("s", "old", title="An older story about penguins"))
    tf_search.rebuild_search_index(store)
    assert tf_search.search_index_status(store).waiting == 0

    put(store, Item("s", "new", title="Penguins march again"))
    status = tf_search.search_index_status(store)
    assert (status.indexed, status.waiting) == (21, 1)
    assert sorted(i.id for i in tf_search.search("penguin", store=store)) == ["new", "old"]
    # A word the index has never seen is found too.
    assert [i.id for i in tf_search.search("march", store=store)] == ["new"]


def test_an_edited_item_is_found_by_its_new_words_only(store: Store) -> None:
    put(store, *filler(20), Item("s", "e", title="Draft about walruses"))
    tf_search.rebuild_search_index(store)
    put(store, Item("s", "e", title="Final text about narwhals"))
    assert titles(tf_search.search("narwhal", store=store)) == ["Final text about narwhals"]
    assert len(tf_search.search("walrus", store=store)) == 0
    tf_search.rebuild_search_index(store)
    assert len(tf_search.search("walrus", store=store)) == 0
    assert len(tf_search.search("narwhals", store=store)) == 1


def test_words_accents_stems_and_every_word_required(store: Store) -> None:
    put(
        store, *filler(10),
        Item("s", "1", title="Café crème & croissants 🥐", author="Zoë Dupont"),
        Item("s", "2", title="Running kernels", summary="<p>the <b>kernel</b> runs</p>"),
    )  # fmt: skip
    for _ in range(2):  # waiting, then indexed
        assert [i.id for i in tf_search.search("CAFE creme", store=store)] == ["1"]
        assert [i.id for i in tf_search.search("zoe", store=store)] == ["1"]
        assert [i.id for i in tf_search.search("kernel run", store=store)] == ["2"]
        assert len(tf_search.search("kernel croissant", store=store)) == 0
        assert len(tf_search.search("bold", store=store)) == 0  # markup is not text
        tf_search.rebuild_search_index(store)
    with pytest.raises(SearchError, match="no word to search for"):
        tf_search.search("the and of", store=store)


def test_filters_trigger_source_dates_and_limit(store: Store) -> None:
    base = datetime(2026, 3, 1, tzinfo=UTC)
    items = [
        Item(f"https://{host}.example.org/feed", f"{host}{d}", title=f"solar eclipse {host} {d}",
             published=base + timedelta(days=d))
        for host in ("news", "blog") for d in range(5)
    ]  # fmt: skip
    put(store, *filler(10), *items)
    with store.transaction() as tx:
        tx.link_trigger_sources("astro", ["https://blog.example.org/feed"])
    for _ in range(2):
        assert len(tf_search.search("eclipse", store=store)) == 10
        assert len(tf_search.search("eclipse", store=store, limit=3)) == 3
        by_trigger = tf_search.search("eclipse", store=store, trigger="astro")
        assert {i.source for i in by_trigger} == {"https://blog.example.org/feed"}
        assert len(by_trigger) == 5
        by_source = tf_search.search("eclipse", store=store, source="news.example")
        assert {i.id for i in by_source} == {f"news{d}" for d in range(5)}
        until = base.replace(day=4)
        window = tf_search.search("eclipse", store=store, since="2026-03-02", until=until)
        assert sorted(i.id for i in window) == ["blog1", "blog2", "news1", "news2"]
        assert len(tf_search.search("eclipse", store=store, since="1d")) == 0
        tf_search.rebuild_search_index(store)
    with pytest.raises(SearchError, match="no items .* trigger named 'nope'.*astro"):
        tf_search.search("eclipse", store=store, trigger="nope")
    with pytest.raises(SearchError, match="neither an age"):
        tf_search.search("eclipse", store=store, since="last tuesday")
    with pytest.raises(SearchError, match="at least 1"):
        tf_search.search("eclipse", store=store, limit=0)


def test_the_cli_takes_every_age_of_the_duration_grammar(
    store: Store, capsys: pytest.CaptureFixture[str]
) -> None:
    """`--since 30s` (seconds were refused), `--since 1 week`; a bad unit says which are."""
    from triggerflow.cli import main

    old = now() - timedelta(minutes=2)
    put(store, *filler(5), Item("s", "old", title="comet seen", published=old),
        Item("s", "new", title="comet again", link="https://x.org/new"))  # fmt: skip
    assert main(["search", "comet", "--since", "30s"]) == 0
    out = capsys.readouterr().out
    assert "https://x.org/new" in out and "comet seen" not in out
    assert main(["search", "comet", "--since", "1 week"]) == 0
    assert "comet seen" in capsys.readouterr().out
    assert main(["search", "comet", "--since", "3 fortnights"]) == 1
    err = capsys.readouterr().err
    assert "since='3 fortnights': unknown unit 'fortnights'; use s, m, h, d or w" in err, err


def test_too_many_waiting_items_trigger_a_rebuild(
    store: Store, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(tf_search, "AUTO_REINDEX", 5)
    put(store, *filler(6))
    seen: list[tuple[int, int]] = []
    hits = tf_search.search("garden", store=store, progress=lambda d, t: seen.append((d, t)))
    assert len(hits) > 0 and seen[-1] == (6, 6)
    assert tf_search.search_index_status(store).waiting == 0
    put(store, *filler(12))  # 6 unchanged, 6 new
    assert tf_search.search_index_status(store).waiting == 6
    tf_search.search("garden", store=store, reindex="never")
    assert tf_search.search_index_status(store).waiting == 6


def test_writers_are_not_held_up_while_the_index_is_rebuilt(store: Store, tmp_path: Path) -> None:
    """A rebuild runs in another process; meanwhile a writer with a 3 s lock budget keeps
    storing items (each attempt would fail if the rebuild held the store throughout)."""
    with store.transaction() as tx:
        tx.con.execute(
            """
            INSERT INTO items (source, id, title, summary, hash, first_seen, last_seen)
            SELECT 'bulk', 'b' || n, 'bulk item ' || n,
                   repeat('lorem ipsum dolor sit amet consectetur ', 20) || n,
                   md5(n::VARCHAR), TIMESTAMPTZ '2025-01-01', TIMESTAMPTZ '2025-01-01'
            FROM range(150000) r(n)
            """
        )
    script = (
        "import sys; from pathlib import Path; from triggerflow._store import Store; "
        "from triggerflow import rebuild_search_index; "
        "print(rebuild_search_index(Store(Path(sys.argv[1]))))"
    )
    proc = subprocess.Popen(
        [sys.executable, "-c", script, str(store.path)], stdout=subprocess.PIPE, text=True
    )
    writer = Store(store.path, wait=3.0)
    written = 0
    deadline = time.monotonic() + 300
    while proc.poll() is None and time.monotonic() < deadline and written < 1000:
        put(writer, Item("live", f"w{written}", title=f"written during the rebuild {written}"))
        written += 1
        time.sleep(0.05)
    out, _ = proc.communicate(timeout=300)
    assert proc.returncode == 0
    assert written >= 5  # the rebuild took a while, and every write went through
    assert int(out.strip()) >= 150000
    hits = tf_search.search("written during rebuild", store=store, limit=2000)
    assert len(hits) == written  # found: indexed or waiting, none lost, none twice


def test_fts_extension_missing_is_a_clear_error(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    # Edge case no server can produce here: hide the wheel, and point DuckDB's download
    # at a closed local port.
    monkeypatch.setitem(sys.modules, "duckdb_ext", None)
    empty = tmp_path / "ext"
    empty.mkdir()
    con = duckdb.connect(":memory:")
    con.execute(f"SET extension_directory = '{empty}'")
    con.execute("SET custom_extension_repository = 'http://127.0.0.1:9'")
    with pytest.raises(SearchUnavailable, match="pip install duckdb-ext-fts"):
        load_fts(con)


def test_results_render_with_scores(store: Store) -> None:
    put(store, *filler(5), Item("s", "1", title="Fish & <chips>", link="https://x.org/1"))
    hits = tf_search.search("fish", store=store)
    html = hits._repr_html_()
    assert "<th>score</th>" in html and "Fish &amp; &lt;chips&gt;" in html
    assert "Fish & <chips>" in repr(hits) and "1 hits" in repr(hits)
    assert hits.rows()[0]["score"] == pytest.approx(hits.scores[0], abs=1e-4)
    assert repr(tf_search.search("whale", store=store)) == "SearchResults('whale': no match)"


@pytest.mark.usefixtures("prefect_api")
def test_search_what_a_trigger_collected_from_the_cli(feeds: Any, data_dir: Path) -> None:
    from triggerflow import trigger
    from triggerflow.sinks import feed
    from triggerflow.sources import rss

    feeds.publish("/sec.xml", ["OpenSSL security advisory", "Kernel security fix", "Cat pics"])
    url = feeds.url("/sec.xml")

    @trigger
    def watch() -> None:
        feed(rss(url), name="watch")

    watch()
    env = dict(os.environ)

    def cli(*args: str) -> subprocess.CompletedProcess[str]:
        return subprocess.run(
            [sys.executable, "-m", "triggerflow", "search", *args],
            capture_output=True, text=True, timeout=120, env=env, cwd=ROOT,
        )  # fmt: skip

    out = cli("security", "--trigger", "watch")
    assert out.returncode == 0, out.stderr
    lines = out.stdout.splitlines()
    assert lines[0].split() == ["SCORE", "DATE", "TITLE", "LINK"]
    assert len(lines) == 4 and "Cat pics" not in out.stdout
    assert "OpenSSL security advisory" in out.stdout and "Kernel security fix" in out.stdout

    status = cli("--reindex", "--status")
    assert status.returncode == 0, status.stderr
    assert "items in the index:  3" in status.stdout
    assert "waiting for it:      0" in status.stdout
    assert "Search index rebuilt: 3 items." in status.stderr

    none = cli("dolphins")
    assert none.returncode == 0 and "No item matches 'dolphins'." in none.stdout
    bad = cli("security", "--trigger", "nope")
    assert bad.returncode == 1
    assert "triggerflow: error: search: no items were collected by a trigger named 'nope'" in (
        bad.stderr
    )


def test_alerts_are_kept_apart_from_status_and_search(
    store: Store, monkeypatch: pytest.MonkeyPatch
) -> None:
    """An alert is an item of the `_alerts` pseudo-trigger: shown only when asked for."""
    from triggerflow import _alerts

    # The alert is queued (nothing listens on port 1), as when the XMPP server is down.
    monkeypatch.setenv("TRIGGERFLOW_XMPP_DEFAULT_JID", "bot@127.0.0.1")
    monkeypatch.setenv("TRIGGERFLOW_XMPP_DEFAULT_PASSWORD", "pw")
    monkeypatch.setenv("TRIGGERFLOW_XMPP_DEFAULT_HOST", "127.0.0.1")
    monkeypatch.setenv("TRIGGERFLOW_XMPP_DEFAULT_PORT", "1")
    monkeypatch.setenv("TRIGGERFLOW_ALERTS", "admin@127.0.0.1")
    put(store, *filler(10), Item("https://a.example.org/feed", "1", title="Build failing again"))
    _alerts.check(store, "watched", ["FeedUnavailable: 404"])

    assert titles(tf_search.search("failing", store=store)) == ["Build failing again"]
    alerts = tf_search.search("failing", trigger="_alerts", store=store)
    assert [i.source for i in alerts] == [_alerts.SOURCE]

    def status(*args: str) -> str:
        r = subprocess.run(
            [sys.executable, "-m", "triggerflow", "status", *args],
            capture_output=True, text=True, timeout=120, env=dict(os.environ),
        )  # fmt: skip
        assert r.returncode == 0, r.stderr
        return r.stdout

    assert "_alerts" not in status()
    assert "_alerts" in status("--all") and "xmpp:admin@127.0.0.1" in status("_alerts")


def test_equal_scores_are_newest_first(store: Store) -> None:
    """Same words, same score: the newest first, whether indexed or still waiting."""
    base = datetime(2026, 1, 1, tzinfo=UTC)

    def same(prefix: str, days: list[float]) -> list[Item]:
        return [
            Item(f"https://s{n % 3}.example.org/feed", f"{prefix}{n}", title="Kernel release",
                 published=base + timedelta(days=d))
            for n, d in enumerate(days)
        ]  # fmt: skip

    topics = ["garden tomatoes", "train timetable", "jazz concert", "bread recipe", "rain"]
    other = [Item("https://o.example.org/feed", f"o{i}", title=f"{topics[i % 5]} {i}")
             for i in range(30)]  # fmt: skip
    # These corpus statistics give the two BM25s scores that differ in the last bit.
    put(store, *other, *same("old", list(range(10))))
    tf_search.rebuild_search_index(store)
    put(store, *same("new", [0.5, 1.5, 2.5, 3.5, 4.5]))  # waiting for the index: scored in SQL
    hits = tf_search.search("kernel", store=store)
    dates = [i.published for i in hits]
    assert len(dates) == 15 and dates == sorted(dates, reverse=True)
