"""DynamoDB's JSON protocol on the event loop (store/wire.py): signing, endpoints, and the HTTP/1.1
client against small fake servers (retries, keep-alive, chunked bodies, CRC32, timeouts, cancellation).
The same client against DynamoDB Local: tests/functional/test_store_wire.py."""

from __future__ import annotations

import asyncio
import datetime
import json
import subprocess
import sys
import zlib

import botocore.auth
import pytest
from botocore.auth import SigV4Auth
from botocore.awsrequest import AWSRequest
from botocore.credentials import Credentials as BotoCredentials
from chatrelay import errors
from chatrelay.store import wire

NOW = 1_796_119_188.0  # 2026-12-01T10:39:48Z


@pytest.mark.parametrize("token", [None, "session-token/with+odd=chars"])
@pytest.mark.parametrize("host", ["dynamodb.eu-west-1.amazonaws.com", "127.0.0.1:8000"])
def test_signature_is_botocores(token, host, monkeypatch):
    body = json.dumps({"TableName": "t", "Key": {"pk": {"S": "USER#u ✓"}}}, ensure_ascii=False).encode()
    target = "DynamoDB_20120810.GetItem"
    credentials = wire.Credentials("AKIDEXAMPLE", "wJalrXUtnFEMI/K7MDENG+bPxRfiCYEXAMPLEKEY", token)
    ours = dict(wire.Signer("eu-west-1", host).headers(target, body, credentials, now=NOW))

    request = AWSRequest(method="POST", url=f"https://{host}/", data=body,
                         headers={"X-Amz-Target": target, "Content-Type": wire.CONTENT_TYPE})
    signer = SigV4Auth(BotoCredentials("AKIDEXAMPLE", "wJalrXUtnFEMI/K7MDENG+bPxRfiCYEXAMPLEKEY", token),
                       "dynamodb", "eu-west-1")
    moment = datetime.datetime.fromtimestamp(NOW, datetime.UTC).replace(tzinfo=None)
    monkeypatch.setattr(botocore.auth, "get_current_datetime", lambda: moment)
    signer.add_auth(request)
    assert ours["Authorization"] == request.headers["Authorization"]
    assert ours.get("X-Amz-Security-Token") == request.headers.get("X-Amz-Security-Token")


def test_endpoints():
    assert wire.endpoint_for("eu-central-1", env={}) == "https://dynamodb.eu-central-1.amazonaws.com"
    assert wire.endpoint_for("cn-north-1", env={}) == "https://dynamodb.cn-north-1.amazonaws.com.cn"
    assert wire.endpoint_for("us-gov-west-1", env={}) == "https://dynamodb.us-gov-west-1.amazonaws.com"
    assert wire.endpoint_for("us-east-1", "http://localhost:8000", env={}) == "http://localhost:8000"
    assert wire.endpoint_for("us-east-1", env={"AWS_ENDPOINT_URL": "http://a:1"}) == "http://a:1"
    assert wire.endpoint_for("us-east-1", env={"AWS_ENDPOINT_URL_DYNAMODB": "http://b:2",
                                               "AWS_ENDPOINT_URL": "http://a:1"}) == "http://b:2"
    # What this module does not know, botocore's rule set names.
    assert wire.endpoint_for("us-east-1", env={"AWS_USE_FIPS_ENDPOINT": "true"}).startswith("https://dynamodb")


def test_credentials_from_the_environment():
    env = {"AWS_ACCESS_KEY_ID": "a", "AWS_SECRET_ACCESS_KEY": "s", "AWS_SESSION_TOKEN": "t"}
    assert wire.environment_credentials(env) == wire.Credentials("a", "s", "t")
    assert wire.environment_credentials({"AWS_ACCESS_KEY_ID": "a"}) is None


def test_binary_attributes_travel_as_base64():
    assert json.loads(wire.encode({"Item": {"b": {"B": b"\x00\xff"}}})) == {"Item": {"b": {"B": "AP8="}}}


def test_the_app_does_not_load_botocores_dynamodb_model():
    """The table core and the app reach DynamoDB without botocore's session or service model."""
    probe = ("import os, sys; os.environ.update(CHAT_TABLE='t', CHATRELAY_TOKEN_SECRET='x' * 40, "
             "AWS_ACCESS_KEY_ID='a', AWS_SECRET_ACCESS_KEY='s'); import chatrelay.api.asgi; "
             "print(sorted({'botocore.session', 'botocore.client', 'boto3'} & set(sys.modules)))")
    result = subprocess.run([sys.executable, "-c", probe], capture_output=True, text=True, check=True)
    assert result.stdout.strip().splitlines()[-1] == "[]"


