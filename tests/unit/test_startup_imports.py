"""What the entry points import at start-up: only what a first request can need (the import diet).

A cold start pays for every module imported before the first byte (bench/coldstart.py), so
rarely used paths are imported when first used: WeChat (login and content checks), YAML (a
providers file), Bedrock (botocore's event stream), Powertools' tracing, and, in the buffered
API function, the streaming routes and sse-starlette (with the uvicorn it imports), the turn
service with its relay and quotas (imported when a turn is first stopped there), the vendor
adapters (it lists models but calls no vendor), and content safety unless it is on. botocore's
client machinery and boto3 are not imported at all: the store and the secrets call AWS through
chatrelay/aws.py. Each entry point is imported by a fresh interpreter, configured as the
template configures it (no WeChat, no content safety, no providers file).
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

from chatrelay.api.app import create_app
from chatrelay.settings import Settings

ROOT = Path(__file__).resolve().parents[2]
NEVER_AT_START_UP = {"boto3", "s3transfer", "botocore.session", "botocore.client", "yaml", "aws_xray_sdk",
                     "chatrelay.auth.wechat", "chatrelay.safety.wechat", "chatrelay.providers.bedrock_converse"}
STREAMING_ONLY = {"sse_starlette", "uvicorn", "chatrelay.api.routes_chat", "chatrelay.api.routes_openai",
                  "chatrelay.api.routes_ui", "chatrelay.streaming.response", "chatrelay.streaming.relay",
                  "chatrelay.turns.service", "chatrelay.quotas", "chatrelay.safety",
                  # It lists models (the registry) but never calls a vendor: no adapter is imported.
                  "chatrelay.providers.openai_compat", "chatrelay.providers.anthropic_messages",
                  "chatrelay.providers.baidu_ernie", "chatrelay.providers.http"}
ENV = {"CHAT_TABLE": "t", "CHATRELAY_TOKEN_SECRET": "s" * 40, "CHATRELAY_SERVE_H5": "false", "AWS_REGION": "us-east-1",
       "POWERTOOLS_TRACE_DISABLED": "true", "POWERTOOLS_LOG_LEVEL": "WARNING"}


def _modules_after_importing(directory: str, module: str) -> set[str]:
    probe = (f"import sys; sys.path.insert(0, {str(ROOT / directory)!r}); import json, gc, {module}; "
             "print(json.dumps(sorted(sys.modules)), gc.isenabled())")
    env = {k: v for k, v in os.environ.items() if not k.startswith(("CHATRELAY_", "LLM_", "AWS_", "POWERTOOLS_"))}
    run = subprocess.run([sys.executable, "-c", probe], capture_output=True, text=True, env={**env, **ENV},
                         cwd=ROOT / directory, timeout=60, check=False)
    assert run.returncode == 0, run.stderr[-3000:]
    modules, enabled = run.stdout.strip().splitlines()[-1].rsplit(" ", 1)
    assert enabled == "True"  # the entry points turn the collector off while importing, and on again
    return set(json.loads(modules))


@pytest.mark.parametrize(("directory", "module"), [("functions/api", "app"), ("functions/stream", "main")])
def test_entry_points_import_nothing_a_first_request_cannot_need(directory, module):
    modules = _modules_after_importing(directory, module)
    assert not NEVER_AT_START_UP & modules, sorted(NEVER_AT_START_UP & modules)
    if module == "app":  # the buffered API function: API Gateway never sends it a streaming route
        assert not STREAMING_ONLY & modules, sorted(STREAMING_ONLY & modules)
    else:
        assert {"chatrelay.api.routes_chat", "chatrelay.api.routes_openai", "chatrelay.api.routes_ui"} <= modules
        assert "chatrelay.providers.openai_compat" in modules  # the first turn's adapter, loaded at start-up


def test_the_buffered_app_has_every_route_but_the_streaming_ones():
    settings = Settings(token_secret="t" * 40, serve_h5=False, dynamodb_endpoint_url="http://127.0.0.1:9")
    full = set(create_app(settings).openapi()["paths"])
    buffered = set(create_app(settings, streaming=False).openapi()["paths"])
    streaming = {"/v1/chat/stream", "/v1/messages/{message_id}/stream", "/v1/chat/completions"}
    assert streaming <= full and not streaming & buffered
    assert {p for p in full - buffered if not p.startswith("/v1/ui/")} == streaming
    assert {"/healthz", "/v1/models", "/v1/conversations", "/v1/messages/{message_id}/stop", "/v1/me/data"} <= buffered
