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


def test_a_text_delta_that_is_exactly_done_is_sent_as_two_events():
    from chatrelay.events import DeltaEvent
    from chatrelay.streaming.response import to_wire

    wire = to_wire(DeltaEvent("[DONE]", 10), "text")
    assert wire == b"id: 7\ndata: [DO\n\nid: 10\ndata: NE]\n\n"
    assert b"data: [DONE]" not in wire


def test_text_deltas_end_each_data_line_with_its_own_break():
    from chatrelay.events import DeltaEvent
    from chatrelay.streaming.response import to_wire

    assert to_wire(DeltaEvent("a\r\nb\rc", 6), "text") == b"id: 6\ndata: a\r\ndata: b\rdata: c\n\n"
    assert to_wire(DeltaEvent("\n", 1), "text") == b"id: 1\ndata: \ndata: \n\n"
    assert to_wire(DeltaEvent("x\r", 2), "text") == b"id: 2\ndata: x\rdata: \n\n"


def test_the_legacy_newline_marker_puts_every_delta_on_one_data_line():
    from chatrelay.events import DeltaEvent
    from chatrelay.streaming.response import to_wire

    assert to_wire(DeltaEvent("\n", 7), "text", "marker") == b"id: 7\ndata: (@n@)\n\n"
    assert to_wire(DeltaEvent("a\r\nb", 4), "text", "marker") == b"id: 4\ndata: a(@r@)(@n@)b\n\n"
    assert to_wire(DeltaEvent("[DONE]", 6), "text", "marker") == b"id: 3\ndata: [DO\n\nid: 6\ndata: NE]\n\n"
