"""Which earlier turns go to the model as context."""

from chatrelay.providers.registry import build_presets
from chatrelay.settings import Settings
from chatrelay.store.records import Turn, TurnStatus
from chatrelay.turns import build_messages


def _turn(i: int, status=TurnStatus.COMPLETE, answer=None) -> Turn:
    return Turn(f"m{i}", "c", f"q{i}", "mock", "t", status=status, answer=f"a{i}" if answer is None else answer)


def test_latest_turns_within_the_budget_oldest_first():
    history = [_turn(i) for i in range(5)]
    messages = build_messages("sys", history, "now", max_chars=3 + 4 * 3)  # room for three q/a pairs
    assert [m.content for m in messages] == ["sys", "q2", "a2", "q3", "a3", "q4", "a4", "now"]


def test_failed_and_empty_turns_are_skipped_and_no_system_prompt_when_empty():
    history = [_turn(0), _turn(1, TurnStatus.FAILED), _turn(2, answer="")]
    messages = build_messages("", history, "now", max_chars=1000)
    assert [(m.role, m.content) for m in messages] == [("user", "q0"), ("assistant", "a0"), ("user", "now")]


def test_presets_default_to_the_mock_and_vendor_presets_need_a_key():
    settings = Settings(mock_llm_base_url="http://127.0.0.1:9/v1")
    presets = build_presets(settings, environ={"DEEPSEEK_API_KEY": "k", "QWEN_MODEL": "ignored-without-key"})
    assert set(presets) == {"mock", "default", "deepseek"}
    assert presets["default"].base_url == "http://127.0.0.1:9/v1"
    assert presets["deepseek"].base_url == "https://api.deepseek.com" and presets["deepseek"].api_key == "k"


def test_llm_env_trio_defines_the_default_preset():
    settings = Settings(llm_base_url="https://api.moonshot.cn/v1", llm_api_key="sk", llm_model="moonshot-v1-8k")
    preset = build_presets(settings, environ={})["default"]
    assert (preset.base_url, preset.model, preset.api_key) == ("https://api.moonshot.cn/v1", "moonshot-v1-8k", "sk")
