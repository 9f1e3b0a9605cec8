"""Load-and-fault test: many concurrent clients, injected faults, then every turn counted.

``make test`` runs it with 200 clients; ``make soak`` with more (``LOAD_CLIENTS``,
``LOAD_SEED``). The app and the fake upstream run as their own processes (as in
``make dev``), so the clients' event loop and the server's do not share a GIL.

Each client asks one question (with a ``requestId``) and plays one part, drawn from
a seeded random generator: read to the end; meet an upstream 5xx before the
stream, a cut mid-stream or a stall; drop the connection and go away; drop and
resume from ``Last-Event-ID``; press stop; or submit twice (a retried POST).
At the end every turn is read back and compared with what its client saw:
``lost`` counts client-observed answers that differ from the stored one (or
missing turns); ``duplicated`` counts requestIds stored more than once.
"""

from __future__ import annotations

import asyncio
import json
import os
import random
import subprocess
import sys
import tempfile
import time
import uuid
from collections import Counter
from dataclasses import dataclass, field
from pathlib import Path

import httpx
import pytest

from chatrelay_dev.local.dynamodb_local import free_port
from chatrelay_dev.local.processes import stop_process
from tests.conftest import TABLE, TOKEN_SECRET

CLIENTS = int(os.environ.get("LOAD_CLIENTS", "200"))
SEED = int(os.environ.get("LOAD_SEED", "20261124"))
REPORT = Path(__file__).resolve().parents[1] / "artifacts" / "load-report.md"

PARTS = [("complete", 40), ("prestream_5xx", 8), ("midstream_cut", 10), ("stall", 5), ("disconnect", 12),
         ("resume", 15), ("stop", 5), ("double_submit", 5),
         ("lambda_deadline", 4)]


@dataclass
class Client:
    index: int
    part: str
    user: str
    request_id: str
    prompt: str
    observed: str = ""
    complete_view: bool = True
    """False when the client left early: what it saw must be a prefix of the stored answer."""
    message_id: str | None = None
    conversation_id: str | None = None
    resumed: bool = False
    errors: list[str] = field(default_factory=list)
    refused: bool = False
    """Refused by the server's admission control (503 overloaded) before anything was stored."""
    refusals: int = 0
    """Requests of this client refused by admission control (a retried POST may be refused too)."""
    stop_status: str | None = None
    """The turn's status in the answer to an acknowledged stop (``streaming``: it must end stopped)."""
    retries: int = 0


def _prompt(part: str, rng: random.Random) -> str:
    tokens = rng.randint(15, 50)
    base = f"tokens={tokens} interval={rng.choice([0.02, 0.03, 0.05])} ttft={rng.choice([0, 0.1, 0.3])}"
    directive = {
        "prestream_5xx": f"{base} fault={rng.choice(['http_500', 'http_429'])}",
        "midstream_cut": f"{base} fault=cut fault_after={rng.randint(1, tokens - 1)}",
        "stall": f"{base} fault=stall fault_after={rng.randint(1, tokens - 1)}",
        "lambda_deadline": f"tokens={tokens} interval=0.05 ttft=0",
    }.get(part, base)
    return f"load question [mock {directive}]"


def _process(args: list[str], env: dict[str, str]) -> subprocess.Popen:
    # Output to a file: an unread pipe fills up and blocks the server's event loop.
    log = tempfile.NamedTemporaryFile(prefix="load-", suffix=".log", delete=False)  # noqa: SIM115
    process = subprocess.Popen(args, env={**os.environ, **env}, stdout=log, stderr=subprocess.STDOUT)
    process.log_path = log.name  # type: ignore[attr-defined]
    return process


def _wait(url: str, process: subprocess.Popen) -> None:
    deadline = time.monotonic() + 30
    while time.monotonic() < deadline:
        if process.poll() is not None:
            raise RuntimeError(Path(process.log_path).read_text(errors="replace")[-3000:])
        try:
            if httpx.get(url, timeout=1).status_code == 200:
                return
        except httpx.HTTPError:
            time.sleep(0.1)
    raise TimeoutError(url)


@dataclass
class Stack:
    url: str
    mock_url: str
    limits: str


# The template's default per-user limits (template.yaml: RateLimitPerMinute, TokenQuotaPerDay,
# MaxConcurrentStreams) and a per-process stream cap, for the run with limits switched on.
DEFAULT_LIMITS = {"CHATRELAY_RATE_LIMIT_PER_MINUTE": "20", "CHATRELAY_TOKEN_QUOTA_PER_DAY": "200000",
                  "CHATRELAY_MAX_CONCURRENT_STREAMS": "2"}
