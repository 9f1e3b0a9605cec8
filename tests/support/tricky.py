"""An answer that trips line splitting (U+2028, U+2029, U+0085, CR, LF, CRLF, emoji, ``[DONE]``),
how tests ask the fakes for it, and how they cut a body into network reads."""

from __future__ import annotations

import re
from collections.abc import AsyncIterator
from typing import Any
from urllib.parse import quote

from tests.support.providers import get_turn
from tests.support.sse_client import StreamResult, stream_chat

TRICKY_ANSWER = (
    "Line\u2028separator, paragraph\u2029separator, next\u0085line; CR\ronly, lone LF\nand CRLF\r\nin the text; "
    "VT\x0b FF\x0c FS\x1c GS\x1d RS\x1e; emoji 😀🚀 and 你好; the literal [DONE] and\n\ndata: [DONE]"
)
"""An answer holding every character ``str.splitlines`` breaks at (U+2028, U+2029 and U+0085 are
legal raw inside JSON strings; the others are escaped), CR, LF, CRLF, emoji and ``[DONE]``."""

TRICKY_PIECES = re.findall(r"\S+|\s", TRICKY_ANSWER)
"""The tricky answer as a vendor might stream it: words (``[DONE]`` one of them) and white-space characters."""


def answer_directive(text: str = TRICKY_ANSWER) -> str:
    """The fakes' directive for a literal answer (percent-encoded: any character fits)."""
    return f"[mock answer={quote(text, safe='')}]"


def stream_tricky_answer(base_url: str, token: str, model: str,
                         text: str = TRICKY_ANSWER) -> tuple[StreamResult, dict[str, Any]]:
    """Ask ``model`` (a preset on a fake) for ``text`` verbatim: the JSON-format stream and the stored turn."""
    result = stream_chat(base_url, token, {"prompt": f"verbatim {answer_directive(text)}", "model": model})
    assert result.status == 200, result.raw
    return result, get_turn(base_url, token, result.meta["messageId"])


async def in_pieces(body: bytes, size: int) -> AsyncIterator[bytes]:
    """``body`` as network reads of ``size`` bytes (splitting characters, CRLFs and events)."""
    for start in range(0, len(body), size):
        yield body[start:start + size]
