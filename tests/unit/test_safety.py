"""Content checks: the keyword and msg_sec_check checkers, and the streamed-answer monitor.

The WeChat checker talks to the real fake (``mockllm/wechat_fake.py``) through
httpx's ASGI transport: the same wire shapes as the functional tests, in-process.
"""

from __future__ import annotations

import asyncio

import anyio
import httpx
import pytest

from chatrelay.auth.wechat import WeChatApi
from chatrelay.safety import (
    MAX_CHECK_CHARS,
    AllCheckers,
    AnswerSafetyMonitor,
    CheckFailed,
    ContentSafety,
    KeywordChecker,
    Verdict,
    WeChatContentChecker,
    safe_cut,
)
from chatrelay.text import fold
from chatrelay_dev.mockllm.wechat_fake import WeChatFakeConfig, create_wechat_fake

CONFIG = WeChatFakeConfig(risky_words=("forbidden-word", "违禁词"), review_words=("borderline",))


def _wechat():
    fake_app = create_wechat_fake(CONFIG)
    client = httpx.AsyncClient(transport=httpx.ASGITransport(app=fake_app))
    api = WeChatApi(app_id=CONFIG.app_id, app_secret=CONFIG.app_secret, base_url="http://wechat.test", client=client)
    return api, fake_app.state.fake


async def _login(api: WeChatApi, who: str) -> str:
    return (await api.code_to_session(f"{who}.1")).user_id


def test_keyword_checker_is_case_insensitive_and_works_without_spaces():
    checker = KeywordChecker(["BadWord", "违禁词", "  "])

    async def run():
        assert (await checker.check("a badword here", user_id="u", scene=2)).suggest == "risky"
        assert (await checker.check("这里有违禁词吗", user_id="u", scene=2)).suggest == "risky"
        assert (await checker.check("all fine", user_id="u", scene=2)).suggest == "pass"

    anyio.run(run)


def test_all_checkers_take_the_worst_verdict_and_stop_at_risky():
    first, second = RecordingChecker(word="BAD"), RecordingChecker(word="WORSE")
    combined = AllCheckers(first, second)

    async def run():
        assert (await combined.check("fine", user_id="u", scene=2)).suggest == "pass"
        assert (await combined.check("WORSE", user_id="u", scene=2)).suggest == "risky"
        assert (await combined.check("BAD", user_id="u", scene=2)).suggest == "risky"

    anyio.run(run)
    assert first.seen == ["fine", "WORSE", "BAD"] and second.seen == ["fine", "WORSE"]


def test_verdicts():
    assert Verdict("risky").blocks() and not Verdict("review").blocks()
    assert Verdict("review").blocks(block_review=True)
    assert Verdict("pass").worst(Verdict("review")).suggest == "review"
    assert Verdict("risky").worst(Verdict("review")).suggest == "risky"


def test_msg_sec_check_verdicts_and_request_shape():
    api, fake = _wechat()
    checker = WeChatContentChecker(api)

    async def run():
        user = await _login(api, "alice")
        risky = await checker.check("say forbidden-word now", user_id=user, scene=2)
        review = await checker.check("a borderline text", user_id=user, scene=2)
        fine = await checker.check("你好", user_id=user, scene=2)
        return risky, review, fine

    risky, review, fine = anyio.run(run)
    assert (risky.suggest, risky.label, risky.source) == ("risky", 20006, "wechat")
    assert review.suggest == "review" and fine.suggest == "pass" and fine.label == 100
    call = [r for r in fake.requests if r["path"] == "/wxa/msg_sec_check"][0]
    assert call["body"]["version"] == 2 and call["body"]["scene"] == 2
    assert call["body"]["openid"] and call["body"]["content"] == "say forbidden-word now"
    assert sum(r["path"] == "/cgi-bin/token" for r in fake.requests) == 1  # the token was cached


def test_long_texts_are_checked_in_pieces_within_the_vendor_limit():
    api, fake = _wechat()
    checker = WeChatContentChecker(api)
    text = "安" * 6000 + "违禁词"

    async def run():
        return await checker.check(text, user_id=await _login(api, "bob"), scene=3)

    assert anyio.run(run).suggest == "risky"
    sizes = [len(r["body"]["content"]) for r in fake.requests if r["path"] == "/wxa/msg_sec_check"]
    assert sizes == [2500, 2500, 1003] and max(sizes) <= MAX_CHECK_CHARS


