"""Text cut to a service's length, counted the service's way, never mid-character.

Services count "characters" differently: Mastodon and Bluesky count grapheme clusters
(what a person sees as one character: ``é`` written as ``e`` + accent, a flag, a family
emoji of seven code points), Mastodon counts every URL as 23, Bluesky also caps the bytes.
:func:`fit` takes the count as a function and cuts at a word, else between two grapheme
clusters, so no emoji is ever split in half.
"""

from __future__ import annotations

from collections.abc import Callable

import regex

__all__ = ["ELLIPSIS", "fit", "grapheme_count", "graphemes"]

ELLIPSIS = "…"
_CLUSTER = regex.compile(r"\X")  # Unicode's extended grapheme clusters (UAX #29)


def graphemes(text: str) -> list[str]:
    """``text`` split into grapheme clusters."""
    return _CLUSTER.findall(text)


def grapheme_count(text: str) -> int:
    """How many characters a person sees in ``text``."""
    return len(graphemes(text))


def fit(
    text: str, limit: int, count: Callable[[str], int] = grapheme_count, *, keep: str = ""
) -> str:
    """``text`` cut so that ``count`` of it is at most ``limit``.

    Whole words are kept (a word longer than the room is cut between grapheme clusters),
    an ellipsis marks the cut, and ``keep`` (the link), when it is in ``text``, is moved
    to a line of its own at the end and never cut.
    """
    if count(text) <= limit:
        return text
    tail = ""
    if keep and keep in text:
        text = text.replace(keep, "").rstrip()
        tail = "\n" + keep
    room = limit - count(tail + ELLIPSIS)
    kept = ""
    for word in text.split(" "):
        candidate = f"{kept} {word}" if kept else word
        if count(candidate) > room:
            break
        kept = candidate
    if not kept:  # one long word: as many whole clusters as there is room for
        for cluster in graphemes(text):
            if count(kept + cluster) > room:
                break
            kept += cluster
    return kept.rstrip() + ELLIPSIS + tail
