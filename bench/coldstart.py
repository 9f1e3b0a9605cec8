"""Cold start of the Lambda entry points against a bare FastAPI app, import time, artifact size.

The entry points are started as Lambda starts them: ``run.sh`` (what Lambda Web Adapter
runs: ``exec python main.py``, which starts uvicorn) with the layer on PYTHONPATH, timed from
process spawn to the first byte of ``GET /healthz``; and the Mangum handler, imported by
a fresh interpreter and invoked with an API Gateway event, timed from spawn to the
handler's return. The baseline is a bare FastAPI hello app started the same way, by the
same interpreter with the same PYTHONPATH (so with the same bytecode), interleaved with the
app's runs. The built artifacts in ``.aws-sam/build`` (python3.12, as deployed) are used when
present, else the source tree; ``Target.label`` says which.

Bytecode: ``make build`` ships the whole layer and the functions compiled for python3.12
(``compileall --invalidation-mode unchecked-hash``); a deployed layer is read-only, so
children run with ``PYTHONDONTWRITEBYTECODE=1`` to keep the artifacts exactly as shipped.

Other builds can be measured in the same interleaved runs, for a before/after:
``CHATRELAY_BENCH_COMPARE="before=/path/to/.aws-sam/build"`` (``label=path`` pairs separated
by ``;``), e.g. a copy of an earlier commit's ``.aws-sam/build``.

``section()`` measures everything and returns the report's figures (``bench/run.py`` prints
them), what the raw data holds, and what limits a missed goal.
"""

from __future__ import annotations

import io
import json
import os
import re
import shutil
import socket
import statistics
import subprocess
import sys
import time
import zipfile
from dataclasses import dataclass, field
from pathlib import Path

from chatrelay_dev.local.processes import stop_process

ROOT = Path(__file__).resolve().parents[1]
BENCH = ROOT / "bench"
BUILD = ROOT / ".aws-sam" / "build"
RUNTIME = ROOT / ".tools" / "lambda-runtime"
RATIO_GOAL = 1.25
SIZE_GOAL_MB = 50.0

APP_ENV = {
    # What template.yaml sets (the token secret is given directly: in AWS it is read from SSM at start-up).
    "CHAT_TABLE": "chatrelay-bench", "CHATRELAY_TOKEN_SECRET": "bench-secret-" + "x" * 40,
    "CHATRELAY_SERVE_H5": "false", "POWERTOOLS_SERVICE_NAME": "chatrelay", "POWERTOOLS_METRICS_NAMESPACE": "ChatRelay",
    "POWERTOOLS_LOG_LEVEL": "INFO", "POWERTOOLS_TRACE_DISABLED": "true", "POWERTOOLS_METRICS_DISABLED": "false",
    "AWS_LWA_SNAPSTART_BEFORE_CHECKPOINT_PATH": "/_lwa/snapstart/before",
    "AWS_LWA_SNAPSTART_AFTER_RESTORE_PATH": "/_lwa/snapstart/after",
    "AWS_REGION": "us-east-1",
    "AWS_ACCESS_KEY_ID": "local", "AWS_SECRET_ACCESS_KEY": "local", "PYTHONDONTWRITEBYTECODE": "1",
}


@dataclass
class Target:
    label: str
    built: bool
    bin_dir: Path
    """First on PATH: has the ``python`` that run.sh execs."""
    python: Path
    stream_dir: Path
    api_dir: Path
    pythonpath: str
    runtime_dir: str


def _layer_dirs(function: str, build: Path = BUILD) -> tuple[list[Path], list[str]]:
    """Local layer directories of a built function, and the external (ARN) layers."""
    from chatrelay_dev.local.table import load_template

    template = load_template(build / "template.yaml")
    layers = template["Resources"][function]["Properties"].get("Layers") or []
    layers += ((template.get("Globals") or {}).get("Function") or {}).get("Layers") or []
    local, external = [], []
    for layer in layers:
        if isinstance(layer, dict) and "Ref" in layer and (build / layer["Ref"]).is_dir():
            local.append(build / layer["Ref"])
        else:
            external.append(json.dumps(layer)[:60])
    return local, external


