"""The BUILT artifacts in .aws-sam/build behave as the source does (run `make build` first).

The layer holds compiled wheels for python3.12 (the Lambda runtime), so these tests run
the artifacts under a python3.12 interpreter that has nothing but the built layer and
boto3 (which the Lambda runtime provides) on its path: the editable install cannot mask
a packaging mistake.
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import time
import uuid
from pathlib import Path

import httpx
import pytest

from chatrelay.auth.tokens import TokenService
from chatrelay.local.dynamodb_local import free_port
from chatrelay.mockllm import answer_text
from tests.conftest import TABLE, TOKEN_SECRET, login
from tests.support.sse_client import iter_events, stream_chat

ROOT = Path(__file__).resolve().parents[2]
BUILD = ROOT / ".aws-sam" / "build"
LAYER = BUILD / "ChatRelayLayer" / "python"
RUNTIME = ROOT / ".tools" / "lambda-runtime"
PYTHON312 = next(iter(sorted(Path.home().glob(".pyenv/versions/3.12*/bin"))), None) or (
    Path(shutil.which("python3.12")).parent if shutil.which("python3.12") else None
)

pytestmark = [
    pytest.mark.artifacts,
    pytest.mark.skipif(not (BUILD / "template.yaml").is_file(), reason=".aws-sam/build missing: run `make build`"),
    pytest.mark.skipif(PYTHON312 is None or not RUNTIME.is_dir(), reason="python3.12 / runtime stand-in missing"),
]


def _env(dynamodb, mock_llm, **extra) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith(("PYTHON", "VIRTUAL_ENV"))}
    env.update(
        PATH=f"{PYTHON312}:{env['PATH']}", CHAT_TABLE=TABLE, DYNAMODB_ENDPOINT_URL=dynamodb.endpoint,
        CHATRELAY_TOKEN_SECRET=TOKEN_SECRET, MOCK_LLM_BASE_URL=f"{mock_llm.url}/v1", AWS_REGION="us-east-1",
        AWS_ACCESS_KEY_ID="local", AWS_SECRET_ACCESS_KEY="local", POWERTOOLS_METRICS_DISABLED="true",
        POWERTOOLS_LOG_LEVEL="WARNING", CHATRELAY_STOP_POLL_INTERVAL="0.2", **extra,
    )
    return env


def _token(user: str) -> str:
    return TokenService(TOKEN_SECRET, issuer="chatrelay", audience="chatrelay-client", ttl_seconds=300).issue(user)


def test_python312_alone_cannot_import_the_package():
    """So whatever the artifact tests import comes from the built layer."""
    probe = subprocess.run([f"{PYTHON312}/python3.12", "-c", "import chatrelay"], capture_output=True,
                           env={"PATH": os.environ["PATH"]})
    assert probe.returncode != 0


def test_every_event_through_the_built_api_handler(dynamodb, mock_llm, app_server, user):
    # GIVEN a user with one stored turn (made through the source app; same table and secret)
    token = login(app_server.url, user)
    meta = stream_chat(app_server.url, token, {"prompt": "for events [mock tokens=3]"}).meta
    expected = json.loads((ROOT / "events" / "expected.json").read_text())
    names = sorted(expected, key=lambda n: n == "delete_conversation")  # the delete goes last
    events = []
    for name in names:
        text = (ROOT / "events" / f"{name}.json").read_text()
        text = (text.replace("{{TOKEN}}", _token(user)).replace("{{CONVERSATION_ID}}", meta["conversationId"])
                .replace("{{MESSAGE_ID}}", meta["messageId"]))
        events.append((name, json.loads(text)))

    # WHEN each event is invoked through the built Mangum handler
    run = subprocess.run(
        [f"{PYTHON312}/python3.12", str(ROOT / "tests/support/invoke_built_api.py"), str(BUILD / "ApiFunction"),
         str(LAYER), str(RUNTIME)],
        input=json.dumps(events), capture_output=True, text=True, timeout=120,
        env=_env(dynamodb, mock_llm), cwd=BUILD / "ApiFunction",
    )
    assert run.returncode == 0, run.stderr[-3000:]
    results = json.loads(run.stdout.strip().splitlines()[-1])

    # THEN each answers the documented status and body, from the built copy of the package
    assert {r["chatrelay_file"].startswith(str(LAYER)) for r in results} == {True}
    for result in results:
        want = expected[result["name"]]
        assert result["statusCode"] == want["status"], (result["name"], result["body"])
        if "code" in want:
            assert json.loads(result["body"])["code"] == want["code"], result["name"]
    by_name = {r["name"]: r for r in results}
    assert json.loads(by_name["health"]["body"]) == {"status": "ok"}
    [turn] = json.loads(by_name["list_messages"]["body"])["items"]
    assert turn["messageId"] == meta["messageId"] and turn["answer"] == answer_text(3)
    assert json.loads(by_name["feedback"]["body"])["useful"] == 1
    listed = json.loads(by_name["list_conversations"]["body"])["items"]
    assert [c["conversationId"] for c in listed] == [meta["conversationId"]]


@pytest.fixture
def built_stream_function(dynamodb, mock_llm):
    """The built streaming function, started exactly as run.sh starts it."""
    function_dir = BUILD / "StreamFunction"
    port = free_port()
    log = (BUILD.parent / f"stream-{port}.log").open("w")
    env = _env(dynamodb, mock_llm, LAMBDA_TASK_ROOT=str(function_dir), LAMBDA_RUNTIME_DIR=str(RUNTIME),
               PYTHONPATH=str(LAYER), PORT=str(port))
    process = subprocess.Popen(["bash", "run.sh"], cwd=function_dir, env=env, stdout=log, stderr=subprocess.STDOUT)
    url = f"http://127.0.0.1:{port}"
    deadline = time.monotonic() + 30
    while True:
        assert process.poll() is None, Path(log.name).read_text()[-3000:]
        try:
            if httpx.get(f"{url}/healthz", timeout=1).status_code == 200:
                break
        except httpx.HTTPError:
            pass
        assert time.monotonic() < deadline, "the built streaming function did not become ready"
        time.sleep(0.1)
    yield url, process
    process.terminate()
    process.wait(timeout=10)


def test_built_streaming_function_streams_without_buffering(built_stream_function, mock_llm, user):
    url, process = built_stream_function
    # run.sh exec's uvicorn under python3.12 from the built layer.
    cmdline = Path(f"/proc/{process.pid}/cmdline").read_bytes().split(b"\0")
    assert b"uvicorn" in cmdline and b"main:app" in cmdline
    gate = uuid.uuid4().hex
    body = {"prompt": f"built [mock tokens=6 hold_after=1 gate={gate} ttft=0 interval=0]"}
    seen = []
    with httpx.Client(timeout=10) as client:
        with client.stream("POST", f"{url}/v1/chat/stream", json=body,
                           headers={"Authorization": f"Bearer {_token(user)}"}) as response:
            assert response.status_code == 200
            assert response.headers["content-type"] == "text/event-stream; charset=utf-8"
            for event in iter_events(response):
                if event.event == "message" and event.data != "[DONE]":
                    seen.append(json.loads(event.data)["delta"])
                    if len(seen) == 1:  # only now may the upstream send token 2
                        httpx.post(f"{mock_llm.url}/_mock/gates/{gate}", timeout=5).raise_for_status()
    assert "".join(seen) == answer_text(6)
