"""The stateful part of a stage: the single DynamoDB table (SERVERLESS.md 3.10)."""

from __future__ import annotations

from aws_cdk import RemovalPolicy
from aws_cdk import aws_dynamodb as dynamodb
from aws_cdk import aws_kms as kms
from constructs import Construct

from chalicelib.store import schema

# Permanent construct id (SERVERLESS.md 1.8 item 4, section 4 item 20): the table's logical id
# is derived from it, and a new logical id makes CloudFormation create a new, empty table.
TABLE_ID = "Table"


def _string_key(name: str) -> dynamodb.Attribute:
    return dynamodb.Attribute(name=name, type=dynamodb.AttributeType.STRING)


class Data(Construct):
    """The single table. Key schema, GSIs and TTL attribute come from ``chalicelib.store.schema``,
    the same object DynamoDB Local tables are created from, so the two cannot drift.

    On demand, encrypted with the stage's customer-managed ``key``, point-in-time recovery on,
    deletion protection on and ``RemovalPolicy.RETAIN``. The construct id ``Table`` is permanent:
    a new id replaces the table. No local secondary indexes (they cap an item collection at
    10 GB) and no replicas (conditional writes are not serialised across regions, and the
    ledger's correctness rests on them).
    """

    def __init__(self, scope: Construct, id_: str, *, key: kms.IKey, table_name: str) -> None:
        super().__init__(scope, id_)
        #: The table; ``table.table_arn`` and ``f"{table_arn}/index/*"`` scope the app role.
        self.table = dynamodb.Table(
            self,
            TABLE_ID,
            table_name=table_name,
            partition_key=_string_key(schema.PK),
            sort_key=_string_key(schema.SK),
            billing_mode=dynamodb.BillingMode.PAY_PER_REQUEST,
            encryption=dynamodb.TableEncryption.CUSTOMER_MANAGED,
            encryption_key=key,
            point_in_time_recovery_specification=dynamodb.PointInTimeRecoverySpecification(
                point_in_time_recovery_enabled=True
            ),
            time_to_live_attribute=schema.TTL,
            deletion_protection=True,
            removal_policy=RemovalPolicy.RETAIN,
        )
        for gsi in schema.GSIS:
            self.table.add_global_secondary_index(
                index_name=gsi.name,
                partition_key=_string_key(gsi.pk),
                sort_key=_string_key(gsi.sk),
                projection_type=dynamodb.ProjectionType.ALL,
            )
