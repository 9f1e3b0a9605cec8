"""Property-based API tests: schemathesis generates requests from the app's own OpenAPI schema.

The app runs on a real socket (``start_app``) with WeChat login pointed at the
fake. Every operation gets up to ``MAX_EXAMPLES`` generated requests — valid ones
and invalid ones (schemathesis' positive and negative modes) — with a valid bearer
token, and every response must be no 5xx (``not_a_server_error``) and match the
documented schema with a documented status (``response_schema_conformance``,
``status_code_conformance``). The SSE endpoints' 200 bodies
are event streams, not JSON, so only their status is checked.

schemathesis' own pytest plugin (``schemathesis.pytest.from_fixture``) does not
run under pytest 9 (it writes ``Item._nodeid``), so each operation's Hypothesis
strategy (``APIOperation.as_strategy``) is driven with ``@given`` here; the
operation list is fixed below and checked against the schema.
"""

from __future__ import annotations

import httpx
import pytest
import schemathesis
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from schemathesis import GenerationMode
from schemathesis.checks import not_a_server_error
from schemathesis.specs.openapi.checks import response_schema_conformance, status_code_conformance

from tests.conftest import login

MAX_EXAMPLES = 25
STREAMING = {"/v1/chat/stream", "/v1/messages/{message_id}/stream", "/v1/chat/completions", "/v1/ui/chat",
             "/v1/ui/chat/{chat_id}/stream"}
NOT_THE_APPS = {"authorization", "transfer-encoding", "content-length", "host", "connection"}
OPERATIONS = [
    ("GET", "/healthz"),
    ("GET", "/v1/models"),
    ("POST", "/v1/auth/dev"),
    ("POST", "/v1/auth/wechat"),
    ("POST", "/v1/auth/refresh"),
    ("POST", "/v1/chat/stream"),
    ("POST", "/v1/chat/completions"),
    ("POST", "/v1/ui/chat"),
    ("GET", "/v1/ui/chat/{chat_id}/stream"),
    ("GET", "/v1/messages/{message_id}/stream"),
    ("GET", "/v1/conversations"),
    ("GET", "/v1/conversations/{conversation_id}/messages"),
    ("DELETE", "/v1/conversations/{conversation_id}"),
    ("GET", "/v1/messages/{message_id}"),
    ("PUT", "/v1/messages/{message_id}/feedback"),
    ("POST", "/v1/messages/{message_id}/stop"),
    ("GET", "/v1/requests/{request_id}"),
    ("POST", "/v1/requests/{request_id}/stop"),
    ("DELETE", "/v1/me/data"),
]


@pytest.fixture(scope="module")
def fuzzed_server(wechat_server):
    return wechat_server


@pytest.fixture(scope="module")
def fuzz_token(fuzzed_server):
    return login(fuzzed_server.url, "schemathesis-user")


@pytest.fixture(scope="module")
def api_schema(fuzzed_server):
    return schemathesis.openapi.from_url(f"{fuzzed_server.url}/openapi.json")


def test_every_operation_is_fuzzed(fuzzed_server):
    paths = httpx.get(f"{fuzzed_server.url}/openapi.json").json()["paths"]
    assert {(method.upper(), path) for path, item in paths.items() for method in item} == set(OPERATIONS)


@pytest.mark.parametrize(("method", "path"), OPERATIONS, ids=[f"{m} {p}" for m, p in OPERATIONS])
def test_no_server_errors_and_responses_match_the_schema(api_schema, fuzz_token, method, path):
    operation = api_schema[path][method]
    headers = {"Authorization": f"Bearer {fuzz_token}"}
    cases = st.one_of(operation.as_strategy(GenerationMode.POSITIVE), operation.as_strategy(GenerationMode.NEGATIVE))

    @given(case=cases)
    @settings(max_examples=MAX_EXAMPLES, deadline=None, database=None, suppress_health_check=list(HealthCheck))
    def check(case):
        # Our token wins over a generated Authorization header (missing and bad tokens have tests of their own).
        # Framing headers are the HTTP server's (uvicorn answers a malformed Transfer-Encoding with its own
        # 400 before the app runs, as RFC 9112 asks): no operation's schema can document them.
        generated = {k: v for k, v in (case.headers or {}).items() if k.lower() not in NOT_THE_APPS}
        response = case.call(headers={**generated, **headers}, timeout=20)
        checks = [not_a_server_error, status_code_conformance]
        if path not in STREAMING or response.status_code != 200:
            checks.append(response_schema_conformance)
        case.validate_response(response, checks=checks, headers=headers)

    check()
