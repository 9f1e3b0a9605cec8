"""template.yaml resolved for concrete parameter values: what each function really gets.

tests/unit/test_template.py checks the template's shape (and scans the package's DynamoDB
calls against the granted actions). Here a small evaluator of CloudFormation's intrinsic
functions (Ref, Fn::Sub/If/Select/Split/Join/FindInMap, conditions, rules; the pseudo parameters
of a region) turns the template into the environment and IAM statements a deployment with
given parameters would have, so that
- every environment variable is a setting name, and ``Settings()`` reads the intended values
  from it (JSON lists, secret references, numbers);
- each function may read exactly the secrets that deployment names, and Bedrock only when asked;
- the template's Rules refuse the parameter combinations the app refuses at start-up.
"""

from __future__ import annotations

import json
import os
import re
import subprocess
from pathlib import Path

import pytest

from chatrelay.settings import Settings
from chatrelay_dev.local.table import load_template

ROOT = Path(__file__).resolve().parents[2]
TEMPLATE = load_template()
SAM_PYTHON = ROOT / ".tools" / "sam" / "bin" / "python"
PSEUDO = {"AWS::Partition": "aws", "AWS::Region": "eu-west-1", "AWS::AccountId": "123456789012",
          "AWS::URLSuffix": "amazonaws.com", "AWS::StackName": "chatrelay"}


def pseudo_parameters(region: str) -> dict[str, str]:
    """The pseudo parameters of a stack in ``region`` (the China regions are the aws-cn partition)."""
    china = region.startswith("cn-")
    return {**PSEUDO, "AWS::Region": region, "AWS::Partition": "aws-cn" if china else "aws",
            "AWS::URLSuffix": "amazonaws.com.cn" if china else "amazonaws.com"}
REQUIRED = {"LlmBaseUrl": "https://llm.example.com/v1", "LlmModel": "some-model"}
ARN = "arn:aws:{service}:eu-west-1:123456789012:{rest}"
# Set by the template for the platform (Lambda Web Adapter, Powertools), not read by Settings.
PLATFORM = {"AWS_LAMBDA_EXEC_WRAPPER", "AWS_LWA_INVOKE_MODE", "AWS_LWA_READINESS_CHECK_PATH", "AWS_LWA_PORT",
            "POWERTOOLS_SERVICE_NAME", "POWERTOOLS_METRICS_NAMESPACE", "POWERTOOLS_LOG_LEVEL"}
NO_VALUE = object()