def test_users_without_an_openid_use_the_fallback_or_pass():
    api, fake = _wechat()

    async def run():
        with_fallback = WeChatContentChecker(api, fallback=KeywordChecker(["forbidden-word"]))
        without = WeChatContentChecker(api)
        a = await with_fallback.check("forbidden-word", user_id="dev-user", scene=2)
        b = await without.check("forbidden-word", user_id="dev-user", scene=2)
        # An openid WeChat does not know (40003) is judged by the fallback too.
        c = await with_fallback.check("forbidden-word", user_id="wx:oUnknownOpenid000000000000", scene=2)
        return a, b, c

    a, b, c = anyio.run(run)
    assert (a.suggest, a.source) == ("risky", "keywords")
    assert (b.suggest, b.source) == ("pass", "skipped")
    assert (c.suggest, c.source) == ("risky", "keywords")
    assert not [r for r in fake.requests if r.get("errcode") not in (None, 40003)]


def test_an_expired_access_token_is_replaced_once():
    api, fake = _wechat()
    checker = WeChatContentChecker(api)

    async def run():
        user = await _login(api, "carol")
        await checker.check("first", user_id=user, scene=2)
        for token in fake.tokens:
            fake.tokens[token] = False
        return await checker.check("second forbidden-word", user_id=user, scene=2)

    assert anyio.run(run).suggest == "risky"
    assert [r.get("errcode") for r in fake.requests if r["path"] == "/wxa/msg_sec_check"] == [None, 42001, None]
    assert api.token_fetches == 2


def test_wechat_failures_raise_check_failed():
    api = WeChatApi(app_id="a", app_secret="s", base_url="http://wechat.test",
                    client=httpx.AsyncClient(transport=httpx.MockTransport(lambda r: httpx.Response(503))))
    checker = WeChatContentChecker(api)
    with pytest.raises(CheckFailed):
        anyio.run(lambda: checker.check("x", user_id="wx:oAbCdEfGhIjKlMnOpQrStUvWxYz0", scene=2))


class RecordingChecker:
    """Flags texts containing ``word``; records what it was asked; can be made to fail."""

    def __init__(self, word: str = "BAD", fail: bool = False, delay: float = 0.0) -> None:
        self.word, self.fail, self.delay = word, fail, delay
        self.seen: list[str] = []

    async def check(self, text, *, user_id, scene):
        self.seen.append(text)
        await asyncio.sleep(self.delay)
        if self.fail:
            raise CheckFailed("down")
        return Verdict("risky" if self.word in text else "pass", None, "test")


async def _feed(monitor, text, size=7):
    cut = None
    for i in range(0, len(text), size):
        cut = await monitor.feed(text[i : i + size]) or cut
        await asyncio.sleep(0)
    return cut


def test_monitor_checks_pieces_with_overlap_and_never_more_than_the_limit():
    checker = RecordingChecker()
    text = "".join(f"{i:04d}" for i in range(300))  # 1200 characters, nothing risky

    async def run():
        monitor = AnswerSafetyMonitor(checker, user_id="u", piece_chars=500, overlap=50)
        await _feed(monitor, text)
        assert await monitor.finish() is None
        assert monitor.verified_offset == len(text)
        return monitor

    monitor = anyio.run(run)
    assert checker.seen == [text[0:500], text[450:1000], text[950:1200]]
    assert monitor.checks == 3


def test_monitor_cuts_before_the_refused_piece_at_a_sentence_end():
    checker = RecordingChecker()
    text = "a" * 480 + "。" + "b" * 100 + "BAD" + "c" * 600

    async def run():
        monitor = AnswerSafetyMonitor(checker, user_id="u", piece_chars=500, overlap=50)
        await _feed(monitor, text)
        cut = await monitor.finish()
        return cut, await monitor.wait_flagged()

    cut, flagged = anyio.run(run)
    # The second window starts at 450 (its overlap): no sentence ends in the 200 characters before it.
    assert cut == flagged == safe_cut(text, 450) == 450
    assert len(checker.seen) == 2  # nothing is checked after a refusal


def test_safe_cut_prefers_the_end_of_a_nearby_sentence():
    text = "First sentence. Second one goes on and on"
    assert safe_cut(text, 30) == len("First sentence.")
    assert safe_cut("x" * 500, 400) == 400
    assert safe_cut("line one\nline two", 14) == len("line one\n")


def test_monitor_reports_a_cut_while_the_stream_goes_on():
    checker = RecordingChecker(delay=0.01)

    async def run():
        monitor = AnswerSafetyMonitor(checker, user_id="u", piece_chars=100, overlap=0)
        flagged = asyncio.create_task(monitor.wait_flagged())
        await monitor.feed("x" * 90 + "BAD" + "y" * 10)
        assert monitor.cutoff is None  # feed never waits for a check
        cut = await asyncio.wait_for(flagged, 1)
        assert await monitor.feed("more") == cut == 0
        await monitor.aclose()
        return cut

    assert anyio.run(run) == 0


