"""The single table's key schema and GSIs: one object shared by PynamoDB, DynamoDB Local
table creation and the CDK stack (SERVERLESS.md 2.8), so they cannot drift.

Access patterns (every key starts with the clinic, ``C#<clinic>``; no Scan on any path):

| pattern | index | key |
|---|---|---|
| clinic profile, groups, staff, facilities, providers | table | pk ``C#<c>``, sk ``CLINIC``/``GRP#``/``USR#``/... |
| a guarantor's whole collection (profile, lines, balance, entries, ...) | table | pk ``C#<c>#G#<g>`` |
| one guarantor's figures (QuickPay) | table | GetItem ``BAL`` (+ ``PROFILE``): 1-2 requests |
| guarantors of a clinic (staff lists, CLI) | gsi1 | ``C#<c>#GUARANTORS`` / guarantor id |
| staff user by email (login) | gsi1 | ``C#<c>#USER#<email>`` / user id |
| guarantors by last name (portal sign-in, R17-R22) | gsi2 | ``C#<c>#LN#<last>`` / ``<first>#<g>`` |
| clinics (operator tools, schedules) | gsi1 | ``OPERATOR#CLINICS`` / clinic id |
| (reserved for receipts by batch, messages due by hour, links by guarantor) | gsi3 | |
| notifications due (or leased) in an hour, 8 shards | gsi3 | ``C#<c>#DUE#<yyyy-mm-ddThh>#<shard>`` / ``<due>#<id>`` |
| notifications awaiting review (outcome unknown) | gsi3 | ``C#<c>#NREVIEW`` / ``<time>#<id>`` |
"""

from __future__ import annotations

from dataclasses import dataclass

PK = "pk"
SK = "sk"
TTL = "expires_at_epoch"


@dataclass(frozen=True)
class Gsi:
    """A global secondary index with string keys, projecting all attributes."""

    name: str
    pk: str
    sk: str


GSIS: tuple[Gsi, ...] = (
    Gsi("gsi1", "gsi1pk", "gsi1sk"),
    Gsi("gsi2", "gsi2pk", "gsi2sk"),
    Gsi("gsi3", "gsi3pk", "gsi3sk"),
)


def table_definition(table_name: str) -> dict[str, object]:
    """The CreateTable request for ``table_name`` (on-demand), as boto3 takes it."""
    attrs = [PK, SK] + [a for g in GSIS for a in (g.pk, g.sk)]
    return {
        "TableName": table_name,
        "BillingMode": "PAY_PER_REQUEST",
        "AttributeDefinitions": [{"AttributeName": a, "AttributeType": "S"} for a in attrs],
        "KeySchema": [
            {"AttributeName": PK, "KeyType": "HASH"},
            {"AttributeName": SK, "KeyType": "RANGE"},
        ],
        "GlobalSecondaryIndexes": [
            {
                "IndexName": g.name,
                "KeySchema": [
                    {"AttributeName": g.pk, "KeyType": "HASH"},
                    {"AttributeName": g.sk, "KeyType": "RANGE"},
                ],
                "Projection": {"ProjectionType": "ALL"},
            }
            for g in GSIS
        ],
    }