class Deployment:
    """The template evaluated for one set of parameter values."""

    def __init__(self, template: dict, *, pseudo: dict[str, str] | None = None, **parameters: str) -> None:
        self.template = template
        self.pseudo = pseudo or PSEUDO
        declared = template["Parameters"]
        unknown = set(parameters) - set(declared)
        assert not unknown, f"not template parameters: {unknown}"
        values = {**REQUIRED, **parameters}
        self.params: dict[str, str] = {}
        for name, spec in declared.items():
            assert name in values or "Default" in spec, f"{name} has no value"
            value = str(values.get(name, spec.get("Default")))
            if "AllowedPattern" in spec:  # CloudFormation matches the whole value
                assert re.fullmatch(spec["AllowedPattern"], value), (name, value)
            if "AllowedValues" in spec:
                assert value in [str(v) for v in spec["AllowedValues"]], (name, value)
            self.params[name] = value
        self._conditions: dict[str, bool] = {}

    def condition(self, name: str) -> bool:
        if name not in self._conditions:
            self._conditions[name] = bool(self.eval(self.template["Conditions"][name]))
        return self._conditions[name]

    def eval(self, node):  # noqa: C901, PLR0911, PLR0912 - one branch per intrinsic function
        if isinstance(node, list):
            return [v for v in (self.eval(item) for item in node) if v is not NO_VALUE]
        if not isinstance(node, dict):
            return node
        if len(node) == 1:
            [(key, arg)] = node.items()
            if key == "Ref":
                if arg == "AWS::NoValue":
                    return NO_VALUE
                if arg in self.pseudo:
                    return self.pseudo[arg]
                if arg in self.params:
                    return self.params[arg]
                assert arg in self.template["Resources"], arg
                return f"<{arg}>"
            if key == "Condition":
                return self.condition(arg)
            if key == "Fn::If":
                name, yes, no = arg
                return self.eval(yes if self.condition(name) else no)
            if key == "Fn::Equals":
                left, right = (self.eval(v) for v in arg)
                return str(left) == str(right)
            if key == "Fn::Not":
                return not self.eval(arg[0])
            if key == "Fn::And":
                return all(self.eval(v) for v in arg)
            if key == "Fn::Or":
                return any(self.eval(v) for v in arg)
            if key == "Fn::Select":
                index, items = arg
                return self.eval(items)[int(index)]
            if key == "Fn::Split":
                delimiter, text = arg
                return self.eval(text).split(delimiter)
            if key == "Fn::Join":
                delimiter, items = arg
                return delimiter.join(str(v) for v in self.eval(items))
            if key == "Fn::FindInMap":
                # A missing entry raises KeyError, as CloudFormation refuses such a deployment.
                name, top, second = (self.eval(v) for v in arg)
                return self.template["Mappings"][name][top][second]
            if key == "Fn::GetAtt":
                return f"<{'.'.join(arg) if isinstance(arg, list) else arg}>"
            if key == "Fn::Sub":
                text, names = (arg, {}) if isinstance(arg, str) else (arg[0], self.eval(arg[1]))

                def substitute(match: re.Match) -> str:
                    name = match.group(1)
                    if name in names:
                        return str(names[name])
                    if "." in name:
                        return f"<{name}>"
                    return str(self.eval({"Ref": name}))

                return re.sub(r"\$\{([^}!]+)\}", substitute, text)
        return {k: v for k, v in ((k, self.eval(v)) for k, v in node.items()) if v is not NO_VALUE}

    # ---- what the functions get ----------------------------------------------

    def environment(self, function: str) -> dict[str, str]:
        props = self.template["Resources"][function]["Properties"]
        variables = dict(self.template.get("Globals", {}).get("Function", {}).get("Environment", {})
                         .get("Variables", {}))
        variables.update(props.get("Environment", {}).get("Variables", {}))
        return {k: str(v) for k, v in self.eval(variables).items()}

    def statements(self, function: str) -> list[dict]:
        policies = self.eval(self.template["Resources"][function]["Properties"]["Policies"])
        return [s for policy in policies if isinstance(policy, dict) for s in policy.get("Statement", [])]

    def resources(self, function: str, action: str) -> set[str]:
        found = set()
        for statement in self.statements(function):
            actions = [statement["Action"]] if isinstance(statement["Action"], str) else statement["Action"]
            if action in actions:
                resources = statement["Resource"]
                found |= {resources} if isinstance(resources, str) else set(resources)
        return found

    def failed_rules(self) -> list[str]:
        failed = []
        for name, rule in self.template.get("Rules", {}).items():
            if "RuleCondition" in rule and not self.eval(rule["RuleCondition"]):
                continue
            failed += [name for assertion in rule["Assertions"] if not self.eval(assertion["Assert"])]
        return failed


def _setting_names() -> set[str]:
    names = set()
    for field in Settings.model_fields.values():
        alias = field.validation_alias
        names |= {choice for choice in getattr(alias, "choices", [alias]) if isinstance(choice, str)}
    return names


def _settings_from(environment: dict[str, str], monkeypatch) -> Settings:
    """Settings() as the function's process reads them: from this environment only."""
    names = _setting_names()
    for name in list(os.environ):
        if name in names or name.upper() in names:
            monkeypatch.delenv(name)
    for name, value in environment.items():
        monkeypatch.setenv(name, value)
    return Settings()


FULL = dict(
    SecretStore="ssm", TokenSecretName="/c/token", LlmApiKeySecretName="/c/llm",
    WeChatAppId="wx0123456789abcdef", WeChatAppSecretName="/c/wechat", WeChatApiBase="https://wx-proxy.example.com",
    ContentSafety="wechat", ContentSafetyKeywords="赌博,bad word,x-y",
    RateLimitPerMinute="20", TokenQuotaPerDay="200000", MaxConcurrentStreams="2",
    CorsAllowedOrigins="https://h5.example.com,https://b.example.com", RetentionDays="90",
    ProvidersFile="/opt/python/providers.yaml", ProviderSecretNames="/c/deepseek,/c/ernie-key,/c/ernie-secret",
    DefaultModel="deepseek", BedrockModelId="anthropic.claude-3-5-haiku-20241022-v1:0",
)


