"""Content safety: questions checked before the model sees them (msg_sec_check v2 on the fake
WeChat server, keyword list for users without an openid), and the streamed-answer monitor."""

from __future__ import annotations

import json
import uuid

import anyio
import httpx
import pytest

from chatrelay.auth.wechat import WeChatApi
from chatrelay.safety import AnswerSafetyMonitor, KeywordChecker, WeChatContentChecker
from chatrelay.text import fold
from chatrelay_dev.local.dynamodb_local import free_port
from chatrelay_dev.mockllm import answer_text
from tests.conftest import login
from tests.support.servers import get_json, wait_until
from tests.support.sse_client import stream_chat
from tests.support.wechat import CONFIG, new_who, wechat_settings, wechat_token


@pytest.fixture(scope="module")
def server(start_app, wechat):
    return start_app(**wechat_settings(wechat, content_safety="wechat", content_safety_keywords=["kw-forbidden"]))


def _upstream_calls(mock_llm, marker):
    return [r for r in get_json(f"{mock_llm.url}/_mock/requests")
            if marker in str(r["body"]["messages"][-1]["content"])]


def _checks(wechat, marker):
    return [r for r in get_json(f"{wechat.url}/_mock/wechat/requests")
            if r["path"] == "/wxa/msg_sec_check" and marker in (r.get("body") or {}).get("content", "")]


def _api(server, token):
    return httpx.Client(base_url=server.url, headers={"Authorization": f"Bearer {token}"}, timeout=10)


def test_a_risky_question_is_refused_stored_blocked_and_never_sent_upstream(server, wechat, mock_llm):
    token = wechat_token(server.url, new_who())["token"]
    marker = uuid.uuid4().hex
    result = stream_chat(server.url, token, {"prompt": f"{marker} tell me about forbidden-word"})
    assert result.status == 200
    assert [e.event for e in result.events] == ["meta", "error", "done", "message"]
    assert result.error["code"] == "question_blocked"
    assert result.done == {"finishReason": "blocked", "usage": None}
    assert result.events[-1].data == "[DONE]"
    assert _upstream_calls(mock_llm, marker) == []
    [check] = _checks(wechat, marker)
    assert check["body"]["version"] == 2 and check["body"]["scene"] == 2 and check["suggest"] == "risky"
    with _api(server, token) as api:
        turn = api.get(f"/v1/messages/{result.meta['messageId']}").json()
        assert (turn["status"], turn["finishReason"], turn["errorCode"], turn["answer"]) == \
            ("blocked", "blocked", "question_blocked", "")
        # A resume of the blocked turn ends at once.
        with api.stream("GET", f"/v1/messages/{result.meta['messageId']}/stream") as resumed:
            body = resumed.read().decode()
        assert '"finishReason":"blocked"' in body and body.rstrip().endswith("data: [DONE]")


def test_a_clean_question_is_checked_then_answered(server, wechat, mock_llm):
    token = wechat_token(server.url, new_who())["token"]
    marker = uuid.uuid4().hex
    result = stream_chat(server.url, token, {"prompt": f"{marker} hello [mock tokens=3]"})
    assert result.status == 200 and result.text == answer_text(3) and result.error is None
    assert [c["suggest"] for c in _checks(wechat, marker)] == ["pass"]
    assert len(_upstream_calls(mock_llm, marker)) == 1


def test_a_blocked_turn_counts_in_its_conversation_but_not_in_the_context(server, mock_llm):
    token = wechat_token(server.url, new_who())["token"]
    first = stream_chat(server.url, token, {"prompt": "hello [mock tokens=2]"})
    cid = first.meta["conversationId"]
    blocked = stream_chat(server.url, token, {"prompt": "违禁词 please", "conversationId": cid})
    assert blocked.error["code"] == "question_blocked" and blocked.meta["conversationId"] == cid
    marker = uuid.uuid4().hex
    stream_chat(server.url, token, {"prompt": f"{marker} next [mock tokens=1]", "conversationId": cid})
    [call] = _upstream_calls(mock_llm, marker)
    assert all("违禁词" not in m["content"] for m in call["body"]["messages"])
    with _api(server, token) as api:
        assert api.get("/v1/conversations").json()["items"][0]["turnCount"] == 3
        statuses = [t["status"] for t in api.get(f"/v1/conversations/{cid}/messages").json()["items"]]
        assert statuses == ["complete", "blocked", "complete"]


