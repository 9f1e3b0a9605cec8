"""template.yaml: the shape the streaming path depends on, and least privilege."""

from __future__ import annotations

from chatrelay.local.table import load_template

TEMPLATE = load_template()
RESOURCES = TEMPLATE["Resources"]


def _props(name: str) -> dict:
    return RESOURCES[name]["Properties"]


def test_streaming_function_runs_uvicorn_behind_lambda_web_adapter():
    props = _props("StreamFunction")
    env = props["Environment"]["Variables"]
    assert props["Handler"] == "run.sh"
    assert env["AWS_LAMBDA_EXEC_WRAPPER"] == "/opt/bootstrap"
    assert env["AWS_LWA_INVOKE_MODE"] == "response_stream"  # anything else silently buffers
    assert env["AWS_LWA_READINESS_CHECK_PATH"] == "/healthz"
    assert props["FunctionUrlConfig"]["InvokeMode"] == "RESPONSE_STREAM"
    adapter = props["Layers"][0]["Fn::If"]
    assert "LambdaAdapterLayerArm64:27" in adapter[1]["Fn::Sub"] and "LambdaAdapterLayerX86:27" in adapter[2]["Fn::Sub"]
    assert all("${AWS::Partition}" in branch["Fn::Sub"] for branch in adapter[1:])


def test_stream_routes_use_rest_api_response_streaming_and_the_rest_goes_to_mangum():
    stream_events = _props("StreamFunction")["Events"].values()
    assert {e["Properties"]["Path"] for e in stream_events} == {"/v1/chat/stream", "/v1/messages/{messageId}/stream"}
    assert {e["Properties"]["ResponseTransferMode"] for e in stream_events} == {"STREAM"}
    api = _props("ApiFunction")
    assert api["Handler"] == "app.handler"
    assert all("ResponseTransferMode" not in e["Properties"] for e in api["Events"].values())


def test_table_is_on_demand_with_pitr_encryption_and_ttl():
    table = _props("ChatTable")
    assert table["BillingMode"] == "PAY_PER_REQUEST"
    assert table["PointInTimeRecoverySpecification"]["PointInTimeRecoveryEnabled"] is True
    assert table["SSESpecification"]["SSEEnabled"] is True
    assert table["TimeToLiveSpecification"] == {"AttributeName": "expiresAt", "Enabled": True}


def _walk(node):
    if isinstance(node, dict):
        yield node
        for value in node.values():
            yield from _walk(value)
    elif isinstance(node, list):
        for value in node:
            yield from _walk(value)


def test_no_wildcard_resources_in_our_iam_statements():
    for name, resource in RESOURCES.items():
        for node in _walk(resource.get("Properties", {}).get("Policies", [])):
            if "Resource" in node:
                assert "*" not in str(node["Resource"]), name


def test_secrets_are_passed_by_name_only():
    secret_like = [n for n in TEMPLATE["Parameters"] if "Secret" in n or "Key" in n]
    assert secret_like and all(n.endswith("ParameterName") for n in secret_like)
    env = TEMPLATE["Globals"]["Function"]["Environment"]["Variables"]
    assert "CHATRELAY_TOKEN_SECRET" not in env and "LLM_API_KEY" not in env
    assert env["CHATRELAY_TOKEN_SECRET_NAME"] == {"Fn::Sub": "ssm:${TokenSecretParameterName}"}
