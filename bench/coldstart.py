"""Cold start of the Lambda entry points against a bare FastAPI app, import time, artifact size.

The entry points are started as Lambda starts them: ``run.sh`` (what Lambda Web Adapter
runs: ``exec python -m uvicorn ... main:app``) with the layer on PYTHONPATH, timed from
process spawn to the first byte of ``GET /healthz``; and the Mangum handler, imported by
a fresh interpreter and invoked with an API Gateway event, timed from spawn to the
handler's return. The baseline is a bare FastAPI hello app started the same way, by the
same interpreter with the same PYTHONPATH, interleaved with the app's runs. The built
artifacts in ``.aws-sam/build`` (python3.12, as deployed) are used when present, else
the source tree; ``Target.label`` says which.

Bytecode: a deployed layer ships no ``.pyc`` and cannot write any (read-only), so every
cold start compiles the layer's sources. Children run with ``PYTHONDONTWRITEBYTECODE=1``
to keep it that way here; ``precompiled_layer`` measures the same with the layer
compiled ahead (``compileall --invalidation-mode unchecked-hash``).
"""

from __future__ import annotations

import json
import os
import shutil
import socket
import subprocess
import sys
import time
from dataclasses import dataclass
from pathlib import Path

from chatrelay_dev.local.processes import stop_process

ROOT = Path(__file__).resolve().parents[1]
BENCH = ROOT / "bench"
BUILD = ROOT / ".aws-sam" / "build"
RUNTIME = ROOT / ".tools" / "lambda-runtime"

