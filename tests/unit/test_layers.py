"""The package's layers: no module imports a module of a layer above its own.

    api          HTTP: routes, schemas, middleware, the process-wide services
    turns        the turn as a use case (admission, safety, prefetch, replay, history)
    streaming    the relay, the follower, the SSE response
    safety, quotas
    events, providers, auth
    store        records and their DynamoDB repositories
    base         errors, ids, settings, secrets, observability, tracing, text, aws (the AWS
                 client), http1 (the HTTP/1.1 transport), snapshot (SnapStart hooks)

Within one sub-package anything goes. The routes, which should be HTTP only, also import
nothing of the store, the providers or the quotas (they reach them through the services).
"""

from __future__ import annotations

import ast
from pathlib import Path

import pytest

PACKAGE = Path(__file__).resolve().parents[2] / "layers" / "chatrelay" / "chatrelay"
LAYERS = [
    {"__init__", "errors", "ids", "settings", "secrets", "observability", "tracing", "text", "aws", "http1",
     "snapshot"},
    {"store"},
    {"events", "providers", "auth"},
    {"safety", "quotas"},
    {"streaming"},
    {"turns"},
    {"api"},
]
RANK = {name: rank for rank, names in enumerate(LAYERS) for name in names}
MODULES = sorted(PACKAGE.rglob("*.py"))


def _unit(module: str) -> str:
    """``chatrelay.store.dynamodb`` -> ``store``; ``chatrelay`` -> ``__init__``."""
    parts = module.split(".")
    if len(parts) == 1 or not (PACKAGE / parts[1]).exists() and not (PACKAGE / f"{parts[1]}.py").exists():
        return "__init__"  # the package itself, or a name it defines (``__version__``)
    return parts[1]


def _imports(path: Path) -> set[str]:
    names: set[str] = set()
    for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
        if isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
            base = node.module
            names |= {f"{base}.{alias.name}" if base == "chatrelay" else base for alias in node.names}
        elif isinstance(node, ast.Import):
            names |= {alias.name for alias in node.names}
    return {name for name in names if name == "chatrelay" or name.startswith("chatrelay.")}


def _own_unit(path: Path) -> str:
    relative = path.relative_to(PACKAGE)
    return relative.parts[0] if len(relative.parts) > 1 else relative.stem


def test_every_module_belongs_to_a_layer():
    assert {_own_unit(path) for path in MODULES} <= set(RANK)


@pytest.mark.parametrize("path", MODULES, ids=lambda p: p.relative_to(PACKAGE).as_posix())
def test_no_import_runs_up_the_layers(path: Path):
    own = _own_unit(path)
    upward = [name for name in _imports(path)
              if _unit(name) != own and RANK[_unit(name)] > RANK[own]]
    assert upward == [], f"{path.relative_to(PACKAGE)} imports from a higher layer"


@pytest.mark.parametrize("path", sorted((PACKAGE / "api").glob("routes_*.py")), ids=lambda p: p.name)
def test_routes_import_no_store_provider_or_quota_internals(path: Path):
    internals = [name for name in _imports(path) if _unit(name) in {"store", "providers", "quotas"}]
    assert internals == []
