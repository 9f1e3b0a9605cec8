"""Sampling profiles of a running process with py-spy (bench only), summarised for the report.

``record(pid, seconds)`` attaches py-spy to the app while a workload runs and keeps the
collapsed stacks; ``summarise`` turns them into shares of the samples per subsystem
(a sample counts for a subsystem when one of its frames is on the stack) and the
functions with the most self samples. py-spy needs ptrace; without it the report
says so instead of failing.
"""

from __future__ import annotations

import gzip
import shutil
import subprocess
import sys
import tempfile
from collections import Counter
from pathlib import Path

# (label, substrings of a frame's "function (file:line)" text); first match wins for a stack.
SUBSYSTEMS = [
    ("DynamoDB calls (chatrelay/aws.py on the loop; botocore only if injected)",
     ("botocore/", "boto3/", "urllib3/", "store/table.py", "store/dynamodb.py", "chatrelay/aws.py")),
    ("worker-thread hand-off (anyio to_thread, threading)", ("threading.py", "concurrent/", "to_thread")),
    ("reading the upstream (chatrelay/http1.py, httpx's client, SSE decode, provider)",
     ("chatrelay/http1.py", "httpcore/", "httpx/", "providers/")),
    ("the relay (streaming/relay.py: driver task, outbox)", ("streaming/relay.py",)),
    ("writing SSE to the client (streaming/response.py)", ("sse_starlette/", "streaming/response.py")),
    ("HTTP server and framework (uvicorn, starlette, fastapi)", ("uvicorn/", "starlette/", "fastapi/")),
    ("logging and metrics (powertools, logging)", ("aws_lambda_powertools/", "logging/")),
]


def py_spy() -> str | None:
    candidate = Path(sys.executable).with_name("py-spy")
    return str(candidate) if candidate.exists() else shutil.which("py-spy")


def record(pid: int, seconds: float, out: Path, rate: int = 250) -> subprocess.Popen | None:
    """Start recording ``pid`` for ``seconds`` (returns the py-spy process, or None without py-spy)."""
    exe = py_spy()
    if exe is None:
        return None
    log = Path(tempfile.gettempdir(), out.name + ".py-spy.log").open("w")  # noqa: SIM115 (py-spy writes it after we return)
    # --gil: only the thread holding the GIL is sampled, so the samples are where the process's
    # Python CPU time goes (idle threads and a loop waiting in epoll are not counted).
    return subprocess.Popen([exe, "record", "--pid", str(pid), "--duration", str(max(1, round(seconds))),
                             "--rate", str(rate), "--gil", "--format", "raw", "--nonblocking", "-o", str(out)],
                            stdout=log, stderr=subprocess.STDOUT)


def finish(process: subprocess.Popen | None, out: Path, timeout: float = 30) -> str | None:
    """Wait for py-spy; the reason when there is no profile."""
    if process is None:
        return "py-spy not installed (pip install -e '.[bench]')"
    try:
        process.wait(timeout=timeout)
    except subprocess.TimeoutExpired:
        process.kill()
        return "py-spy did not finish"
    if not out.is_file() or out.stat().st_size == 0:
        log = Path(tempfile.gettempdir(), out.name + ".py-spy.log")
        text = log.read_text(errors="replace").strip().splitlines() if log.is_file() else []
        return "py-spy failed: " + (text[-1] if text else "no output")
    return None


def compress(path: Path) -> Path:
    """Gzip a profile (collapsed stacks, for flamegraph tools) next to itself."""
    target = path.with_suffix(path.suffix + ".gz")
    with path.open("rb") as src, gzip.open(target, "wb") as dst:
        shutil.copyfileobj(src, dst)
    path.unlink()
    return target


def _stacks(path: Path) -> list[tuple[list[str], int]]:
    stacks = []
    for line in path.read_text(errors="replace").splitlines():
        stack, _, count = line.rpartition(" ")
        if stack and count.isdigit():
            stacks.append((stack.split(";"), int(count)))
    return stacks


# Costs named in the report (share of the samples with a matching frame anywhere on the stack).
NAMED = {
    "httpx's connection pool (httpcore _assign_requests_to_connections)": "_assign_requests_to_connections",
    "anyio cancel scopes (httpcore's per-read fail_after)": "CancelScope",
    "the lean HTTP/1.1 transport (chatrelay/http1.py)": "chatrelay/http1.py",
    "FastAPI request handling (routing, dependencies, validation)": "fastapi/routing.py",
    "DynamoDB client (chatrelay/aws.py)": "chatrelay/aws.py",
}


def summarise(path: Path, top: int = 8) -> dict:
    stacks = _stacks(path)
    total = sum(c for _, c in stacks) or 1
    shares: Counter[str] = Counter()
    selfs: Counter[str] = Counter()
    for frames, count in stacks:
        label = "other (event loop internals, stdlib)"
        for name, needles in SUBSYSTEMS:
            if any(n in frame for frame in frames for n in needles):
                label = name
                break
        shares[label] += count
        leaf = frames[-1]
        func, _, where = leaf.partition(" (")
        selfs[f"{func} ({where.rsplit(':', 1)[0]})"] += count
    named = {label: 100.0 * sum(c for frames, c in stacks if any(needle in f for f in frames)) / total
             for label, needle in NAMED.items()}
    return {
        "samples": total,
        "named": named,
        "subsystems": [(k, 100.0 * v / total) for k, v in shares.most_common()],
        "self": [(k, 100.0 * v / total) for k, v in selfs.most_common(top)],
    }
