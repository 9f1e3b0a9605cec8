"""The SSE decoder follows the WHATWG event-stream interpretation rules."""

from chatrelay.providers.http import SSEDecoder, SSEMessage


def _decode(text: str) -> list[SSEMessage]:
    decoder = SSEDecoder()
    out = [m for line in text.split("\n") if (m := decoder.feed_line(line)) is not None]
    if (tail := decoder.flush()) is not None:
        out.append(tail)
    return out


def test_multi_line_data_joins_with_lf():
    assert _decode("data: a\ndata:  b\ndata\n\n") == [SSEMessage("message", "a\n b\n", None)]


def test_comments_are_ignored_and_empty_events_not_dispatched():
    assert _decode(": keep-alive\n\n:\n\n") == []


def test_event_and_id_fields():
    [message] = _decode("event: done\nid: 42\ndata: {}\n\n")
    assert message == SSEMessage("done", "{}", "42")


def test_id_with_nul_is_ignored_and_unknown_fields_skipped():
    [message] = _decode("id: a\x00b\nfoo: bar\nretry: 10\ndata: x\n\n")
    assert message.id is None and message.data == "x"


def test_field_without_colon_and_without_space():
    assert _decode("data:x\n\n")[0].data == "x"
