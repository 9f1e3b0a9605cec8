"""Logs and metrics, Powertools-style: one Logger and one metrics sink per process.

Logs are structured JSON (request id, hashed user id, model, status, time to first
token, tokens). Metrics go out as CloudWatch EMF lines, one flush per turn, since
a long-lived uvicorn process has no per-invocation ``log_metrics`` decorator.
Set ``POWERTOOLS_METRICS_DISABLED=true`` to silence them (tests do). The metrics module is
imported when the first turn ends, not at start-up.
"""

from __future__ import annotations

import hashlib

from aws_lambda_powertools.logging import Logger

SERVICE = "chatrelay"
NAMESPACE = "ChatRelay"

logger = Logger(service=SERVICE)


def hash_user_id(user_id: str) -> str:
    """User ids never reach logs in clear: a short, stable digest instead."""
    return hashlib.sha256(user_id.encode()).hexdigest()[:16]


def record_turn(
    *,
    user_id: str,
    status: str,
    saved: bool,
    model: str,
    ttft_ms: int | None,
    duration_ms: int,
    usage: dict[str, int] | None,
    error_code: str | None,
    answer_chars: int,
) -> None:
    """Log a turn's ending and emit its metrics."""
    from aws_lambda_powertools.metrics import EphemeralMetrics, MetricUnit

    logger.info(
        "turn ended",
        extra={
            "user": hash_user_id(user_id),
            "model": model,
            "status": status,
            "saved": saved,
            "ttft_ms": ttft_ms,
            "duration_ms": duration_ms,
            "usage": usage,
            "error_code": error_code,
            "answer_chars": answer_chars,
        },
    )
    metrics = EphemeralMetrics(namespace=NAMESPACE, service=SERVICE)
    metrics.add_dimension(name="model", value=model or "unknown")
    if ttft_ms is not None:
        metrics.add_metric(name="TimeToFirstToken", unit=MetricUnit.Milliseconds, value=ttft_ms)
    metrics.add_metric(name="StreamDuration", unit=MetricUnit.Milliseconds, value=duration_ms)
    if error_code and error_code.startswith("upstream"):
        metrics.add_metric(name="UpstreamErrors", unit=MetricUnit.Count, value=1)
    metrics.add_metric(name="TurnsPersisted" if saved else "TurnsFailed", unit=MetricUnit.Count, value=1)
    metrics.flush_metrics()
