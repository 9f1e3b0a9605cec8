"""The BUILT artifacts in .aws-sam/build behave as the source does (run `make build` first).

The layer holds compiled wheels for python3.12 (the Lambda runtime), so these tests run
the artifacts under a python3.12 interpreter that has nothing but the built layer and
boto3 (which the Lambda runtime provides) on its path: the editable install cannot mask
a packaging mistake. They also translate template.yaml with the SAM translator that
`make build` installs, and check what CloudFormation would deploy: a SAM property that is
accepted but ignored (a wrong ResponseTransferMode value) fails here, not in production.
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
from chatrelay_dev.local.dynamodb_local import free_port
from chatrelay_dev.mockllm import answer_text
from tests.conftest import TABLE, TOKEN_SECRET, login
from tests.support.sse_client import iter_events, stream_chat

ROOT = Path(__file__).resolve().parents[2]
BUILD = ROOT / ".aws-sam" / "build"
LAYER = BUILD / "ChatRelayLayer" / "python"
RUNTIME = ROOT / ".tools" / "lambda-runtime"
SAM_PYTHON = ROOT / ".tools" / "sam" / "bin" / "python"
PYENV_ROOT = Path(os.environ.get("PYENV_ROOT", Path.home() / ".pyenv"))
PYTHON312 = next(iter(sorted(PYENV_ROOT.glob("versions/3.12*/bin"), reverse=True)), None) or (
    Path(shutil.which("python3.12")).parent if shutil.which("python3.12") else None
)
REQUIRED = ["LlmBaseUrl=https://llm.example.com/v1", "LlmModel=some-model"]

pytestmark = [
    pytest.mark.artifacts,
    pytest.mark.skipif(not (BUILD / "template.yaml").is_file(), reason=".aws-sam/build missing: run `make build`"),
    pytest.mark.skipif(PYTHON312 is None or not RUNTIME.is_dir(), reason="python3.12 / runtime stand-in missing"),
    pytest.mark.skipif(not SAM_PYTHON.is_file(), reason="SAM CLI missing: run `make build`"),
]


def _translate(*overrides: str) -> dict:
    """template.yaml as CloudFormation's SAM transform turns it into plain resources."""
    run = subprocess.run([str(SAM_PYTHON), str(ROOT / "tests/support/translate_template.py"),
                          str(ROOT / "template.yaml"), *REQUIRED, *overrides],
                         capture_output=True, text=True, timeout=60, env={"PATH": os.environ["PATH"]})
    assert run.returncode == 0, run.stderr[-3000:]
    return json.loads(run.stdout)


def _integrations(translated: dict) -> dict[tuple[str, str], dict]:
    paths = translated["Resources"]["ChatApi"]["Properties"]["Body"]["paths"]
    return {(method.upper(), path): op["x-amazon-apigateway-integration"]
            for path, item in paths.items() for method, op in item.items() if method != "options"}


def test_translated_template_streams_the_stream_routes_and_buffers_the_rest():
    integrations = _integrations(_translate())
    streamed = {key for key, integration in integrations.items() if integration.get("responseTransferMode") == "STREAM"}
    assert streamed == {("POST", "/v1/chat/stream"), ("GET", "/v1/messages/{messageId}/stream")}
    for key, integration in integrations.items():
        uri = integration["uri"]["Fn::Sub"]
        # Through each function's "live" alias (published versions: what SnapStart snapshots).
        if key in streamed:
            assert "/2021-11-15/functions/${StreamFunctionAliaslive}/response-streaming-invocations" in uri
            assert integration["timeoutInMillis"] == 900000
        else:
            assert "/2015-03-31/functions/${ApiFunctionAliaslive}/invocations" in uri, key


def test_translated_template_has_one_regional_stage_and_a_streaming_function_url():
    resources = _translate()["Resources"]
    stages = [r for r in resources.values() if r["Type"] == "AWS::ApiGateway::Stage"]
    deployments = [r for r in resources.values() if r["Type"] == "AWS::ApiGateway::Deployment"]
    assert len(stages) == 1 and all("StageName" not in d["Properties"] for d in deployments)  # no extra "Stage"
    assert resources["ChatApi"]["Properties"]["EndpointConfiguration"] == {"Types": ["REGIONAL"]}
    assert resources["StreamFunctionUrl"]["Properties"]["InvokeMode"] == "RESPONSE_STREAM"
    assert resources["StreamFunctionUrl"]["Properties"]["TargetFunctionArn"] == {"Ref": "StreamFunctionAliaslive"}


