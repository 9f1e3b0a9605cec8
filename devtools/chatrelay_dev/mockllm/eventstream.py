"""The AWS event-stream binary framing (``application/vnd.amazon.eventstream``), encoder side.

One message::

    prelude  total length (uint32 BE) | headers length (uint32 BE) | CRC32 of those 8 bytes
    headers  name length (uint8) | name | value type (uint8; 7 = string) | value length (uint16 BE) | value
    payload  bytes (JSON for Bedrock)
    trailer  CRC32 of everything above (uint32 BE)

Bedrock ConverseStream sends events (``:message-type`` ``event``, ``:event-type``
the member name such as ``contentBlockDelta``) and, in the middle of a stream,
exceptions (``:message-type`` ``exception``, ``:exception-type`` such as
``throttlingException``). botocore's ``EventStreamBuffer`` is the decoder the tests
hold this encoder to.
"""

from __future__ import annotations

import json
import struct
import zlib
from collections.abc import Mapping
from typing import Any

_STRING = 7


def encode_headers(headers: Mapping[str, str]) -> bytes:
    out = bytearray()
    for name, value in headers.items():
        raw_name, raw_value = name.encode("utf-8"), value.encode("utf-8")
        out += struct.pack(">B", len(raw_name)) + raw_name
        out += struct.pack(">BH", _STRING, len(raw_value)) + raw_value
    return bytes(out)


def encode_message(headers: Mapping[str, str], payload: bytes) -> bytes:
    raw_headers = encode_headers(headers)
    total = 4 + 4 + 4 + len(raw_headers) + len(payload) + 4
    prelude = struct.pack(">II", total, len(raw_headers))
    message = prelude + struct.pack(">I", zlib.crc32(prelude)) + raw_headers + payload
    return message + struct.pack(">I", zlib.crc32(message))


def _json(body: Any) -> bytes:
    return json.dumps(body, ensure_ascii=False, separators=(",", ":")).encode("utf-8")


def event(event_type: str, body: Mapping[str, Any]) -> bytes:
    return encode_message(
        {":event-type": event_type, ":content-type": "application/json", ":message-type": "event"}, _json(body)
    )


def exception(exception_type: str, message: str) -> bytes:
    return encode_message(
        {":exception-type": exception_type, ":content-type": "application/json", ":message-type": "exception"},
        _json({"message": message}),
    )
