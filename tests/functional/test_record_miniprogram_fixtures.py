"""Record real server responses, network read by network read, for the mini-program kit's tests.

The node tests (clients/miniprogram/test/) replay these through a fake ``wx`` object, so
``streamChat`` is tested against bytes this server really sent, not hand-written ones.

Fixture format (clients/miniprogram/test/fixtures/<name>.json)::

    {"name", "method", "path", "query", "request": <JSON body>, "status", "headers",
     "chunks": [<base64 of each network read>] | "body": <the non-200 JSON body as text>,
     "expectedText": <the stored answer>, "expect": {"terminal": "done" | "error", ...},
     "resume"?: {same fields, for the GET .../stream?after=N after a drop}}

Every run records; a fixture file is rewritten only when it is missing, when what the
server sends changed (ids, dates and where the network happened to split the bytes do
not count), or when CHATRELAY_RECORD_FIXTURES=1 is set. So ``make test`` leaves the
committed fixtures alone unless the wire format moved.
"""

from __future__ import annotations

import base64
import json
import os
import re
from pathlib import Path
from typing import Any

import httpx

from tests.support.providers import write_providers_file

FIXTURES = Path(__file__).resolve().parents[2] / "clients" / "miniprogram" / "test" / "fixtures"
FORCE = os.environ.get("CHATRELAY_RECORD_FIXTURES") == "1"
VOLATILE_HEADERS = {"date", "x-request-id"}
VOLATILE_KEYS = {"chunks", "headers", "resume", "path", "query", "resumeAfter"}  # compared otherwise, or not
ULID = re.compile(r"[0-9A-HJKMNP-TV-Z]{26}")


def _record(client: httpx.Client, method: str, path: str, *, body: dict | None = None,
            query: dict | None = None, stop_after_deltas: int | None = None) -> dict[str, Any]:
    """One exchange; each ``iter_raw()`` piece (one network read) becomes one chunk."""
    recording: dict[str, Any] = {"method": method, "path": path, "query": query or {}}
    if body is not None:
        recording["request"] = body
    chunks: list[bytes] = []
    with client.stream(method, path, json=body, params=query) as response:
        recording["status"] = response.status_code
        recording["headers"] = dict(response.headers)
        if response.status_code != 200:
            recording["body"] = response.read().decode("utf-8")
            return recording
        for piece in response.iter_raw():
            chunks.append(piece)
            if stop_after_deltas is not None and _complete_deltas(b"".join(chunks)) >= stop_after_deltas:
                break  # the network "drops" here: the rest is never read
    recording["chunks"] = [base64.b64encode(c).decode("ascii") for c in chunks]
    return recording


def _complete_events(raw: bytes) -> list[bytes]:
    return raw.split(b"\n\n")[:-1]  # the server ends lines with LF; the tail is unterminated


def _complete_deltas(raw: bytes) -> int:
    return sum(1 for e in _complete_events(raw) if e.startswith(b"id: "))


def _raw(recording: dict) -> bytes:
    return b"".join(base64.b64decode(c) for c in recording["chunks"])


def _meta(recording: dict) -> dict:
    for event in _complete_events(_raw(recording)):
        if event.startswith(b"event: meta\ndata: "):
            return json.loads(event.split(b"\n", 1)[1][len(b"data: "):])
    raise AssertionError("no meta event in the recording")


def _last_id(recording: dict) -> str:
    ids = [e.split(b"\n", 1)[0][len(b"id: "):].decode() for e in _complete_events(_raw(recording))
           if e.startswith(b"id: ")]
    assert ids, "no answer event before the drop"
    return ids[-1]


def _stored_answer(api: httpx.Client, conversation_id: str, message_id: str) -> dict:
    response = api.get(f"/v1/conversations/{conversation_id}/messages")
    response.raise_for_status()
    return next(t for t in response.json()["items"] if t["messageId"] == message_id)


def _signature(fixture: dict, *, with_bytes: bool) -> str:
    """What must match for a stored fixture to still stand for the server's behaviour."""
    def strip(recording: dict) -> dict:
        out = {k: v for k, v in recording.items() if k not in VOLATILE_KEYS}
        out["headers"] = sorted(k for k in recording.get("headers", {}) if k not in VOLATILE_HEADERS)
        if with_bytes and "chunks" in recording:
            out["stream"] = _raw(recording).decode("utf-8")
        return out

    summary = strip(fixture)
    if "resume" in fixture:
        summary["resume"] = strip(fixture["resume"])
    return ULID.sub("<ulid>", json.dumps(summary, ensure_ascii=False, sort_keys=True))


def _save(fixture: dict, *, deterministic: bool = True) -> str:
    """Write the fixture unless the stored one is equivalent; returns what happened."""
    path = FIXTURES / f"{fixture['name']}.json"
    if path.exists() and not FORCE:
        try:
            stored = json.loads(path.read_text(encoding="utf-8"))
            if _signature(stored, with_bytes=deterministic) == _signature(fixture, with_bytes=deterministic):
                return "unchanged"
        except (ValueError, KeyError, TypeError):
            pass  # an unreadable or old-format fixture is replaced
    path.write_text(json.dumps(fixture, ensure_ascii=False, indent=1) + "\n", encoding="utf-8")
    return "written"


