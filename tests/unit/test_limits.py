"""Input limits: JSON nesting measured on the raw bytes, control characters in prompts."""

from __future__ import annotations

import json

import pytest

from chatrelay import errors
from chatrelay.api.limits import json_depth_exceeds
from chatrelay.turns import check_prompt


@pytest.mark.parametrize(
    ("value", "depth"),
    [({"prompt": "x"}, 1), ([[[]]], 3), ({"a": [{"b": [1]}]}, 4), ({"prompt": "{[{[{[{[ in a string ]}]}]}]}"}, 1),
     ({"prompt": 'quote \\" and {{{{{{{{{{{{{{{{{{{{'}, 1), ([], 1), (1, 0)],
)
def test_depth_counts_structure_not_strings(value, depth):
    body = json.dumps(value).encode()
    assert not json_depth_exceeds(body, depth)
    assert json_depth_exceeds(body, depth - 1) == (depth > 0)


def test_deep_bodies_are_caught_without_parsing():
    body = b"[" * 100_000 + b"]" * 100_000
    assert json_depth_exceeds(body, 16)
    assert json_depth_exceeds(b'{"a":' * 20 + b"1" + b"}" * 20, 16)


@pytest.mark.parametrize("prompt", ["line\nnext", "tab\there", "crlf\r\n", "emoji 👨‍👩‍👧 ZWJ", "中文"])
def test_ordinary_text_passes(prompt):
    check_prompt(prompt)


@pytest.mark.parametrize("char", ["\x00", "\x07", "\x1b", "\x7f", "\x85", "\x0b"])
def test_control_characters_are_refused(char):
    with pytest.raises(errors.InvalidRequest) as caught:
        check_prompt(f"a{char}b")
    assert caught.value.details["field"] == "prompt"