@pytest.mark.parametrize("function", ["StreamFunction", "ApiFunction"])
@pytest.mark.parametrize("parameters", [{}, FULL], ids=["defaults", "everything-on"])
def test_every_variable_is_a_setting_and_settings_read_what_the_parameters_say(function, parameters, monkeypatch):
    deployment = Deployment(TEMPLATE, **parameters)
    env = deployment.environment(function)
    unknown = set(env) - _setting_names() - PLATFORM
    assert not unknown, f"not a setting name: {sorted(unknown)}"
    settings = _settings_from(env, monkeypatch)  # fails here if a value does not parse
    params = deployment.params
    assert settings.chat_table == "<ChatTable>"
    assert settings.retention_days == int(params["RetentionDays"])
    assert settings.token_secret_name == f"{params['SecretStore']}:{params['TokenSecretName']}"
    assert settings.token_secret is None and settings.llm_api_key is None and settings.wechat_app_secret is None
    assert settings.wechat_api_base == params["WeChatApiBase"]
    assert settings.wechat_app_id == (params["WeChatAppId"] or None)
    assert settings.wechat_app_secret_name == (
        f"{params['SecretStore']}:{params['WeChatAppSecretName']}" if params["WeChatAppSecretName"] else None)
    assert settings.content_safety == params["ContentSafety"]
    assert settings.content_safety_keywords == [w for w in params["ContentSafetyKeywords"].split(",") if w]
    assert (settings.rate_limit_per_minute, settings.token_quota_per_day, settings.max_concurrent_streams) == (
        int(params["RateLimitPerMinute"]), int(params["TokenQuotaPerDay"]), int(params["MaxConcurrentStreams"]))
    assert settings.cors_origins == [o for o in params["CorsAllowedOrigins"].split(",") if o]
    # Both functions: /v1/models (API function) must list the names chat (streaming) accepts.
    assert settings.providers_file == (params["ProvidersFile"] or None)
    assert settings.default_model == params["DefaultModel"]
    assert settings.serve_h5 is False and settings.dev_auth is False
    assert settings.llm_api_key_secret_name == (
        f"ssm:{params['LlmApiKeySecretName']}" if function == "StreamFunction" and params["LlmApiKeySecretName"]
        else None)
    assert settings.finish_on_disconnect is (function == "StreamFunction")
    # Only the function behind Lambda Web Adapter, which sets x-amzn-lambda-context, reads it.
    assert settings.trust_lambda_context is (function == "StreamFunction")


def _secret_arns(store: str, *names: str) -> set[str]:
    if store == "ssm":
        return {ARN.format(service="ssm", rest=f"parameter{name}") for name in names}
    return {ARN.format(service="secretsmanager", rest=f"secret:{name}-??????") for name in names}


@pytest.mark.parametrize("store", ["ssm", "secretsmanager"])
def test_each_function_may_read_exactly_the_secrets_it_is_given(store):
    action = "ssm:GetParameter" if store == "ssm" else "secretsmanager:GetSecretValue"
    other = "secretsmanager:GetSecretValue" if store == "ssm" else "ssm:GetParameter"
    minimal = Deployment(TEMPLATE, SecretStore=store)
    for function in ("StreamFunction", "ApiFunction"):
        assert minimal.resources(function, action) == _secret_arns(store, "/chatrelay/token-secret")
        assert minimal.resources(function, other) == set()

    full = Deployment(TEMPLATE, **{**FULL, "SecretStore": store})
    assert full.resources("StreamFunction", action) == _secret_arns(
        store, "/c/token", "/c/llm", "/c/wechat", "/c/deepseek", "/c/ernie-key", "/c/ernie-secret")
    # The API function logs in with WeChat and never talks to a model: no LLM or provider keys.
    assert full.resources("ApiFunction", action) == _secret_arns(store, "/c/token", "/c/wechat")
    # Every provider slot, and only as many as given.
    four = Deployment(TEMPLATE, SecretStore=store, ProviderSecretNames="/p/1,/p/2,/p/3,/p/4")
    assert four.resources("StreamFunction", action) == _secret_arns(
        store, "/chatrelay/token-secret", "/p/1", "/p/2", "/p/3", "/p/4")
    with pytest.raises(AssertionError):  # AllowedPattern: at most 4 names
        Deployment(TEMPLATE, ProviderSecretNames="/p/1,/p/2,/p/3,/p/4,/p/5")