def test_record_fixtures_from_the_local_stack(app_server, token, api, start_app, mock_llm, tmp_path_factory):
    FIXTURES.mkdir(parents=True, exist_ok=True)
    auth = {"Authorization": f"Bearer {token}"}
    outcomes = {}
    with httpx.Client(base_url=app_server.url, headers=auth, timeout=20) as client:
        # 1. A normal answer: Chinese and an emoji (4 UTF-8 bytes) in the answer and the question.
        answer = _record(client, "POST", "/v1/chat/stream", body={"prompt": "你好 😀 [mock tokens=40]"})
        meta = _meta(answer)
        turn = _stored_answer(api, meta["conversationId"], meta["messageId"])
        assert turn["status"] == "complete" and "🚀" in turn["answer"] and "你好" in turn["answer"]
        outcomes["answer"] = _save({"name": "answer", **answer, "expectedText": turn["answer"],
                                    "expect": {"terminal": "done", "finishReason": "stop"}})

        # 2. format=text: raw text events, a multi-line delta as several data: lines, meta in headers.
        text = _record(client, "POST", "/v1/chat/stream", body={"prompt": "纯文本 [mock tokens=40]"},
                       query={"format": "text"})
        turn = _stored_answer(api, text["headers"]["x-conversation-id"], text["headers"]["x-message-id"])
        assert b"data: \ndata: " in _raw(text)
        outcomes["answer_text_format"] = _save({"name": "answer_text_format", **text, "expectedText": turn["answer"],
                                                "expect": {"terminal": "done", "finishReason": "stop"}})

        # 3. The upstream cut mid-answer: error, done (finishReason error), [DONE]; the partial answer is kept.
        cut = _record(client, "POST", "/v1/chat/stream", body={"prompt": "[mock tokens=10 fault=cut fault_after=4]"})
        meta = _meta(cut)
        turn = _stored_answer(api, meta["conversationId"], meta["messageId"])
        assert turn["status"] == "failed" and turn["answer"]
        outcomes["upstream_cut"] = _save({"name": "upstream_cut", **cut, "expectedText": turn["answer"],
                                          "expect": {"terminal": "error", "code": "upstream_disconnected",
                                                     "finishReason": "error"}})

        # 4. A JSON error instead of a stream: wx hands its body to success(), not onChunkReceived.
        missing = _record(client, "POST", "/v1/chat/stream", body={"prompt": "x", "conversationId": "NOPE123"})
        assert missing["status"] == 404 and json.loads(missing["body"])["code"] == "not_found"
        outcomes["not_found"] = _save({"name": "not_found", **missing, "expectedText": "",
                                       "expect": {"terminal": "error", "code": "not_found", "status": 404}})

    # 5. A drop after 5 answer events, then the resume the kit makes (GET .../stream?after=<last id>).
    #    The generating turn must outlive its client, hence a server with finish_on_disconnect.
    resumable = start_app(finish_on_disconnect=True, checkpoint_interval=0.05, resume_poll_interval=0.05)
    with httpx.Client(base_url=resumable.url, headers=auth, timeout=20) as client:
        dropped = _record(client, "POST", "/v1/chat/stream", body={"prompt": "续传 [mock tokens=30 interval=0.02]"},
                          stop_after_deltas=5)
        meta = _meta(dropped)
        after = _last_id(dropped)
        resumed = _record(client, "GET", f"/v1/messages/{meta['messageId']}/stream", query={"after": after})
        turn = _stored_answer(api, meta["conversationId"], meta["messageId"])
        assert turn["status"] == "complete"
        outcomes["drop_and_resume"] = _save(
            {"name": "drop_and_resume", **dropped, "resumeAfter": after, "resume": resumed,
             "expectedText": turn["answer"], "expect": {"terminal": "done", "finishReason": "stop"}},
            deterministic=False,  # where the drop falls and how the resume is checkpointed vary
        )

    # 6. A reasoning model (DeepSeek style, on the fake): `event: reasoning` before the answer.
    providers = write_providers_file(tmp_path_factory.mktemp("miniprogram-deepseek"), {
        "deepseek": {"base_url": f"{mock_llm.url}/v1", "model": "deepseek-reasoner", "api_key": "sk-deepseek"},
    })
    reasoner = start_app(providers_file=providers)
    with httpx.Client(base_url=reasoner.url, headers=auth, timeout=20) as client:
        thought = _record(client, "POST", "/v1/chat/stream",
                          body={"prompt": "想一想 [mock reasoning=8 tokens=12]", "model": "deepseek"})
        meta = _meta(thought)
        turn = _stored_answer(api, meta["conversationId"], meta["messageId"])
        assert turn["status"] == "complete" and turn["reasoning"]
        outcomes["reasoning"] = _save({"name": "reasoning", **thought, "expectedText": turn["answer"],
                                       "expectedReasoning": turn["reasoning"],
                                       "expect": {"terminal": "done", "finishReason": "stop"}})

    # 7. The content check refuses part of the answer: deltas past the cut, then `error`
    #    answer_blocked with the offset the kit cuts the text at, done (blocked), [DONE].
    checked = start_app(content_safety="keywords", content_safety_keywords=["forbidden-word"],
                        answer_safety_piece_chars=50)
    with httpx.Client(base_url=checked.url, headers=auth, timeout=20) as client:
        blocked = _record(client, "POST", "/v1/chat/stream",
                          body={"prompt": "内容检查 [mock tokens=40 say=forbidden%2Dword say_at=30]"})
        meta = _meta(blocked)
        turn = _stored_answer(api, meta["conversationId"], meta["messageId"])
        assert turn["status"] == "blocked" and turn["answer"] and "forbidden-word" not in turn["answer"]
        assert b"forbidden-word" in _raw(blocked)  # streamed before the check caught up
        outcomes["answer_blocked"] = _save(
            {"name": "answer_blocked", **blocked, "expectedText": turn["answer"],
             "expect": {"terminal": "error", "code": "answer_blocked", "finishReason": "blocked",
                        "offset": len(turn["answer"])}},
            deterministic=False,  # how far the stream ran past the cut depends on when the check ran
        )

    for name in outcomes:
        assert (FIXTURES / f"{name}.json").exists()
    print("mini-program fixtures:", outcomes)