APP_ENV = {
    # What template.yaml sets (the token secret is given directly: in AWS it is read from SSM at start-up).
    "CHAT_TABLE": "chatrelay-bench", "CHATRELAY_TOKEN_SECRET": "bench-secret-" + "x" * 40,
    "CHATRELAY_SERVE_H5": "false", "POWERTOOLS_SERVICE_NAME": "chatrelay", "POWERTOOLS_METRICS_NAMESPACE": "ChatRelay",
    "POWERTOOLS_LOG_LEVEL": "INFO", "POWERTOOLS_TRACE_DISABLED": "true", "POWERTOOLS_METRICS_DISABLED": "false",
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


def _layer_dirs(function: str) -> tuple[list[Path], list[str]]:
    """Local layer directories of a built function, and the external (ARN) layers."""
    from chatrelay_dev.local.table import load_template

    template = load_template(BUILD / "template.yaml")
    layers = template["Resources"][function]["Properties"].get("Layers") or []
    layers += ((template.get("Globals") or {}).get("Function") or {}).get("Layers") or []
    local, external = [], []
    for layer in layers:
        if isinstance(layer, dict) and "Ref" in layer and (BUILD / layer["Ref"]).is_dir():
            local.append(BUILD / layer["Ref"])
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
        python = _python312()
        bin_dir = work / "bin"
        bin_dir.mkdir(exist_ok=True)
        link = bin_dir / "python"
        if not link.exists():
            link.symlink_to(python)
        return Target("built artifacts (.aws-sam/build, python3.12)", True, bin_dir, python,
                      BUILD / "StreamFunction", BUILD / "ApiFunction",
                      ":".join(str(d / "python") for d in layers), str(RUNTIME))
    venv_bin = Path(sys.executable).parent
    return Target(f"source tree ({reason})", False, venv_bin, Path(sys.executable), ROOT / "functions" / "stream",
                  ROOT / "functions" / "api", str(ROOT / "layers" / "chatrelay"), "")


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


def serve(target: Target, fn_dir: Path, log: Path, pythonpath: str | None = None, cpu: int | None = 0,
          timeout: float = 60) -> tuple[float, float]:
    """run.sh from ``fn_dir``: seconds from spawn to the first byte of /healthz, and peak RSS (MB)."""
    port = _free_port()
    env = _env(target, fn_dir, pythonpath, AWS_LWA_PORT=str(port))
    with log.open("a") as out:
        started = time.monotonic()
        process = subprocess.Popen([*_taskset(cpu), "bash", str(fn_dir / "run.sh")], cwd=fn_dir, env=env,
                                   stdout=out, stderr=subprocess.STDOUT)
        try:
            first = _first_byte(port, started, timeout)
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


def precompile(target: Target, work: Path) -> str:
    """A copy of the layer(s) with bytecode compiled ahead (unchecked-hash: valid whatever the mtimes)."""
    paths = []
    for index, layer in enumerate(target.pythonpath.split(":")):
        copy = work / f"layer-pyc-{index}"
        if not copy.exists():
            shutil.copytree(layer, copy, ignore=shutil.ignore_patterns("__pycache__"))
            subprocess.run([str(target.python), "-m", "compileall", "-q", "-j", "0", "--invalidation-mode",
                            "unchecked-hash", str(copy)], check=False, stdout=subprocess.DEVNULL,
                           env={**os.environ, "PYTHONDONTWRITEBYTECODE": "0"})
        paths.append(str(copy))
    return ":".join(paths)


# Packages the app imports and a bare FastAPI app does not (cumulative time at their first import).
WATCH = ("boto3", "botocore", "httpx", "pydantic_settings", "sse_starlette", "aws_lambda_powertools", "jwt", "yaml",
         "mangum", "chatrelay.store.dynamodb", "chatrelay.providers", "chatrelay.settings", "chatrelay.observability")


def import_time(target: Target, fn_dir: Path, module: str, top: int = 8) -> dict:
    """``python -X importtime -c 'import <module>'``: total ms, self ms per top-level package (``top``),
    and the cumulative ms of the ``WATCH`` imports."""
    path = f"{target.pythonpath}:{target.runtime_dir}".rstrip(":")
    run = subprocess.run([str(target.python), "-X", "importtime", "-c", f"import {module}"], cwd=fn_dir,
                         env=_env(target, fn_dir, path), capture_output=True, text=True, timeout=120, check=False)
    total, per, watch = float("nan"), {}, {}
    for line in run.stderr.splitlines():
        if not line.startswith("import time:") or "self [us]" in line:
            continue
        parts = [p.strip() for p in line[len("import time:"):].split("|")]
        if len(parts) != 3 or not parts[0].isdigit():
            continue
        name = parts[2]
        package = name.split(".")[0]
        if package == module:
            package = f"{module} (incl. create_app() at import)" if module == "main" else module
        per[package] = per.get(package, 0.0) + int(parts[0]) / 1000
        if name in WATCH:
            watch[name] = int(parts[1]) / 1000
        if name == module:
            total = int(parts[1]) / 1000
    return {"total": total, "top": sorted(per.items(), key=lambda kv: -kv[1])[:top], "watch": watch}


def startup_breakdown(target: Target) -> dict[str, float] | None:
    path = f"{target.pythonpath}:{target.runtime_dir}".rstrip(":")
    run = subprocess.run([str(target.python), str(BENCH / "startup_probe.py")], cwd=target.stream_dir,
                         env=_env(target, target.stream_dir, path), capture_output=True, text=True, timeout=120,
                         check=False)
    try:
        return json.loads(run.stdout.strip().splitlines()[-1])
    except (ValueError, IndexError):
        return None


def _size(paths: list[Path]) -> float:
    # Bytecode counts only where `make build` ships it (our package); what local runs leave
    # elsewhere is not deployed (the next `sam build` starts afresh).
    return sum(f.stat().st_size for d in paths for f in d.rglob("*")
               if f.is_file() and ("__pycache__" not in f.parts or "chatrelay" in f.parts)) / 1e6


def artifact_sizes() -> dict[str, tuple[float, list[str], list[str]]] | None:
    """MB unzipped of each built function with its local layers (None when not built)."""
    if not (BUILD / "template.yaml").is_file():
        return None
    sizes = {}
    for function in ("ApiFunction", "StreamFunction"):
        if not (BUILD / function).is_dir():
            continue
        layers, external = _layer_dirs(function)
        sizes[function] = (_size([BUILD / function, *layers]), [d.name for d in layers], external)
    return sizes
