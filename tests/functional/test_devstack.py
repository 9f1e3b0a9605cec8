"""``make dev`` (chatrelay_dev.local.devstack) stops everything it started, however it is stopped.

Each run starts the real stack (DynamoDB Local, the fake LLM, the app) on free ports with its
data in a temporary folder, records every process below it from /proc once it serves, stops it,
and then checks that none of them is alive and its ports are free. The signal reaches the stack
alone (``timeout --foreground``, or sent to its pid), not its whole process group: the helpers
must be stopped by the stack, not by a signal of their own.
"""

from __future__ import annotations

import os
import signal
import socket
import subprocess
import sys
import time
from dataclasses import dataclass
from pathlib import Path

import httpx
import pytest

from chatrelay_dev.local.dynamodb_local import free_port

ROOT = Path(__file__).resolve().parents[2]

pytestmark = pytest.mark.skipif(not Path("/proc/self/stat").is_file(), reason="needs Linux /proc")


def _stat(pid: int) -> tuple[int, str, str] | None:
    """(parent pid, state, start time) of ``pid``, or None once it is gone."""
    try:
        fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    except OSError:
        return None
    return int(fields[1]), fields[0], fields[19]


def _descendants(root: int) -> dict[int, str]:
    """Every process below ``root``, with its start time (so that a reused pid is not mistaken for it)."""
    children: dict[int, list[tuple[int, str]]] = {}
    for entry in Path("/proc").iterdir():
        if entry.name.isdigit() and (stat := _stat(int(entry.name))) is not None:
            children.setdefault(stat[0], []).append((int(entry.name), stat[2]))
    found, todo = {}, [root]
    while todo:
        for pid, started in children.get(todo.pop(), []):
            found[pid] = started
            todo.append(pid)
    return found


def _alive(pid: int, started: str) -> bool:
    stat = _stat(pid)
    return stat is not None and stat[2] == started and stat[1] != "Z"


def _command(pid: int) -> str:
    try:
        return Path(f"/proc/{pid}/cmdline").read_bytes().replace(b"\0", b" ").decode(errors="replace")
    except OSError:
        return "?"


def _listening(port: int) -> bool:
    with socket.socket() as sock:
        sock.settimeout(0.5)
        return sock.connect_ex(("127.0.0.1", port)) == 0


@dataclass
class Run:
    process: subprocess.Popen
    ports: dict[str, int]
    log: Path

    def output(self) -> str:
        return self.log.read_text(errors="replace")[-4000:]


def _start(tmp_path: Path, command: list[str]) -> Run:
    ports = {"PORT": free_port(), "MOCK_LLM_PORT": free_port(), "DYNAMODB_LOCAL_PORT": free_port()}
    env = {k: v for k, v in os.environ.items()
           if k not in ("DYNAMODB_ENDPOINT_URL", "LLM_BASE_URL", "CHATRELAY_TOKEN_SECRET", "MAKEFLAGS", "MFLAGS")}
    env.update({k: str(v) for k, v in ports.items()})
    env.update(CHATRELAY_DEV_DATA_DIR=str(tmp_path / "data"), POWERTOOLS_LOG_LEVEL="WARNING")
    log = tmp_path / "devstack.log"
    with log.open("wb") as out:
        # Its own process group, as a terminal job would be: nothing here signals the group.
        process = subprocess.Popen(command, cwd=ROOT, env=env, stdout=out, stderr=subprocess.STDOUT,
                                   start_new_session=True)
    return Run(process, ports, log)


def _wait_until_serving(run: Run, timeout: float = 60) -> dict[int, str]:
    deadline = time.monotonic() + timeout
    while True:
        assert run.process.poll() is None, run.output()
        try:
            if httpx.get(f"http://127.0.0.1:{run.ports['PORT']}/healthz", timeout=1).status_code == 200:
                break
        except httpx.HTTPError:
            pass
        assert time.monotonic() < deadline, run.output()
        time.sleep(0.2)
    started = _descendants(run.process.pid)
    commands = " | ".join(_command(pid) for pid in started)
    assert "DynamoDBLocal.jar" in commands and "chatrelay_dev.mockllm" in commands, commands
    return started


def _assert_all_gone(run: Run, started: dict[int, str]) -> None:
    try:
        run.process.wait(timeout=30)
    except subprocess.TimeoutExpired:
        run.process.kill()
        raise AssertionError(f"the stack did not exit: {run.output()}") from None
    deadline = time.monotonic() + 5  # a process killed by its parent's death may take a moment
    while ((left := {pid: _command(pid) for pid, t in started.items() if _alive(pid, t)})
           and time.monotonic() < deadline):
        time.sleep(0.1)
    for pid in left:  # never leave them to the rest of the suite
        os.kill(pid, signal.SIGKILL)
    assert not left, f"left behind: {left}\n{run.output()}"
    assert not [name for name, port in run.ports.items() if _listening(port)], run.output()


def test_make_dev_stops_everything_on_sigterm(tmp_path):
    """``timeout -s TERM ... make dev``: make passes SIGTERM on to the stack, which stops its helpers.

    ``-o install``: the install prerequisite is up to date wherever the suite runs (``make test``
    depends on it), and must not reinstall anything from a test. The timeout's own expiry is
    replaced by sending it SIGTERM once the stack serves (it forwards it the same way)."""
    run = _start(tmp_path, ["timeout", "--foreground", "-s", "TERM", "120",
                            "make", "--no-print-directory", "-o", "install", "dev", f"PY={sys.executable}"])
    started = _wait_until_serving(run)
    assert any(_command(pid).startswith("make ") for pid in started)
    os.kill(run.process.pid, signal.SIGTERM)
    _assert_all_gone(run, started)
    assert "chatrelay dev stack stopped" in run.output()


def test_sigint_stops_everything_too(tmp_path):
    run = _start(tmp_path, [sys.executable, "-m", "chatrelay_dev.local.devstack"])
    started = _wait_until_serving(run)
    os.kill(run.process.pid, signal.SIGINT)
    _assert_all_gone(run, started)


def test_the_helpers_die_with_a_killed_stack(tmp_path):
    run = _start(tmp_path, [sys.executable, "-m", "chatrelay_dev.local.devstack"])
    started = _wait_until_serving(run)
    os.kill(run.process.pid, signal.SIGKILL)  # no clean-up at all: the kernel's PR_SET_PDEATHSIG
    _assert_all_gone(run, started)


def test_sigterm_while_dynamodb_local_starts_stops_it(tmp_path):
    run = _start(tmp_path, [sys.executable, "-m", "chatrelay_dev.local.devstack"])
    deadline = time.monotonic() + 30
    while not (started := {pid: t for pid, t in _descendants(run.process.pid).items()
                           if "DynamoDBLocal.jar" in _command(pid)}):
        assert run.process.poll() is None and time.monotonic() < deadline, run.output()
        time.sleep(0.02)
    os.kill(run.process.pid, signal.SIGTERM)
    _assert_all_gone(run, {**started, **_descendants(run.process.pid)})
    assert run.process.returncode == 128 + signal.SIGTERM
