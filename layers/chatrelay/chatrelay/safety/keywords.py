"""A word-list checker: any configured word in the text (case-insensitive) makes it risky.

For users without a WeChat openid, for local use, and as the fallback of the
WeChat checker. Matching is on ``str.casefold()`` substrings, so it also works for
languages written without spaces.
"""

from __future__ import annotations

from collections.abc import Iterable

from chatrelay.safety.base import Verdict

OTHER_LABEL = 21000


class KeywordChecker:
    def __init__(self, words: Iterable[str]) -> None:
        self._words = tuple(w.casefold() for w in words if w.strip())

    async def check(self, text: str, *, user_id: str, scene: int) -> Verdict:
        folded = text.casefold()
        if any(word in folded for word in self._words):
            return Verdict("risky", OTHER_LABEL, "keywords")
        return Verdict("pass", 100, "keywords")