def _roles(translated: dict) -> dict[str, dict]:
    return {name: r["Properties"] for name, r in translated["Resources"].items() if r["Type"] == "AWS::IAM::Role"}


def test_translated_roles_have_no_wildcard_resources_and_xray_only_when_traced():
    for tracing, xray in (("Disabled", False), ("PassThrough", True), ("Active", True)):
        roles = _roles(_translate(f"Tracing={tracing}", "SecretStore=secretsmanager", "LlmApiKeySecretName=/c/llm",
                                  "SecretsKmsKeyArn=arn:aws:kms:us-east-1:123456789012:key/1234abcd-12ab"))
        assert set(roles) == {"StreamFunctionRole", "ApiFunctionRole"}
        for role in roles.values():
            # AWSXrayWriteOnlyAccess is the one "*": X-Ray's PutTraceSegments has no resource-level permissions.
            assert any(arn.endswith("/AWSXrayWriteOnlyAccess") for arn in role["ManagedPolicyArns"]) is xray
            for policy in role["Policies"]:
                for statement in policy["PolicyDocument"]["Statement"]:
                    inner = statement["Fn::If"][1] if "Fn::If" in statement else statement
                    assert "*" not in json.dumps(inner.get("Resource")), inner


def _env(dynamodb, mock_llm, **extra) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith(("PYTHON", "VIRTUAL_ENV"))}
    env.update(
        PATH=f"{PYTHON312}:{env['PATH']}", CHAT_TABLE=TABLE, DYNAMODB_ENDPOINT_URL=dynamodb.endpoint,
        CHATRELAY_TOKEN_SECRET=TOKEN_SECRET, MOCK_LLM_BASE_URL=f"{mock_llm.url}/v1", AWS_REGION="us-east-1",
        AWS_ACCESS_KEY_ID="local", AWS_SECRET_ACCESS_KEY="local", POWERTOOLS_METRICS_DISABLED="true",
        POWERTOOLS_LOG_LEVEL="WARNING", CHATRELAY_STOP_POLL_INTERVAL="0.2",
        PYTHONDONTWRITEBYTECODE="1",  # leave the artifacts exactly as sam build made them
        **extra,
    )
    return env


def _token(user: str) -> str:
    return TokenService(TOKEN_SECRET, issuer="chatrelay", audience="chatrelay-client", ttl_seconds=300).issue(user)


def _size_mb(path: Path) -> float:
    return sum(f.stat().st_size for f in path.rglob("*") if f.is_file()) / 1e6


def test_built_layer_holds_the_package_and_its_dependencies_but_not_boto3():
    assert (LAYER / "chatrelay" / "__init__.py").is_file() and (LAYER / "chatrelay" / "api" / "app.py").is_file()
    for dependency in ("fastapi", "uvicorn", "httpx", "pydantic_core", "msgspec", "jwt", "mangum",
                       "aws_lambda_powertools"):
        assert (LAYER / dependency).is_dir(), dependency
    for provided_by_lambda in ("boto3", "botocore", "s3transfer"):
        assert not (LAYER / provided_by_lambda).exists(), provided_by_lambda
    # make build drops these (see the Makefile)
    assert not (LAYER / "pydantic" / "v1").exists() and not (LAYER / "httpx" / "_main.py").exists()
    # Lambda allows 250 MB unzipped for a function and all its layers; the LWA layer is ~5 MB.
    assert _size_mb(LAYER) < 60
    assert _size_mb(BUILD / "StreamFunction") < 1 and _size_mb(BUILD / "ApiFunction") < 1


def test_python312_alone_cannot_import_the_package():
    """So whatever the artifact tests import comes from the built layer."""
    probe = subprocess.run([f"{PYTHON312}/python3.12", "-c", "import chatrelay"], capture_output=True,
                           env={"PATH": os.environ["PATH"]})
    assert probe.returncode != 0


