"""chatrelay benchmarks: every figure against a baseline measured in the same run.

    python bench/run.py            # full run: bench/results/report.md + PNG plots (< 10 min)
    python bench/run.py --quick    # one line per figure (< 60 s), what CI runs

The app (uvicorn, one worker, pinned to CPU 0), the fake upstream and the load
generator (pinned to CPU 1) run as separate processes against DynamoDB Local. Absolute
times drift on this shared 2-core machine, so each figure is a difference or a ratio
against a baseline taken in the same run, with relay and baseline requests interleaved.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import platform
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from dataclasses import dataclass, field
from pathlib import Path

import httpx

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))
os.environ.setdefault("POWERTOOLS_LOG_LEVEL", "ERROR")
os.environ.setdefault("POWERTOOLS_METRICS_DISABLED", "true")

from chatrelay.auth.tokens import TokenService  # noqa: E402
from chatrelay.local import dynamodb_local  # noqa: E402
from chatrelay.local.table import ensure_table  # noqa: E402

RESULTS = ROOT / "bench" / "results"
TABLE = "chatrelay-bench"
SECRET = "bench-secret-" + "x" * 40
PY = sys.executable


def pct(values: list[float], q: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, int(q * len(ordered)))] if ordered else float("nan")


def ms(seconds: float) -> float:
    return seconds * 1000.0


@dataclass
class Figure:
    name: str
    goal: str
    value: str
    baseline: str
    met: bool | None
    note: str = ""


@dataclass
class Stack:
    ddb: dynamodb_local.DynamoDBLocal
    mock_url: str
    app_url: str
    app_pid: int
    processes: list[subprocess.Popen] = field(default_factory=list)

    def stop(self) -> None:
        for process in self.processes:
            process.terminate()
            try:
                process.wait(timeout=10)
            except subprocess.TimeoutExpired:
                process.kill()
        self.ddb.stop()


def _spawn(args: list[str], env: dict[str, str] | None = None, cpu: int | None = None) -> subprocess.Popen:
    log = tempfile.NamedTemporaryFile(prefix="bench-", suffix=".log", delete=False)  # noqa: SIM115
    if cpu is not None and shutil.which("taskset"):
        args = ["taskset", "-c", str(cpu), *args]
    return subprocess.Popen(args, env={**os.environ, **(env or {})}, stdout=log, stderr=subprocess.STDOUT)


def _wait(url: str, timeout: float = 30) -> float:
    started = time.perf_counter()
    while time.perf_counter() - started < timeout:
        try:
            httpx.get(url, timeout=0.5)
            return time.perf_counter() - started
        except httpx.HTTPError:
            time.sleep(0.005)
    raise TimeoutError(url)


def start_stack() -> Stack:
    ddb = dynamodb_local.start()
    ensure_table(dynamodb_local.local_client(ddb.endpoint), TABLE)
    mock_port, app_port = dynamodb_local.free_port(), dynamodb_local.free_port()
    mock = _spawn([PY, "-m", "chatrelay.mockllm", "--port", str(mock_port)], cpu=1)
    app_env = {
        "CHAT_TABLE": TABLE, "DYNAMODB_ENDPOINT_URL": ddb.endpoint, "CHATRELAY_TOKEN_SECRET": SECRET,
        "MOCK_LLM_BASE_URL": f"http://127.0.0.1:{mock_port}/v1", "AWS_ACCESS_KEY_ID": "local",
        "AWS_SECRET_ACCESS_KEY": "local", "AWS_REGION": "us-east-1", "POWERTOOLS_METRICS_DISABLED": "true",
        "POWERTOOLS_LOG_LEVEL": "ERROR", "CHATRELAY_SERVE_H5": "false",
    }
    app = _spawn([PY, "-m", "uvicorn", "chatrelay.api.asgi:app", "--port", str(app_port), "--no-access-log",
                  "--log-level", "warning", "--limit-concurrency", "5000", "--backlog", "4096"], app_env, cpu=0)
    stack = Stack(ddb, f"http://127.0.0.1:{mock_port}", f"http://127.0.0.1:{app_port}", app.pid, [app, mock])
    _wait(f"{stack.mock_url}/healthz")
    _wait(f"{stack.app_url}/healthz")
    return stack


def token(user: str) -> str:
    return TokenService(SECRET, issuer="chatrelay", audience="chatrelay-client", ttl_seconds=3600).issue(user)


# ---- one stream, either path, with arrival times of every content chunk -----------------

async def relay_stream(http: httpx.AsyncClient, stack: Stack, auth: dict, directive: str) -> list[float]:
    """Arrival times (perf_counter) of each answer delta through the relay; [0] is the send time."""
    times = [time.perf_counter()]
    async with http.stream("POST", f"{stack.app_url}/v1/chat/stream", headers=auth,
                           json={"prompt": f"bench [mock {directive}]"}) as response:
        buffer = b""
        async for piece in response.aiter_raw():
            buffer += piece
            *events, buffer = buffer.split(b"\n\n")
            now = time.perf_counter()
            times.extend(now for e in events if e.startswith(b"id: "))
    return times


async def direct_stream(http: httpx.AsyncClient, stack: Stack, directive: str) -> list[float]:
    """The same through the fake upstream directly (the baseline)."""
    times = [time.perf_counter()]
    body = {"model": "mock-gpt", "stream": True, "messages": [{"role": "user", "content": f"bench [mock {directive}]"}]}
    async with http.stream("POST", f"{stack.mock_url}/v1/chat/completions", json=body) as response:
        buffer = b""
        async for piece in response.aiter_raw():
            buffer += piece
            *events, buffer = buffer.split(b"\n\n")
            now = time.perf_counter()
            times.extend(now for e in events if b'"content":"' in e and b'"content":""' not in e)
    return times


# ---- figures ----------------------------------------------------------------------------

async def added_ttft(stack: Stack, n: int) -> tuple[list[float], list[float]]:
    auth = {"Authorization": f"Bearer {token('bench-ttft')}"}
    relay, direct = [], []
    async with httpx.AsyncClient(timeout=30) as http:
        for i in range(n):  # interleaved, so drift hits both paths alike
            r = await relay_stream(http, stack, auth, "tokens=3 ttft=0.02 interval=0")
            d = await direct_stream(http, stack, "tokens=3 ttft=0.02 interval=0")
            relay.append(r[1] - r[0])
            direct.append(d[1] - d[0])
    return relay, direct


async def inter_token(stack: Stack, streams: int, tokens: int, interval: float) -> tuple[list[float], list[float]]:
    """Per-chunk lateness: arrival gap minus the upstream's interval, relay and direct."""
    auth = {"Authorization": f"Bearer {token('bench-itl')}"}
    relay, direct = [], []
    directive = f"tokens={tokens} ttft=0 interval={interval}"
    async with httpx.AsyncClient(timeout=60) as http:
        for _ in range(streams):
            r = await relay_stream(http, stack, auth, directive)
            d = await direct_stream(http, stack, directive)
            relay += [b - a - interval for a, b in zip(r[1:], r[2:])]
            direct += [b - a - interval for a, b in zip(d[1:], d[2:])]
    return relay, direct


