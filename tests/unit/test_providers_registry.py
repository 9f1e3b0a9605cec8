"""The provider registry: environment presets, the providers file, failover and timeouts wiring."""

from __future__ import annotations

import json
import re
from pathlib import Path

import anyio
import pytest

from chatrelay import errors
from chatrelay.providers.anthropic_messages import AnthropicProvider
from chatrelay.providers.baidu_ernie import BaiduErnieProvider
from chatrelay.providers.base import StreamParams
from chatrelay.providers.bedrock_converse import BedrockConverseProvider
from chatrelay.providers.config import ProvidersFileError, load_providers_file
from chatrelay.providers.deadlines import TimedProvider, Timeouts
from chatrelay.providers.failover import FailoverProvider
from chatrelay.providers.openai_compat import OpenAICompatProvider
from chatrelay.providers.registry import VENDOR_PRESETS, ProviderRegistry, build_presets
from chatrelay.settings import VENDOR_VARIABLES, Settings
from tests.support.providers import write_providers_file

SETTINGS = dict(mock_llm_base_url="http://127.0.0.1:9/v1")

EXAMPLE = """
providers:
  deepseek:
    api_key_env: DEEPSEEK_API_KEY
    timeouts: {connect: 3, first_token: 15, idle: 20, total: 240}
    fallback: [qwen, claude]
  qwen:
    kind: openai_compat
    base_url: https://dashscope.aliyuncs.com/compatible-mode/v1
    model: qwen-max
    api_key_env: DASHSCOPE_API_KEY
  claude:
    kind: anthropic
    model: claude-sonnet-4-5
    api_key_env: ANTHROPIC_API_KEY
    max_tokens: 2048
  titan:
    kind: bedrock
    model: amazon.nova-lite-v1:0
    region: eu-west-1
  ernie-v1:
    kind: baidu_ernie
    model: completions_pro
    api_key_env: ERNIE_AK
    secret_key_env: ERNIE_SK
  local:
    kind: mock
"""
ENV = {"DEEPSEEK_API_KEY": "sk-ds", "DASHSCOPE_API_KEY": "sk-qw", "ANTHROPIC_API_KEY": "sk-ant",
       "ERNIE_AK": "ak", "ERNIE_SK": "sk"}


def _registry(tmp_path, text: str = EXAMPLE, env=ENV, suffix="yaml", **settings) -> ProviderRegistry:
    path = tmp_path / f"providers.{suffix}"
    path.write_text(text, encoding="utf-8")
    return ProviderRegistry(Settings(**SETTINGS, providers_file=str(path), **settings), environ=env)


def test_the_file_adds_providers_of_every_kind_next_to_the_environment_presets(tmp_path):
    registry = _registry(tmp_path)
    # ANTHROPIC_API_KEY also enables the "anthropic" environment preset.
    assert registry.names == sorted(["anthropic", "claude", "deepseek", "default", "ernie-v1", "local", "mock", "qwen",
                                     "titan"])
    deepseek = registry.preset("deepseek")
    assert deepseek.base_url == "https://api.deepseek.com" and deepseek.model == "deepseek-chat"  # built-in preset
    assert deepseek.api_key == "sk-ds" and deepseek.fallback == ("qwen", "claude")
    assert deepseek.timeouts == Timeouts(3, 15, 20, 240)
    assert registry.preset("local").base_url == "http://127.0.0.1:9/v1"
    assert registry.preset("titan").region == "eu-west-1"
    assert registry.preset("qwen").include_usage is True


def test_resolve_builds_the_adapter_of_each_kind_once(tmp_path):
    registry = _registry(tmp_path)
    _, claude = registry.resolve("claude")
    assert isinstance(claude, AnthropicProvider)
    assert isinstance(registry.resolve("titan")[1], BedrockConverseProvider)
    assert isinstance(registry.resolve("ernie-v1")[1], BaiduErnieProvider)
    assert isinstance(registry.resolve("local")[1], OpenAICompatProvider)
    assert registry.resolve("claude")[1] is claude
    anyio.run(registry.aclose)


def test_a_fallback_list_makes_a_failover_over_timed_members_sharing_adapters(tmp_path):
    registry = _registry(tmp_path)
    preset, provider = registry.resolve("deepseek")
    assert preset.name == "deepseek" and isinstance(provider, FailoverProvider)
    assert [m.name for m in provider.members] == ["deepseek", "qwen", "claude"]
    assert [m.model for m in provider.members] == ["deepseek-chat", "qwen-max", "claude-sonnet-4-5"]
    assert isinstance(provider.members[0].provider, TimedProvider)
    # Fallbacks are looked up when first reached, then share the adapter of their own name.
    qwen = provider.members[1].provider
    assert qwen.name == "qwen" and not isinstance(qwen, OpenAICompatProvider)
    assert registry._member("qwen") is registry.resolve("qwen")[1]  # one pool per vendor
    anyio.run(registry.aclose)