def test_every_event_through_the_built_api_handler(dynamodb, mock_llm, app_server, user):
    # GIVEN a user with one stored turn (made through the source app; same table and secret)
    token = login(app_server.url, user)
    meta = stream_chat(app_server.url, token, {"prompt": "for events [mock tokens=3]"}).meta
    # and a second conversation, which only DELETE /v1/me/data removes (the listing below ran before it)
    other = stream_chat(app_server.url, token, {"prompt": "another one [mock tokens=2]"}).meta
    expected = json.loads((ROOT / "events" / "expected.json").read_text())
    # The deletions go last: the conversation, then everything of the user's.
    names = sorted(expected, key=lambda n: {"delete_conversation": 1, "delete_my_data": 2}.get(n, 0))
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
    assert {c["conversationId"] for c in listed} == {meta["conversationId"], other["conversationId"]}
    # DELETE /v1/me/data through the built handler erased the rest of the user's data.
    with httpx.Client(base_url=app_server.url, headers={"Authorization": f"Bearer {token}"}, timeout=10) as api:
        assert api.get(f"/v1/messages/{other['messageId']}").status_code == 404
        assert api.get("/v1/conversations").json()["items"] == []


@pytest.fixture
def built_stream_function(dynamodb, mock_llm):
    """The built streaming function, started exactly as run.sh starts it."""
    function_dir = BUILD / "StreamFunction"
    port = free_port()
    log = (BUILD.parent / f"stream-{port}.log").open("w")
    env = _env(dynamodb, mock_llm, LAMBDA_TASK_ROOT=str(function_dir), LAMBDA_RUNTIME_DIR=str(RUNTIME),
               PYTHONPATH=str(LAYER), AWS_LWA_PORT=str(port))
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
    # run.sh exec's (same pid) `python <its directory>/main.py`, which starts uvicorn: the python3.12
    # found on PATH, with the layer first on PYTHONPATH and /opt/python appended, as on Lambda.
    cmdline = Path(f"/proc/{process.pid}/cmdline").read_bytes().split(b"\0")
    script = (Path(f"/proc/{process.pid}/cwd").resolve() / cmdline[1].decode()).resolve()
    assert cmdline[0] == b"python" and script == (BUILD / "StreamFunction" / "main.py").resolve()
    assert Path(f"/proc/{process.pid}/exe").resolve().name.startswith("python3.12")
    environ = dict(item.split(b"=", 1)
                   for item in Path(f"/proc/{process.pid}/environ").read_bytes().split(b"\0") if item)
    assert environ[b"PYTHONPATH"].split(b":")[:2] == [str(LAYER).encode(), b"/opt/python"]
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


def test_built_layer_holds_the_package_and_no_development_tools():
    """The fakes, DynamoDB Local and make dev's stack (chatrelay_dev) never ship to Lambda."""
    assert (LAYER / "chatrelay" / "api" / "app.py").is_file()
    shipped = {path.relative_to(LAYER).as_posix() for path in LAYER.rglob("*")}
    dev_only = [p for p in shipped
                if p.startswith("chatrelay_dev") or p.startswith(("chatrelay/mockllm", "chatrelay/local"))]
    assert dev_only == []
    for py in (LAYER / "chatrelay").rglob("*.py"):
        assert "chatrelay_dev" not in py.read_text(encoding="utf-8"), py


def test_built_app_serves_the_whole_openapi_schema():
    """Without pydantic.v1 and httpx's CLI (make build drops them) the built app still builds every
    route and the schema, with FastAPI's models (fastapi.openapi.models) among them: the same
    paths and component models as the source app."""
    from chatrelay.api.app import create_app
    from chatrelay.settings import Settings

    probe = ("import json, sys, httpx; assert 'click' not in sys.modules; "
             "from chatrelay.api.app import create_app; from chatrelay.settings import Settings; "
             "schema = create_app(Settings(token_secret='t' * 40, serve_h5=False)).openapi(); "
             "assert 'pydantic.v1' not in sys.modules; "
             "print(json.dumps([sorted(schema['paths']), sorted(schema['components']['schemas'])]))")
    run = subprocess.run([f"{PYTHON312}/python3.12", "-c", probe], capture_output=True, text=True, timeout=60,
                         env={"PATH": os.environ["PATH"], "PYTHONPATH": f"{LAYER}:{RUNTIME}",
                              "PYTHONDONTWRITEBYTECODE": "1"}, cwd=BUILD)
    assert run.returncode == 0, run.stderr[-3000:]
    schema = create_app(Settings(token_secret="t" * 40, serve_h5=False)).openapi()
    assert json.loads(run.stdout.strip().splitlines()[-1]) == [sorted(schema["paths"]),
                                                               sorted(schema["components"]["schemas"])]
