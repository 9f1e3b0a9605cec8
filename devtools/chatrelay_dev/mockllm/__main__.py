"""Run a fake upstream: ``python -m chatrelay_dev.mockllm --port 8001`` (OpenAI-compatible), or
``--protocol anthropic|bedrock|baidu`` for the native-protocol fakes (same knobs)."""

from __future__ import annotations

import argparse

import uvicorn

from chatrelay_dev.mockllm import anthropic_fake, baidu_fake, bedrock_fake
from chatrelay_dev.mockllm.common import MockConfig
from chatrelay_dev.mockllm.server import FAULTS, create_mock_app

FACTORIES = {
    "openai": create_mock_app,
    "anthropic": anthropic_fake.create_anthropic_fake,
    "bedrock": bedrock_fake.create_bedrock_fake,
    "baidu": baidu_fake.create_baidu_fake,
}
ALL_FAULTS = FAULTS | anthropic_fake.FAULTS | bedrock_fake.FAULTS | baidu_fake.FAULTS


def main(argv: list[str] | None = None) -> None:
    defaults = MockConfig()
    parser = argparse.ArgumentParser(prog="python -m chatrelay_dev.mockllm", description=__doc__)
    parser.add_argument("--host", default="127.0.0.1")
    parser.add_argument("--port", type=int, default=8001)
    parser.add_argument("--ttft", type=float, default=defaults.ttft, help="seconds before the first token")
    parser.add_argument("--interval", type=float, default=defaults.interval, help="seconds between tokens")
    parser.add_argument("--tokens", type=int, default=defaults.tokens, help="answer length in chunks")
    parser.add_argument("--fault", choices=sorted(ALL_FAULTS), default="none")
    parser.add_argument("--fault-after", type=int, default=defaults.fault_after)
    parser.add_argument("--keepalive", action="store_true", help="send ': keep-alive' comments before the answer")
    parser.add_argument("--api-key", default="", help="require this bearer key")
    parser.add_argument("--protocol", choices=sorted(FACTORIES), default="openai",
                        help="which vendor's wire protocol to fake (default: OpenAI-compatible)")
    args = parser.parse_args(argv)
    config = MockConfig(
        ttft=args.ttft, interval=args.interval, tokens=args.tokens, fault=args.fault,
        fault_after=args.fault_after, keepalive=args.keepalive, api_key=args.api_key,
    )
    uvicorn.run(FACTORIES[args.protocol](config), host=args.host, port=args.port, log_level="warning",
                timeout_graceful_shutdown=2)


if __name__ == "__main__":
    main()