def _python312() -> Path | None:
    pyenv = Path(os.environ.get("PYENV_ROOT", Path.home() / ".pyenv")) / "versions"
    found = sorted(pyenv.glob("3.12*/bin/python3.12"))
    if found:
        return found[-1]
    which = shutil.which("python3.12")
    return Path(which) if which else None


def _bin_dir(work: Path, python: Path) -> Path:
    bin_dir = work / "bin"
    bin_dir.mkdir(exist_ok=True)
    link = bin_dir / "python"
    if not link.exists():
        link.symlink_to(python)
    return bin_dir


def built_target(work: Path, build: Path, label: str) -> Target:
    python = _python312()
    assert python is not None, "python3.12 is required"
    layers, _ = _layer_dirs("ApiFunction", build)
    return Target(label, True, _bin_dir(work, python), python, build / "StreamFunction", build / "ApiFunction",
                  ":".join(str(d / "python") for d in layers), str(RUNTIME))


def resolve_target(work: Path) -> Target:
    """The built artifacts when they can be run, else the source tree (and why)."""
    reason = None
    if not (BUILD / "template.yaml").is_file():
        reason = "not built: no .aws-sam/build (make build)"
    elif not ((BUILD / "StreamFunction" / "run.sh").is_file() and (BUILD / "ApiFunction" / "app.py").is_file()):
        reason = "not built: .aws-sam/build lacks StreamFunction/run.sh or ApiFunction/app.py"
    elif _python312() is None:
        reason = "built, but no python3.12 here to run it"
    elif not (RUNTIME / "boto3").is_dir():
        reason = "built, but no Lambda runtime stand-in (.tools/lambda-runtime with boto3; make build)"
    if reason is None:
        layers, _ = _layer_dirs("ApiFunction")
        if not layers:
            reason = "built, but no local layer found for ApiFunction"
    if reason is None:
        return built_target(work, BUILD, "built artifacts (.aws-sam/build, python3.12, bytecode as shipped)")
    venv_bin = Path(sys.executable).parent
    return Target(f"source tree ({reason})", False, venv_bin, Path(sys.executable), ROOT / "functions" / "stream",
                  ROOT / "functions" / "api", str(ROOT / "layers" / "chatrelay"), "")


def compare_targets(work: Path) -> list[Target]:
    """The other builds named by CHATRELAY_BENCH_COMPARE (``label=path;...``)."""
    targets = []
    for item in filter(None, os.environ.get("CHATRELAY_BENCH_COMPARE", "").split(";")):
        label, _, path = item.partition("=")
        build = Path(path)
        if (build / "template.yaml").is_file():
            targets.append(built_target(work, build, label.strip()))
    return targets


def bare_stream_dir(work: Path) -> Path:
    """run.sh next to a main.py that is the bare app: the baseline starts exactly as the function does."""
    bare = work / "bare-stream"
    bare.mkdir(exist_ok=True)
    shutil.copy(ROOT / "functions" / "stream" / "run.sh", bare / "run.sh")
    shutil.copy(BENCH / "bare_app.py", bare / "main.py")
    return bare


def _env(target: Target, fn_dir: Path, pythonpath: str | None = None, **extra: str) -> dict[str, str]:
    return {**os.environ, **APP_ENV, "PATH": f"{target.bin_dir}:{os.environ.get('PATH', '')}",
            "PYTHONPATH": pythonpath or target.pythonpath, "LAMBDA_RUNTIME_DIR": target.runtime_dir,
            "LAMBDA_TASK_ROOT": str(fn_dir), **extra}


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def _first_byte(port: int, started: float, timeout: float) -> float:
    request = f"GET /healthz HTTP/1.1\r\nHost: 127.0.0.1:{port}\r\nConnection: close\r\n\r\n".encode()
    while True:
        try:
            with socket.create_connection(("127.0.0.1", port), timeout=timeout) as sock:
                sock.sendall(request)
                if sock.recv(1):
                    return time.monotonic()
        except OSError:
            pass
        if time.monotonic() - started > timeout:
            raise TimeoutError("no answer on /healthz")
        time.sleep(0.002)


def _vm(pid: int, key: str) -> float:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith(key + ":"):
            return int(line.split()[1]) / 1024
    return float("nan")


def _taskset(cpu: int | None) -> list[str]:
    return ["taskset", "-c", str(cpu)] if cpu is not None and shutil.which("taskset") else []