def rss_mb(pid: int) -> float:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1]) / 1024
    return float("nan")


async def concurrency_step(stack: Stack, streams: int, via_relay: bool, seconds: float = 3.0,
                           rss: list[float] | None = None) -> list[float]:
    """``streams`` concurrent streams at 20 tokens/s; per-chunk lateness beyond 50 ms.
    With ``rss``, the app's resident memory is sampled while the streams run."""
    interval, tokens = 0.05, int(seconds / 0.05)
    directive = f"tokens={tokens} ttft=0 interval={interval}"
    limits = httpx.Limits(max_connections=streams + 10, max_keepalive_connections=streams)
    auths = [{"Authorization": f"Bearer {token(f'bench-c{i % 50}')}"} for i in range(streams)]
    async with httpx.AsyncClient(timeout=120, limits=limits) as http:
        async def one(i: int) -> list[float]:
            await asyncio.sleep(i * seconds / streams / 2)  # ramp up over half the stream length
            t = await (relay_stream(http, stack, auths[i], directive) if via_relay else
                       direct_stream(http, stack, directive))
            return [b - a - interval for a, b in zip(t[1:], t[2:])]
        async def sample() -> None:
            while True:
                rss.append(rss_mb(stack.app_pid))
                await asyncio.sleep(0.1)

        sampler = asyncio.create_task(sample()) if rss is not None else None
        gaps = await asyncio.gather(*(one(i) for i in range(streams)))
        if sampler is not None:
            sampler.cancel()
    return [g for per_stream in gaps for g in per_stream]