NO_LIMITS = {"CHATRELAY_RATE_LIMIT_PER_MINUTE": "0", "CHATRELAY_TOKEN_QUOTA_PER_DAY": "0",
             "CHATRELAY_MAX_CONCURRENT_STREAMS": "0"}


@pytest.fixture(scope="module", params=["no limits", "template default limits"])
def stack(dynamodb, request):
    limits = NO_LIMITS if request.param == "no limits" else DEFAULT_LIMITS
    process_cap = os.environ.get("LOAD_MAX_PROCESS_STREAMS", "0")
    mock_port, app_port = free_port(), free_port()
    mock = _process([sys.executable, "-m", "chatrelay_dev.mockllm", "--port", str(mock_port)], {})
    app = _process(
        [sys.executable, "-m", "uvicorn", "chatrelay.api.asgi:app", "--host", "127.0.0.1", "--port", str(app_port),
         "--no-access-log", "--log-level", "warning"],
        {
            "CHAT_TABLE": TABLE, "DYNAMODB_ENDPOINT_URL": dynamodb.endpoint, "CHATRELAY_TOKEN_SECRET": TOKEN_SECRET,
            "CHATRELAY_DEV_AUTH": "1", "MOCK_LLM_BASE_URL": f"http://127.0.0.1:{mock_port}/v1",
            "CHATRELAY_FINISH_ON_DISCONNECT": "1", "CHATRELAY_IDLE_TIMEOUT": "3.0",
            "CHATRELAY_CHECKPOINT_INTERVAL": "1.0", "CHATRELAY_STOP_POLL_INTERVAL": "1.0",
            "CHATRELAY_RESUME_POLL_INTERVAL": "0.2", "CHATRELAY_LAMBDA_DEADLINE_MARGIN": "0.2",
            "CHATRELAY_TRUST_LAMBDA_CONTEXT": "1", "CHATRELAY_STORAGE_THREADS": "48",
            "POWERTOOLS_METRICS_DISABLED": "true", "POWERTOOLS_LOG_LEVEL": "ERROR",
            "CHATRELAY_MAX_PROCESS_STREAMS": process_cap, **limits,
        },
    )
    try:
        _wait(f"http://127.0.0.1:{mock_port}/healthz", mock)
        _wait(f"http://127.0.0.1:{app_port}/healthz", app)
        yield Stack(f"http://127.0.0.1:{app_port}", f"http://127.0.0.1:{mock_port}", request.param)
    finally:
        for process in (app, mock):
            stop_process(process)


async def _read_events(response: httpx.Response):
    buffer = b""
    fields: dict[str, str] = {}
    async for piece in response.aiter_raw():
        buffer += piece
        *lines, buffer = buffer.split(b"\n")
        for raw in lines:
            line = raw.decode("utf-8")
            if line == "":
                if "data" in fields:
                    yield fields
                fields = {}
            elif not line.startswith(":"):
                name, _, value = line.partition(": ")
                fields[name] = fields[name] + "\n" + value if name == "data" and "data" in fields else value


# A keep-alive connection the server is closing just as the client reuses it fails with one of
# these before any byte of the answer; an idempotent request (every one here: the chat POST
# carries a requestId) is then simply sent again, as browsers and proxies do.
STALE_CONNECTION = (httpx.ReadError, httpx.RemoteProtocolError, httpx.ConnectError, httpx.WriteError)


async def _idempotent(client: Client, send):
    for attempt in range(3):
        try:
            return await send()
        except STALE_CONNECTION:
            if attempt == 2:
                raise
            client.retries += 1
            await asyncio.sleep(0.05 * (attempt + 1))


async def _post_stream(http: httpx.AsyncClient, client: Client, headers: dict, *, stop_after: int | None,
                       drop_after: int | None) -> str | None:
    """One POST (sent again on a stale connection); returns the last event id seen when the client
    dropped, else None."""
    observed = client.observed
    for attempt in range(3):
        try:
            return await _post_stream_once(http, client, headers, stop_after=stop_after, drop_after=drop_after)
        except STALE_CONNECTION:
            if attempt == 2 or client.observed != observed:
                raise  # bytes of the answer had arrived: not a stale connection
            client.retries += 1
    return None


