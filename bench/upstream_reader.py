"""CPU per 1,000 tokens of reading a vendor's stream: the app's transport against httpx's default one.

    python bench/upstream_reader.py [--streams 20] [--tokens 200] [--runs 3]

Starts the fake upstream (``chatrelay_dev.mockllm``) on another core, then reads ``streams``
concurrent streamed completions through the OpenAI-compatible adapter, once on the app's
client (``providers/http.py``: ``chatrelay/http1.py`` under httpx) and once on an
``httpx.AsyncClient`` with httpx's default transport (httpcore) and the pool limits the app
used before, alternating, and prints this process's CPU ms per 1,000 tokens for each.
Only the reading side is measured: no relay, no storage (``make bench`` measures the app).
"""

from __future__ import annotations

import argparse
import asyncio
import os
import statistics
import sys
import time
from pathlib import Path

import httpx

from chatrelay.providers.base import ChatMessage, StreamParams
from chatrelay.providers.openai_compat import OpenAICompatProvider
from chatrelay_dev.local.dynamodb_local import free_port

BENCH = Path(__file__).resolve().parent
sys.path.insert(0, str(BENCH))
import loadgen  # noqa: E402
from run import LOAD_CPU, spawn, wait_http  # noqa: E402


async def cpu_per_1000(base_url: str, transport: str, streams: int, tokens: int) -> float:
    client = None
    if transport == "httpcore":
        client = httpx.AsyncClient(timeout=httpx.Timeout(120, connect=10),
                                   limits=httpx.Limits(max_connections=4000, max_keepalive_connections=200))
    provider = OpenAICompatProvider("bench", base_url, client=client)
    messages = [ChatMessage("user", f"[mock tokens={tokens} interval=0.005 ttft=0] hi")]

    async def one() -> int:
        return sum([1 async for delta in provider.stream(messages, StreamParams(model="mock-gpt")) if delta.text])

    await asyncio.gather(*(one() for _ in range(streams)))  # connections opened and pooled
    before = time.process_time()
    counts = await asyncio.gather(*(one() for _ in range(streams)))
    spent = time.process_time() - before
    await provider.aclose()
    return spent * 1e6 / sum(counts)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--streams", type=int, default=20)
    parser.add_argument("--tokens", type=int, default=200)
    parser.add_argument("--runs", type=int, default=3)
    args = parser.parse_args()
    if hasattr(os, "sched_setaffinity") and (os.cpu_count() or 1) > 1:
        os.sched_setaffinity(0, {0})
    logs = Path(os.environ.get("TMPDIR", "/tmp"))
    port = free_port()
    mock = spawn("upstream-reader-mock", [sys.executable, "-m", "chatrelay_dev.mockllm", "--port", str(port)], logs,
                 cpu=LOAD_CPU)
    try:
        wait_http(port)
        results: dict[str, list[float]] = {"http1": [], "httpcore": []}
        for _ in range(args.runs):
            for transport, values in results.items():  # alternating
                values.append(loadgen.new_loop().run_until_complete(
                    cpu_per_1000(f"http://127.0.0.1:{port}/v1", transport, args.streams, args.tokens)))
        for transport, values in results.items():
            print(f"{transport}: {statistics.median(values):.1f} CPU ms per 1,000 tokens "
                  f"(runs: {', '.join(f'{v:.1f}' for v in values)})")
    finally:
        mock.terminate()
        mock.wait()


if __name__ == "__main__":
    main()
