"""Text cut to a service's length: counted in grapheme clusters, never cut inside one."""

from __future__ import annotations

from typing import Any

import pytest
from standins import MastodonStandIn
from test_services import mastodon_account

from triggerflow import sinks, trigger
from triggerflow._text import fit, grapheme_count, graphemes
from triggerflow.sources import rss

FAMILY = "👩\u200d👩\u200d👧\u200d👦"  # one character to a person, seven code points
FLAG = "🇫🇷"  # two code points
ACCENT = "e\u0301"  # é as e + a combining accent


def test_graphemes_are_what_a_person_sees() -> None:
    assert grapheme_count(FAMILY + FLAG + ACCENT + "x") == 4
    assert graphemes("a" + FAMILY) == ["a", FAMILY]


def test_fit_cuts_at_a_word_and_keeps_the_link() -> None:
    link = "https://example.org/a/long/path"
    text = f"un été {FAMILY} très chaud à Paris {link}"
    cut = fit(text, 46, keep=link)
    assert cut == f"un été {FAMILY} très…\n{link}" and grapheme_count(cut) == 46
    assert fit("short", 20) == "short"
    assert fit("one two three", 9) == "one two…"


def test_a_long_word_is_cut_between_clusters_never_inside_one() -> None:
    for unit in (FAMILY, FLAG, ACCENT, "日"):
        cut = fit(unit * 50, 10)
        assert grapheme_count(cut) <= 10
        body = cut.removesuffix("…")
        assert body and body == unit * (len(graphemes(body)) // len(graphemes(unit)))


def test_fit_takes_the_services_count() -> None:
    bytes_too = fit("é" * 100, 1000, lambda t: len(t.encode()))  # a byte budget
    assert len(bytes_too.encode()) <= 1000 and bytes_too == "é" * 100
    assert len(fit("é" * 100, 21, lambda t: len(t.encode())).encode()) <= 21


@pytest.mark.usefixtures("prefect_api")
def test_mastodon_counts_emoji_as_one_character_and_never_splits_one(feeds: Any) -> None:
    with MastodonStandIn(max_characters=30) as m:  # the stand-in counts as Mastodon does
        mastodon_account(m)
        feeds.publish("/e.xml", [FAMILY * 40, FAMILY * 20 + " " + FLAG * 20])
        url = feeds.url("/e.xml")

        @trigger
        def toot() -> None:
            sinks.mastodon(rss(url), format="{title}")

        assert toot().sinks[0].sent == 2
        one_word, two_words = (r.form()["status"] for r in m.requests_to("/api/v1/statuses"))
        assert one_word == FAMILY * 29 + "…"  # cut between emoji, 30 characters
        assert two_words == FAMILY * 20 + "…"  # cut at the word
