"""Create the single table from :mod:`chalicelib.store.schema` (DynamoDB Local, tests, CLI)."""

from __future__ import annotations

from typing import Any

from chalicelib.store import db, schema


def table_create(*, table_name: str) -> bool:
    """Create ``table_name`` with its GSIs and TTL if missing; return True if it was created."""
    conn = db.connection()
    client: Any = conn.client
    existing = client.list_tables().get("TableNames", [])
    if table_name in existing:
        return False
    client.create_table(**schema.table_definition(table_name))
    client.get_waiter("table_exists").wait(TableName=table_name)
    client.update_time_to_live(
        TableName=table_name,
        TimeToLiveSpecification={"Enabled": True, "AttributeName": schema.TTL},
    )
    return True


def table_delete(*, table_name: str) -> None:
    """Delete ``table_name`` (tests and local resets only)."""
    client: Any = db.connection().client
    client.delete_table(TableName=table_name)
