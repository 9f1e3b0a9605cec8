"""A word-list checker: any configured word in the text (case-insensitive) makes it risky.

For users without a WeChat openid, for local use, and as the fallback of the
WeChat checker. Matching is on substrings of the folded text (``text.fold``: NFKC,
case folded, zero-width and other invisible characters removed), with the words
folded the same way, so it also works for languages written without spaces and a
word written in fullwidth letters or with a zero-width space inside is still the
word. Only the verdict comes from the folded copy: callers' offsets refer to the
text they passed.
"""

from __future__ import annotations

from collections.abc import Iterable

from chatrelay.safety.base import Verdict
from chatrelay.text import fold

OTHER_LABEL = 21000


class KeywordChecker:
    def __init__(self, words: Iterable[str]) -> None:
        # A word that folds to nothing (only invisible characters) would match every text.
        self._words = tuple(dict.fromkeys(w for w in (fold(word) for word in words) if w.strip()))

    async def check(self, text: str, *, user_id: str, scene: int) -> Verdict:
        folded = fold(text)
        if any(word in folded for word in self._words):
            return Verdict("risky", OTHER_LABEL, "keywords")
        return Verdict("pass", 100, "keywords")
