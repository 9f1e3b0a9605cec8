"""The content-check interface: one method, one verdict.

A :class:`ContentChecker` judges a text for one user in one scene (WeChat's
scenes: 1 profile, 2 comment, 3 forum, 4 social log). Implementations:
``keywords.KeywordChecker`` (a configured word list) and
``wechat.WeChatContentChecker`` (``msg_sec_check`` v2). A checker that cannot
judge (vendor down, bad answer) raises :class:`CheckFailed`; what that means —
let the text through or refuse it — is the caller's policy
(``CHATRELAY_CONTENT_SAFETY_FAIL_CLOSED``), not the checker's.
"""

from __future__ import annotations

from typing import Literal, Protocol

import msgspec

MAX_CHECK_CHARS = 2500
"""msg_sec_check's limit on ``content``; checkers split longer texts."""

Suggest = Literal["pass", "review", "risky"]
_RANK = {"pass": 0, "review": 1, "risky": 2}


class Verdict(msgspec.Struct, frozen=True):
    suggest: Suggest
    label: int | None = None
    """The vendor's category (WeChat: 100 normal, 10001 ad, 20001 politics, 20002 porn,
    20003 abuse, 20006 crime, 20008 fraud, 20012 vulgar, 20013 copyright, 21000 other)."""
    source: str = ""
    """Which checker decided (``wechat``, ``keywords``, ``skipped``)."""

    def blocks(self, *, block_review: bool = False) -> bool:
        return self.suggest == "risky" or (block_review and self.suggest == "review")

    def worst(self, other: Verdict) -> Verdict:
        return other if _RANK[other.suggest] > _RANK[self.suggest] else self


PASS = Verdict("pass", 100, "skipped")


class CheckFailed(Exception):
    """The checker could not judge the text."""


class ContentChecker(Protocol):
    async def check(self, text: str, *, user_id: str, scene: int) -> Verdict: ...


def pieces(text: str, size: int = MAX_CHECK_CHARS) -> list[str]:
    """``text`` in consecutive pieces of at most ``size`` characters (code points)."""
    return [text[i : i + size] for i in range(0, len(text), size)] or [""]


class AllCheckers:
    """Several checkers in order; the worst verdict wins, and a ``risky`` one ends the round."""

    def __init__(self, *checkers: ContentChecker) -> None:
        self._checkers = checkers

    async def check(self, text: str, *, user_id: str, scene: int) -> Verdict:
        verdict = PASS
        for checker in self._checkers:
            verdict = verdict.worst(await checker.check(text, user_id=user_id, scene=scene))
            if verdict.suggest == "risky":
                break
        return verdict