# A first chat request without a token: refused (401) by the route's own dependency, so it builds
# the route and its request model (api/deferred_route.py) but needs no DynamoDB or upstream.
_CHAT = b'{"prompt": "hi"}'
_CHAT_REQUEST = (b"POST /v1/chat/stream HTTP/1.1\r\nHost: 127.0.0.1\r\nContent-Type: application/json\r\n"
                 b"Content-Length: " + str(len(_CHAT)).encode() + b"\r\nConnection: close\r\n\r\n" + _CHAT)


def _request_ms(port: int, request: bytes) -> float:
    started = time.perf_counter()
    with socket.create_connection(("127.0.0.1", port), timeout=10) as sock:
        sock.sendall(request)
        sock.recv(1)
    return (time.perf_counter() - started) * 1000


def serve(target: Target, fn_dir: Path, log: Path, pythonpath: str | None = None, cpu: int | None = 0,
          timeout: float = 60, chats: list[tuple[float, float]] | None = None) -> tuple[float, float]:
    """run.sh from ``fn_dir``: seconds from spawn to the first byte of /healthz, and peak RSS (MB).
    With ``chats``: then two chat requests (``_CHAT_REQUEST``), ms to the first byte of each, appended."""
    port = _free_port()
    # PORT too: the run.sh of an older build (CHATRELAY_BENCH_COMPARE) reads that one.
    env = _env(target, fn_dir, pythonpath, AWS_LWA_PORT=str(port), PORT=str(port))
    with log.open("a") as out:
        started = time.monotonic()
        process = subprocess.Popen([*_taskset(cpu), "bash", str(fn_dir / "run.sh")], cwd=fn_dir, env=env,
                                   stdout=out, stderr=subprocess.STDOUT)
        try:
            first = _first_byte(port, started, timeout)
            if chats is not None:
                chats.append((_request_ms(port, _CHAT_REQUEST), _request_ms(port, _CHAT_REQUEST)))
            return first - started, _vm(process.pid, "VmHWM")
        finally:
            stop_process(process)


def invoke(target: Target, fn_dir: Path, module: str, log: Path, pythonpath: str | None = None,
           cpu: int | None = 0) -> tuple[float, float]:
    """A fresh interpreter imports the Mangum handler and answers one event: seconds from spawn
    to the handler's return, and peak RSS (MB)."""
    path = f"{pythonpath or target.pythonpath}:{target.runtime_dir}".rstrip(":")
    env = _env(target, fn_dir, path)
    with log.open("a") as err:
        started = time.monotonic_ns()
        run = subprocess.run([*_taskset(cpu), str(target.python), str(BENCH / "invoke_once.py"), module], cwd=fn_dir,
                             env=env, stdout=subprocess.PIPE, stderr=err, text=True, timeout=120, check=True)
    answer = json.loads(run.stdout.strip().splitlines()[-1])
    return (answer["done_ns"] - started) / 1e9, answer["maxrss_kb"] / 1024


def _drop_page_cache() -> bool:
    """Empty the kernel's page cache (root only), so the next start reads every file from disk."""
    try:
        os.sync()
        Path("/proc/sys/vm/drop_caches").write_text("3\n")
    except OSError:
        return False
    return True


def starts_from_disk(target: Target, bare: Path, log: Path, runs: int = 5) -> dict[str, list[float]]:
    """ms to the first byte of each entry point and its bare app, the page cache dropped before
    each start (interleaved); empty where the cache cannot be dropped (not root)."""
    starts = {
        "runsh": lambda: serve(target, target.stream_dir, log)[0], "runsh_bare": lambda: serve(target, bare, log)[0],
        "mangum": lambda: invoke(target, target.api_dir, "app", log)[0],
        "mangum_bare": lambda: invoke(target, BENCH, "bare_app", log)[0],
    }
    found: dict[str, list[float]] = {k: [] for k in starts}
    for _ in range(runs):
        for name, start in starts.items():
            if not _drop_page_cache():
                return {}
            found[name].append(start() * 1000)
    return found


# ---- import time ---------------------------------------------------------------------------

# Imports the app makes (or made) beyond the bare app, cumulative ms at their first import.
WATCH = ("httpx", "pydantic_settings", "sse_starlette", "aws_lambda_powertools", "jwt", "pydantic.v1", "yaml",
         "botocore", "boto3", "mangum", "uvicorn", "chatrelay.aws", "chatrelay.settings", "chatrelay.providers",
         "chatrelay.store.table", "chatrelay.api.routes_auth")
