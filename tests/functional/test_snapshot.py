"""SnapStart safety without AWS: a snapshot and two restores, played with fork.

tests/support/snapshot_probe.py initialises the app as an entry point does, uses every pooled
client once, runs the before-snapshot hooks (through the Python runtime's hook library, or
through Lambda Web Adapter's hook path), then forks restored copies. Each copy that ran the
after-restore hooks must have fresh clients (new connection pools, no cached ERNIE or WeChat
access token), must have read its secret again (the fake SSM hands out a new value on every
read, as after a rotation), and must draw ids, tokens and random numbers that no other copy
draws. A control copy that skips the hooks repeats the snapshot's random sequence: the
check can fail.
"""

from __future__ import annotations

import asyncio
import json
import os
import subprocess
import sys
from pathlib import Path

import httpx
import pytest
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import JSONResponse
from starlette.routing import Route

from chatrelay import snapshot
from chatrelay.api.app import create_app
from chatrelay.settings import Settings
from chatrelay_dev.mockllm.baidu_fake import BaiduFakeConfig, create_baidu_fake
from tests.conftest import TABLE
from tests.support.servers import ServerThread
from tests.support.wechat import CONFIG as WECHAT
from tests.support.wechat import start_wechat_fake

ROOT = Path(__file__).resolve().parents[2]
PROBE = ROOT / "tests" / "support" / "snapshot_probe.py"
SECRET_NAME = "/chatrelay/token-secret"


def _fake_ssm() -> Starlette:
    """SSM's GetParameter, answering a new value on each read (a secret rotated between reads)."""
    reads = []

    async def api(request: Request) -> JSONResponse:
        body = await request.json()
        assert request.headers["x-amz-target"] == "AmazonSSM.GetParameter", request.headers
        assert body == {"Name": SECRET_NAME, "WithDecryption": True}
        assert request.headers["authorization"].startswith("AWS4-HMAC-SHA256 ")
        reads.append(body["Name"])
        return JSONResponse({"Parameter": {"Name": body["Name"], "Value": f"rotated-{len(reads)}-" + "k" * 40}})

    return Starlette(routes=[Route("/", api, methods=["POST"])])


@pytest.fixture(scope="module")
def fakes():
    ssm = ServerThread(_fake_ssm()).start()
    baidu = ServerThread(create_baidu_fake(BaiduFakeConfig(api_key="ak", secret_key="sk"))).start()
    wechat = start_wechat_fake()
    yield {"ssm": ssm, "baidu": baidu, "wechat": wechat}
    for server in (ssm, baidu, wechat):
        server.stop()


