"""``make dev``: the whole stack on this machine, on embedded defaults.

Starts DynamoDB Local (data kept under ``.data/dynamodb``; ``CHATRELAY_DEV_DATA_DIR``
moves ``.data``) unless ``DYNAMODB_ENDPOINT_URL`` points elsewhere, creates the chat
table from ``template.yaml`` if missing, starts the fake LLM unless ``LLM_BASE_URL`` is
set, and serves the app on ``http://127.0.0.1:$PORT`` (8000) with dev login enabled.

SIGTERM, SIGINT (Ctrl-C) and SIGHUP alike stop the app, then everything the stack
started, whether they arrive while it serves or while it starts; a second signal (make
forwards SIGTERM to its child, ``timeout`` signals the whole group) does not cut that
short. The helpers also die with the stack if it is killed outright (SIGKILL):
``processes.spawn`` has the kernel send them SIGTERM when it goes.
"""

from __future__ import annotations

import os
import secrets
import signal
import subprocess
import sys
import time
from pathlib import Path

import httpx
import uvicorn

from chatrelay_dev.local import dynamodb_local
from chatrelay_dev.local.paths import repo_root
from chatrelay_dev.local.processes import spawn, stop_process
from chatrelay_dev.local.table import ensure_table

USAGE = """
chatrelay is up on {base}

  TOKEN=$(curl -s -X POST {base}/v1/auth/dev -H 'Content-Type: application/json' \\
          -d '{{"userId":"demo"}}' | python3 -c 'import json,sys; print(json.load(sys.stdin)["token"])')
  curl -N -X POST {base}/v1/chat/stream -H "Authorization: Bearer $TOKEN" \\
       -H 'Content-Type: application/json' -d '{{"prompt":"你好, tell me a story"}}'
  curl -s {base}/v1/conversations -H "Authorization: Bearer $TOKEN"

H5 chat page: {base}/   upstream: {upstream}   table: {table} at {ddb}
"""


def _wait_http(url: str, timeout: float = 30.0) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        try:
            if httpx.get(url, timeout=1.0).status_code < 500:
                return
        except httpx.HTTPError:
            time.sleep(0.2)
    raise TimeoutError(f"{url} did not come up")


def _ignore_signals() -> None:
    """From here on the clean-up runs to its end, however many signals follow."""
    for sig in (signal.SIGTERM, signal.SIGINT, signal.SIGHUP):
        signal.signal(sig, signal.SIG_IGN)


def _stop_on_signals() -> None:
    """SIGTERM and SIGINT end the stack through ``main``'s clean-up (SystemExit), once; SIGHUP is a SIGTERM.

    While uvicorn serves, it handles SIGTERM/SIGINT itself (a graceful shutdown), then raises the
    signal again once it has stopped: it lands here.
    """

    def stop(signum: int, frame: object) -> None:
        _ignore_signals()
        raise SystemExit(128 + signum)

    signal.signal(signal.SIGTERM, stop)
    signal.signal(signal.SIGINT, stop)
    signal.signal(signal.SIGHUP, lambda signum, frame: signal.raise_signal(signal.SIGTERM))


def main() -> None:
    _stop_on_signals()
    root = repo_root()
    data = Path(os.environ.get("CHATRELAY_DEV_DATA_DIR") or root / ".data")
    children: list[subprocess.Popen] = []
    ddb_server = None
    port = int(os.environ.get("PORT", "8000"))
    os.environ.setdefault("CHATRELAY_DEV_AUTH", "1")
    os.environ["CHATRELAY_DEVSTACK"] = "1"  # dev login is expected here: no start-up warning
    os.environ.setdefault("CHAT_TABLE", "chatrelay-chat")
    os.environ.setdefault("AWS_ACCESS_KEY_ID", "local")
    os.environ.setdefault("AWS_SECRET_ACCESS_KEY", "local")
    os.environ.setdefault("AWS_REGION", "us-east-1")
    if not os.environ.get("CHATRELAY_TOKEN_SECRET"):
        # A dev-only signing key kept under .data/, so tokens survive a restart of make dev.
        key_file = data / "dev-token-secret"
        key_file.parent.mkdir(parents=True, exist_ok=True)
        if not key_file.exists():
            key_file.write_text(secrets.token_urlsafe(48))
            key_file.chmod(0o600)
        os.environ["CHATRELAY_TOKEN_SECRET"] = key_file.read_text().strip()
    try:
        if not os.environ.get("DYNAMODB_ENDPOINT_URL"):
            ddb_port = int(os.environ.get("DYNAMODB_LOCAL_PORT", "8002"))
            ddb_server = dynamodb_local.start(port=ddb_port, data_dir=data / "dynamodb")
            os.environ["DYNAMODB_ENDPOINT_URL"] = ddb_server.endpoint
        endpoint = os.environ["DYNAMODB_ENDPOINT_URL"]
        ensure_table(dynamodb_local.local_client(endpoint), os.environ["CHAT_TABLE"])

        if os.environ.get("LLM_BASE_URL"):
            upstream = os.environ["LLM_BASE_URL"]
        else:
            mock_port = int(os.environ.get("MOCK_LLM_PORT", "8001"))
            children.append(spawn([sys.executable, "-m", "chatrelay_dev.mockllm", "--port", str(mock_port)]))
            upstream = f"http://127.0.0.1:{mock_port}/v1"
            os.environ["MOCK_LLM_BASE_URL"] = upstream
            _wait_http(f"http://127.0.0.1:{mock_port}/healthz")

        base = f"http://127.0.0.1:{port}"
        print(USAGE.format(base=base, upstream=upstream, table=os.environ["CHAT_TABLE"], ddb=endpoint), flush=True)
        uvicorn.run("chatrelay.api.asgi:app", host="127.0.0.1", port=port, log_level="info",
                    timeout_graceful_shutdown=5)
    finally:
        _ignore_signals()
        helpers = [*children, *([ddb_server.process] if ddb_server is not None else [])]
        for helper in helpers:  # all at once, then wait for each (killed after 10 s)
            if helper.poll() is None:
                helper.terminate()
        for helper in helpers:
            stop_process(helper, timeout=10)
        print("chatrelay dev stack stopped", flush=True)


if __name__ == "__main__":
    main()