_IMPORT_LINE = re.compile(r"import time:\s+(\d+) \|\s+(\d+) \|( *)(\S+)")


def _import_run(target: Target, fn_dir: Path, module: str) -> dict[str, tuple[int, int]]:
    path = f"{target.pythonpath}:{target.runtime_dir}".rstrip(":")
    run = subprocess.run([*_taskset(0), str(target.python), "-X", "importtime", "-c", f"import {module}"], cwd=fn_dir,
                         env=_env(target, fn_dir, path), capture_output=True, text=True, timeout=120, check=False)
    found: dict[str, tuple[int, int]] = {}
    for line in run.stderr.splitlines():
        match = _IMPORT_LINE.match(line)
        if match:
            found.setdefault(match[4], (int(match[1]), int(match[2])))
    return found


def import_time(target: Target, fn_dir: Path, module: str, runs: int = 5) -> dict:
    """``python -X importtime -c 'import <module>'`` ``runs`` times: the median total (ms), self ms
    per top-level package (the median over runs of each package's sum), and the median cumulative
    ms of the ``WATCH`` imports (absent: not imported)."""
    totals, packages, watch = [], {}, {}
    for _ in range(runs):
        found = _import_run(target, fn_dir, module)
        per: dict[str, float] = {}
        for name, (self_us, _) in found.items():
            per[name.split(".")[0]] = per.get(name.split(".")[0], 0.0) + self_us / 1000
        for package, ms in per.items():
            packages.setdefault(package, []).append(ms)
        for name in WATCH:
            if name in found:
                watch.setdefault(name, []).append(found[name][1] / 1000)
        if module in found:
            totals.append(found[module][1] / 1000)
    median = {k: statistics.median(v + [0.0] * (runs - len(v))) for k, v in packages.items()}
    return {"total": statistics.median(totals) if totals else float("nan"),
            "packages": dict(sorted(median.items(), key=lambda kv: -kv[1])),
            "watch": {k: statistics.median(v) for k, v in watch.items()}}


def beyond(app: dict, bare: dict, floor: float = 1.0) -> dict[str, float]:
    """Self ms per package that the app spends beyond the bare app (``floor`` ms or more)."""
    extra = {k: v - bare["packages"].get(k, 0.0) for k, v in app["packages"].items()}
    return {k: v for k, v in sorted(extra.items(), key=lambda kv: -kv[1]) if v >= floor}


def startup_breakdown(target: Target) -> dict[str, float] | None:
    path = f"{target.pythonpath}:{target.runtime_dir}".rstrip(":")
    run = subprocess.run([str(target.python), str(BENCH / "startup_probe.py")], cwd=target.stream_dir,
                         env=_env(target, target.stream_dir, path), capture_output=True, text=True, timeout=120,
                         check=False)
    try:
        return json.loads(run.stdout.strip().splitlines()[-1])
    except (ValueError, IndexError):
        return None


# ---- artifacts --------------------------------------------------------------------------------


def _shipped(directory: Path) -> list[Path]:
    # What `make build` ships: bytecode for python3.12 only (a local run under another Python
    # could leave its own, which the next `sam build` drops).
    return [f for f in sorted(directory.rglob("*")) if f.is_file()
            and not (f.suffix == ".pyc" and ".cpython-" in f.name and ".cpython-312." not in f.name)]


def _sizes(directory: Path) -> tuple[float, float]:
    """MB unzipped and zipped (deflate, as `sam package` zips a function or a layer)."""
    files = _shipped(directory)
    buffer = io.BytesIO()
    with zipfile.ZipFile(buffer, "w", zipfile.ZIP_DEFLATED) as archive:
        for path in files:
            archive.write(path, path.relative_to(directory))
    return sum(f.stat().st_size for f in files) / 1e6, buffer.tell() / 1e6