async def _post_stream_once(http: httpx.AsyncClient, client: Client, headers: dict, *, stop_after: int | None,
                            drop_after: int | None) -> str | None:
    body = {"prompt": client.prompt, "requestId": client.request_id}
    async with http.stream("POST", "/v1/chat/stream", json=body, headers=headers) as response:
        if response.status_code == 503 and response.headers.get("retry-after"):
            await response.aread()
            if json.loads(response.content)["code"] == "overloaded":
                client.refusals += 1
                # Nothing stored for this request; the client has no answer unless an earlier POST got one.
                client.refused = client.refused or client.message_id is None
            return None
        if response.status_code != 200:
            client.errors.append(f"http {response.status_code}")
            return None
        client.refused = False  # this request was let in (an earlier refusal of the client is moot)
        seen = 0
        async for event in _read_events(response):
            kind = event.get("event", "message")
            if kind == "meta":
                meta = json.loads(event["data"])
                client.message_id, client.conversation_id = meta["messageId"], meta["conversationId"]
            elif kind == "message" and event["data"] != "[DONE]":
                client.observed += json.loads(event["data"])["delta"]
                seen += 1
                if drop_after is not None and seen >= drop_after:
                    return event.get("id", "0")
                if stop_after is not None and seen == stop_after:
                    stop = await _idempotent(client, lambda: http.post(f"/v1/messages/{client.message_id}/stop",
                                                                        headers=headers))
                    assert stop.status_code == 202
                    client.stop_status = stop.json()["status"]
            elif kind == "error":
                client.errors.append(json.loads(event["data"])["code"])
    return None


async def _run_client(http: httpx.AsyncClient, client: Client, rng: random.Random) -> None:
    login = await _idempotent(client, lambda: http.post("/v1/auth/dev", json={"userId": client.user}))
    headers = {"Authorization": f"Bearer {login.json()['token']}"}
    if client.part == "disconnect":
        await _post_stream(http, client, headers, stop_after=None, drop_after=rng.randint(1, 10))
        client.complete_view = False
    elif client.part == "resume":
        last_id = await _post_stream(http, client, headers, stop_after=None, drop_after=rng.randint(1, 10))
        await asyncio.sleep(rng.uniform(0, 0.5))
        if last_id is not None:
            client.resumed = True
            resume_headers = {**headers, "Last-Event-ID": last_id}

            async def resume() -> None:
                observed = client.observed
                try:
                    async with http.stream("GET", f"/v1/messages/{client.message_id}/stream",
                                           headers=resume_headers) as response:
                        async for event in _read_events(response):
                            if event.get("event", "message") == "message" and event["data"] != "[DONE]":
                                client.observed += json.loads(event["data"])["delta"]
                except STALE_CONNECTION:
                    if client.observed != observed:
                        raise
                    raise

            await _idempotent(client, resume)
    elif client.part == "lambda_deadline":
        # As Lambda Web Adapter passes it: this invocation has 0.7 s left.
        context = json.dumps({"request_id": client.request_id, "deadline": int((time.time() + 0.7) * 1000)})
        await _post_stream(http, client, {**headers, "x-amzn-lambda-context": context}, stop_after=None,
                           drop_after=None)
    elif client.part == "stop":
        await _post_stream(http, client, headers, stop_after=rng.randint(1, 5), drop_after=None)
    elif client.part == "double_submit":
        await _post_stream(http, client, headers, stop_after=None, drop_after=None)
        first, refusals = client.observed, client.refusals
        client.observed = ""
        await _post_stream(http, client, headers, stop_after=None, drop_after=None)  # the retried POST
        if client.refusals > refusals:
            client.observed = first  # the retry was refused before anything happened: the first answer stands
        elif client.observed != first:
            client.errors.append("retry saw a different answer")
    else:
        await _post_stream(http, client, headers, stop_after=None, drop_after=None)


async def _load(base_url: str) -> tuple[list[Client], float]:
    rng = random.Random(SEED)
    names, weights = zip(*PARTS, strict=True)
    clients = [
        Client(i, part, f"load-{SEED}-{i % 50}-{uuid.uuid4().hex[:6]}", uuid.uuid4().hex, "")
        for i, part in enumerate(rng.choices(names, weights, k=CLIENTS))
    ]
    for client in clients:
        client.prompt = _prompt(client.part, rng)
    limits = httpx.Limits(max_connections=CLIENTS * 2 + 10, max_keepalive_connections=CLIENTS)
    started = time.monotonic()
    async with httpx.AsyncClient(base_url=base_url, timeout=httpx.Timeout(60.0), limits=limits) as http:
        seeds = [rng.random() for _ in clients]
        await asyncio.gather(*(_run_client(http, c, random.Random(s)) for c, s in zip(clients, seeds, strict=True)))
    return clients, time.monotonic() - started


