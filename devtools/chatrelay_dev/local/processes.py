"""Child processes of the local tools (DynamoDB Local, servers started by tests and the bench)."""

from __future__ import annotations

import ctypes
import os
import signal
import subprocess
import sys
import threading
from typing import Any

_PR_SET_PDEATHSIG = 1


def _load_prctl():
    if not sys.platform.startswith("linux"):
        return None
    try:
        return ctypes.CDLL(None, use_errno=True).prctl
    except (OSError, AttributeError):
        return None


_prctl = _load_prctl()  # resolved before any fork: the child only calls it


def stop_process(process: subprocess.Popen, timeout: float = 10.0) -> None:
    """Terminate ``process``; kill it if it has not exited within ``timeout`` seconds."""
    if process.poll() is not None:
        return
    process.terminate()
    try:
        process.wait(timeout=timeout)
    except subprocess.TimeoutExpired:
        process.kill()
        process.wait()


def _die_with(parent: int) -> None:
    """In the child, before exec: SIGTERM when ``parent`` dies, even by SIGKILL (Linux)."""
    if _prctl is not None:
        _prctl(_PR_SET_PDEATHSIG, int(signal.SIGTERM), 0, 0, 0)
    if os.getppid() != parent:  # the parent died before the request took effect
        os.kill(os.getpid(), signal.SIGTERM)


def spawn(args: list[str], **kwargs: Any) -> subprocess.Popen:
    """``subprocess.Popen`` for a helper server that must not outlive this process.

    The kernel sends it SIGTERM when the thread that started it exits (``PR_SET_PDEATHSIG``), so
    only from the main thread (whose end is the process's); elsewhere, or off Linux, a plain Popen.
    """
    if _prctl is not None and threading.current_thread() is threading.main_thread():
        parent = os.getpid()
        kwargs["preexec_fn"] = lambda: _die_with(parent)
    return subprocess.Popen(args, **kwargs)
