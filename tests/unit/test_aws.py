"""chatrelay.aws: the small AWS JSON client the store and the secrets use instead of botocore.

Signatures are compared with botocore's own SigV4 signer; the protocol behaviour (errors,
retries, idempotency tokens, CRC32, blobs) runs against httpx.MockTransport fakes of the
API; the DynamoDB answers themselves are proven by the functional store tests (DynamoDB Local).
"""

from __future__ import annotations

import base64
import json
import zlib
from datetime import UTC, datetime, timedelta

import httpx
import pytest

from chatrelay import aws

NOW = datetime(2026, 12, 1, 9, 30, 15, tzinfo=UTC)


@pytest.mark.parametrize("token", [None, "session-token/with+odd=chars"])
@pytest.mark.parametrize("url", ["https://dynamodb.us-east-1.amazonaws.com/", "http://127.0.0.1:8002/",
                                 "https://ssm.cn-north-1.amazonaws.com.cn/"])
def test_signature_is_botocores(monkeypatch, token, url):
    from botocore import auth as botocore_auth
    from botocore.awsrequest import AWSRequest
    from botocore.credentials import Credentials

    body = json.dumps({"TableName": "t", "Key": {"pk": {"S": "USER#ü"}}}).encode()
    headers = {"Content-Type": "application/x-amz-json-1.0", "X-Amz-Target": "DynamoDB_20120810.GetItem"}
    region = "cn-north-1" if ".cn/" in url else "us-east-1"
    ours = aws.sign("POST", url, headers, body, aws.Credentials("AKIDEXAMPLE", "secret/key+x", token),
                    region=region, service="dynamodb", now=NOW)

    monkeypatch.setattr(botocore_auth, "get_current_datetime", lambda: NOW.replace(tzinfo=None))
    request = AWSRequest(method="POST", url=url, data=body, headers=dict(headers))
    botocore_auth.SigV4Auth(Credentials("AKIDEXAMPLE", "secret/key+x", token), "dynamodb", region).add_auth(request)
    assert ours["Authorization"] == request.headers["Authorization"]
    assert ours["X-Amz-Date"] == request.headers["X-Amz-Date"]
    assert ours.get("X-Amz-Security-Token") == request.headers.get("X-Amz-Security-Token")


def test_endpoints_regional_china_and_configured():
    assert aws.endpoint_url("dynamodb", "eu-west-1", environ={}) == "https://dynamodb.eu-west-1.amazonaws.com"
    assert aws.endpoint_url("ssm", "cn-northwest-1", environ={}) == "https://ssm.cn-northwest-1.amazonaws.com.cn"
    assert aws.endpoint_url("dynamodb", "us-east-1", "http://localhost:8000/", environ={}) == "http://localhost:8000"
    env = {"AWS_ENDPOINT_URL_SECRETSMANAGER": "http://sm.local", "AWS_ENDPOINT_URL": "http://all.local"}
    assert aws.endpoint_url("secretsmanager", "us-east-1", environ=env) == "http://sm.local"
    assert aws.endpoint_url("ssm", "us-east-1", environ=env) == "http://all.local"


class FakeApi:
    """A JSON API answering from a script of (status, body, headers); it records every request."""

    def __init__(self, *answers):
        self.answers, self.requests = list(answers), []

    def __call__(self, request: httpx.Request) -> httpx.Response:
        self.requests.append(request)
        status, body, headers = self.answers.pop(0) if len(self.answers) > 1 else self.answers[0]
        if isinstance(body, Exception):
            raise body
        content = json.dumps(body).encode()
        return httpx.Response(status, content=content, headers={"x-amz-crc32": str(zlib.crc32(content)), **headers})


def _client(api: FakeApi, **options) -> aws.DynamoDBClient:
    chain = aws.CredentialChain(environ={"AWS_ACCESS_KEY_ID": "AKID", "AWS_SECRET_ACCESS_KEY": "s"})
    sleeps = options.pop("sleeps", [])
    return aws.DynamoDBClient(region="us-east-1", endpoint="http://ddb.test", credentials=chain,
                              transport=httpx.MockTransport(api), sleep=sleeps.append, **options)


def test_a_call_sends_the_json_protocol_and_returns_the_answer_with_metadata():
    api = FakeApi((200, {"Item": {"pk": {"S": "a"}, "n": {"N": "3"}}}, {"x-amzn-RequestId": "req-1"}))
    answer = _client(api).get_item(TableName="t", Key={"pk": {"S": "a"}}, ProjectionExpression=None)
    [request] = api.requests
    assert request.headers["x-amz-target"] == "DynamoDB_20120810.GetItem"
    assert request.headers["content-type"] == "application/x-amz-json-1.0"
    assert request.headers["authorization"].startswith("AWS4-HMAC-SHA256 Credential=AKID/")
    assert json.loads(request.content) == {"TableName": "t", "Key": {"pk": {"S": "a"}}}  # None left out
    assert answer["Item"] == {"pk": {"S": "a"}, "n": {"N": "3"}}
    assert answer["ResponseMetadata"]["RequestId"] == "req-1" and answer["ResponseMetadata"]["RetryAttempts"] == 0


