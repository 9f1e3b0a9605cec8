"""The SSE decoder follows the WHATWG event-stream interpretation rules; lines end at CR, LF and CRLF only."""

import anyio
import pytest

from chatrelay.providers.http import LineReader, SSEDecoder, SSEMessage, iter_lines, iter_sse
from tests.support.tricky import TRICKY_ANSWER, in_pieces

# Every character str.splitlines (and so httpx's aiter_lines) breaks at, none of them a line end in SSE.
NOT_LINE_ENDS = "\u2028\u2029\u0085\x1c\x1d\x1e\x0b\x0c"


def _decode(text: str) -> list[SSEMessage]:
    decoder = SSEDecoder()
    out = [m for line in text.split("\n") if (m := decoder.feed_line(line)) is not None]
    if (tail := decoder.flush()) is not None:
        out.append(tail)
    return out


def _lines(*reads: bytes) -> list[str]:
    reader = LineReader()
    return [line for data in reads for line in reader.feed(data)] + reader.flush()


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


def test_lines_end_at_cr_lf_and_crlf_only():
    body = f"a{NOT_LINE_ENDS}b\rc\nd\r\ne\r\rf\n\ng".encode()
    assert _lines(body) == [f"a{NOT_LINE_ENDS}b", "c", "d", "e", "", "f", "", "g"]


@pytest.mark.parametrize("newline", [b"\n", b"\r\n", b"\r"], ids=["lf", "crlf", "cr"])
def test_any_split_into_two_reads_gives_the_same_lines(newline):
    # Splits inside every multi-byte character (emoji, CJK, U+2028 ...) and between a CR and its LF.
    body = f"data: {TRICKY_ANSWER}😀\n\ndata: 你好{NOT_LINE_ENDS}\n".encode().replace(b"\n", newline)
    whole = _lines(body)
    assert whole[0] == f"data: {TRICKY_ANSWER.split(chr(13))[0]}"  # up to its first CR, U+2028 ... kept
    for cut in range(len(body) + 1):
        assert _lines(body[:cut], body[cut:]) == whole, cut
    assert _lines(*(body[i:i + 1] for i in range(len(body)))) == whole


def test_a_cr_ending_one_read_and_a_cr_opening_the_next_are_two_line_ends():
    assert _lines(b"a\r", b"\rb\r", b"", b"\nc") == ["a", "", "b", "c"]


def test_a_long_line_over_many_reads_and_a_truncated_character_at_the_end():
    assert _lines(*[b"x" * 10] * 100, b"\n") == ["x" * 1000]
    assert _lines("end😀".encode()[:-1]) == ["end\ufffd"]


def test_iter_sse_and_iter_lines_read_bytes_as_they_arrive():
    body = f"event: e\r\ndata: {NOT_LINE_ENDS}\r\ndata: [DONE]\r\n\r\n: ping\r\ndata: last".encode()

    async def run():
        messages = [m async for m in iter_sse(in_pieces(body, 3))]
        return messages, [line async for line in iter_lines(in_pieces(body, 2))]

    messages, lines = anyio.run(run)
    assert messages == [SSEMessage("e", f"{NOT_LINE_ENDS}\n[DONE]"), SSEMessage("message", "last")]
    assert lines == ["event: e", f"data: {NOT_LINE_ENDS}", "data: [DONE]", "", ": ping", "data: last"]