def test_bedrock_only_when_a_model_is_given_and_only_that_foundation_model_in_the_region():
    assert Deployment(TEMPLATE).resources("StreamFunction", "bedrock:InvokeModelWithResponseStream") == set()
    full = Deployment(TEMPLATE, **FULL)
    assert full.resources("StreamFunction", "bedrock:InvokeModelWithResponseStream") == {
        "arn:aws:bedrock:eu-west-1::foundation-model/anthropic.claude-3-5-haiku-20241022-v1:0"}
    assert "bedrock" not in json.dumps(full.statements("ApiFunction"))


def test_dynamodb_access_is_the_table_and_its_index_only():
    full = Deployment(TEMPLATE, **FULL)
    for function in ("StreamFunction", "ApiFunction"):
        for statement in full.statements(function):
            actions = [statement["Action"]] if isinstance(statement["Action"], str) else statement["Action"]
            if any(a.startswith("dynamodb:") for a in actions):
                assert set(statement["Resource"]) == {"<ChatTable.Arn>", "<ChatTable.Arn>/index/gsi1"}


@pytest.mark.parametrize(("parameters", "failed"), [
    ({}, []),
    (FULL, []),
    ({"ContentSafety": "keywords", "ContentSafetyKeywords": "a,b"}, []),
    ({"WeChatAppId": "wx0123456789abcdef"}, ["WeChatAppIdAndSecretTogether"]),
    ({"WeChatAppSecretName": "/c/wechat"}, ["WeChatAppIdAndSecretTogether"]),
    ({"ContentSafety": "wechat"}, ["WeChatContentSafetyNeedsWeChat"]),
    ({"ContentSafety": "keywords"}, ["KeywordContentSafetyNeedsKeywords"]),
])
def test_rules_refuse_what_the_app_would_refuse_at_start_up(parameters, failed):
    assert Deployment(TEMPLATE, **parameters).failed_rules() == failed


@pytest.mark.parametrize("keywords", ['say "x"', "a\\b", "a,,b", ",a"])
def test_keywords_that_would_break_the_json_list_are_refused(keywords):
    with pytest.raises(AssertionError):
        Deployment(TEMPLATE, ContentSafety="keywords", ContentSafetyKeywords=keywords)


@pytest.mark.skipif(not SAM_PYTHON.is_file(), reason="SAM CLI missing: run `make build`")
def test_the_translated_template_resolves_to_the_same_roles_and_environment():
    """What CloudFormation deploys (after the SAM transform) says the same as the source."""
    overrides = [f"{k}={v}" for k, v in {**REQUIRED, **FULL}.items()]
    run = subprocess.run([str(SAM_PYTHON), str(ROOT / "tests/support/translate_template.py"),
                          str(ROOT / "template.yaml"), *overrides],
                         capture_output=True, text=True, timeout=60, env={"PATH": os.environ["PATH"]})
    assert run.returncode == 0, run.stderr[-3000:]
    translated = json.loads(run.stdout)
    assert translated["Rules"] == TEMPLATE["Rules"]  # the transform keeps them
    source, deployed = Deployment(TEMPLATE, **FULL), Deployment(translated, **FULL)
    for function in ("StreamFunction", "ApiFunction"):
        role = deployed.eval(translated["Resources"][f"{function}Role"]["Properties"]["Policies"])
        statements = [s for policy in role for s in policy["PolicyDocument"]["Statement"]]
        assert statements == source.statements(function), function
        variables = deployed.eval(translated["Resources"][function]["Properties"]["Environment"]["Variables"])
        assert {k: str(v) for k, v in variables.items()} == source.environment(function), function


def test_the_template_ships_per_user_limits_on_by_default():
    """Issue 17: with every parameter at its default, a deployment limits each user."""
    deployment = Deployment(TEMPLATE)
    limits = [int(deployment.params[name]) for name in ("RateLimitPerMinute", "TokenQuotaPerDay",
                                                         "MaxConcurrentStreams")]
    assert all(limit > 0 for limit in limits), limits