def artifact_sizes(build: Path = BUILD) -> dict[str, dict] | None:
    """Each built function with its local layers: MB unzipped and zipped, per part and in all."""
    if not (build / "template.yaml").is_file():
        return None
    sizes = {}
    for function in ("ApiFunction", "StreamFunction"):
        if not (build / function).is_dir():
            continue
        layers, external = _layer_dirs(function, build)
        parts = {d.name: _sizes(d) for d in [build / function, *layers]}
        sizes[function] = {"parts": parts, "unzipped": sum(u for u, _ in parts.values()),
                           "zipped": sum(z for _, z in parts.values()), "external": external}
    return sizes


# ---- the report's section --------------------------------------------------------------------------


@dataclass
class Section:
    figures: list[dict] = field(default_factory=list)
    """Each: name, goal, value, baseline, met, notes (``bench/run.py``'s Figure)."""
    raw: dict = field(default_factory=dict)
    limits: list[str] = field(default_factory=list)
    """What limits the cold-start goal when it is missed."""


def _ms(seconds: float) -> str:
    return f"{seconds * 1000:.0f} ms"


def _packages(packages: dict[str, float], top: int = 10) -> str:
    return ", ".join(f"{k} {v:.0f}" for k, v in list(packages.items())[:top])


def section(work: Path, quick: bool, runs: int | None = None) -> Section:
    """Cold starts (interleaved with the bare app and any compared build), import time, RSS, sizes.

    ``runs``: cold starts of each kind (default 7, 1 when ``quick``); import-time runs follow it."""
    out = Section()
    target = resolve_target(work)
    others = compare_targets(work) if target.built and not quick else []
    log = work / "coldstart.log"
    bare = bare_stream_dir(work)
    names = ["runsh", "runsh_bare", "mangum", "mangum_bare"]
    samples: dict[str, list[tuple[float, float]]] = {k: [] for k in names}
    for other in others:
        samples[f"runsh@{other.label}"], samples[f"mangum@{other.label}"] = [], []
    cold_runs = runs or (1 if quick else 7)
    # One start of each first, not counted: the first start after a build reads the layer into the
    # page cache (measured: +70 ms), and it would fall on whichever is started first.
    serve(target, target.stream_dir, log)
    serve(target, bare, log)
    invoke(target, target.api_dir, "app", log)
    invoke(target, BENCH, "bare_app", log)
    for other in others:  # with its own layer, as counted below
        serve(other, other.stream_dir, log)
        invoke(other, other.api_dir, "app", log)
    chats: list[tuple[float, float]] = []
    for _ in range(cold_runs):  # interleaved
        samples["runsh"].append(serve(target, target.stream_dir, log, chats=chats))
        samples["runsh_bare"].append(serve(target, bare, log))
        for other in others:
            samples[f"runsh@{other.label}"].append(serve(other, other.stream_dir, log))
        samples["mangum"].append(invoke(target, target.api_dir, "app", log))
        samples["mangum_bare"].append(invoke(target, BENCH, "bare_app", log))
        for other in others:
            samples[f"mangum@{other.label}"].append(invoke(other, other.api_dir, "app", log))
    cold = {k: statistics.median(s for s, _ in v) for k, v in samples.items()}
    rss = {k: max(r for _, r in v) for k, v in samples.items()}
    ratio = {"runsh": cold["runsh"] / cold["runsh_bare"], "mangum": cold["mangum"] / cold["mangum_bare"]}
    out.raw["cold"] = {"target": target.label, "samples": samples, "median_s": cold, "ratio": ratio}
    from_disk = {} if quick else starts_from_disk(target, bare, log)
    if from_disk:
        out.raw["cold"]["from_disk_ms"] = from_disk
    first_chat = statistics.median(c for c, _ in chats)
    next_chat = statistics.median(c for _, c in chats)
    out.raw["cold"]["chat_ms"] = chats
    notes = [f"After /healthz, the first POST /v1/chat/stream (refused 401 without a token; it builds the route "
             f"and its request model, api/deferred_route.py) took {first_chat:.1f} ms to its first byte, the next "
             f"{next_chat:.1f} ms (medians): start-up builds no route, a route is built by its first request."]
    if from_disk:
        disk = {k: statistics.median(v) for k, v in from_disk.items()}
        notes.append(
            f"With the page cache dropped before each start (every file read from disk, as by an instance that "
            f"has never read its layer): run.sh {disk['runsh']:.0f} ms = {disk['runsh'] / disk['runsh_bare']:.2f}×, "
            f"Mangum {disk['mangum']:.0f} ms = {disk['mangum'] / disk['mangum_bare']:.2f}× (bare app "
            f"{disk['runsh_bare']:.0f} / {disk['mangum_bare']:.0f} ms; median of {len(from_disk['runsh'])}, "
            "interleaved); how much disk reads add depends on the storage.")
    for other in others:
        r_runsh = cold[f"runsh@{other.label}"] / cold["runsh_bare"]
        r_mangum = cold[f"mangum@{other.label}"] / cold["mangum_bare"]
        notes.append(f"Compared build {other.label!r} ({other.stream_dir.parent}), same runs: run.sh "
                     f"{_ms(cold[f'runsh@{other.label}'])} = {r_runsh:.2f}×, Mangum "
                     f"{_ms(cold[f'mangum@{other.label}'])} = {r_mangum:.2f}× the same bare app.")
    out.figures.append({
        "name": "Cold start to first byte", "goal": f"≤ {RATIO_GOAL}× a bare FastAPI app (both with bytecode)",
        "value": f"run.sh (uvicorn) {_ms(cold['runsh'])} = {ratio['runsh']:.2f}×; Mangum handler "
              f"{_ms(cold['mangum'])} = {ratio['mangum']:.2f}×",
        "baseline": f"bare FastAPI hello app started the same way from the same layer: uvicorn "
                 f"{_ms(cold['runsh_bare'])}, Mangum {_ms(cold['mangum_bare'])}; {target.label}; median of "
                 f"{len(samples['runsh'])}, interleaved",
        "met": ratio["runsh"] <= RATIO_GOAL and ratio["mangum"] <= RATIO_GOAL, "notes": notes})

    runs = min(runs, 5) if runs else (1 if quick else 5)
    imports = {"main": import_time(target, target.stream_dir, "main", runs),
               "bare": import_time(target, bare, "main", runs),
               "app": import_time(target, target.api_dir, "app", runs),
               "bare_app": import_time(target, BENCH, "bare_app", runs)}
    for other in others:
        imports[f"main@{other.label}"] = import_time(other, other.stream_dir, "main", runs)
    out.raw["imports"] = imports
    main, bare_main = imports["main"], imports["bare"]
    extra = beyond(main, bare_main)
    fig = {
        "name": "Import time (python -X importtime)", "goal": "(explains the cold start)",
        "value": f"main (imports + create_entry_app()): {main['total']:.0f} ms; Mangum's app: {imports['app']['total']:.0f} ms",
        "baseline": f"bare app: {bare_main['total']:.0f} ms (uvicorn's main), {imports['bare_app']['total']:.0f} ms "
                 f"(Mangum); {target.label}; median of {runs}", "met": None, "notes": []}
    fig["notes"].append(
        "Self ms by top-level package, main (median of runs): " + _packages(main["packages"])
        + ". Bare app: " + _packages(bare_main["packages"]) + ". Beyond the bare app, by package: "
        + _packages(extra, 12) + ". Cumulative ms at first import (absent = not imported): "
        + ", ".join(f"{k} {main['watch'][k]:.0f}" if k in main["watch"] else f"{k} –" for k in WATCH) + ".")
    for other in others:
        before = imports[f"main@{other.label}"]
        fig["notes"].append(
            f"Compared build {other.label!r}: main {before['total']:.0f} ms; beyond the bare app, by package: "
            + _packages(beyond(before, bare_main), 12) + "; cumulative ms: "
            + ", ".join(f"{k} {before['watch'][k]:.0f}" for k in WATCH if k in before["watch"]) + ".")
    if not quick:
        breakdown = startup_breakdown(target)
        if breakdown:
            fig["notes"].append("Start-up split (bench/startup_probe.py): " + ", ".join(
                f"{k.replace('_', ' ')} {v:.0f} ms" for k, v in breakdown.items()) + ".")
            out.raw["startup_breakdown"] = breakdown
    out.figures.append(fig)

    out.figures.append({
        "name": "Peak RSS of the entry points", "goal": "(see the app's RSS goal)",
        "value": f"run.sh/uvicorn after one request {rss['runsh']:.0f} MB; Mangum after one event {rss['mangum']:.0f} MB",
        "baseline": f"bare app: uvicorn {rss['runsh_bare']:.0f} MB, Mangum {rss['mangum_bare']:.0f} MB; {target.label}",
        "met": None, "notes": []})

    sizes = artifact_sizes()
    if sizes is None or "ApiFunction" not in sizes:
        out.figures.append({"name": "Artifacts: function + layers", "goal": f"≤ {SIZE_GOAL_MB:.0f} MB unzipped",
                                "value": "not built (run make build)", "baseline": ".aws-sam/build absent", "met": None,
                                "notes": []})
    else:
        api, stream = sizes["ApiFunction"], sizes.get("StreamFunction")
        parts = "; ".join(f"{name} {u:.1f} / {z:.1f} MB" for name, (u, z) in api["parts"].items())
        out.figures.append({
            "name": "Artifacts: function + layers", "goal": f"≤ {SIZE_GOAL_MB:.0f} MB unzipped (Lambda's limit: 250 MB)",
            "value": f"API function + layer {api['unzipped']:.1f} MB unzipped, {api['zipped']:.1f} MB zipped"
                  + (f"; streaming function + layer {stream['unzipped']:.1f} MB / {stream['zipped']:.1f} MB "
                     "(+ the Lambda Web Adapter layer)" if stream else ""),
            "baseline": f".aws-sam/build as make build leaves it (python3.12 bytecode everywhere); unzipped / zipped "
                     f"(deflate) per part: {parts}",
            "met": api["unzipped"] <= SIZE_GOAL_MB and (stream is None or stream["unzipped"] <= SIZE_GOAL_MB),
            "notes": []})
        out.raw["artifacts"] = sizes

    if not out.figures[0]["met"]:
        out.limits.append(
            f"- **Cold start** (run.sh {ratio['runsh']:.2f}×, Mangum {ratio['mangum']:.2f}× the bare app, both with "
            "bytecode): the libraries the first request needs, which a hello app never imports. Beyond the bare "
            f"app (self ms by package, median of runs): {_packages(extra, 8)}. Already out of start-up: route "
            "building (each route is built by its first request, api/deferred_route.py), dataclass code "
            "generation (the value types are msgspec Structs), uvicorn's command line (run.sh runs main.py, "
            "which starts uvicorn: imported inside uvicorn's event loop, CPython 3.12 unmapped and mapped again "
            "a frame-stack chunk thousands of times), `pydantic.v1`, httpx's CLI, pydantic-settings, botocore "
            "and boto3, and everything rarely used (WeChat, content safety when off, YAML, Bedrock, Powertools "
            "tracing; in the Mangum function the turn service, its relay, quotas and the vendor adapters). What "
            "is left is needed by the first request: httpx (the client API to vendors and AWS), the settings "
            "model, Powertools' logger and metrics, PyJWT, and the app's own modules. SnapStart (template "
            "parameter `SnapStart`) removes it from the first byte altogether, since a restored snapshot has "
            "already imported everything.")
    return out


