"""WeChat ``msg_sec_check`` v2 as a :class:`ContentChecker`.

``POST {base}/wxa/msg_sec_check?access_token=...`` with ``{"version": 2, "openid",
"scene", "content"}`` answers ``{"errcode": 0, "result": {"suggest", "label"},
"detail": [...]}``. ``content`` is limited to 2500 characters: longer texts are
checked in pieces and the worst verdict wins. The openid is the user's own
(``wx:<openid>`` user ids); WeChat only accepts users of the app who were active
in the last two hours, so a user without an openid — or one WeChat does not
accept (errcode 40003) — is judged by the fallback checker (the keyword list) or,
without one, passes.
"""

from __future__ import annotations

from chatrelay import errors
from chatrelay.auth.wechat import WeChatApi, openid_of
from chatrelay.observability import hash_user_id, logger
from chatrelay.safety.base import MAX_CHECK_CHARS, PASS, CheckFailed, ContentChecker, Verdict, pieces

INVALID_OPENID = 40003


class WeChatContentChecker:
    def __init__(self, api: WeChatApi, *, fallback: ContentChecker | None = None) -> None:
        self._api = api
        self._fallback = fallback

    async def _fallback_check(self, text: str, user_id: str, scene: int) -> Verdict:
        if self._fallback is None:
            return PASS
        return await self._fallback.check(text, user_id=user_id, scene=scene)

    async def check(self, text: str, *, user_id: str, scene: int) -> Verdict:
        openid = openid_of(user_id)
        if openid is None:
            return await self._fallback_check(text, user_id, scene)
        verdict = Verdict("pass", 100, "wechat")
        for piece in pieces(text, MAX_CHECK_CHARS):
            try:
                body = await self._api.post_with_token(
                    "/wxa/msg_sec_check", {"version": 2, "openid": openid, "scene": scene, "content": piece}
                )
            except errors.WeChatError as exc:
                raise CheckFailed(exc.message) from exc
            errcode = body.get("errcode") or 0
            if errcode == INVALID_OPENID:
                return await self._fallback_check(text, user_id, scene)
            result = body.get("result")
            suggest = result.get("suggest") if isinstance(result, dict) else None
            if errcode or suggest not in ("pass", "review", "risky"):
                logger.warning("msg_sec_check failed", extra={"wechat_errcode": errcode, "user": hash_user_id(user_id)})
                raise CheckFailed(f"msg_sec_check errcode {errcode}")
            label = result.get("label")
            verdict = verdict.worst(Verdict(suggest, label if isinstance(label, int) else None, "wechat"))
            if verdict.suggest == "risky":
                break
        return verdict
