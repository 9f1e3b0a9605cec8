"""Lambda SnapStart: nothing pooled goes into the snapshot, nothing unique comes out of it twice.

With SnapStart, Lambda initialises a function once per published version, snapshots the
execution environment and starts every later instance from that snapshot. Whatever init
built is then shared by every restored copy: open connections (dead by then), credentials
and secrets as they were when the snapshot was taken, and any randomness drawn at init.
The app is made safe in two places:

- **before the snapshot** (:func:`before_snapshot`): every registered process-wide object
  closes its pooled connections (``Services.before_snapshot``: the DynamoDB client's pool,
  the providers' and WeChat's httpx clients), the cached credentials and secret values
  are dropped, and the routes not built yet are built (``api/deferred_route.py``: into the
  snapshot once, not by each restored copy's first requests);
- **after each restore** (:func:`after_restore`), before the copy serves anything:
  ``random`` is reseeded from the kernel, credentials and secrets are dropped again, and each
  registered object rebuilds itself (``Services.after_restore``: secrets read again, a new
  DynamoDB client, a new provider registry with empty token caches — ERNIE's —, a new WeChat
  client with no access token).

Identifiers and tokens need nothing: ULIDs (``ids.py``), refresh tokens and request ids draw
from ``os.urandom`` / ``secrets`` / ``uuid4`` on every call, nothing is drawn at init.

Who calls the hooks depends on the entry point:

- the **API function** (Mangum) runs in the Python runtime's own process: its entry point
  calls :func:`register_runtime_hooks`, which hands both hooks to the runtime's
  ``snapshot_restore_py`` (``register_before_snapshot`` / ``register_after_restore``);
- the **streaming function** runs uvicorn as a child of Lambda Web Adapter, out of the
  runtime's reach: the adapter (1.1+) POSTs to ``AWS_LWA_SNAPSTART_BEFORE_CHECKPOINT_PATH``
  before the snapshot and ``AWS_LWA_SNAPSTART_AFTER_RESTORE_PATH`` after each restore (then
  re-runs its readiness check); ``create_app`` serves those two paths when they are set
  (``Settings.snapstart_*_path``) and refuses nothing else, because the adapter answers any
  outside request for them with 403.

Both entry points register their ``Services`` with :func:`register` (``create_entry_app``).
tests/functional/test_snapshot.py initialises the app, runs the before-snapshot hooks and
forks two "restored" children: each gets new connection pools and draws different ids,
tokens and random numbers.
"""

from __future__ import annotations

import asyncio
import os
import random
import warnings
from typing import Any, Protocol

from chatrelay import aws, secrets
from chatrelay.observability import logger


class Snapshottable(Protocol):
    async def before_snapshot(self) -> None: ...

    async def after_restore(self) -> None: ...


_registered: list[Snapshottable] = []


def register(target: Snapshottable) -> None:
    """Have ``target`` closed before the snapshot and rebuilt after each restore."""
    if all(target is not known for known in _registered):
        _registered.append(target)


def unregister(target: Snapshottable) -> None:
    _registered[:] = [known for known in _registered if known is not target]


def _forget_process_state() -> None:
    aws.reset()  # credentials (on SnapStart, Lambda's container credentials) are resolved afresh
    secrets.clear_cache()


async def before_snapshot() -> None:
    """Close every pooled connection and drop cached credentials and secrets."""
    for target in reversed(_registered):  # the runtime's order: before-snapshot hooks in reverse
        await target.before_snapshot()
    _forget_process_state()
    logger.info("ready for the snapshot", extra={"snapshot_targets": len(_registered)})


async def after_restore() -> None:
    """Reseed, drop what init cached, and rebuild every registered object (before any request)."""
    random.seed(os.urandom(32))  # `random` was seeded once, at init: every copy would repeat it
    _forget_process_state()
    for target in _registered:
        await target.after_restore()
    logger.info("restored from a snapshot", extra={"snapshot_targets": len(_registered)})


def _run(hook: Any) -> None:
    # The runtime calls its hooks outside any invocation, on the thread Mangum runs on: use the
    # loop Mangum set up there (its clients belong to it), or a new one before the first event.
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", DeprecationWarning)
        try:
            loop = asyncio.get_event_loop()
        except RuntimeError:
            loop = asyncio.new_event_loop()
            asyncio.set_event_loop(loop)
    loop.run_until_complete(hook())


def register_runtime_hooks(runtime: Any | None = None) -> bool:
    """Give both hooks to the Python runtime's SnapStart library (``snapshot_restore_py``, present
    in the managed runtime); False where it is missing (locally, or a runtime without it)."""
    if runtime is None:
        try:
            import snapshot_restore_py as runtime  # type: ignore[import-not-found,no-redef]
        except ImportError:
            return False
    runtime.register_before_snapshot(_run, before_snapshot)
    runtime.register_after_restore(_run, after_restore)
    return True
