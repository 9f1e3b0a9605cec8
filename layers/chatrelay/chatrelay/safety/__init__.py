"""Content safety: check the question before the model sees it, and the answer as it streams.

``ContentSafety`` is the service's policy over a :class:`ContentChecker`: which
scene, whether ``review`` blocks, and what a failed check means
(``CHATRELAY_CONTENT_SAFETY_FAIL_CLOSED``). Off unless ``CHATRELAY_CONTENT_SAFETY``
is ``keywords`` or ``wechat``. The WeChat checker (and the WeChat client it needs) is
imported only when ``wechat`` is chosen.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from chatrelay import errors
from chatrelay.observability import hash_user_id, logger
from chatrelay.safety.base import MAX_CHECK_CHARS, PASS, AllCheckers, CheckFailed, ContentChecker, Verdict, pieces
from chatrelay.safety.keywords import KeywordChecker
from chatrelay.safety.monitor import AnswerSafetyMonitor, safe_cut
from chatrelay.settings import Settings

if TYPE_CHECKING:
    from chatrelay.auth.wechat import WeChatApi
    from chatrelay.safety.wechat import WeChatContentChecker

__all__ = [
    "MAX_CHECK_CHARS", "PASS", "AllCheckers", "AnswerSafetyMonitor", "CheckFailed", "ContentChecker", "ContentSafety",
    "KeywordChecker", "Verdict", "WeChatContentChecker", "content_safety_from_settings", "pieces", "safe_cut",
]


def __getattr__(name: str) -> Any:
    if name == "WeChatContentChecker":  # imported on first use (rarely configured)
        from chatrelay.safety.wechat import WeChatContentChecker

        return WeChatContentChecker
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")


class ContentSafety:
    def __init__(
        self,
        checker: ContentChecker,
        *,
        scene: int = 2,
        block_review: bool = False,
        fail_closed: bool = False,
        piece_chars: int = 500,
    ) -> None:
        self.checker = checker
        self.scene = scene
        self.block_review = block_review
        self.fail_closed = fail_closed
        self.piece_chars = piece_chars

    async def question_verdict(self, text: str, *, user_id: str) -> Verdict:
        """The verdict on a question; raises ContentCheckUnavailable when the check
        failed and the policy is fail-closed (a failed check otherwise passes, logged)."""
        try:
            return await self.checker.check(text, user_id=user_id, scene=self.scene)
        except CheckFailed as exc:
            logger.warning("question check failed", extra={"user": hash_user_id(user_id), "error": str(exc),
                                                           "fail_closed": self.fail_closed})
            if self.fail_closed:
                raise errors.ContentCheckUnavailable() from exc
            return PASS

    def blocks(self, verdict: Verdict) -> bool:
        return verdict.blocks(block_review=self.block_review)

    def answer_monitor(self, user_id: str) -> AnswerSafetyMonitor:
        return AnswerSafetyMonitor(
            self.checker, user_id=user_id, scene=self.scene, piece_chars=self.piece_chars,
            overlap=min(50, MAX_CHECK_CHARS - self.piece_chars), block_review=self.block_review,
            fail_closed=self.fail_closed,
        )


def content_safety_from_settings(settings: Settings, wechat: WeChatApi | None) -> ContentSafety | None:
    if settings.content_safety == "off":
        return None
    keywords = KeywordChecker(settings.content_safety_keywords) if settings.content_safety_keywords else None
    checker: ContentChecker | None
    if settings.content_safety == "wechat":
        if wechat is None:
            raise RuntimeError("CHATRELAY_CONTENT_SAFETY=wechat needs CHATRELAY_WECHAT_APP_ID and its secret")
        from chatrelay.safety.wechat import WeChatContentChecker

        # The operator's own word list applies to everyone, WeChat's check to WeChat users.
        wechat_checker = WeChatContentChecker(wechat)
        checker = AllCheckers(keywords, wechat_checker) if keywords else wechat_checker
    else:
        checker = keywords
    if checker is None:
        raise RuntimeError("CHATRELAY_CONTENT_SAFETY=keywords needs CHATRELAY_CONTENT_SAFETY_KEYWORDS")
    return ContentSafety(
        checker,
        scene=settings.content_safety_scene,
        block_review=settings.content_safety_block_review,
        fail_closed=settings.content_safety_fail_closed,
        piece_chars=settings.answer_safety_piece_chars,
    )
