"""A SnapStart snapshot and two restores, played with fork (tests/functional/test_snapshot.py runs it).

Usage: python snapshot_probe.py <runtime|lwa>, configured by the environment (the table, the
fakes). Runs in its own single-threaded process, so forking is safe. Prints one JSON line.

1. Initialise as an entry point does (``create_entry_app``), and use every pooled client
   once: a DynamoDB call (a live pooled connection), an ERNIE access token and a WeChat
   access token (cached, over live connections).
2. Run the before-snapshot hooks the way the platform would: ``runtime`` through the Python
   runtime's ``snapshot_restore_py`` (a stand-in records what ``register_runtime_hooks`` gives
   it), ``lwa`` as Lambda Web Adapter does (an empty POST to the app's hook path).
3. Fork: each child is a restored copy. A restore is not a fork, so each child first undoes
   what fork itself does for it: Python reseeds ``random`` in a forked child (restoring the
   parent's state puts back what a snapshot would hold) and the child gets its own event loop
   (a forked loop would share the parent's epoll; a restored VM shares nothing). Two
   children run the after-restore hooks, a third (the control) does not.
4. Each child reports what it has: its clients (new objects? pools open? cached tokens?), the
   token secret it read, and ids, tokens and random numbers drawn after the restore.
"""

from __future__ import annotations

import asyncio
import json
import os
import random
import secrets
import sys
import uuid

import httpx

from chatrelay import ids, snapshot
from chatrelay.api.app import create_entry_app
from chatrelay.api.deferred_route import DeferredRoute
from chatrelay.store.table import turn_key

mode = sys.argv[1]


class RuntimeStandIn:
    """What ``snapshot_restore_py`` does with registered hooks: keeps them, calls them on cue."""

    def __init__(self) -> None:
        self.before: list = []
        self.after: list = []

    def register_before_snapshot(self, func, *args, **kwargs) -> None:
        self.before.append((func, args, kwargs))

    def register_after_restore(self, func, *args, **kwargs) -> None:
        self.after.append((func, args, kwargs))

    def snapshot(self) -> None:
        for func, args, kwargs in reversed(self.before):
            func(*args, **kwargs)

    def restore(self) -> None:
        for func, args, kwargs in self.after:
            func(*args, **kwargs)


loop = asyncio.new_event_loop()
asyncio.set_event_loop(loop)  # as Mangum does at start-up: one loop for every invocation and hook
app = create_entry_app()
services = app.state.services
runtime = RuntimeStandIn()
if mode == "runtime":
    assert snapshot.register_runtime_hooks(runtime)


def lwa_post(path: str) -> None:
    async def post() -> int:
        transport = httpx.ASGITransport(app=app)
        async with httpx.AsyncClient(transport=transport, base_url="http://adapter") as client:
            return (await client.post(path)).status_code

    status = loop.run_until_complete(post())
    assert status == 204, status


# 1. Use every pooled client once.
table = services.table
table.client.get_item(TableName=table.name, Key={"pk": {"S": "USER#snapshot"}, "sk": {"S": "MSG#none"}})
_, ernie = services.registry.resolve("ernie")
loop.run_until_complete(ernie.tokens.get())
loop.run_until_complete(services.wechat.access_token())
before = {
    "secret": services.tokens._secret,
    "dynamodb_pool_open": table.client.pool_open,
    "ernie_token_fetches": ernie.tokens.fetches,
    "wechat_token_cached": services.wechat.cached_access_token is not None,
}
old = {"table_client": table.client, "registry": services.registry, "ernie": ernie, "wechat": services.wechat,
       "ernie_http": ernie._client, "wechat_http": services.wechat._client, "tokens": services.tokens}

# 2. The snapshot.
if mode == "runtime":
    runtime.snapshot()
else:
    lwa_post(services.settings.snapstart_before_path)
at_snapshot = {
    "routes_built": all(route.built for route in app.routes if isinstance(route, DeferredRoute)),
    "dynamodb_pool_open": old["table_client"].pool_open,
    "ernie_http_closed": old["ernie_http"].is_closed,
    "wechat_http_closed": old["wechat_http"].is_closed,
}
snapshot_random_state = random.getstate()


# 3. Restores.
def restored_copy(run_hooks: bool) -> dict:
    random.setstate(snapshot_random_state)
    asyncio.set_event_loop(new_loop := asyncio.new_event_loop())
    global loop
    loop = new_loop
    if run_hooks:
        if mode == "runtime":
            runtime.restore()
        else:
            lwa_post(services.settings.snapstart_after_path)
    now = app.state.services
    _, ernie_now = now.registry.resolve("ernie")
    # DynamoDB through whatever client the copy has now: a pool opened after the restore.
    user = f"snap-{uuid.uuid4().hex[:8]}"
    now.table.client.put_item(TableName=now.table.name, Item={**{k: {"S": v} for k, v in turn_key(user, "m").items()}})
    key = {k: {"S": v} for k, v in turn_key(user, "m").items()}
    found = now.table.client.get_item(TableName=now.table.name, Key=key)
    return {
        "secret": now.tokens._secret,
        "new_dynamodb_client": now.table.client is not old["table_client"],
        "dynamodb_pools_opened": now.table.client.pools_opened,
        "dynamodb_works": "Item" in found,
        "new_registry": now.registry is not old["registry"],
        "new_ernie_provider": ernie_now is not old["ernie"],
        "ernie_token_cached": ernie_now.tokens._token is not None,
        "new_wechat": now.wechat is not old["wechat"],
        "wechat_token_cached": now.wechat.cached_access_token is not None,
        "new_token_service": now.tokens is not old["tokens"],
        "ulids": [ids.new_ulid() for _ in range(3)],
        "refresh_tokens": [secrets.token_urlsafe(32) for _ in range(3)],
        "uuids": [uuid.uuid4().hex for _ in range(3)],
        "random": [random.random() for _ in range(3)],
    }


children = {}
for name, run_hooks in (("first", True), ("second", True), ("control", False)):
    read, write = os.pipe()
    pid = os.fork()
    if pid == 0:
        os.close(read)
        try:
            result = {"ok": True, **restored_copy(run_hooks)}
        except BaseException as exc:  # noqa: BLE001 - reported to the parent
            result = {"ok": False, "error": repr(exc)}
        with os.fdopen(write, "w") as out:
            json.dump(result, out)
        os._exit(0)
    os.close(write)
    with os.fdopen(read) as pipe:
        children[name] = json.loads(pipe.read())
    os.waitpid(pid, 0)

random.setstate(snapshot_random_state)
print(json.dumps({"before": before, "at_snapshot": at_snapshot, "children": children,
                  "snapshot_random_next": [random.random() for _ in range(3)]}))
