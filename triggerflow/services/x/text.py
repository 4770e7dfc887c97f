"""Text as X counts it: weighted characters, every URL 23, at most 280.

From twitter-text's v3 configuration (``config/v3.json``): a character weighs 100 when
its code point is in ``0-4351``, ``8192-8205``, ``8208-8223`` or ``8242-8247`` (Latin,
Greek, Cyrillic, Hebrew, Arabic, ... and some punctuation) and 200 otherwise (CJK,
most symbols); an emoji, however many code points it is made of, weighs 200; a URL
weighs as 23 characters (``transformedURLLength``); the limit is 280 × 100.
"""

from __future__ import annotations

import re

import regex

from ..._text import fit

__all__ = ["MAX_LENGTH", "URL", "fit_x", "x_length"]

MAX_LENGTH = 280
URL_LENGTH = 23
URL = re.compile(r"https?://[^\s<>\"]+[^\s<>\".,;:!?)\]'’”]")
_LIGHT = ((0, 4351), (8192, 8205), (8208, 8223), (8242, 8247))
_EMOJI = regex.compile(r"^(?:\p{Extended_Pictographic}|\p{Regional_Indicator})")
_CLUSTER = regex.compile(r"\X")


def _weight(cluster: str) -> int:
    if _EMOJI.match(cluster):
        return 2
    return sum(1 if any(a <= ord(c) <= b for a, b in _LIGHT) else 2 for c in cluster)


def x_length(text: str) -> int:
    """The weighted length of ``text`` (in characters: 100 units each)."""
    total = 0
    at = 0
    for m in URL.finditer(text):
        total += sum(_weight(c) for c in _CLUSTER.findall(text[at : m.start()])) + URL_LENGTH
        at = m.end()
    return total + sum(_weight(c) for c in _CLUSTER.findall(text[at:]))


def fit_x(text: str, link: str = "") -> str:
    """``text`` cut to 280 as X counts, at a word, never inside an emoji, ``link`` kept."""
    return fit(text, MAX_LENGTH, x_length, keep=link)