def _read_back(base_url: str, clients: list[Client]) -> dict[str, list[dict]]:
    """Every stored turn of every load user, by requestId, read through the API."""
    stored: dict[str, list[dict]] = {}
    with httpx.Client(base_url=base_url, timeout=30) as http:
        for user in {c.user for c in clients}:
            token = http.post("/v1/auth/dev", json={"userId": user}).json()["token"]
            headers = {"Authorization": f"Bearer {token}"}
            for conversation in http.get("/v1/conversations", params={"limit": 100}, headers=headers).json()["items"]:
                cursor = None
                while True:
                    params = {"limit": 100, **({"cursor": cursor} if cursor else {})}
                    page = http.get(f"/v1/conversations/{conversation['conversationId']}/messages",
                                    params=params, headers=headers).json()
                    for turn in page["items"]:
                        stored.setdefault(turn["requestId"], []).append(turn)
                    cursor = page["nextCursor"]
                    if not cursor:
                        break
    return stored


def _wait_for_endings(base_url: str, clients: list[Client], timeout: float = 60) -> dict[str, list[dict]]:
    deadline = time.monotonic() + timeout
    while True:
        stored = _read_back(base_url, clients)
        streaming = [t for turns in stored.values() for t in turns if t["status"] == "streaming"]
        if not streaming or time.monotonic() > deadline:
            return stored
        time.sleep(0.5)


def test_load_and_faults_lose_and_duplicate_nothing(stack):
    clients, elapsed = asyncio.run(_load(stack.url))
    stored = _wait_for_endings(stack.url, clients)

    statuses = Counter(t["status"] for turns in stored.values() for t in turns)
    lost, duplicated, mismatches, unhonoured = 0, 0, [], []
    for client in clients:
        turns = stored.get(client.request_id, [])
        if len(turns) > 1:
            duplicated += 1
        if client.refused:
            if turns:  # admission control refuses before anything is stored
                mismatches.append((client.index, client.part, "refused but stored"))
                lost += 1
            continue
        if client.stop_status == "streaming" and turns and turns[0]["status"] != "stopped":
            unhonoured.append((client.index, turns[0]["status"]))
        if not turns:
            lost += 1
            mismatches.append((client.index, client.part, "missing"))
            continue
        answer = turns[0]["answer"]
        same = answer == client.observed if client.complete_view else answer.startswith(client.observed)
        if not same:
            lost += 1
            mismatches.append((client.index, client.part, turns[0]["status"], client.observed[-30:], answer[-30:]))
    rows = [
        ("clients", CLIENTS), ("turns started", sum(len(t) for t in stored.values())),
        ("complete", statuses["complete"]), ("stopped", statuses["stopped"]), ("failed", statuses["failed"]),
        ("truncated", statuses["truncated"]), ("streaming (unended)", statuses["streaming"]),
        ("resumed", sum(c.resumed for c in clients)), ("lost", lost), ("duplicated", duplicated),
        ("clients refused by admission control (503)", sum(c.refused for c in clients)),
        ("requests refused by admission control (503)", sum(c.refusals for c in clients)),
        ("stops acknowledged while streaming", sum(c.stop_status == "streaming" for c in clients)),
        ("stops acknowledged after the end", sum(c.stop_status not in (None, "streaming") for c in clients)),
        ("stops not honoured", len(unhonoured)),
        ("requests sent again after a stale connection", sum(c.retries for c in clients)),
        ("wall time (s)", f"{elapsed:.1f}"),
    ]
    parts = Counter(c.part for c in clients)
    table = "| measure | count |\n|---|---|\n" + "\n".join(f"| {k} | {v} |" for k, v in rows)
    table += "\n\nclient parts: " + ", ".join(f"{k} {v}" for k, v in sorted(parts.items()))
    codes = Counter(code for c in clients for code in c.errors)
    outcomes = Counter(r["outcome"] for r in httpx.get(f"{stack.mock_url}/_mock/requests").json())
    table += "\n\nerror events seen by clients: " + ", ".join(f"{k} {v}" for k, v in sorted(codes.items()))
    table += "\n\nupstream requests by outcome: " + ", ".join(f"{k} {v}" for k, v in sorted(outcomes.items()))
    print("\n" + table)

    REPORT.parent.mkdir(parents=True, exist_ok=True)
    report = REPORT.with_name(f"load-report-{stack.limits.replace(' ', '-')}.md")
    report.write_text(f"Load-and-fault run ({stack.limits}): {CLIENTS} clients, seed {SEED}\n\n{table}\n",
                      encoding="utf-8")

    assert lost == 0, mismatches[:10]
    assert duplicated == 0
    assert statuses["streaming"] == 0
    assert unhonoured == []  # every stop acknowledged while the answer ran ended it
    # Every kind of ending really happened.
    assert statuses["complete"] and statuses["failed"] and statuses["stopped"] and statuses["truncated"]