# ---- the HTTP client against fake servers ------------------------------------------------------


class FakeDynamoDB:
    """An HTTP/1.1 server whose answers a test scripts: a list of callables (request) -> bytes | None
    (None: drop the connection without answering)."""

    def __init__(self, answers):
        self.answers = list(answers)
        self.requests: list[tuple[dict[str, str], bytes]] = []
        self.connections = 0

    async def start(self) -> str:
        self.server = await asyncio.start_server(self._serve, "127.0.0.1", 0)
        return f"http://127.0.0.1:{self.server.sockets[0].getsockname()[1]}"

    async def _serve(self, reader, writer):
        self.connections += 1
        try:
            while True:
                head = await reader.readuntil(b"\r\n\r\n")
                lines = head.decode().split("\r\n")
                headers = {k.lower(): v.strip() for k, _, v in (line.partition(":") for line in lines[1:] if line)}
                body = await reader.readexactly(int(headers["content-length"]))
                self.requests.append((headers, body))
                answer = self.answers.pop(0)(headers, body)
                if answer is None:
                    writer.close()
                    return
                if isinstance(answer, float):  # never answered
                    await asyncio.sleep(answer)
                    continue
                if isinstance(answer, tuple):  # answered late
                    delay, answer = answer
                    await asyncio.sleep(delay)
                writer.write(answer)
                await writer.drain()
        except (asyncio.IncompleteReadError, ConnectionError):
            pass

    async def stop(self):
        self.server.close()


def ok(payload: dict, *, crc: bool = True, chunked: bool = False, close: bool = False):
    body = json.dumps(payload).encode()

    def answer(headers, request):
        head = "HTTP/1.1 200 OK\r\nContent-Type: application/x-amz-json-1.0\r\n"
        if crc:
            head += f"x-amz-crc32: {zlib.crc32(body)}\r\n"
        if close:
            head += "Connection: close\r\n"
        if chunked:
            middle = len(body) // 2
            chunks = f"{middle:x};ext=1\r\n".encode() + body[:middle] + b"\r\n" + \
                f"{len(body) - middle:x}\r\n".encode() + body[middle:] + b"\r\n0\r\n\r\n"
            return (head + "Transfer-Encoding: chunked\r\n\r\n").encode() + chunks
        return (head + f"Content-Length: {len(body)}\r\n\r\n").encode() + body

    return answer


def fail(status: int, code: str, message: str = "", **extra):
    body = json.dumps({"__type": f"com.amazonaws.dynamodb.v20120810#{code}", "message": message, **extra}).encode()
    return lambda headers, request: (f"HTTP/1.1 {status} Error\r\nContent-Length: {len(body)}\r\n\r\n").encode() + body


def client(endpoint: str, **kwargs) -> wire.DynamoDBHTTP:
    return wire.DynamoDBHTTP(region="us-east-1", endpoint_url=endpoint, credentials=wire.Credentials("a", "s"),
                             **kwargs)


@pytest.fixture(autouse=True)
def no_backoff(monkeypatch):
    monkeypatch.setattr(wire.random, "random", lambda: 0.0)


def run(answers, calls, **kwargs):
    async def main():
        fake = FakeDynamoDB(answers)
        dynamodb = client(await fake.start(), **kwargs)
        try:
            return await calls(dynamodb), fake
        finally:
            await dynamodb.aclose()
            await fake.stop()

    return asyncio.run(main())


def test_a_call_is_one_signed_post_and_connections_are_kept_alive():
    async def calls(dynamodb):
        return [await dynamodb.call("GetItem", {"TableName": "t", "Key": {"pk": {"S": "x"}}}) for _ in range(3)]

    results, fake = run([ok({"Item": {"pk": {"S": "x"}}})] * 3, calls)
    assert results == [{"Item": {"pk": {"S": "x"}}}] * 3
    assert fake.connections == 1
    headers, body = fake.requests[0]
    assert headers["x-amz-target"] == "DynamoDB_20120810.GetItem"
    assert headers["content-type"] == "application/x-amz-json-1.0"
    assert headers["authorization"].startswith("AWS4-HMAC-SHA256 Credential=a/")
    assert json.loads(body) == {"TableName": "t", "Key": {"pk": {"S": "x"}}}