def test_errors_have_botocores_client_error_shape():
    api = FakeApi((400, {"__type": "com.amazonaws.dynamodb.v20120810#TransactionCanceledException",
                         "Message": "Transaction cancelled",
                         "CancellationReasons": [{"Code": "None"}, {"Code": "ConditionalCheckFailed"}]}, {}))
    with pytest.raises(aws.AwsError) as raised:
        _client(api).transact_write_items(TransactItems=[])
    response = raised.value.response
    assert response["Error"] == {"Code": "TransactionCanceledException", "Message": "Transaction cancelled"}
    assert [r["Code"] for r in response["CancellationReasons"]] == ["None", "ConditionalCheckFailed"]
    assert response["ResponseMetadata"]["HTTPStatusCode"] == 400
    assert len(api.requests) == 1  # not retried


def test_throttling_and_5xx_are_retried_with_jittered_backoff_and_one_idempotency_token():
    throttled = (400, {"__type": "x#ProvisionedThroughputExceededException", "message": "slow down"}, {})
    api = FakeApi(throttled, (503, {}, {}), (200, {}, {}))
    sleeps: list[float] = []
    answer = _client(api, sleeps=sleeps).transact_write_items(TransactItems=[{"Put": {}}])
    assert len(api.requests) == 3 and answer["ResponseMetadata"]["RetryAttempts"] == 2
    assert 0 <= sleeps[0] <= 1 and 0 <= sleeps[1] <= 2
    tokens = {json.loads(r.content)["ClientRequestToken"] for r in api.requests}
    assert len(tokens) == 1  # DynamoDB sees the retries as one transaction


def test_retries_stop_at_max_attempts_and_when_the_quota_is_spent():
    api = FakeApi((500, {"__type": "InternalServerError"}, {}))
    client = _client(api, max_attempts=3)
    with pytest.raises(aws.AwsError):
        client.query(TableName="t")
    assert len(api.requests) == 3
    client.quota.available = 4  # less than one retry costs
    with pytest.raises(aws.AwsError):
        client.query(TableName="t")
    assert len(api.requests) == 4


def test_no_answer_is_unreachable_after_the_retries():
    api = FakeApi((0, httpx.ConnectError("refused"), {}))
    with pytest.raises(aws.AwsUnreachable):
        _client(api, max_attempts=2).get_item(TableName="t", Key={})
    assert len(api.requests) == 2


def test_a_crc32_mismatch_is_retried():
    class Corrupting(FakeApi):
        def __call__(self, request):
            response = super().__call__(request)
            if len(self.requests) == 1:
                response.headers["x-amz-crc32"] = "1"
            return response

    api = Corrupting((200, {"Count": 0}, {}))
    assert _client(api).query(TableName="t")["Count"] == 0
    assert len(api.requests) == 2


def test_blobs_go_out_as_base64_and_come_back_as_bytes():
    blob = base64.b64encode(b"\x00\xffdata").decode()
    api = FakeApi((200, {"Item": {"b": {"B": blob}, "bs": {"BS": [blob]}, "s": {"S": "B"}}}, {}))
    answer = _client(api).get_item(TableName="t", Key={"pk": {"B": b"\x01\x02"}})
    assert json.loads(api.requests[0].content)["Key"]["pk"]["B"] == base64.b64encode(b"\x01\x02").decode()
    assert answer["Item"] == {"b": {"B": b"\x00\xffdata"}, "bs": {"BS": [b"\x00\xffdata"]}, "s": {"S": "B"}}


def test_the_pool_opens_on_first_use_and_reopens_after_close():
    api = FakeApi((200, {}, {}))
    client = _client(api)
    assert not client.pool_open and client.pools_opened == 0
    client.query(TableName="t")
    first = client.http
    client.close()
    assert not client.pool_open and first.is_closed
    client.query(TableName="t")
    assert client.http is not first and client.pools_opened == 2


def test_credentials_from_the_key_variables():
    chain = aws.CredentialChain(environ={"AWS_ACCESS_KEY_ID": "AK", "AWS_SECRET_ACCESS_KEY": "SK",
                                         "AWS_SESSION_TOKEN": "TOK"})
    credentials = chain.get()
    assert (credentials.access_key, credentials.secret_key, credentials.token) == ("AK", "SK", "TOK")
    assert "SK" not in repr(credentials) and "TOK" not in repr(credentials)


def test_container_credentials_as_lambda_gives_them_under_snapstart_are_refreshed_before_expiry():
    issued = []

    def endpoint(request: httpx.Request) -> httpx.Response:
        assert request.headers["authorization"] == "lambda-token"
        issued.append(request.url)
        expires = datetime.now(UTC) + timedelta(minutes=4 if len(issued) == 1 else 60)
        return httpx.Response(200, json={"AccessKeyId": f"ASIA{len(issued)}", "SecretAccessKey": "s", "Token": "t",
                                         "Expiration": expires.isoformat().replace("+00:00", "Z")})

    env = {"AWS_CONTAINER_CREDENTIALS_FULL_URI": "http://127.0.0.1:9001/2021-04-23/credentials",
           "AWS_CONTAINER_AUTHORIZATION_TOKEN": "lambda-token"}
    chain = aws.CredentialChain(environ=env, transport=httpx.MockTransport(endpoint))
    assert chain.get().access_key == "ASIA1"
    assert chain.get().access_key == "ASIA2"  # the first expires within 5 minutes: fetched again
    assert chain.get().access_key == "ASIA2" and len(issued) == 2
    chain.reset()
    assert chain.get().access_key == "ASIA3"
