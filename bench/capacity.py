"""DynamoDB capacity units per turn, from ReturnConsumedCapacity (bench only).

A boto3 event hook asks every call for ``ReturnConsumedCapacity=TOTAL`` and sums the
answers; the app runs in-process with a store built on that client, so the count covers
every call a turn makes (start transaction, checkpoints, stop polls, the ending).
"""

from __future__ import annotations

import asyncio
import threading
import time
from typing import Any

import httpx
import uvicorn

from chatrelay.api.app import create_app
from chatrelay.api.services import Services
from chatrelay.settings import Settings
from chatrelay.store.dynamodb import DynamoDBChatStore
from chatrelay.store.table import Table
from chatrelay_dev.local import dynamodb_local

_WRITES = {"PutItem", "UpdateItem", "TransactWriteItems", "BatchWriteItem", "DeleteItem"}
_WITH_CAPACITY = ("PutItem", "UpdateItem", "GetItem", "Query", "TransactWriteItems", "BatchWriteItem", "DeleteItem")


class CapacityMeter:
    def __init__(self, client: Any) -> None:
        self.write = self.read = 0.0
        self.calls: dict[str, int] = {}
        self._lock = threading.Lock()
        client.meta.events.register("provide-client-params.dynamodb.*", self._ask)
        client.meta.events.register("after-call.dynamodb.*", self._count)

    def _ask(self, params: dict, model: Any, **_: Any) -> None:
        if model.name in _WITH_CAPACITY:
            params.setdefault("ReturnConsumedCapacity", "TOTAL")

    def _count(self, parsed: dict, model: Any, **_: Any) -> None:
        # DynamoDB Local reports TOTAL as CapacityUnits only: classify by operation.
        consumed = parsed.get("ConsumedCapacity")
        items = consumed if isinstance(consumed, list) else [consumed] if consumed else []
        units = sum(item.get("CapacityUnits", 0) or 0 for item in items)
        with self._lock:
            self.calls[model.name] = self.calls.get(model.name, 0) + 1
            if model.name in _WRITES:
                self.write += units
            else:
                self.read += units

    def snapshot(self) -> tuple[float, float, dict[str, int]]:
        with self._lock:
            return self.write, self.read, dict(self.calls)


def measure_turns(endpoint: str, table: str, mock_base: str, secret: str, checkpoint: float,
                  long_tokens: int = 2000) -> dict[str, dict[str, Any]]:
    """WCU and RCU of a short (10 tokens) and a long answer (``long_tokens`` at 200 tokens/s),
    with the production checkpoint and stop-poll intervals, and the calls that consumed them."""
    client = dynamodb_local.local_client(endpoint)
    meter = CapacityMeter(client)
    settings = Settings(chat_table=table, dynamodb_endpoint_url=endpoint, token_secret=secret, dev_auth=True,
                        mock_llm_base_url=mock_base, checkpoint_interval=checkpoint, stop_poll_interval=1.0,
                        serve_h5=False)
    services = Services.from_settings(settings)
    services.store = DynamoDBChatStore(Table(table, client=client))
    app = create_app(settings, services)
    port = dynamodb_local.free_port()
    server = uvicorn.Server(uvicorn.Config(app, host="127.0.0.1", port=port, log_level="error"))
    thread = threading.Thread(target=lambda: asyncio.run(server.serve()), daemon=True)
    thread.start()
    deadline = time.monotonic() + 30
    while not server.started and time.monotonic() < deadline:
        time.sleep(0.01)
    base = f"http://127.0.0.1:{port}"
    token = httpx.post(f"{base}/v1/auth/dev", json={"userId": "bench-capacity"}).json()["token"]
    results = {}
    long_label = f"long answer ({long_tokens:,} tokens, ~{long_tokens * 0.005:.0f} s)"
    for label, directive in (("short answer (10 tokens)", "tokens=10 interval=0.01"),
                             (long_label, f"tokens={long_tokens} interval=0.005")):
        before = meter.snapshot()
        with httpx.stream("POST", f"{base}/v1/chat/stream", json={"prompt": f"cap [mock {directive} ttft=0]"},
                          headers={"Authorization": f"Bearer {token}"}, timeout=60) as response:
            for _ in response.iter_raw():
                pass
        after = meter.snapshot()
        calls = {k: v - before[2].get(k, 0) for k, v in after[2].items() if v - before[2].get(k, 0)}
        results[label] = {"write": after[0] - before[0], "read": after[1] - before[1], "calls": calls}
    server.should_exit = True
    thread.join(timeout=10)
    return results