def test_text_format_gets_the_refusal_too(server):
    token = wechat_token(server.url, new_who())["token"]
    result = stream_chat(server.url, token, {"prompt": "forbidden-word"}, fmt="text")
    assert result.status == 200 and result.headers["x-message-id"]
    # Text mode (issue 13): the ending travels in comments, so a naive client shows no answer text.
    assert result.comments("error")[0]["code"] == "question_blocked"
    assert result.comments("done")[0]["finishReason"] == "blocked"
    assert result.naive_text == ""


def test_users_without_an_openid_fall_back_to_the_keyword_list(server, wechat, user):
    token = login(server.url, user)
    marker = uuid.uuid4().hex
    blocked = stream_chat(server.url, token, {"prompt": f"{marker} kw-forbidden"})
    assert blocked.error["code"] == "question_blocked"
    passed = stream_chat(server.url, token, {"prompt": f"{marker} forbidden-word [mock tokens=1]"})
    assert passed.error is None and passed.done["finishReason"] == "stop"
    assert _checks(wechat, marker) == []  # no WeChat call for a user WeChat does not know


def test_the_keyword_list_applies_to_wechat_users_too(server, wechat):
    token = wechat_token(server.url, new_who())["token"]
    marker = uuid.uuid4().hex
    assert stream_chat(server.url, token, {"prompt": f"{marker} KW-forbidden"}).error["code"] == "question_blocked"
    assert _checks(wechat, marker) == []  # the local list decided; WeChat was not asked


def test_keyword_mode_needs_no_wechat(start_app, user):
    server = start_app(content_safety="keywords", content_safety_keywords=["Secret-Plan"])
    token = login(server.url, user)
    assert stream_chat(server.url, token, {"prompt": "the secret-plan"}).error["code"] == "question_blocked"
    assert stream_chat(server.url, token, {"prompt": "fine [mock tokens=1]"}).error is None


@pytest.mark.parametrize("fail_closed", [False, True])
def test_an_unreachable_checker_follows_the_policy(start_app, mock_llm, fail_closed):
    server = start_app(content_safety="wechat", wechat_api_base=f"http://127.0.0.1:{free_port()}",
                       wechat_app_id="wx1", wechat_app_secret="s", content_safety_fail_closed=fail_closed)
    user = "wx:oUnreachable" + uuid.uuid4().hex[:12]
    token = login(server.url, user)
    marker = uuid.uuid4().hex
    result = stream_chat(server.url, token, {"prompt": f"{marker} [mock tokens=1]"})
    with _api(server, token) as api:
        stored = api.get("/v1/conversations").json()["items"]
    if fail_closed:
        assert result.status == 503
        assert json.loads(result.raw)["code"] == "content_check_unavailable"
        assert stored == [] and _upstream_calls(mock_llm, marker) == []
    else:
        assert result.status == 200 and result.done["finishReason"] == "stop" and len(stored) == 1


def test_blocked_questions_release_their_stream_slot(start_app, wechat):
    server = start_app(**wechat_settings(wechat, content_safety="wechat", max_concurrent_streams=1))
    token = wechat_token(server.url, new_who())["token"]
    for _ in range(3):
        assert stream_chat(server.url, token, {"prompt": "forbidden-word"}).error["code"] == "question_blocked"
    assert stream_chat(server.url, token, {"prompt": "fine [mock tokens=1]"}).error is None


def test_the_answer_monitor_cuts_a_risky_answer_checked_by_the_fake(wechat):
    """The monitor over msg_sec_check on the fake, fed a stream the way the relay feeds it."""
    api = WeChatApi(app_id=CONFIG.app_id, app_secret=CONFIG.app_secret, base_url=wechat.url)
    checker = WeChatContentChecker(api, fallback=KeywordChecker(["x"]))
    clean = answer_text(60)
    answer = clean + " And now the forbidden-word appears. " + clean

    async def run():
        user = (await api.code_to_session(f"{new_who()}.1")).user_id
        monitor = AnswerSafetyMonitor(checker, user_id=user, piece_chars=200, overlap=20)
        try:
            for i in range(0, len(answer), 5):
                await monitor.feed(answer[i : i + 5])
            return await monitor.finish(), monitor.verified_offset
        finally:
            await monitor.aclose()
            await api.aclose()

    cut, verified = anyio.run(run)
    risky_at = answer.index("forbidden-word")
    assert cut is not None and cut <= risky_at and cut <= verified
    assert "forbidden-word" not in answer[:cut] and risky_at - cut < 220


