"""Settings come from the documented environment variables only, spelled exactly.

pydantic-settings matches environment names case-insensitively and, with
``populate_by_name``, also under the field name: ``dev_auth=1`` or ``DEV_AUTH=1`` in the
environment used to turn dev login on. Field names are for the constructor only.
"""

from __future__ import annotations

import os

import pytest

from chatrelay.settings import Settings

SENTINEL = "7"
"""Differs from every default, and is invalid for bools, lists, literals and bounded numbers:
a setting that read it either changes or fails to validate."""


def _aliases(field) -> list[str]:
    alias = field.validation_alias
    return [name for name in getattr(alias, "choices", [alias]) if isinstance(name, str)]


DOCUMENTED = {name for field in Settings.model_fields.values() for name in _aliases(field)}


def _undocumented_spellings() -> set[str]:
    names = set()
    for field_name, field in Settings.model_fields.items():
        names |= {field_name, field_name.upper(), field_name.title()}
        for alias in _aliases(field):
            names |= {alias.lower(), alias.title()}
    return names - DOCUMENTED


@pytest.fixture
def clean_env(monkeypatch):
    for name in list(os.environ):
        if name.upper() in {n.upper() for n in DOCUMENTED | _undocumented_spellings()}:
            monkeypatch.delenv(name)
    return monkeypatch


def test_every_alias_is_an_upper_case_environment_name():
    assert DOCUMENTED and all(name == name.upper() for name in DOCUMENTED)
    assert not set(Settings.model_fields) & DOCUMENTED


def test_no_field_name_or_other_spelling_of_a_variable_is_read(clean_env):
    baseline = Settings().model_dump()
    for name in _undocumented_spellings():
        clean_env.setenv(name, SENTINEL)
    assert Settings().model_dump() == baseline


@pytest.mark.parametrize("name", ["dev_auth", "DEV_AUTH", "chatrelay_dev_auth", "Chatrelay_Dev_Auth"])
def test_only_chatrelay_dev_auth_enables_dev_login(clean_env, name):
    clean_env.setenv(name, "1")
    assert Settings().dev_auth is False
    clean_env.setenv("CHATRELAY_DEV_AUTH", "1")
    assert Settings().dev_auth is True


def test_documented_names_and_constructor_field_names_still_work(clean_env):
    clean_env.setenv("CHAT_TABLE", "from-env")
    clean_env.setenv("AWS_DEFAULT_REGION", "eu-west-1")
    clean_env.setenv("CHATRELAY_CONTENT_SAFETY_KEYWORDS", '["a", "b"]')
    settings = Settings()
    assert (settings.chat_table, settings.aws_region, settings.content_safety_keywords) == (
        "from-env", "eu-west-1", ["a", "b"])
    assert Settings(chat_table="given", dev_auth=True).chat_table == "given"  # the constructor wins
    assert Settings(dev_auth=True).dev_auth is True
    assert Settings(POWERTOOLS_TRACE_DISABLED="false").trace_disabled is False
