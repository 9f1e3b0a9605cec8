"""Record real server responses, network read by network read, for the mini-program kit's tests.

The node tests (clients/miniprogram/test/) replay these through a fake ``wx`` object, so
``streamChat`` is tested against bytes this server really sent, not hand-written ones.
"""

from __future__ import annotations

import base64
import json
from pathlib import Path

import httpx

from tests.support.sse_client import iter_events

FIXTURES = Path(__file__).resolve().parents[2] / "clients" / "miniprogram" / "test" / "fixtures"


def _record(client: httpx.Client, method: str, url: str, *, stop_after_deltas: int | None = None, **kwargs) -> dict:
    chunks: list[bytes] = []
    deltas = 0
    last_id = None
    with client.stream(method, url, **kwargs) as response:
        if response.status_code != 200:
            response.read()
            return {"status": response.status_code, "body": response.text, "chunks": []}
        buffer = b""
        for piece in response.iter_raw():
            chunks.append(piece)
            buffer += piece
            *events, buffer = buffer.split(b"\n\n")
            for raw in events:
                if raw.startswith(b"id: "):
                    deltas += 1
                    last_id = raw.split(b"\n")[0][4:].decode()
            if stop_after_deltas is not None and deltas >= stop_after_deltas:
                break
    return {"status": 200, "headers": dict(response.headers), "chunks": [base64.b64encode(c).decode() for c in chunks],
            "lastId": last_id}


def _answer(api: httpx.Client, message_id: str) -> dict:
    return api.get(f"/v1/messages/{message_id}").json()


def _meta(chunks: list[str]) -> dict:
    raw = b"".join(base64.b64decode(c) for c in chunks)
    start = raw.index(b"event: meta\ndata: ") + len(b"event: meta\ndata: ")
    return json.loads(raw[start : raw.index(b"\n", start)])


def test_record_fixtures_from_the_local_stack(start_app, user, mock_llm):
    from tests.conftest import login

    server = start_app(finish_on_disconnect=True, checkpoint_interval=0.05, resume_poll_interval=0.05)
    token = login(server.url, user)
    auth = {"Authorization": f"Bearer {token}"}
    FIXTURES.mkdir(parents=True, exist_ok=True)
    with httpx.Client(base_url=server.url, headers=auth, timeout=20) as api:
        fixtures = {}

        answer = _record(api, "POST", "/v1/chat/stream", json={"prompt": "你好 [mock tokens=40 interval=0.01]"})
        meta = _meta(answer["chunks"])
        fixtures["answer"] = {"responses": [answer], "expectedText": _answer(api, meta["messageId"])["answer"],
                              "expect": "done", "finishReason": "stop"}

        cut = _record(api, "POST", "/v1/chat/stream", json={"prompt": "[mock tokens=10 fault=cut fault_after=4]"})
        meta = _meta(cut["chunks"])
        fixtures["upstream_cut"] = {"responses": [cut], "expectedText": _answer(api, meta["messageId"])["answer"],
                                    "expect": "error", "code": "upstream_disconnected"}

        missing = _record(api, "POST", "/v1/chat/stream", json={"prompt": "x", "conversationId": "NOPE123"})
        fixtures["not_found"] = {"responses": [missing], "expectedText": "", "expect": "error", "code": "not_found",
                                 "status": 404}

        # A drop after 5 answer events, then the resume the kit must make (GET ...?after=<last id>).
        dropped = _record(api, "POST", "/v1/chat/stream", stop_after_deltas=5,
                          json={"prompt": "[mock tokens=30 interval=0.02]"})
        meta = _meta(dropped["chunks"])
        resumed = _record(api, "GET", f"/v1/messages/{meta['messageId']}/stream", params={"after": dropped["lastId"]})
        fixtures["drop_and_resume"] = {
            "responses": [dropped, resumed], "resumeAfter": dropped["lastId"],
            "expectedText": _answer(api, meta["messageId"])["answer"], "expect": "done", "finishReason": "stop",
        }

    for name, fixture in fixtures.items():
        (FIXTURES / f"{name}.json").write_text(json.dumps({"name": name, **fixture}, ensure_ascii=False, indent=1))
    assert fixtures["answer"]["expectedText"] and fixtures["drop_and_resume"]["expectedText"]
    assert len(fixtures["drop_and_resume"]["responses"][1]["chunks"]) >= 1
