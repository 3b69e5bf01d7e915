"""Create the single table from :mod:`chalicelib.store.schema` (DynamoDB Local, tests, CLI)."""

from __future__ import annotations

from typing import Any

from botocore.exceptions import ClientError

from chalicelib.store import db, schema


def _code(exc: ClientError) -> str:
    return str(exc.response.get("Error", {}).get("Code", ""))


def table_create(*, table_name: str) -> bool:
    """Create ``table_name`` with its GSIs and TTL if missing; return True if it was missing.

    Safe to repeat and to retry: a CreateTable whose answer was lost (the SDK retries it and
    gets ResourceInUseException) or an UpdateTimeToLive already applied count as done.
    Raises botocore ClientError for anything else.
    """
    conn = db.connection()
    client: Any = conn.client
    existing = client.list_tables().get("TableNames", [])
    if table_name in existing:
        return False
    try:
        client.create_table(**schema.table_definition(table_name))
    except ClientError as exc:
        if _code(exc) != "ResourceInUseException":
            raise
    client.get_waiter("table_exists").wait(TableName=table_name)
    try:
        client.update_time_to_live(
            TableName=table_name,
            TimeToLiveSpecification={"Enabled": True, "AttributeName": schema.TTL},
        )
    except ClientError as exc:
        if _code(exc) != "ValidationException" or "already enabled" not in str(exc):
            raise
    return True


def table_delete(*, table_name: str) -> None:
    """Delete ``table_name`` (tests and local resets only)."""
    client: Any = db.connection().client
    client.delete_table(TableName=table_name)
