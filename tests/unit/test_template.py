"""template.yaml: the shape the streaming path depends on, secrets by name, least privilege.

The translated template (what CloudFormation actually deploys) is checked in
tests/functional/test_built_artifacts.py with the SAM translator that `make build` installs.
"""

from __future__ import annotations

import re
from pathlib import Path

from chatrelay_dev.local.table import load_template

TEMPLATE = load_template()
RESOURCES = TEMPLATE["Resources"]
PACKAGE = Path(__file__).resolve().parents[2] / "layers" / "chatrelay" / "chatrelay"


def _props(name: str) -> dict:
    return RESOURCES[name]["Properties"]


def _walk(node):
    if isinstance(node, dict):
        yield node
        for value in node.values():
            yield from _walk(value)
    elif isinstance(node, list):
        for value in node:
            yield from _walk(value)


def _statements(function: str) -> list[dict]:
    return [node for node in _walk(_props(function)["Policies"]) if "Effect" in node]


def test_streaming_function_runs_uvicorn_behind_lambda_web_adapter():
    props = _props("StreamFunction")
    env = props["Environment"]["Variables"]
    assert props["Handler"] == "run.sh"
    assert env["AWS_LAMBDA_EXEC_WRAPPER"] == "/opt/bootstrap"
    assert env["AWS_LWA_INVOKE_MODE"] == "response_stream"  # anything else silently buffers
    assert env["AWS_LWA_READINESS_CHECK_PATH"] == "/healthz"
    assert env["AWS_LWA_PORT"] == "8000" and "PORT" not in env  # 1.x: unprefixed names are deprecated
    # The Function URL (on the alias) streams and is public; the app checks its own tokens.
    url = RESOURCES["StreamFunctionUrl"]
    assert url["Type"] == "AWS::Lambda::Url" and url["Condition"] == "HasFunctionUrl"
    assert url["Properties"]["AuthType"] == "NONE" and url["Properties"]["InvokeMode"] == "RESPONSE_STREAM"
    assert url["Properties"]["TargetFunctionArn"] == {"Ref": "StreamFunction.Alias"}
    assert "FunctionUrlConfig" not in props
    # Lambda Web Adapter 1.1 (SnapStart hooks): the layer's account from Mappings, by partition and region.
    adapter = props["Layers"][0]["Fn::Sub"]
    assert adapter[0] == "arn:${AWS::Partition}:lambda:${AWS::Region}:${Account}:layer:${Layer}"
    layers = TEMPLATE["Mappings"]["WebAdapterLayer"]
    assert layers["aws"] == {"Account": "753240598075", "X86": "LambdaAdapterLayerX86:30",
                             "Arm64": "LambdaAdapterLayerArm64:30"}
    assert layers["cn-north-1"] == {"Account": "041581134020", "X86": "LambdaAdapterLayerX86:30"}
    assert layers["cn-northwest-1"] == {"Account": "069767869989", "X86": "LambdaAdapterLayerX86:30"}
    assert props["Layers"][1] == {"Ref": "ChatRelayLayer"}
    assert env["AWS_LWA_SNAPSTART_BEFORE_CHECKPOINT_PATH"] == "/_lwa/snapstart/before"
    assert env["AWS_LWA_SNAPSTART_AFTER_RESTORE_PATH"] == "/_lwa/snapstart/after"


def test_both_functions_are_published_behind_an_alias_with_snapstart_as_a_parameter():
    assert TEMPLATE["Parameters"]["SnapStart"]["AllowedValues"] == ["None", "PublishedVersions"]
    assert TEMPLATE["Parameters"]["SnapStart"]["Default"] == "None"
    for name in ("StreamFunction", "ApiFunction"):
        props = _props(name)
        assert props["AutoPublishAlias"] == "live"
        assert props["SnapStart"] == {"ApplyOn": {"Fn::If": ["UseSnapStart", "PublishedVersions", "None"]}}


