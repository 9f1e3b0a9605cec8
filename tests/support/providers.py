"""Helpers for provider tests: a providers file on disk, an app that reads it, a stored turn."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import httpx
import yaml


def write_providers_file(directory: Path, providers: dict[str, Any], *, fmt: str = "yaml") -> str:
    """Write ``{"providers": providers}`` as YAML (default) or JSON; returns the path."""
    directory.mkdir(parents=True, exist_ok=True)
    path = directory / f"providers.{'yaml' if fmt == 'yaml' else 'json'}"
    body = {"providers": providers}
    path.write_text(yaml.safe_dump(body, sort_keys=False) if fmt == "yaml" else json.dumps(body, indent=2),
                    encoding="utf-8")
    return str(path)


def get_turn(base_url: str, token: str, message_id: str) -> dict[str, Any]:
    """``GET /v1/messages/{id}``: the stored turn as clients see it."""
    response = httpx.get(f"{base_url}/v1/messages/{message_id}", headers={"Authorization": f"Bearer {token}"},
                         timeout=10)
    response.raise_for_status()
    return response.json()


def fake_requests(fake_url: str, marker: str) -> list[dict[str, Any]]:
    """The fake's records of requests whose body mentions ``marker``."""
    records = httpx.get(f"{fake_url}/_mock/requests", timeout=10).json()
    return [r for r in records if marker in json.dumps(r.get("body"), ensure_ascii=False)]