def cpu_seconds(pid: int) -> float:
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def peak_rss_mb(pid: int) -> float:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmHWM:"):
            return int(line.split()[1]) / 1024
    return float("nan")


async def cpu_cost(stack: Stack, streams: int, tokens: int) -> tuple[float, float]:
    """App CPU ms per 1,000 relayed tokens (persistence included), and the mock's for the same tokens."""
    mock_pid = stack.processes[1].pid
    before, mock_before = cpu_seconds(stack.app_pid), cpu_seconds(mock_pid)
    auth = {"Authorization": f"Bearer {token('bench-cpu')}"}
    async with httpx.AsyncClient(timeout=60, limits=httpx.Limits(max_connections=100)) as http:
        await asyncio.gather(*(relay_stream(http, stack, auth, f"tokens={tokens} ttft=0 interval=0.01")
                               for _ in range(streams)))
    total = streams * tokens / 1000
    return (ms(cpu_seconds(stack.app_pid) - before) / total, ms(cpu_seconds(mock_pid) - mock_before) / total)


def dynamodb_cost(stack: Stack, checkpoint_interval: float) -> dict[str, dict[str, float]]:
    """Capacity units per turn, from ReturnConsumedCapacity, for a short and a long answer."""
    sys.path.insert(0, str(ROOT / "bench"))
    from capacity import measure_turns

    return measure_turns(stack.ddb.endpoint, TABLE, f"{stack.mock_url}/v1", SECRET, checkpoint_interval)