def test_stream_routes_use_rest_api_response_streaming_and_the_rest_goes_to_mangum():
    stream_events = [e["Properties"] for e in _props("StreamFunction")["Events"].values()]
    assert {e["Path"] for e in stream_events} == {"/v1/chat/stream", "/v1/messages/{messageId}/stream"}
    # SAM's spelling; "STREAM" here would silently deploy a buffered integration.
    assert {e["ResponseTransferMode"] for e in stream_events} == {"RESPONSE_STREAM"}
    assert {e["TimeoutInMillis"] for e in stream_events} == {900000}
    api = _props("ApiFunction")
    assert api["Handler"] == "app.handler"
    assert all("ResponseTransferMode" not in e["Properties"] for e in api["Events"].values())
    routes = {(e["Properties"]["Method"], e["Properties"]["Path"]) for e in api["Events"].values()}
    assert {("GET", "/healthz"), ("GET", "/v1/models"), ("POST", "/v1/auth/{proxy+}"), ("GET", "/v1/conversations"),
            ("DELETE", "/v1/conversations/{conversationId}"), ("GET", "/v1/conversations/{conversationId}/messages"),
            ("GET", "/v1/messages/{messageId}"), ("PUT", "/v1/messages/{messageId}/feedback"),
            ("POST", "/v1/messages/{messageId}/stop")} <= routes


def test_rest_api_is_regional():
    """Edge-optimised endpoints cut idle streams after 30 s; regional ones after 5 minutes."""
    assert _props("ChatApi")["EndpointConfiguration"] == {"Type": "REGIONAL"}


def test_table_is_on_demand_with_pitr_encryption_and_ttl():
    table = _props("ChatTable")
    assert table["BillingMode"] == "PAY_PER_REQUEST"
    assert table["PointInTimeRecoverySpecification"]["PointInTimeRecoveryEnabled"] is True
    assert table["SSESpecification"]["SSEEnabled"] is True
    assert table["TimeToLiveSpecification"] == {"AttributeName": "expiresAt", "Enabled": True}
    env = TEMPLATE["Globals"]["Function"]["Environment"]["Variables"]
    assert env["CHATRELAY_RETENTION_DAYS"] == {"Ref": "RetentionDays"}


def test_no_wildcard_resources_in_our_iam_statements():
    """The only "*" the stack gets is SAM's X-Ray policy, and only with Tracing on."""
    for name in ("StreamFunction", "ApiFunction"):
        for statement in _statements(name):
            assert "*" not in str(statement["Resource"]), name
    assert TEMPLATE["Globals"]["Function"]["Tracing"] == {"Ref": "Tracing"}  # SAM drops the policy for Disabled


def _dynamodb_calls() -> dict[str, set[str]]:
    """Every DynamoDB client call in the package, by module: ``self._client.<call>`` (a botocore client)
    and the table core's ``self._call("<Operation>", ...)`` (store/table.py), both as botocore's method
    names (``get_item``)."""
    found = {}
    for module in PACKAGE.rglob("*.py"):
        text = module.read_text()
        if module.parent.name in ("mockllm", "local") or "dynamodb" not in text.lower():
            continue  # development tools, or modules whose _client is an HTTP client
        calls = set(re.findall(r"_client\.(\w+)", text))
        calls |= {re.sub(r"(?<!^)([A-Z])", r"_\1", op).lower() for op in re.findall(r'_call\(\s*"(\w+)"', text)}
        if calls:
            found[str(module.relative_to(PACKAGE))] = calls
    return found


# Record families whose DynamoDB calls all go through the table core (store/table.py), which the scan reads.
THROUGH_THE_TABLE_CORE = ("store/dynamodb.py", "store/refresh_tokens.py", "quotas/store.py")


def test_repositories_call_dynamodb_only_through_the_table_core():
    """So the scan of store/table.py covers every call they make."""
    for name in THROUGH_THE_TABLE_CORE:
        text = (PACKAGE / name).read_text()
        assert "from chatrelay.store.table import" in text, name
        assert not re.search(r"\b(boto3|botocore)\b|_client\b", text), name


def test_each_function_may_do_every_dynamodb_call_the_app_makes():
    """Both functions run the whole app (the Function URL reaches every route): each needs every call."""
    calls = set().union(*_dynamodb_calls().values())
    assert "store/table.py" in _dynamodb_calls()  # the scan sees the module that makes every call (see above)
    calls.discard("transact_write_items")  # authorised per item: PutItem / UpdateItem / ConditionCheckItem
    needed = {"dynamodb:" + "".join(part.title() for part in call.split("_")) for call in calls}
    needed |= {"dynamodb:PutItem", "dynamodb:ConditionCheckItem"}  # the transaction's items
    for name in ("StreamFunction", "ApiFunction"):
        granted = {
            action
            for statement in _statements(name)
            for action in ([statement["Action"]] if isinstance(statement["Action"], str) else statement["Action"])
            if isinstance(action, str) and action.startswith("dynamodb:")
        }
        assert needed <= granted, (name, needed - granted)
        assert not {"dynamodb:Scan", "dynamodb:DeleteTable", "dynamodb:*"} & granted


