"""Dev login (``POST /v1/auth/dev``) from the environment of a real server process.

Only ``CHATRELAY_DEV_AUTH`` turns it on (not ``dev_auth`` / ``DEV_AUTH``), and a server that has
it on says so loudly at start-up unless it runs under ``make dev`` (``CHATRELAY_DEVSTACK=1``).
"""

from __future__ import annotations

import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import httpx

from chatrelay.settings import Settings
from chatrelay_dev.local.dynamodb_local import free_port
from chatrelay_dev.local.processes import stop_process
from tests.conftest import TABLE, TOKEN_SECRET

WARNING = "DEV LOGIN IS ON"
SETTING_NAMES = {name.upper() for field_name, field in Settings.model_fields.items()
                 for name in [field_name, *getattr(field.validation_alias, "choices", [])] if isinstance(name, str)}


def _serve(dynamodb, env: dict[str, str]) -> tuple[int, str]:
    """Start uvicorn on the entry point with ``env``; the status of a dev login and the output so far."""
    base = {k: v for k, v in os.environ.items() if k.upper() not in SETTING_NAMES}
    port = free_port()
    with tempfile.NamedTemporaryFile(prefix="dev-auth-", suffix=".log", delete=False) as log:
        path = Path(log.name)
    with path.open("wb") as out:
        process = subprocess.Popen(
            [sys.executable, "-m", "uvicorn", "chatrelay.api.asgi:app", "--host", "127.0.0.1", "--port", str(port),
             "--log-level", "warning"],
            env={**base, "CHAT_TABLE": TABLE, "DYNAMODB_ENDPOINT_URL": dynamodb.endpoint,
                 "CHATRELAY_TOKEN_SECRET": TOKEN_SECRET, "POWERTOOLS_LOG_LEVEL": "WARNING", **env},
            stdout=out, stderr=subprocess.STDOUT)
    try:
        deadline = time.monotonic() + 30
        while True:
            assert process.poll() is None, path.read_text(errors="replace")
            try:
                httpx.get(f"http://127.0.0.1:{port}/healthz", timeout=1).raise_for_status()
                break
            except httpx.HTTPError:
                assert time.monotonic() < deadline, "server did not start"
                time.sleep(0.1)
        status = httpx.post(f"http://127.0.0.1:{port}/v1/auth/dev", json={"userId": "dev-user"}, timeout=5).status_code
        return status, path.read_text(errors="replace")
    finally:
        stop_process(process)
        path.unlink(missing_ok=True)


def test_field_names_and_other_spellings_in_the_environment_do_not_enable_dev_login(dynamodb):
    status, output = _serve(dynamodb, {"dev_auth": "1", "DEV_AUTH": "1", "chatrelay_dev_auth": "1"})
    assert status == 404
    assert WARNING not in output


def test_dev_login_outside_make_dev_is_warned_about_at_start_up(dynamodb):
    status, output = _serve(dynamodb, {"CHATRELAY_DEV_AUTH": "1"})
    assert status == 200
    [line] = [line for line in output.splitlines() if WARNING in line]
    assert '"level":"WARNING"' in line


def test_make_dev_is_not_warned_about(dynamodb):
    status, output = _serve(dynamodb, {"CHATRELAY_DEV_AUTH": "1", "CHATRELAY_DEVSTACK": "1"})
    assert status == 200
    assert WARNING not in output