def test_a_fallback_whose_key_cannot_be_read_fails_only_when_reached(tmp_path, monkeypatch):
    import chatrelay.secrets

    def unreadable(reference):
        raise RuntimeError("AccessDenied")

    monkeypatch.setattr(chatrelay.secrets, "resolve_secret", unreadable)
    text = """
providers:
  first: {kind: mock, fallback: [second]}
  second: {kind: anthropic, model: m, secret_name: "ssm:/nope"}
"""
    registry = _registry(tmp_path, text, env={})
    _, provider = registry.resolve("first")  # the primary is usable

    async def run():
        return [d async for d in provider.members[1].provider.stream([], StreamParams(model="m"))]

    with pytest.raises(errors.UpstreamAuthError, match="secret could not be read"):
        anyio.run(run)
    anyio.run(registry.aclose)


def test_json_works_too_and_file_entries_override_environment_presets(tmp_path):
    text = json.dumps({"providers": {"default": {"kind": "anthropic", "model": "claude-haiku", "api_key": "k"}}})
    registry = _registry(tmp_path, text, suffix="json")
    assert registry.preset("default").kind == "anthropic"


@pytest.mark.parametrize(("text", "message"), [
    ("providers:\n  x: {kind: gemini, model: m, base_url: http://h}", "kind"),
    ("providers:\n  x: {kind: anthropic}", "model is required"),
    ("providers:\n  x: {base_url: http://h}", "model is required"),
    ("providers:\n  x: {model: m}", "base_url is required"),
    ("providers:\n  x: {kind: mock, api_key_env: NOT_SET_ANYWHERE}", "NOT_SET_ANYWHERE is not set"),
    ("providers:\n  x: {kind: mock, fallback: [nope]}", "fallback 'nope' is not a configured provider"),
    ("providers:\n  x: {kind: mock, fallback: [x]}", "lists itself"),
    ("providers:\n  x: {kind: baidu_ernie, model: m, api_key: a}", "needs an API key and a secret key"),
    ("providers:\n  x: {kind: mock, timeouts: {first_token: -1}}", "first_token"),
    ("providers:\n  x: {kind: mock, colour: blue}", "colour"),
    ("providers: [", "invalid YAML"),
])
def test_configuration_mistakes_fail_at_start_up_with_a_clear_message(tmp_path, text, message):
    with pytest.raises(ProvidersFileError, match=message):
        _registry(tmp_path, text, env={})


def test_a_missing_file_is_a_clear_error(tmp_path):
    with pytest.raises(ProvidersFileError, match="providers file"):
        load_providers_file(tmp_path / "absent.yaml")


def test_environment_presets_for_native_vendors():
    env = {"ANTHROPIC_API_KEY": "a", "ERNIE_API_KEY": "k", "ERNIE_SECRET_KEY": "s", "BEDROCK_MODEL": "amazon.nova"}
    presets = build_presets(Settings(**SETTINGS), environ=env)
    assert presets["anthropic"].kind == "anthropic" and presets["anthropic"].api_key == "a"
    assert presets["ernie"].kind == "baidu_ernie" and presets["ernie"].secret_key == "s"
    assert presets["bedrock"].kind == "bedrock" and presets["bedrock"].model == "amazon.nova"
    assert set(build_presets(Settings(**SETTINGS), environ={"ERNIE_API_KEY": "k"})) == {"mock", "default"}


def test_keys_by_secret_name_are_read_when_the_provider_is_first_used(tmp_path, monkeypatch):
    import chatrelay.secrets

    asked: list[str] = []
    monkeypatch.setattr(chatrelay.secrets, "resolve_secret", lambda ref: asked.append(ref) or "sk-from-ssm")
    registry = _registry(tmp_path, "providers:\n  x: {kind: anthropic, model: m, secret_name: 'ssm:/k'}", env={})
    assert asked == []
    _, provider = registry.resolve("x")
    assert asked == ["ssm:/k"] and provider._headers["x-api-key"] == "sk-from-ssm"

    def fail(ref):
        raise RuntimeError("AccessDenied")

    monkeypatch.setattr(chatrelay.secrets, "resolve_secret", fail)
    registry = _registry(tmp_path, "providers:\n  y: {kind: anthropic, model: m, secret_name: 'ssm:/k'}", env={})
    with pytest.raises(errors.UpstreamAuthError, match="secret could not be read"):
        registry.resolve("y")


def test_unknown_names_are_unknown_models(tmp_path):
    with pytest.raises(errors.UnknownModel):
        _registry(tmp_path).resolve("gpt-17")


def test_write_providers_file_helper_round_trips(tmp_path):
    path = write_providers_file(tmp_path, {"a": {"kind": "mock"}})
    assert list(load_providers_file(path).providers) == ["a"]


