"""The SSE wire format (WHATWG HTML, "Server-sent events"), both directions.

Encoding towards clients goes through sse-starlette's ``ServerSentEvent``; this
module adds the decoder used to read vendors' streams. The decoder works on
lines that the HTTP layer already split and decoded (httpx splits on CR, LF and
CRLF with an incremental UTF-8 decoder, so a character cut across two network
reads is never garbled).

Deliberate deviation: ``retry:`` is parsed and ignored, since a server-side
consumer does not reconnect on the vendor's schedule.
"""

from __future__ import annotations

from collections.abc import AsyncIterable, AsyncIterator
from dataclasses import dataclass


@dataclass(frozen=True, slots=True)
class SSEMessage:
    event: str = "message"
    data: str = ""
    id: str | None = None


class SSEDecoder:
    """Turns SSE lines into messages. Comments (``: keep-alive``) are dropped."""

    def __init__(self) -> None:
        self._event = ""
        self._data: list[str] = []
        self._id: str | None = None
        self._seen_field = False

    def feed_line(self, line: str) -> SSEMessage | None:
        if line == "":
            return self._dispatch()
        if line.startswith(":"):
            return None
        name, sep, value = line.partition(":")
        if sep and value.startswith(" "):
            value = value[1:]
        if name == "data":
            self._data.append(value)
            self._seen_field = True
        elif name == "event":
            self._event = value
            self._seen_field = True
        elif name == "id":
            if "\0" not in value:
                self._id = value
        # "retry" and unknown fields are ignored, as the spec says.
        return None

    def flush(self) -> SSEMessage | None:
        """End of stream: the spec discards an incomplete event; we return it so a
        vendor that omits the final blank line still has its last event read."""
        return self._dispatch()

    def _dispatch(self) -> SSEMessage | None:
        if not self._seen_field:
            self._event = ""
            return None
        message = SSEMessage(event=self._event or "message", data="\n".join(self._data), id=self._id)
        self._event, self._data, self._seen_field = "", [], False
        return message


async def iter_sse(lines: AsyncIterable[str]) -> AsyncIterator[SSEMessage]:
    decoder = SSEDecoder()
    async for line in lines:
        message = decoder.feed_line(line)
        if message is not None:
            yield message
    message = decoder.flush()
    if message is not None:
        yield message
