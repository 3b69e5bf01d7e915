"""One stack per stage: the KMS key, the table, the application and its alarms."""

from __future__ import annotations

from typing import Any

from aws_cdk import CfnResource, RemovalPolicy, Stack
from aws_cdk import aws_kms as kms
from constructs import Construct

from infra.api import Api
from infra.config import StageConfig
from infra.data import Data
from infra.edge import API_STAGE, Edge
from infra.imports import FUNCTION as IMPORT_FUNCTION
from infra.imports import Imports, s3_events_wired_by_cdk
from infra.monitoring import Monitoring
from infra.notify import Notify
from infra.payments import Payments
from infra.secrets import Secrets
from infra.statements import Statements


class FrontdeskStack(Stack):
    """Everything one stage (``dev``, ``prod``) deploys, from its :class:`StageConfig`.

    The stack's construct id is ``config.stage`` (the Chalice construct reads its stage from it)
    and its CloudFormation name is ``frontdesk-<stage>``. Construct ids ``Key``, ``Data`` (with
    its ``Table``) and ``Api`` (with its ``Role``) are permanent: logical ids derive from them,
    and a new logical id replaces the resource (the table and key would start empty).

    Resources first (table, buckets, queues, topics, alarms), then one role per function from
    their grants (``infra/roles.py``), then the packaged app, then the wiring of its functions
    to the resources (event sources, environment, per-function alarms).

    ``with_api=False`` leaves out the Chalice construct (and so ``chalice package``) but keeps
    the role and the Chalice stage configuration, for fast offline tests.
    """

    def __init__(self, scope: Construct, config: StageConfig, *, with_api: bool = True, **kwargs: Any) -> None:
        kwargs.setdefault("stack_name", config.stack_name)
        kwargs.setdefault("description", f"Frontdesk {config.stage}: table, key, application, alarms")
        super().__init__(scope, config.stage, **kwargs)
        self.config = config
        #: The stage's data key: rotation on, retained (data encrypted with it stays readable).
        self.key = kms.Key(
            self,
            "Key",
            description=f"Frontdesk {config.stage}: DynamoDB table encryption",
            enable_key_rotation=True,
            removal_policy=RemovalPolicy.RETAIN,
        )
        self.data = Data(self, "Data", key=self.key, table_name=config.table_name)
        self.monitoring = Monitoring(self, "Monitoring", table=self.data.table, alarm_email=config.alarm_email)
        topic = self.monitoring.topic
        self.statements = Statements(self, "Statements", key=self.key, pdf_days=config.statement_pdf_days,
                                     stage=config.stage)
        self.imports = Imports(self, "Imports", stage=config.stage, key=self.key, alarm_topic=topic)
        self.notify = Notify(self, "Notify", config=config, alarm_topic=topic)
        self.payments = Payments(self, "Payments", stage=config.stage, alarm_topic=topic)
        self.secrets = Secrets(self, "Secrets", stage=config.stage, key=self.key)
        self.monitoring.dead_letters("StatementPagesDeadLettered", self.statements.dead_letters, "A statement page")
        #: Grant name (infra/roles.py) -> its statements, from the constructs owning the resources.
        self.grants = {**self.statements.grants(), **self.imports.grants(), **self.notify.grants(),
                       **self.payments.grants(), **self.secrets.grants()}
        with s3_events_wired_by_cdk():  # Chalice cannot package S3 events: Imports wires them
            self.api = Api(self, "Api", config=config, table=self.data.table, key=self.key, package=with_api,
                           grants=self.grants)
        stage_arn = None
        if self.api.chalice is not None:
            rest_api = self.api.chalice.get_resource("RestAPI").ref
            stage_arn = f"arn:{self.partition}:apigateway:{self.region}::/restapis/{rest_api}/stages/{API_STAGE}"
        self.edge = Edge(self, "Edge", stage_arn=stage_arn, signin_limit=config.waf_signin_limit,
                         link_limit=config.waf_link_limit, overall_limit=config.waf_overall_limit)
        functions = self.api.functions()
        if functions:
            self.wire(functions)

    def wire(self, functions: dict[str, CfnResource]) -> None:
        """Point the packaged SAM functions (logical id -> resource) at the stack: each its own
        role, log group and logging configuration (``Api.attach``), event sources, environment
        (queue URLs, the secret's ARN, the deployment's settings; no secret value), alarms."""
        self.api.attach(functions)
        self.statements.wire(functions)
        self.imports.wire(functions[IMPORT_FUNCTION])
        self.notify.wire(functions)
        self.payments.wire(functions)
        self.secrets.wire(functions)
        for fn in functions.values():
            for name, value in self.config.environment().items():
                fn.add_override(f"Properties.Environment.Variables.{name}", value)
        self.monitoring.watch_functions(functions)
