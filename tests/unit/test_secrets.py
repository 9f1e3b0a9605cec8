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