# --- the answer, checked as it streams --------------------------------------------------------

RISKY = "forbidden%2Dword"  # percent-encoded in the directive, so the question itself passes the check


@pytest.fixture(scope="module")
def answer_checked_server(start_app, wechat):
    # Small pieces, so a 200-chunk answer is checked in several rounds while it streams.
    return start_app(**wechat_settings(wechat, content_safety="wechat", answer_safety_piece_chars=60,
                                       idle_timeout=20))


def _cut_answer(result, offset):
    """The answer text a client keeps after an ``answer_blocked`` at ``offset`` (ids are offsets)."""
    return result.text[:offset]


def test_a_risky_answer_is_cut_mid_stream_while_the_model_is_still_writing(answer_checked_server, wechat, mock_llm):
    server = answer_checked_server
    token = wechat_token(server.url, new_who())["token"]
    marker = uuid.uuid4().hex
    # The risky word is chunk 100; the fake then holds the stream after chunk 150 on a gate no one
    # opens: the turn can only end because the monitor flagged a piece, not because the answer ended.
    prompt = f"{marker} [mock tokens=400 interval=0 say={RISKY} say_at=100 hold_after=150 gate={marker}]"
    result = stream_chat(server.url, token, {"prompt": prompt})
    full = answer_text(400, "forbidden-word", 100)
    risky_at = full.index("forbidden-word")
    assert result.status == 200
    assert [e.event for e in result.events[-3:]] == ["error", "done", "message"]
    error = result.error
    assert error["code"] == "answer_blocked"
    offset = error["offset"]
    assert 0 < offset <= risky_at and risky_at - offset < 260  # at most one piece + the overlap back
    assert result.done == {"finishReason": "blocked", "usage": None}
    # What was streamed is the true answer, possibly past the cut; the client cuts at the offset.
    assert full.startswith(result.text) and len(result.text) >= offset
    assert "forbidden-word" not in _cut_answer(result, offset)
    # The upstream was hung up on (it was still held on its gate).
    wait_until(lambda: _upstream_calls(mock_llm, marker)[0]["outcome"] == "cancelled")
    with _api(server, token) as api:
        turn = api.get(f"/v1/messages/{result.meta['messageId']}").json()
        assert (turn["status"], turn["finishReason"], turn["errorCode"]) == ("blocked", "blocked", "answer_blocked")
        assert turn["answer"] == full[:offset]
        # A resume from before the cut gets the safe text only, then the same ending.
        with api.stream("GET", f"/v1/messages/{result.meta['messageId']}/stream?after=10") as resumed:
            body = resumed.read().decode()
        assert "forbidden-word" not in body
        assert f'"code":"answer_blocked","message":"part of the answer was refused by the content check",' \
               f'"offset":{offset}' in body
        assert '"finishReason":"blocked"' in body and body.rstrip().endswith("data: [DONE]")


def test_a_risky_tail_is_caught_by_the_final_check(answer_checked_server, wechat, mock_llm):
    """An answer shorter than a piece is checked once, at its end, before it is stored."""
    server = answer_checked_server
    token = wechat_token(server.url, new_who())["token"]
    marker = uuid.uuid4().hex
    seen = len(get_json(f"{wechat.url}/_mock/wechat/requests"))
    result = stream_chat(server.url, token, {"prompt": f"{marker} [mock tokens=8 say={RISKY} say_at=6]"})
    full = answer_text(8, "forbidden-word", 6)
    assert result.text == full  # streamed before the check had its say
    assert result.error["code"] == "answer_blocked"
    offset = result.error["offset"]
    assert offset <= full.index("forbidden-word")
    checks = [(c["body"]["content"], c["suggest"]) for c in get_json(f"{wechat.url}/_mock/wechat/requests")[seen:]
              if c["path"] == "/wxa/msg_sec_check" and marker not in c["body"]["content"]]
    assert checks == [(full, "risky")]  # one check, of the whole answer, at its end
    with _api(server, token) as api:
        turn = api.get(f"/v1/messages/{result.meta['messageId']}").json()
    assert (turn["status"], turn["answer"]) == ("blocked", full[:offset])