def cold_start(repeats: int) -> dict[str, float]:
    """Median seconds from process start to first served byte, entry points versus a bare app."""
    build = ROOT / ".aws-sam" / "build"
    py312 = next(iter(sorted(Path.home().glob(".pyenv/versions/3.12*/bin"))), None)
    runtime = ROOT / ".tools" / "lambda-runtime"
    built = (build / "template.yaml").is_file() and py312 is not None and runtime.is_dir()
    env = {"CHAT_TABLE": TABLE, "CHATRELAY_TOKEN_SECRET": SECRET, "AWS_REGION": "us-east-1",
           "AWS_ACCESS_KEY_ID": "local", "AWS_SECRET_ACCESS_KEY": "local", "POWERTOOLS_METRICS_DISABLED": "true",
           "CHATRELAY_SERVE_H5": "false"}
    if built:
        python = str(py312 / "python3.12")
        stream_dir, api_dir = build / "StreamFunction", build / "ApiFunction"
        path = f"{build / 'ChatRelayLayer' / 'python'}:{runtime}:{ROOT / 'bench'}"
    else:
        python = PY
        stream_dir, api_dir = ROOT / "functions" / "stream", ROOT / "functions" / "api"
        path = str(ROOT / "bench")
    env["PYTHONPATH"] = path

    def serve(module_dir: Path, app: str) -> float:
        port = dynamodb_local.free_port()
        started = time.perf_counter()
        process = subprocess.Popen([python, "-m", "uvicorn", "--port", str(port), app], cwd=module_dir,
                                   env={**os.environ, **env}, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        try:
            while True:
                try:
                    httpx.get(f"http://127.0.0.1:{port}/healthz", timeout=0.5)
                    return time.perf_counter() - started
                except httpx.HTTPError:
                    if time.perf_counter() - started > 30:
                        raise
                    time.sleep(0.002)
        finally:
            process.terminate()
            process.wait()

    def invoke(module_dir: Path, module: str) -> float:
        started = time.perf_counter()
        subprocess.run([python, str(ROOT / "bench" / "invoke_once.py"), module], cwd=module_dir, check=True,
                       env={**os.environ, **env}, stdout=subprocess.DEVNULL)
        return time.perf_counter() - started

    samples: dict[str, list[float]] = {k: [] for k in ("run.sh (uvicorn)", "bare uvicorn", "Mangum", "bare Mangum")}
    for _ in range(repeats):  # interleaved
        samples["run.sh (uvicorn)"].append(serve(stream_dir, "main:app"))
        samples["bare uvicorn"].append(serve(ROOT / "bench", "bare_app:app"))
        samples["Mangum"].append(invoke(api_dir, "app"))
        samples["bare Mangum"].append(invoke(ROOT / "bench", "bare_app"))
    result = {k: statistics.median(v) for k, v in samples.items()}
    result["built"] = 1.0 if built else 0.0
    return result


def import_time_ms(module: str, cwd: Path) -> float:
    run = subprocess.run([PY, "-X", "importtime", "-c", f"import {module}"], cwd=cwd, capture_output=True, text=True,
                         env={**os.environ, "CHATRELAY_DEV_AUTH": "1", "PYTHONPATH": str(ROOT / "bench")})
    for line in run.stderr.splitlines():
        parts = [p.strip() for p in line.split("|")]
        if len(parts) == 3 and parts[2] == module:
            return int(parts[1]) / 1000
    return float("nan")


def artifact_mb() -> float | None:
    build = ROOT / ".aws-sam" / "build"
    if not build.is_dir():
        return None
    total = sum(f.stat().st_size for d in ("ApiFunction", "ChatRelayLayer") for f in (build / d).rglob("*")
                if f.is_file() and "__pycache__" not in f.parts)  # bytecode left by local runs is not deployed
    return total / 1e6


# ---- report ------------------------------------------------------------------------------

def plot(ttft: tuple[list[float], list[float]], steps: list[tuple[int, float, float]]) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    relay, direct = ttft
    fig, ax = plt.subplots(figsize=(7, 4))
    ax.hist([ms(v) for v in direct], bins=60, alpha=0.6, label="direct to upstream")
    ax.hist([ms(v) for v in relay], bins=60, alpha=0.6, label="through the relay")
    ax.set_xlabel("time to first token (ms)")
    ax.set_ylabel("requests")
    ax.set_title("Time to first token: relay vs direct (same run, interleaved)")
    ax.legend()
    fig.tight_layout()
    fig.savefig(RESULTS / "ttft.png", dpi=110)
    fig, ax = plt.subplots(figsize=(7, 4))
    ax.plot([s[0] for s in steps], [s[1] for s in steps], "o-", label="through the relay")
    ax.plot([s[0] for s in steps], [s[2] for s in steps], "s--", label="direct to upstream")
    ax.axhline(50, color="red", linewidth=0.8, label="goal: 50 ms added")
    ax.set_xscale("log")
    ax.set_xlabel("concurrent streams (20 tokens/s each)")
    ax.set_ylabel("p99 chunk lateness (ms)")
    ax.set_title("p99 inter-token lateness vs concurrency (app on one core)")
    ax.legend()
    fig.tight_layout()
    fig.savefig(RESULTS / "concurrency.png", dpi=110)


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--quick", action="store_true", help="small samples, one line per figure, no report")
    args = parser.parse_args()
    quick = args.quick
    if hasattr(os, "sched_setaffinity") and os.cpu_count() and os.cpu_count() > 1:
        os.sched_setaffinity(0, {1})  # the load generator stays off the app's core
    figures: list[Figure] = []
    started = time.perf_counter()
    stack = start_stack()
    try:
        asyncio.run(added_ttft(stack, 20))  # warm-up
        relay, direct = asyncio.run(added_ttft(stack, 30 if quick else 500))
        added = {q: ms(pct(relay, q) - pct(direct, q)) for q in (0.5, 0.95, 0.99)}
        figures.append(Figure(
            "Added time to first token", "p50 ≤ 2 ms, p99 ≤ 10 ms",
            f"p50 {added[0.5]:+.1f} ms, p95 {added[0.95]:+.1f} ms, p99 {added[0.99]:+.1f} ms",
            f"direct to the fake upstream: p50 {ms(pct(direct, .5)):.1f} ms, p99 {ms(pct(direct, .99)):.1f} ms "
            f"(n={len(direct)} each)", added[0.5] <= 2 and added[0.99] <= 10,
            "fixed in this run's code: the upstream request is now sent while the turn's DynamoDB write is in "
            "flight (sequential, the relay added ~20 ms at p50 on DynamoDB Local). What remains is the relay's own "
            "work (one more loopback hop, JSON decode and re-encode, task scheduling) on a machine whose 2 cores "
            "also run the fake upstream, the load generator and DynamoDB Local"))

        itl_relay, itl_direct = asyncio.run(inter_token(stack, 4 if quick else 40, 30, 0.01))
        added_itl = ms(pct(itl_relay, 0.99) - pct(itl_direct, 0.99))
        figures.append(Figure(
            "Added inter-token latency", "p99 ≤ 2 ms", f"p99 {added_itl:+.2f} ms (p50 "
            f"{ms(pct(itl_relay, .5) - pct(itl_direct, .5)):+.2f} ms)",
            f"direct chunk lateness p99 {ms(pct(itl_direct, .99)):.2f} ms over {len(itl_direct)} chunks",
            added_itl <= 2,
            "per chunk the relay creates a task and an asyncio.wait for the next upstream read (streaming/relay.py), "
            "passes the event through a queue (run_detached) and sse-starlette's locked send; the p99 tail is "
            "scheduling noise from the other processes on the 2 cores (p50 adds nothing)"))

        levels = [100] if quick else [50, 100, 200, 500, 1000]
        steps = []
        rss_at_100: list[float] = []
        for level in levels:
            r = asyncio.run(concurrency_step(stack, level, True, 2.0 if quick else 4.0,
                                             rss_at_100 if level == 100 else None))
            d = asyncio.run(concurrency_step(stack, level, False, 2.0 if quick else 4.0))
            steps.append((level, ms(pct(r, 0.99)), ms(pct(d, 0.99))))
        # A level counts only while the baseline itself keeps up: past that the load
        # generator (one Python process on the other core, with the fake upstream) is the limit.
        valid = [s for s in steps if s[2] <= 50]
        ok = [s[0] for s in valid if s[1] - s[2] <= 50]
        figures.append(Figure(
            "Concurrent streams on one core", "≥ 1,000 streams with p99 added lateness ≤ 50 ms",
            f"highest level meeting it: {max(ok) if ok else 0}; p99 relay / direct lateness: " + ", ".join(
                f"{s[0]}: {s[1]:.0f}/{s[2]:.0f} ms" for s in steps),
            "the same streams direct to the upstream at each level", bool(ok) and max(ok) >= 1000,
            "app pinned to CPU 0; the fake upstream, the load generator and DynamoDB Local share the other core "
            "(Java also floats); levels where the direct baseline is itself late by > 50 ms do not count. What "
            "limits the relay: CPU. At the measured CPU cost per 1,000 tokens one core saturates at a few thousand "
            "tokens/s, i.e. a few hundred streams at 20 tokens/s. Next fixes, in order of expected gain: read the "
            "upstream in one long-lived task per stream instead of a task + asyncio.wait per chunk; write several "
            "ready chunks in one send; run on Python 3.12+ (the Lambda runtime) with uvloop/httptools"))

        app_ms, mock_ms = asyncio.run(cpu_cost(stack, 20 if quick else 100, 50 if quick else 200))
        figures.append(Figure(
            "CPU per 1,000 relayed tokens", "(no goal: cost)", f"{app_ms:.0f} CPU ms (app, persistence included)",
            f"the fake upstream spent {mock_ms:.0f} CPU ms producing them", None))

        rss = max(rss_at_100) if rss_at_100 else float("nan")
        figures.append(Figure("Peak RSS of the app", "≤ 90 MB under 100 streams", f"{rss:.0f} MB with 100 streams",
                              f"peak over the whole run (up to {levels[-1]} streams): {peak_rss_mb(stack.app_pid):.0f} MB",
                              rss <= 90))

        capacity = dynamodb_cost(stack, 1.0)
        figures.append(Figure(
            "DynamoDB capacity per turn", "(no goal: cost)",
            "; ".join(f"{k}: {v['write']:.1f} WCU, {v['read']:.1f} RCU" for k, v in capacity.items()),
            "ReturnConsumedCapacity=TOTAL summed over every call of the turn", None))
    finally:
        stack.stop()

    cold = cold_start(1 if quick else 7)
    which = "built artifacts (.aws-sam/build, python3.12)" if cold.pop("built") else "source tree (not built)"
    ratio_stream = cold["run.sh (uvicorn)"] / cold["bare uvicorn"]
    ratio_api = cold["Mangum"] / cold["bare Mangum"]
    figures.append(Figure(
        "Cold start to first byte", "≤ 1.5× a bare FastAPI app",
        f"run.sh/uvicorn {ms(cold['run.sh (uvicorn)']):.0f} ms ({ratio_stream:.2f}×); "
        f"Mangum {ms(cold['Mangum']):.0f} ms ({ratio_api:.2f}×)",
        f"bare FastAPI hello app: uvicorn {ms(cold['bare uvicorn']):.0f} ms, Mangum {ms(cold['bare Mangum']):.0f} ms; "
        f"{which}", ratio_stream <= 1.5 and ratio_api <= 1.5,
        "import cost: the app imports boto3/botocore (about 200 ms), aws-lambda-powertools, pydantic-settings, "
        "httpx and sse-starlette at start-up; the bare app imports FastAPI only. Next fix: import boto3 and build "
        "the DynamoDB client on the first storage call, and import Powertools' metrics lazily"))
    imports = import_time_ms("main", ROOT / "functions" / "stream")
    bare_imports = import_time_ms("bare_app", ROOT / "bench")
    figures.append(Figure("Import time (python -X importtime)", "(see cold start)",
                          f"main: {imports:.0f} ms", f"bare_app: {bare_imports:.0f} ms", None))
    size = artifact_mb()
    figures.append(Figure("API function + layers, unzipped", "≤ 20 MB",
                          f"{size:.1f} MB" if size is not None else "not built (run make build)",
                          ".aws-sam/build/ApiFunction + ChatRelayLayer", None if size is None else size <= 20))

    for f in figures:
        mark = {True: "met", False: "MISSED", None: "-"}[f.met]
        print(f"{f.name}: {f.value} | baseline: {f.baseline} | goal: {f.goal} [{mark}]")
    elapsed = time.perf_counter() - started
    print(f"bench finished in {elapsed:.0f} s")
    if quick:
        return
    RESULTS.mkdir(parents=True, exist_ok=True)
    plot((relay, direct), steps)
    lines = [
        "# chatrelay benchmark report", "",
        f"Machine: {platform.platform()}, {os.cpu_count()} cores, Python {platform.python_version()}; "
        f"run took {elapsed:.0f} s. Every figure is measured against its baseline in the same run.", "",
        "| figure | goal | measured | baseline (same run) | goal met |", "|---|---|---|---|---|",
        *[f"| {f.name} | {f.goal} | {f.value} | {f.baseline} | {({True: 'yes', False: '**no**', None: '-'})[f.met]} |"
          for f in figures],
        "", "Notes:", *[f"- {f.name}: {f.note}" for f in figures if f.note], "",
        "![time to first token](ttft.png)", "", "![p99 vs concurrency](concurrency.png)", "",
    ]
    (RESULTS / "report.md").write_text("\n".join(lines), encoding="utf-8")
    (RESULTS / "raw.json").write_text(json.dumps({"figures": [f.__dict__ for f in figures], "steps": steps}, indent=1))


if __name__ == "__main__":
    main()