@pytest.mark.parametrize(("fail_closed", "expected"), [(False, None), (True, 0)])
def test_monitor_failures_follow_the_policy(fail_closed, expected):
    async def run():
        monitor = AnswerSafetyMonitor(RecordingChecker(fail=True), user_id="u", piece_chars=100,
                                      fail_closed=fail_closed)
        await monitor.feed("z" * 150)
        return await monitor.finish()

    assert anyio.run(run) == expected


def test_short_answers_are_checked_at_the_end():
    checker = RecordingChecker()

    async def run():
        monitor = AnswerSafetyMonitor(checker, user_id="u", piece_chars=500)
        await monitor.feed("short BAD answer")
        assert checker.seen == []
        return await monitor.finish()

    assert anyio.run(run) == 0
    assert checker.seen == ["short BAD answer"]


def test_aclose_cancels_a_check_in_flight():
    checker = RecordingChecker(delay=10)

    async def run():
        monitor = AnswerSafetyMonitor(checker, user_id="u", piece_chars=50)
        await monitor.feed("q" * 60)
        await asyncio.sleep(0.01)
        with anyio.fail_after(1):
            await monitor.aclose()

    anyio.run(run)


def test_monitor_refuses_windows_beyond_the_vendor_limit():
    with pytest.raises(ValueError):
        AnswerSafetyMonitor(RecordingChecker(), user_id="u", piece_chars=2480, overlap=50)


def test_question_policy_fail_open_and_closed():
    from chatrelay import errors

    async def run(fail_closed):
        safety = ContentSafety(RecordingChecker(fail=True), fail_closed=fail_closed)
        return await safety.question_verdict("q", user_id="u")

    assert anyio.run(run, False).suggest == "pass"
    with pytest.raises(errors.ContentCheckUnavailable):
        anyio.run(run, True)


# --- disguised words: fullwidth letters, invisible characters ---------------------------------

DISGUISES = {
    "fullwidth": "ｂａｄｗｏｒｄ",
    "fullwidth-upper": "ＢＡＤＷＯＲＤ",
    "zero-width-space": "bad\u200bword",
    "word-joiner": "b\u2060adword",
    "bom": "badw\ufefford",
    "soft-hyphen": "bad\u00adword",
    "zwnj-zwj": "b\u200ca\u200ddword",
    "bidi-controls": "bad\u202ew\u202cord",
    "variation-selector": "b\ufe0fadword",
    "tag-characters": "bad\U000e0041word",
    "circled": "ⓑⓐⓓⓦⓞⓡⓓ",
    "mixed": "Ｂ\u200bａ\u00adＤword",
}


@pytest.mark.parametrize("text", DISGUISES.values(), ids=DISGUISES.keys())
def test_keyword_checker_sees_through_fullwidth_and_invisible_characters(text):
    checker = KeywordChecker(["BadWord", "违禁词"])

    async def run():
        assert (await checker.check(f"a {text} here", user_id="u", scene=2)).suggest == "risky"
        assert (await checker.check("这里有违\u200b禁\ufeff词吗", user_id="u", scene=2)).suggest == "risky"

    anyio.run(run)


def test_keywords_are_folded_too_and_invisible_only_keywords_are_dropped():
    checker = KeywordChecker(["ｓｅｃｒｅｔ\u200b", "\u200b\u2060", "\u00ad"])

    async def run():
        assert (await checker.check("the SECRET plan", user_id="u", scene=2)).suggest == "risky"
        assert (await checker.check("nothing to see", user_id="u", scene=2)).suggest == "pass"

    anyio.run(run)


def test_fold():
    assert fold("ＢＡＤ\u200b\u2060\ufeff\u00adword") == "badword"
    assert fold("Straße ﬁne") == "strasse fine"
    assert fold("e\u200b\u0301") == "é"  # an invisible character does not keep letters from composing


def test_monitor_overlap_counts_visible_characters_only():
    """A word padded with zero-width spaces across a piece boundary is still seen whole,
    and the cut-off is an offset into the text as streamed."""
    checker = KeywordChecker(["badword"])
    padded = "bad" + "\u200b" * 120 + "word"
    text = "x" * 90 + padded + "y" * 300

    async def run():
        monitor = AnswerSafetyMonitor(checker, user_id="u", piece_chars=100, overlap=20)
        await _feed(monitor, text)
        return await monitor.finish()

    cut = anyio.run(run)
    assert cut is not None and cut <= text.index(padded)
    assert "badword" not in fold(text[:cut])