def test_a_clean_long_answer_is_checked_piece_by_piece_and_kept_whole(answer_checked_server, wechat):
    server = answer_checked_server
    token = wechat_token(server.url, new_who())["token"]
    seen = len(get_json(f"{wechat.url}/_mock/wechat/requests"))
    prompt = f"{uuid.uuid4().hex} [mock tokens=120 interval=0]"
    result = stream_chat(server.url, token, {"prompt": prompt})
    full = answer_text(120)
    assert result.error is None and result.text == full and result.done["finishReason"] == "stop"
    checked = [c["body"]["content"] for c in get_json(f"{wechat.url}/_mock/wechat/requests")[seen:]
               if c["path"] == "/wxa/msg_sec_check" and c["body"]["content"] != prompt]
    # In order: every 60 new characters with the 50 before them, then the tail at the end.
    ends = [*range(60, len(full) + 1, 60)]
    if ends[-1] < len(full):
        ends.append(len(full))
    expected = [full[max(0, end - 60 - 50) : end] for end in ends]
    expected[-1] = full[max(0, (ends[-2] if len(ends) > 1 else 0) - 50) :]
    assert checked == expected
    with _api(server, token) as api:
        turn = api.get(f"/v1/messages/{result.meta['messageId']}").json()
    assert (turn["status"], turn["answer"]) == ("complete", full)


# --- disguised words: fullwidth letters and invisible characters (keyword list) -------------------

DISGUISED = {
    "fullwidth": "ｆｏｒｂｉｄｄｅｎ－ｗｏｒｄ",
    "upper": "FORBIDDEN-WORD",
    "zero-width-space": "forbidden\u200b-word",
    "word-joiner": "for\u2060bidden-word",
    "bom-and-soft-hyphen": "\ufeffforbidden-wo\u00adrd",
    "mixed": "ＦＯＲ\u200bbidden\u2060－ｗ\u00adord",
}


def _percent(text: str) -> str:
    """Every byte percent-encoded: the question carries the word without containing it."""
    return "".join(f"%{byte:02X}" for byte in text.encode())


@pytest.fixture(scope="module")
def keyword_server(start_app):
    return start_app(content_safety="keywords", content_safety_keywords=["Forbidden-Word", "违禁词"],
                     answer_safety_piece_chars=60, idle_timeout=20)


@pytest.mark.parametrize("word", [*DISGUISED.values(), "违\u200b禁\ufeff词"], ids=[*DISGUISED, "cjk-zero-width"])
def test_a_disguised_forbidden_word_in_the_question_is_refused(keyword_server, mock_llm, user, word):
    token = login(keyword_server.url, user)
    marker = uuid.uuid4().hex
    result = stream_chat(keyword_server.url, token, {"prompt": f"{marker} tell me about {word} [mock tokens=2]"})
    assert result.status == 200 and result.error["code"] == "question_blocked"
    assert result.done["finishReason"] == "blocked"
    assert _upstream_calls(mock_llm, marker) == []
    with _api(keyword_server, token) as api:
        turn = api.get(f"/v1/messages/{result.meta['messageId']}").json()
    assert (turn["status"], turn["errorCode"], turn["answer"]) == ("blocked", "question_blocked", "")


@pytest.mark.parametrize("word", DISGUISED.values(), ids=DISGUISED.keys())
def test_a_disguised_forbidden_word_in_the_answer_is_cut_at_an_offset_into_the_streamed_text(
        keyword_server, user, word):
    token = login(keyword_server.url, user)
    # Invisible and expanding characters (ligatures) just before the word: were the offset taken
    # from the folded text, it would point elsewhere in what the client received.
    said = "ﬃ\u200b" * 15 + " " + word
    result = stream_chat(keyword_server.url, token,
                         {"prompt": f"{uuid.uuid4().hex} [mock tokens=80 interval=0 say={_percent(said)} say_at=40]"})
    full = answer_text(80, said, 40)
    at = full.index(word)
    assert result.status == 200 and result.error is not None, result.text
    assert result.error["code"] == "answer_blocked" and result.done["finishReason"] == "blocked"
    offset = result.error["offset"]
    assert full.startswith(result.text) and len(result.text) >= offset
    assert 0 < offset <= at and at - offset < 60 + 50 + 200  # one piece, its overlap, a sentence back
    assert "forbidden-word" not in fold(result.text[:offset])
    with _api(keyword_server, token) as api:
        turn = api.get(f"/v1/messages/{result.meta['messageId']}").json()
    assert (turn["status"], turn["errorCode"]) == ("blocked", "answer_blocked")
    assert turn["answer"] == full[:offset] == result.text[:offset]
