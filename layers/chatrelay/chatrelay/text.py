"""Text as rules compare it: what renders as nothing, and one spelling per word whatever the disguise.

Unicode's *default-ignorable* code points (DerivedCoreProperties.txt: zero-width space and
joiners, word joiner, BOM, soft hyphen, bidi controls, variation selectors, tags, fillers)
render as nothing: a prompt made only of them (and white space) is blank, and one inside a
word can hide it. ``fold`` (for the keyword check) also maps compatibility forms to their
plain letters (NFKC: fullwidth ``ｂａｄ``, ligatures, circled and superscript letters) and
folds case. Offsets are never taken from folded text: callers keep the original and fold a
copy for matching only.
"""

from __future__ import annotations

import re
import unicodedata

_IGNORABLE_RANGES = (
    "\u00ad\u034f\u061c\u115f\u1160\u17b4\u17b5\u180b-\u180f\u200b-\u200f\u202a-\u202e\u2060-\u206f"
    "\u3164\ufe00-\ufe0f\ufeff\uffa0\ufff0-\ufff8"
    "\U0001bca0-\U0001bca3\U0001d173-\U0001d17a\U000e0000-\U000e0fff"
)
_IGNORABLE = re.compile(f"[{_IGNORABLE_RANGES}]+")
_ONE_IGNORABLE = re.compile(f"[{_IGNORABLE_RANGES}]")


def is_ignorable(char: str) -> bool:
    """Whether ``char`` is a default-ignorable code point (it renders as nothing)."""
    return _ONE_IGNORABLE.fullmatch(char) is not None


def is_blank(text: str) -> bool:
    """Nothing but white space and default-ignorable code points."""
    return not _IGNORABLE.sub("", text).strip()


def fold(text: str) -> str:
    """``text`` normalised for matching: ignorables removed, NFKC, case folded (NFKC again after)."""
    text = _IGNORABLE.sub("", text)  # first, so that an ignorable cannot keep letters from composing
    text = unicodedata.normalize("NFKC", unicodedata.normalize("NFKC", text).casefold())
    return _IGNORABLE.sub("", text)  # NFKC maps some characters (U+3164, U+FFA0) to ignorables