@pytest.mark.parametrize("mode", ["runtime", "lwa"])
def test_restored_copies_have_fresh_clients_and_draw_different_ids_and_tokens(dynamodb, mock_llm, fakes, mode):
    env = {
        k: v for k, v in os.environ.items() if not k.startswith(("CHATRELAY_", "LLM_", "AWS_", "ERNIE_"))
    }
    env.update(
        CHAT_TABLE=TABLE, DYNAMODB_ENDPOINT_URL=dynamodb.endpoint, AWS_REGION="us-east-1",
        AWS_ACCESS_KEY_ID="local", AWS_SECRET_ACCESS_KEY="local",
        AWS_ENDPOINT_URL_SSM=fakes["ssm"].url, CHATRELAY_TOKEN_SECRET_NAME=f"ssm:{SECRET_NAME}",
        MOCK_LLM_BASE_URL=f"{mock_llm.url}/v1", ERNIE_API_KEY="ak", ERNIE_SECRET_KEY="sk",
        ERNIE_BASE_URL=fakes["baidu"].url, CHATRELAY_WECHAT_APP_ID=WECHAT.app_id,
        CHATRELAY_WECHAT_APP_SECRET=WECHAT.app_secret, CHATRELAY_WECHAT_API_BASE=fakes["wechat"].url,
        CHATRELAY_SERVE_H5="false", POWERTOOLS_METRICS_DISABLED="true", POWERTOOLS_LOG_LEVEL="WARNING",
        AWS_LWA_SNAPSTART_BEFORE_CHECKPOINT_PATH="/_lwa/snapstart/before",
        AWS_LWA_SNAPSTART_AFTER_RESTORE_PATH="/_lwa/snapstart/after",
    )
    run = subprocess.run([sys.executable, str(PROBE), mode], capture_output=True, text=True, timeout=120, env=env,  # noqa: PLW1510
                         cwd=ROOT)
    assert run.returncode == 0, run.stderr[-3000:]
    report = json.loads(run.stdout.strip().splitlines()[-1])
    before, at_snapshot, children = report["before"], report["at_snapshot"], report["children"]

    # GIVEN an initialised app whose clients hold live pooled connections and cached tokens
    assert before["dynamodb_pool_open"] and before["ernie_token_fetches"] == 1 and before["wechat_token_cached"]
    # WHEN the snapshot is taken, no connection pool is left open (and every route is built, once, into it)
    assert at_snapshot == {"routes_built": True, "dynamodb_pool_open": False, "ernie_http_closed": True,
                           "wechat_http_closed": True}

    first, second, control = children["first"], children["second"], children["control"]
    for child in (first, second):
        assert child["ok"], child
        # THEN each restored copy has its own clients: new objects, new pools, no cached tokens ...
        assert child["new_dynamodb_client"] and child["dynamodb_pools_opened"] == 1 and child["dynamodb_works"]
        assert child["new_registry"] and child["new_ernie_provider"] and not child["ernie_token_cached"]
        assert child["new_wechat"] and not child["wechat_token_cached"] and child["new_token_service"]
        # ... read its secret again (not the value cached at init) ...
        assert child["secret"] != before["secret"]
        # ... and draws what no one else draws
        assert child["random"] != report["snapshot_random_next"]
    assert first["secret"] != second["secret"]
    for draw in ("ulids", "refresh_tokens", "uuids", "random"):
        assert not set(first[draw]) & set(second[draw]), draw
        assert len(set(first[draw])) == 3, draw

    # The control copy skipped the hooks: it still holds the snapshot's clients and repeats its randomness.
    assert control["ok"], control
    assert not control["new_dynamodb_client"] and control["secret"] == before["secret"]
    assert control["random"] == report["snapshot_random_next"]


def _post(app, path: str) -> int:
    async def post() -> int:
        async with httpx.AsyncClient(transport=httpx.ASGITransport(app=app), base_url="http://adapter") as client:
            return (await client.post(path)).status_code

    return asyncio.run(post())


def test_the_adapter_hook_paths_are_served_only_when_configured_and_stay_out_of_the_api_schema(monkeypatch):
    calls = []

    class Target:
        async def before_snapshot(self):
            calls.append("before")

        async def after_restore(self):
            calls.append("after")

    target = Target()
    snapshot.register(target)
    try:
        base = {"token_secret": "t" * 40, "serve_h5": False, "dynamodb_endpoint_url": "http://127.0.0.1:9"}
        plain = create_app(Settings(**base))
        assert _post(plain, "/_lwa/snapstart/before") == 404 and calls == []
        hooked = create_app(Settings(**base, snapstart_before_path="/_lwa/snapstart/before",
                                     snapstart_after_path="/_lwa/snapstart/after"))
        assert _post(hooked, "/_lwa/snapstart/before") == 204 and calls == ["before"]
        assert _post(hooked, "/_lwa/snapstart/after") == 204 and calls == ["before", "after"]
        assert not {"/_lwa/snapstart/before", "/_lwa/snapstart/after"} & set(hooked.openapi()["paths"])
    finally:
        snapshot.unregister(target)


def test_runtime_hooks_are_skipped_where_the_runtime_library_is_missing():
    """Locally (and in tests) there is no snapshot_restore_py: registering is a no-op, not an error."""
    assert snapshot.register_runtime_hooks() is False
