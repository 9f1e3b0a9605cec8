"""Logs: one structured line per request and per turn, request id throughout, user id hashed."""

from __future__ import annotations

import io
import json
import logging

import httpx

from chatrelay.observability import hash_user_id, logger
from tests.conftest import login
from tests.support.servers import wait_until
from tests.support.sse_client import stream_chat


def test_request_and_turn_logs_carry_the_request_id_and_never_the_raw_user_id(start_app, user):
    server = start_app()
    token = login(server.url, user)
    logging.getLogger("chatrelay").setLevel(logging.INFO)
    sink = io.StringIO()
    previous = logger.registered_handler.setStream(sink)
    try:
        result = stream_chat(server.url, token, {"prompt": "log me [mock tokens=2]"})
        httpx.get(f"{server.url}/v1/conversations", headers={"Authorization": f"Bearer {token}",
                                                              "x-request-id": "req-abc"})
        # The access line is written once the response has been sent: the client can be faster.
        wait_until(lambda: '"path":"/v1/conversations"' in sink.getvalue().replace(" ", ""))
    finally:
        logging.getLogger("chatrelay").setLevel(logging.WARNING)
        logger.registered_handler.setStream(previous)
    lines = [json.loads(line) for line in sink.getvalue().splitlines() if line.startswith("{")]
    turn = next(line for line in lines if line["message"] == "turn ended")
    assert turn["user"] == hash_user_id(user) and turn["status"] == "complete" and turn["ttft_ms"] is not None
    assert turn["request_id"] == result.headers["x-request-id"]
    listing = next(line for line in lines if line["message"] == "request" and line["path"] == "/v1/conversations")
    assert listing["request_id"] == "req-abc" and listing["status"] == 200 and listing["user"] == hash_user_id(user)
    assert all(user not in json.dumps(line) for line in lines)
