"""The thinnest relay a team could write by hand: a baseline of ``make bench``, not a product.

    HANDWRITTEN_UPSTREAM=http://127.0.0.1:8001/v1 python -m uvicorn handwritten_relay:app --port 8002

``POST /v1/chat/stream`` takes chatrelay's request body (``{"prompt": ...}``), asks the upstream
(OpenAI-compatible) for a streamed completion with httpx, reads it with ``aiter_lines()``, and
answers a Starlette ``StreamingResponse`` with one SSE event per content chunk, in chatrelay's
JSON format (``data: {"delta": ...}``), then ``data: [DONE]``. That is the same job on the wire
as chatrelay's stream route (OpenAI chunks in, ``{"delta"}`` events out), with none of the rest:
no authentication (the ``Authorization`` header is ignored), no limits, no storage, no stop, no
checkpoints, no content check, no deadlines, no logs or metrics. One pooled ``httpx.AsyncClient``
on httpx's default transport (httpcore), as a team would write it, with the pool limits
chatrelay's providers had before they moved to ``chatrelay/http1.py``.
"""

from __future__ import annotations

import json
import os

import httpx
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import PlainTextResponse, StreamingResponse
from starlette.routing import Route

UPSTREAM = os.environ.get("HANDWRITTEN_UPSTREAM", "http://127.0.0.1:8001/v1").rstrip("/")
client = httpx.AsyncClient(
    timeout=httpx.Timeout(120.0, connect=10.0),
    limits=httpx.Limits(max_connections=4000, max_keepalive_connections=200),
)


async def chat_stream(request: Request) -> StreamingResponse:
    body = await request.json()
    payload = {"model": "mock-gpt", "stream": True, "messages": [{"role": "user", "content": body["prompt"]}]}
    upstream = await client.send(client.build_request("POST", f"{UPSTREAM}/chat/completions", json=payload),
                                 stream=True)

    async def events():
        try:
            async for line in upstream.aiter_lines():
                if not line.startswith("data: "):
                    continue
                data = line[6:]
                if data == "[DONE]":
                    continue  # read on to the body's end: the connection goes back to the pool
                choices = json.loads(data).get("choices") or [{}]
                text = (choices[0].get("delta") or {}).get("content")
                if text:
                    yield f"data: {json.dumps({'delta': text}, ensure_ascii=False)}\n\n"
            yield "data: [DONE]\n\n"
        finally:
            await upstream.aclose()

    return StreamingResponse(events(), media_type="text/event-stream", headers={"Cache-Control": "no-cache"})


async def healthz(request: Request) -> PlainTextResponse:
    return PlainTextResponse("ok")


app = Starlette(routes=[Route("/v1/chat/stream", chat_stream, methods=["POST"]), Route("/healthz", healthz)])
