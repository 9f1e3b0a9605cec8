"""The chat table, created from its definition in ``template.yaml``.

Tests and ``make dev`` build the table from the template itself, so the deployed
table and the one the code is tested against cannot drift apart.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import yaml

from chatrelay_dev.local.paths import repo_root

TABLE_RESOURCE = "ChatTable"


class _CfnLoader(yaml.SafeLoader):
    """YAML loader that keeps CloudFormation short-form tags (``!Ref``, ``!Sub`` ...) as data."""


def _cfn_tag(loader: yaml.SafeLoader, suffix: str, node: yaml.Node) -> Any:
    if isinstance(node, yaml.ScalarNode):
        value: Any = loader.construct_scalar(node)
    elif isinstance(node, yaml.SequenceNode):
        value = loader.construct_sequence(node, deep=True)
    else:
        value = loader.construct_mapping(node, deep=True)
    return {f"Fn::{suffix}" if suffix != "Ref" else "Ref": value}


_CfnLoader.add_multi_constructor("!", _cfn_tag)


def load_template(path: Path | None = None) -> dict[str, Any]:
    path = path or repo_root() / "template.yaml"
    with path.open(encoding="utf-8") as handle:
        return yaml.load(handle, Loader=_CfnLoader)  # noqa: S506 - SafeLoader subclass


def table_definition(table_name: str, template: dict[str, Any] | None = None) -> dict[str, Any]:
    """``create_table`` arguments for the template's chat table, named ``table_name``."""
    props = (template or load_template())["Resources"][TABLE_RESOURCE]["Properties"]
    definition: dict[str, Any] = {
        "TableName": table_name,
        "AttributeDefinitions": props["AttributeDefinitions"],
        "KeySchema": props["KeySchema"],
        "BillingMode": props.get("BillingMode", "PAY_PER_REQUEST"),
    }
    if props.get("GlobalSecondaryIndexes"):
        definition["GlobalSecondaryIndexes"] = [
            {"IndexName": g["IndexName"], "KeySchema": g["KeySchema"], "Projection": g["Projection"]}
            for g in props["GlobalSecondaryIndexes"]
        ]
    return definition


def ensure_table(client: Any, table_name: str) -> bool:
    """Create the table if it is missing. Returns True when it was created."""
    existing = client.list_tables().get("TableNames", [])
    if table_name in existing:
        return False
    client.create_table(**table_definition(table_name))
    client.get_waiter("table_exists").wait(TableName=table_name, WaiterConfig={"Delay": 0.2, "MaxAttempts": 50})
    return True
