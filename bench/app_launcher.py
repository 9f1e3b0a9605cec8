"""Run the app under uvicorn with bench-only instrumentation.

    python bench/app_launcher.py chatrelay.api.asgi:app --port 8000 [uvicorn flags]

Always: a ``gc.callbacks`` hook appends every full (generation 2) collection to
``BENCH_GC_LOG`` (``monotonic_ns wall_ms cpu_ms``), so the report can show the
stop-the-world pauses behind the tail latencies. And httpx's command-line module is
kept out, for every relay launched here (chatrelay and the hand-written one alike):
``import httpx`` imports it, and it imports click, rich and pygments when they are
installed. The development venv has rich and pygments (schemathesis needs them); the
Lambda layer ships neither, so there httpx skips the module (about 5 MB of RSS).
Nothing else changes: the app is the module uvicorn is given, as uvicorn would load it.
"""

from __future__ import annotations

import gc
import os
import sys
import time


def _log_full_collections(path: str) -> None:
    out = open(path, "a", buffering=1)  # noqa: SIM115 - lives as long as the process
    started: list[float] = [0.0, 0.0]

    def callback(phase: str, info: dict) -> None:
        if info.get("generation") != 2:
            return
        if phase == "start":
            started[0], started[1] = time.perf_counter(), time.thread_time()
        else:
            wall, cpu = time.perf_counter() - started[0], time.thread_time() - started[1]
            out.write(f"{time.monotonic_ns()} {wall * 1000:.2f} {cpu * 1000:.2f}\n")

    gc.callbacks.append(callback)


def main() -> None:
    sys.modules["httpx._main"] = None  # type: ignore[assignment]  # httpx falls back as without its CLI extra
    if os.environ.get("BENCH_GC_LOG"):
        _log_full_collections(os.environ["BENCH_GC_LOG"])
    import uvicorn

    sys.argv = ["uvicorn", *sys.argv[1:]]
    uvicorn.main()


if __name__ == "__main__":
    main()