def test_every_environment_variable_the_template_sets_is_a_setting_or_a_platform_variable():
    from chatrelay.settings import Settings

    known = set()
    for field in Settings.model_fields.values():
        alias = field.validation_alias
        known |= {choice for choice in getattr(alias, "choices", [alias]) if isinstance(choice, str)}
    platform = {"AWS_LAMBDA_EXEC_WRAPPER", "AWS_LWA_INVOKE_MODE", "AWS_LWA_READINESS_CHECK_PATH", "AWS_LWA_PORT",
                "POWERTOOLS_SERVICE_NAME", "POWERTOOLS_METRICS_NAMESPACE", "POWERTOOLS_LOG_LEVEL",
                "POWERTOOLS_TRACE_DISABLED", "CHATRELAY_SERVE_H5"}
    sets = dict(TEMPLATE["Globals"]["Function"]["Environment"]["Variables"])
    for name in ("StreamFunction", "ApiFunction"):
        sets.update(_props(name).get("Environment", {}).get("Variables", {}))
    unknown = set(sets) - known - platform
    assert not unknown, f"not a setting name: {sorted(unknown)}"
    for name in ("CHATRELAY_WECHAT_APP_ID", "CHATRELAY_WECHAT_APP_SECRET_NAME", "CHATRELAY_CONTENT_SAFETY",
                 "CHATRELAY_RATE_LIMIT_PER_MINUTE", "CHATRELAY_TOKEN_QUOTA_PER_DAY",
                 "CHATRELAY_MAX_CONCURRENT_STREAMS", "CHATRELAY_PROVIDERS_FILE"):
        assert name in sets, name


def test_the_wechat_app_secret_is_passed_by_name_and_readable_by_both_functions():
    env = TEMPLATE["Globals"]["Function"]["Environment"]["Variables"]
    assert "CHATRELAY_WECHAT_APP_SECRET" not in env
    assert env["CHATRELAY_WECHAT_APP_SECRET_NAME"]["Fn::If"][1] == {"Fn::Sub": "${SecretStore}:${WeChatAppSecretName}"}
    for name in ("StreamFunction", "ApiFunction"):
        [reads] = [s for s in _statements(name) if s.get("Sid") == "ReadSecretsByName"]
        assert "WeChatAppSecretName" in str(reads["Resource"]), name


def test_bedrock_access_only_for_the_configured_model_and_only_on_the_streaming_function():
    [bedrock] = [s for s in _statements("StreamFunction") if s.get("Sid") == "BedrockConverseStream"]
    assert bedrock["Action"] == "bedrock:InvokeModelWithResponseStream"
    assert bedrock["Resource"]["Fn::Sub"].endswith(":foundation-model/${BedrockModelId}")
    assert "bedrock" not in str(_statements("ApiFunction"))


def test_secrets_are_passed_by_name_only():
    params = TEMPLATE["Parameters"]
    assert params["SecretStore"]["AllowedValues"] == ["ssm", "secretsmanager"]
    assert "TokenSecretName" in params and "LlmApiKeySecretName" in params
    env = TEMPLATE["Globals"]["Function"]["Environment"]["Variables"]
    stream_env = _props("StreamFunction")["Environment"]["Variables"]
    for variables in (env, stream_env):
        assert "CHATRELAY_TOKEN_SECRET" not in variables and "LLM_API_KEY" not in variables
    assert env["CHATRELAY_TOKEN_SECRET_NAME"] == {"Fn::Sub": "${SecretStore}:${TokenSecretName}"}
    # Only the streaming function talks to the LLM, so only it gets (and may read) the key.
    assert "LLM_API_KEY_SECRET_NAME" not in env and "LLM_API_KEY_SECRET_NAME" in stream_env
    assert "LlmApiKeySecretName" not in str(_statements("ApiFunction"))
    assert "LlmApiKeySecretName" in str(_statements("StreamFunction"))


def test_kms_decrypt_only_through_the_secret_store():
    for name in ("StreamFunction", "ApiFunction"):
        [kms] = [s for s in _statements(name) if s["Action"] == "kms:Decrypt"]
        assert kms["Resource"] == {"Ref": "SecretsKmsKeyArn"}
        assert "kms:ViaService" in kms["Condition"]["StringEquals"]
