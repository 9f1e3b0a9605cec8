"""Shared fixtures: DynamoDB Local (one per session), the fake LLM, the app on real sockets.

Every server is real and listens on 127.0.0.1; nothing is mocked in-process.
Tests isolate themselves by user id (``user`` fixture), not by table.
"""

from __future__ import annotations

import os
import uuid
from collections.abc import Callable, Iterator

import httpx
import pytest

os.environ.setdefault("POWERTOOLS_METRICS_DISABLED", "true")
os.environ.setdefault("POWERTOOLS_LOG_LEVEL", "WARNING")
os.environ.setdefault("AWS_ACCESS_KEY_ID", "local")
os.environ.setdefault("AWS_SECRET_ACCESS_KEY", "local")
os.environ.setdefault("AWS_DEFAULT_REGION", "us-east-1")

from chatrelay.api.app import create_app  # noqa: E402
from chatrelay.settings import Settings  # noqa: E402
from chatrelay_dev.local import dynamodb_local  # noqa: E402
from chatrelay_dev.local.table import ensure_table  # noqa: E402
from chatrelay_dev.mockllm import MockConfig, create_mock_app  # noqa: E402
from tests.support.servers import ServerThread  # noqa: E402

TOKEN_SECRET = "test-secret-" + "x" * 40
TABLE = "chatrelay-test"


@pytest.fixture(scope="session")
def dynamodb() -> Iterator[dynamodb_local.DynamoDBLocal]:
    """DynamoDB Local on a free port, with the chat table created from template.yaml."""
    server = dynamodb_local.start()
    ensure_table(dynamodb_local.local_client(server.endpoint), TABLE)
    yield server
    server.stop()


@pytest.fixture(scope="session")
def mock_llm() -> Iterator[ServerThread]:
    """The fake OpenAI-compatible upstream (fast defaults; tests steer it with [mock ...])."""
    server = ServerThread(create_mock_app(MockConfig(ttft=0.01, interval=0.005, tokens=12))).start()
    yield server
    server.stop()


@pytest.fixture(scope="session")
def make_settings(dynamodb, mock_llm) -> Callable[..., Settings]:
    def build(**overrides) -> Settings:
        values = dict(
            chat_table=TABLE,
            dynamodb_endpoint_url=dynamodb.endpoint,
            aws_region="us-east-1",
            token_secret=TOKEN_SECRET,
            dev_auth=True,
            mock_llm_base_url=f"{mock_llm.url}/v1",
            stop_poll_interval=0.2,
            ping_interval=15,
        )
        values.update(overrides)
        return Settings(**values)

    return build


@pytest.fixture(scope="session")
def start_app(make_settings) -> Iterator[Callable[..., ServerThread]]:
    """Start an app server with settings overrides; all are stopped at session end."""
    started: list[ServerThread] = []

    def start(**overrides) -> ServerThread:
        server = ServerThread(create_app(make_settings(**overrides))).start()
        started.append(server)
        return server

    yield start
    for server in started:
        server.stop()


@pytest.fixture(scope="session")
def app_server(start_app) -> ServerThread:
    return start_app()


@pytest.fixture(scope="module")
def wechat():
    """The fake of WeChat's server API (jscode2session, access token, msg_sec_check), per module."""
    from tests.support.wechat import start_wechat_fake

    fake = start_wechat_fake()
    yield fake
    fake.stop()


@pytest.fixture(scope="module")
def wechat_server(start_app, wechat):
    """An app with WeChat login pointed at the fake."""
    from tests.support.wechat import wechat_settings

    return start_app(**wechat_settings(wechat))


@pytest.fixture
def user() -> str:
    return f"user-{uuid.uuid4().hex[:12]}"


def login(base_url: str, user_id: str) -> str:
    response = httpx.post(f"{base_url}/v1/auth/dev", json={"userId": user_id}, timeout=10)
    response.raise_for_status()
    return response.json()["token"]


@pytest.fixture
def token(app_server, user) -> str:
    return login(app_server.url, user)


@pytest.fixture
def api(app_server, token) -> Iterator[httpx.Client]:
    """An authenticated client for the non-streaming routes."""
    with httpx.Client(base_url=app_server.url, headers={"Authorization": f"Bearer {token}"}, timeout=10) as client:
        yield client