def test_chunked_bodies_and_connection_close_are_understood():
    async def calls(dynamodb):
        return [await dynamodb.call("Query", {}), await dynamodb.call("Query", {}), await dynamodb.call("Query", {})]

    results, fake = run([ok({"Count": 1}, chunked=True), ok({"Count": 2}, close=True), ok({"Count": 3})], calls)
    assert results == [{"Count": 1}, {"Count": 2}, {"Count": 3}]
    assert fake.connections == 2  # a new connection after "Connection: close"


@pytest.mark.parametrize("first", [
    fail(500, "InternalServerError"),
    fail(400, "ProvisionedThroughputExceededException"),
    fail(400, "ThrottlingException"),
    lambda headers, request: None,  # dropped without an answer
    lambda headers, request: ok({"Count": 1}, crc=False)(headers, request).replace(
        b"Content-Type", f"x-amz-crc32: {zlib.crc32(b'other')}\r\nContent-Type".encode()),
])
def test_transient_failures_are_retried(first):
    results, fake = run([first, ok({"Count": 9})], lambda dynamodb: dynamodb.call("Query", {}))
    assert results == {"Count": 9}
    assert len(fake.requests) == 2


def test_errors_become_the_apps_errors_and_are_not_retried():
    reasons = [{"Code": "ConditionalCheckFailed"}, {"Code": "None"}]

    async def calls(dynamodb):
        raised = []
        for _ in range(3):
            with pytest.raises(errors.ChatRelayError) as info:
                await dynamodb.call("UpdateItem", {})
            raised.append(info.value)
        return raised

    (conditional, cancelled, invalid), fake = run(
        [fail(400, "ConditionalCheckFailedException"), fail(400, "TransactionCanceledException",
                                                             CancellationReasons=reasons),
         fail(400, "ValidationException", "bad expression")], calls)
    assert isinstance(conditional, errors.ConditionFailed)
    assert isinstance(cancelled, errors.TransactionCanceled) and cancelled.reasons == ("ConditionalCheckFailed", "None")
    assert isinstance(invalid, errors.InvalidRequest) and "bad expression" in str(invalid.message)
    assert len(fake.requests) == 3


def test_attempts_are_bounded():
    async def calls(dynamodb):
        with pytest.raises(errors.StorageError, match="DynamoDB InternalServerError"):
            await dynamodb.call("GetItem", {})

    _, fake = run([fail(500, "InternalServerError")] * 3, calls, max_attempts=3)
    assert len(fake.requests) == 3


def test_a_silent_server_times_out():
    async def calls(dynamodb):
        with pytest.raises(errors.StorageError, match="TimeoutError"):
            await dynamodb.call("GetItem", {})

    _, fake = run([lambda h, b: 1.0] * 2, calls, max_attempts=2, read_timeout=0.1)
    assert len(fake.requests) == 2


def test_nothing_listening_is_a_storage_error():
    async def main():
        server = await asyncio.start_server(lambda r, w: None, "127.0.0.1", 0)
        port = server.sockets[0].getsockname()[1]
        server.close()
        await server.wait_closed()
        dynamodb = client(f"http://127.0.0.1:{port}", max_attempts=2)
        with pytest.raises(errors.StorageError, match="DynamoDB ConnectionRefusedError"):
            await dynamodb.call("GetItem", {})

    asyncio.run(main())


def test_a_cancelled_call_still_reads_its_answer_and_reuses_the_connection():
    """As a worker thread used to finish a started write, a cancelled call's request is not aborted."""

    async def calls(dynamodb):
        slow = asyncio.create_task(dynamodb.call("UpdateItem", {}))
        await asyncio.sleep(0.05)  # the request is in flight
        slow.cancel()
        with pytest.raises(asyncio.CancelledError):
            await slow
        await asyncio.sleep(0.3)  # meanwhile its answer arrived and was read
        return await dynamodb.call("GetItem", {})

    answered_late = ok({"Attributes": {}})
    result, fake = run([lambda h, b: (0.2, answered_late(h, b)), ok({"Item": {}})], calls)
    assert result == {"Item": {}}
    assert len(fake.requests) == 2 and fake.connections == 1
