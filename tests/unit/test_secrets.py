"""Secrets resolved by name, never given as values in the deployment."""

import pytest

from chatrelay.secrets import resolve_secret, with_resolved_secrets
from chatrelay.settings import Settings


class FakeStore:
    """A real provider shape (get(name, **options)) over a dict: no AWS needed."""

    def __init__(self, values):
        self.values, self.calls = values, []

    def get(self, name, **options):
        self.calls.append((name, options))
        return self.values[name]


def test_ssm_and_secrets_manager_references():
    ssm, sm = FakeStore({"/chatrelay/token": "t" * 40}), FakeStore({"chatrelay/llm": "sk-1"})
    providers = {"ssm": ssm, "secretsmanager": sm}
    assert resolve_secret("ssm:/chatrelay/token", providers) == "t" * 40
    assert resolve_secret("/chatrelay/token", providers) == "t" * 40
    assert resolve_secret("secretsmanager:chatrelay/llm", providers) == "sk-1"
    assert ssm.calls[0][1]["decrypt"] is True


@pytest.mark.parametrize("reference", ["vault:x", "ssm:", "s3:bucket"])
def test_bad_references(reference):
    with pytest.raises(ValueError):
        resolve_secret(reference, {"ssm": FakeStore({})})


def test_settings_get_values_from_names_and_direct_values_win():
    providers = {"ssm": FakeStore({"/t": "from-ssm-" + "x" * 32, "/k": "sk-ssm"})}
    resolved = with_resolved_secrets(Settings(token_secret_name="ssm:/t", llm_api_key_secret_name="ssm:/k"), providers)
    assert resolved.token_secret.get_secret_value().startswith("from-ssm-")
    assert resolved.llm_api_key.get_secret_value() == "sk-ssm"
    direct = with_resolved_secrets(Settings(token_secret="d" * 40, token_secret_name="ssm:/t"), providers)
    assert direct.token_secret.get_secret_value() == "d" * 40
    assert "from-ssm" not in repr(resolved)


def test_empty_strings_from_the_template_mean_unset():
    settings = Settings(llm_base_url="", llm_model="", llm_api_key_secret_name="")
    assert settings.llm_base_url is None and settings.llm_model is None and settings.llm_api_key_secret_name is None


def test_the_default_stores_call_ssm_and_secrets_manager_and_cache_until_cleared():
    """GetParameter (decrypted) / GetSecretValue over chatrelay.aws, cached; clear_cache() (SnapStart) forgets."""
    import json

    import httpx

    from chatrelay import aws, secrets

    calls = []

    def api(request: httpx.Request) -> httpx.Response:
        target, body = request.headers["x-amz-target"], json.loads(request.content)
        calls.append((request.url.host, target, body))
        if target == "AmazonSSM.GetParameter":
            return httpx.Response(200, json={"Parameter": {"Name": body["Name"], "Value": f"ssm-value-{len(calls)}"}})
        return httpx.Response(200, json={"SecretString": f"sm-value-{len(calls)}"})

    chain = aws.CredentialChain(environ={"AWS_ACCESS_KEY_ID": "AKID", "AWS_SECRET_ACCESS_KEY": "s"})
    options = {"credentials": chain, "transport": httpx.MockTransport(api)}
    secrets.clear_cache()
    ssm = secrets.AwsSecretStore("ssm", "cn-north-1", **options)
    sm = secrets.AwsSecretStore("secretsmanager", "eu-west-1", **options)
    providers = {"ssm": ssm, "secretsmanager": sm}
    assert resolve_secret("ssm:/chatrelay/token", providers) == "ssm-value-1"
    assert resolve_secret("secretsmanager:chatrelay/llm", providers) == "sm-value-2"
    assert resolve_secret("/chatrelay/token", providers) == "ssm-value-1"  # cached
    assert calls == [
        ("ssm.cn-north-1.amazonaws.com.cn", "AmazonSSM.GetParameter",
         {"Name": "/chatrelay/token", "WithDecryption": True}),
        ("secretsmanager.eu-west-1.amazonaws.com", "secretsmanager.GetSecretValue", {"SecretId": "chatrelay/llm"}),
    ]
    secrets.clear_cache()
    assert resolve_secret("ssm:/chatrelay/token", providers) == "ssm-value-3"


def test_resolving_secrets_imports_neither_boto3_nor_botocore():
    import subprocess
    import sys

    probe = ("import sys, chatrelay.secrets, chatrelay.aws; "
             "print(sorted({'boto3', 'botocore', 'aws_lambda_powertools'} & set(sys.modules)))")
    run = subprocess.run([sys.executable, "-c", probe], capture_output=True, text=True, check=True)
    assert run.stdout.strip() == "[]"
