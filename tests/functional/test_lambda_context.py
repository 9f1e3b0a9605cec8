"""``x-amzn-lambda-context``: read only behind Lambda Web Adapter, and never an error.

LWA sets the header (replacing any a client sent), so only the streaming function, which
template.yaml runs behind LWA with ``CHATRELAY_TRUST_LAMBDA_CONTEXT=1``, believes it. Anywhere
else it is a header any client can type: its deadline must not end a turn, and no shape of
it may crash a request. (The trusted deadline itself: test_resume.py, test_load_and_faults.py.)
"""

from __future__ import annotations

import json
import time

import httpx
import pytest

from chatrelay_dev.mockllm import answer_text
from tests.conftest import login
from tests.support.sse_client import stream_chat

HEADER = "x-amzn-lambda-context"
DEEP = "[" * 50_000 + "]" * 50_000
HUGE = json.dumps({"request_id": "r-huge", "deadline": 0, "pad": "x" * 200_000})


@pytest.fixture(scope="module")
def trusting(start_app):
    return start_app(trust_lambda_context=True, lambda_deadline_margin=0.5)


def test_a_client_sent_deadline_does_not_end_the_turn_outside_lambda(app_server, token):
    context = json.dumps({"request_id": "spoofed", "deadline": 0})
    result = stream_chat(app_server.url, token, {"prompt": "[mock tokens=5]"}, headers={HEADER: context})
    assert result.status == 200 and result.error is None
    assert result.done["finishReason"] == "stop" and result.text == answer_text(5)
    assert result.headers["x-request-id"] != "spoofed"  # its request id is not believed either


@pytest.mark.parametrize("trusted", [False, True], ids=["local", "behind-lwa"])
@pytest.mark.parametrize("value", [DEEP, "{" * 5_000, HUGE, "not json", '"a string"', "[1, 2]",
                                   '{"deadline": "soon"}', '{"deadline": NaN}', '{"deadline": -Infinity}',
                                   '{"deadline": true}', '{"request_id": ["x"]}'],
                         ids=["deep-array", "deep-object", "huge", "not-json", "string", "array",
                              "deadline-string", "deadline-nan", "deadline-minus-infinity", "deadline-bool",
                              "request-id-list"])
def test_no_lambda_context_header_breaks_a_request(app_server, trusting, trusted, value, user):
    server = trusting if trusted else app_server
    headers = {HEADER: value}
    with httpx.Client(base_url=server.url, timeout=20) as client:
        health = client.get("/healthz", headers=headers)
        assert health.status_code < 500
        token = login(server.url, user)
        listed = client.get("/v1/conversations", headers={**headers, "Authorization": f"Bearer {token}"})
        assert listed.status_code < 500
    if health.status_code == 431 or listed.status_code == 431:  # the HTTP server refused the header itself
        return
    assert health.status_code == 200 and listed.status_code == 200
    result = stream_chat(server.url, token, {"prompt": "[mock tokens=3]"}, headers=headers)
    assert result.status == 200 and result.done["finishReason"] == "stop" and result.text == answer_text(3)


def test_behind_lwa_the_deadline_and_request_id_are_read(trusting, user):
    token = login(trusting.url, user)
    context = json.dumps({"request_id": "lwa-req-1", "deadline": int((time.time() + 1.0) * 1000),
                          "env_config": {"function_name": "f", "memory": 512}})
    result = stream_chat(trusting.url, token, {"prompt": "[mock tokens=200 interval=0.02]"}, headers={HEADER: context})
    assert result.done["finishReason"] == "lambda_timeout"
    assert 0 < len(result.text) < len(answer_text(200))
    assert result.headers["x-request-id"] == "lwa-req-1"
