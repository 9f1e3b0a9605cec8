"""Run the fake OpenAI-compatible upstream: ``python -m chatrelay.mockllm --port 8001``."""

from __future__ import annotations

import argparse

import uvicorn

from chatrelay.mockllm.server import FAULTS, MockConfig, create_mock_app


def main(argv: list[str] | None = None) -> None:
    defaults = MockConfig()
    parser = argparse.ArgumentParser(prog="python -m chatrelay.mockllm", description=__doc__)
    parser.add_argument("--host", default="127.0.0.1")
    parser.add_argument("--port", type=int, default=8001)
    parser.add_argument("--ttft", type=float, default=defaults.ttft, help="seconds before the first token")
    parser.add_argument("--interval", type=float, default=defaults.interval, help="seconds between tokens")
    parser.add_argument("--tokens", type=int, default=defaults.tokens, help="answer length in chunks")
    parser.add_argument("--fault", choices=sorted(FAULTS), default="none")
    parser.add_argument("--fault-after", type=int, default=defaults.fault_after)
    parser.add_argument("--keepalive", action="store_true", help="send ': keep-alive' comments before the answer")
    parser.add_argument("--api-key", default="", help="require this bearer key")
    args = parser.parse_args(argv)
    config = MockConfig(
        ttft=args.ttft, interval=args.interval, tokens=args.tokens, fault=args.fault,
        fault_after=args.fault_after, keepalive=args.keepalive, api_key=args.api_key,
    )
    uvicorn.run(create_mock_app(config), host=args.host, port=args.port, log_level="warning", timeout_graceful_shutdown=2)


if __name__ == "__main__":
    main()