def main() -> None:
    """``python bench/coldstart.py [--runs N] [--quick]`` after ``make build``: this section alone
    (the figures and the raw medians), to measure start-up changes without the whole bench."""
    import argparse
    import tempfile

    parser = argparse.ArgumentParser(description=main.__doc__.splitlines()[0])
    parser.add_argument("--runs", type=int, default=None, help="cold starts of each kind (default 7)")
    parser.add_argument("--quick", action="store_true", help="one run of each")
    parser.add_argument("--json", type=Path, default=None, help="also write the raw data here")
    args = parser.parse_args()
    work = Path(tempfile.mkdtemp(prefix="chatrelay-coldstart-"))
    out = section(work, args.quick, args.runs)
    for fig in out.figures:
        print(f"## {fig['name']} (goal: {fig['goal']}; met: {fig['met']})\n{fig['value']}\n  baseline: {fig['baseline']}")
        for note in fig["notes"]:
            print(f"  - {note}")
    cold = out.raw["cold"]
    print("medians (ms):", {k: round(v * 1000) for k, v in cold["median_s"].items()})
    print("ratios:", {k: round(v, 3) for k, v in cold["ratio"].items()})
    for line in out.limits:
        print(line)
    if args.json:
        args.json.write_text(json.dumps(out.raw, indent=1, default=str))
    shutil.rmtree(work, ignore_errors=True)


if __name__ == "__main__":
    main()