def test_the_example_in_docs_providers_md_is_a_valid_providers_file(tmp_path):
    docs = (Path(__file__).resolve().parents[2] / "docs" / "providers.md").read_text(encoding="utf-8")
    example = docs.split("```yaml\n", 1)[1].split("```", 1)[0]
    env = {"DEEPSEEK_API_KEY": "k", "ANTHROPIC_API_KEY": "k", "ERNIE_API_KEY": "k", "ERNIE_SECRET_KEY": "s"}
    registry = _registry(tmp_path, example, env=env)
    preset, provider = registry.resolve("deepseek")
    assert isinstance(provider, FailoverProvider)
    assert [m.name for m in provider.members] == ["deepseek", "qwen", "claude", "nova"]
    assert registry.preset("qwen").api_key_secret == "ssm:/chatrelay/dashscope-key"
    anyio.run(registry.aclose)


def test_every_vendor_variable_reaches_its_preset_and_empty_is_unset():
    for name, variables in VENDOR_VARIABLES.items():
        env = {variable: f"{field}-value" for field, variable in variables.items()}
        preset = build_presets(Settings(**SETTINGS), environ=env)[name]
        assert {field: getattr(preset, field) for field in variables} == {f: f"{f}-value" for f in variables}, name
    assert "deepseek" not in build_presets(Settings(**SETTINGS), environ={"DEEPSEEK_API_KEY": ""})
    preset = build_presets(Settings(**SETTINGS), environ={"DEEPSEEK_API_KEY": "k", "DEEPSEEK_BASE_URL": ""})["deepseek"]
    assert preset.base_url == "https://api.deepseek.com"


def test_documented_provider_variables_are_settings_and_only_settings_read_the_environment():
    root = Path(__file__).resolve().parents[2]
    docs = (root / "docs" / "providers.md").read_text(encoding="utf-8")
    section = docs.split("## Environment presets", 1)[1].split("\n## ", 1)[0]
    documented = set(re.findall(r"`([A-Z][A-Z0-9_]+)`", section)) - {"VENDOR_VARIABLES"}  # the table's own name
    for pattern in re.findall(r"`<NAME>(_[A-Z_]+)`", section):
        documented |= {name.upper() + pattern for name in VENDOR_PRESETS}
    named = {v for variables in VENDOR_VARIABLES.values() for v in variables.values()}
    aliases = {c for f in Settings.model_fields.values() for c in getattr(f.validation_alias, "choices", [])}
    assert documented and documented <= named | aliases, documented - named - aliases
    package = root / "layers" / "chatrelay" / "chatrelay"
    readers = [p.relative_to(package).as_posix() for p in package.rglob("*.py")
               if re.search(r"os\.environ|getenv\(", p.read_text(encoding="utf-8"))]
    # aws.py reads only the AWS SDKs' own credential chain (AWS_ACCESS_KEY_ID..., the container
    # credentials Lambda hands over), as botocore did before it; no setting or vendor key.
    assert sorted(readers) == ["aws.py", "http1.py", "settings.py"]
    # http1.py reads only the proxy variables (HTTPS_PROXY...), to keep honouring them as httpx does.
    http1 = (package / "http1.py").read_text(encoding="utf-8")
    assert re.findall(r"os\.environ\S*", http1) == ["os.environ.items())"] and 'endswith("_proxy")' in http1
    aws = (package / "aws.py").read_text(encoding="utf-8")
    assert set(re.findall(r'"(AWS_[A-Z_]+|[A-Z][A-Z_]+_KEY)"', aws)) <= {
        "AWS_ACCESS_KEY_ID", "AWS_SECRET_ACCESS_KEY", "AWS_SESSION_TOKEN", "AWS_CONTAINER_CREDENTIALS_FULL_URI",
        "AWS_CONTAINER_CREDENTIALS_RELATIVE_URI", "AWS_CONTAINER_AUTHORIZATION_TOKEN",
        "AWS_CONTAINER_AUTHORIZATION_TOKEN_FILE", "AWS_REGION", "AWS_DEFAULT_REGION", "AWS_CA_BUNDLE",
        "AWS_USE_FIPS_ENDPOINT", "AWS_USE_DUALSTACK_ENDPOINT", "AWS_ENDPOINT_URL", "AWS_ENDPOINT_URL_DYNAMODB",
        "AWS_ENDPOINT_URL_SSM", "AWS_ENDPOINT_URL_SECRETS_MANAGER", "AWS_PROFILE", "AWS_SHARED_CREDENTIALS_FILE",
        "AWS_CONFIG_FILE", "AWS_MAX_ATTEMPTS", "AWS_RETRY_MODE"}


def test_the_registry_names_the_native_adapters_default_endpoints():
    """Written in the registry so that building one imports no adapter; they must stay the adapters' own."""
    from chatrelay.providers import anthropic_messages, baidu_ernie, registry

    assert registry.ANTHROPIC_BASE_URL == anthropic_messages.DEFAULT_BASE_URL
    assert registry.ERNIE_BASE_URL == baidu_ernie.DEFAULT_BASE_URL
