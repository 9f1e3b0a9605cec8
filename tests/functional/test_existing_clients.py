"""The clients teams already have, run unchanged against the running server (issue 13):
the seed's H5 code (fetch-event-source, `answer += e.data`), the openai npm package, and the
AI SDK's DefaultChatTransport. Each is a node script in tests/clients/ using the npm package
its users run; this module starts the server, runs the script and compares with the stored turns.
"""

from __future__ import annotations

import json
import os
import subprocess
import uuid
from pathlib import Path

import httpx
import pytest

from chatrelay_dev.mockllm import answer_text
from tests.conftest import login
from tests.support.providers import get_turn, write_providers_file
from tests.support.servers import wait_until

CLIENTS = Path(__file__).resolve().parents[1] / "clients"


def _node(script: str, **env: str) -> dict:
    run = subprocess.run(["node", str(CLIENTS / script)], capture_output=True, text=True, timeout=60,
                         env={**os.environ, **env})
    assert run.returncode == 0, run.stderr[-3000:]
    return json.loads(run.stdout.strip().splitlines()[-1])


def _conversation_turns(base_url: str, token: str) -> list[dict]:
    headers = {"Authorization": f"Bearer {token}"}
    [conversation] = httpx.get(f"{base_url}/v1/conversations", headers=headers, timeout=10).json()["items"][:1]
    return httpx.get(f"{base_url}/v1/conversations/{conversation['conversationId']}/messages", headers=headers,
                     timeout=10).json()["items"]


@pytest.fixture(scope="module")
def baidu_server(start_app, mock_llm, tmp_path_factory):
    """The operator enabled a `baidu` preset (here pointed at the fake upstream)."""
    path = write_providers_file(tmp_path_factory.mktemp("seed"), {
        "baidu": {"kind": "openai_compat", "base_url": f"{mock_llm.url}/v1", "model": "ernie-4.0-8k",
                  "api_key": "baidu-key"},
    })
    return start_app(providers_file=path)


@pytest.mark.parametrize("prompt", [
    "你好 [mock tokens=40]",  # the corpus: newlines, blank lines, Chinese, emoji
    "cut short [mock tokens=30 fault=cut fault_after=12]",
])
def test_the_seed_h5_client_ends_with_exactly_the_stored_answer(baidu_server, user, prompt):
    token = login(baidu_server.url, user)
    result = _node("seed_h5_client.mjs", CHATRELAY_URL=baidu_server.url, CHATRELAY_TOKEN=token, PROMPT=prompt,
                   USER_CODE="oABC123-openid")
    [turn] = _conversation_turns(baidu_server.url, token)
    assert turn["model"] == "baidu"  # largeModel "BAIDU" picked the operator's baidu preset
    assert result["error"] is None
    assert result["answer"] == turn["answer"]
    if "fault=cut" in prompt:
        assert turn["status"] == "failed" and turn["answer"] == answer_text(12)
    else:
        assert turn["status"] == "complete" and "\n\n" in turn["answer"] and "🚀" in turn["answer"]


def test_the_openai_npm_package_gets_the_stored_answers(app_server, token, api):
    result = _node("openai_npm.mjs", CHATRELAY_URL=app_server.url, CHATRELAY_TOKEN=token,
                   PROMPT="npm [mock tokens=7]")
    for key in ("streamed", "whole"):
        stored = api.get(f"/v1/messages/{result[key]['messageId']}").json()
        assert stored["status"] == "complete" and result[key]["text"] == stored["answer"] == answer_text(7)
    assert result["streamed"]["usage"]["completion_tokens"] == 7
    assert result["errors"] == {"unauthorized": {"cls": "AuthenticationError", "status": 401},
                                "unknown_model": {"cls": "UnprocessableEntityError", "status": 422}}


def test_the_ai_sdk_streams_a_turn_into_a_named_chat(app_server, token, api):
    chat_id = f"chat{uuid.uuid4().hex[:12]}"
    result = _node("ai_sdk_chat.mjs", CHATRELAY_URL=app_server.url, CHATRELAY_TOKEN=token, CHAT_ID=chat_id,
                   PROMPT="ui [mock tokens=9 reasoning=3]", MODE="stream")
    turns = api.get(f"/v1/conversations/{chat_id}/messages").json()["items"]
    assert [t["messageId"] for t in turns] == [result["first"]["messageId"]]
    assert result["first"]["text"] == turns[0]["answer"] == answer_text(9)
    assert result["first"]["errors"] == []
    # a second message in the same chat: the server's history is the context
    again = _node("ai_sdk_chat.mjs", CHATRELAY_URL=app_server.url, CHATRELAY_TOKEN=token, CHAT_ID=chat_id,
                  PROMPT="more [mock tokens=2]", MODE="stream")
    turns = api.get(f"/v1/conversations/{chat_id}/messages").json()["items"]
    assert [t["question"] for t in turns] == ["ui [mock tokens=9 reasoning=3]", "more [mock tokens=2]"]
    assert again["first"]["text"] == turns[1]["answer"]


def test_the_ai_sdk_stops_a_turn_through_the_stop_route(app_server, token, api, mock_llm):
    chat_id = f"chat{uuid.uuid4().hex[:12]}"
    gate = uuid.uuid4().hex
    result = _node("ai_sdk_chat.mjs", CHATRELAY_URL=app_server.url, CHATRELAY_TOKEN=token, CHAT_ID=chat_id,
                   PROMPT=f"stop me [mock tokens=40 hold_after=3 gate={gate}]", MODE="stop",
                   GATE_URL=f"{mock_llm.url}/_mock/gates/{gate}")
    assert result["stopStatus"] == 202
    turn = wait_until(lambda: (t := api.get(f"/v1/messages/{result['first']['messageId']}").json())
                      ["status"] != "streaming" and t)
    assert turn["status"] == "stopped"
    assert result["first"]["text"] == turn["answer"] and len(turn["answer"]) < len(answer_text(40))


def test_the_ai_sdk_resumes_a_turn_after_the_request_is_gone(start_app, user, mock_llm):
    server = start_app(finish_on_disconnect=True)
    token = login(server.url, user)
    chat_id = f"chat{uuid.uuid4().hex[:12]}"
    gate = uuid.uuid4().hex
    result = _node("ai_sdk_chat.mjs", CHATRELAY_URL=server.url, CHATRELAY_TOKEN=token, CHAT_ID=chat_id,
                   PROMPT=f"resume me [mock tokens=20 hold_after=2 gate={gate}]", MODE="resume",
                   GATE_URL=f"{mock_llm.url}/_mock/gates/{gate}")
    turn = get_turn(server.url, token, result["first"]["messageId"])
    assert turn["status"] == "complete" and turn["answer"] == answer_text(20)
    assert result["resumed"]["messageId"] == turn["messageId"]
    assert result["resumed"]["text"] == turn["answer"]
    assert result["afterEnd"] == "no-content"
