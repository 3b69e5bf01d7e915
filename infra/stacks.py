"""One stack per stage: the KMS key, the table, the application and its alarms."""

from __future__ import annotations

from typing import Any

from aws_cdk import RemovalPolicy, Stack
from aws_cdk import aws_kms as kms
from constructs import Construct

from infra.api import Api, _sam_functions
from infra.config import StageConfig
from infra.data import Data
from infra.edge import Edge
from infra.imports import FUNCTION as IMPORT_FUNCTION
from infra.imports import Imports, s3_events_wired_by_cdk
from infra.monitoring import Monitoring
from infra.notify import Notify
from infra.statements import Statements


class FrontdeskStack(Stack):
    """Everything one stage (``dev``, ``prod``) deploys, from its :class:`StageConfig`.

    The stack's construct id is ``config.stage`` (the Chalice construct reads its stage from it)
    and its CloudFormation name is ``frontdesk-<stage>``. Construct ids ``Key``, ``Data`` (with
    its ``Table``) and ``Api`` (with its ``Role``) are permanent: logical ids derive from them,
    and a new logical id replaces the resource (the table and key would start empty).

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
        with s3_events_wired_by_cdk():  # Chalice cannot package S3 events: Imports wires them
            self.api = Api(self, "Api", config=config, table=self.data.table, key=self.key, package=with_api)
        handler = self.api.chalice.get_resource("APIHandler").ref if self.api.chalice is not None else None
        stage_arn = None
        if self.api.chalice is not None:
            rest_api = self.api.chalice.get_resource("RestAPI").ref
            stage_arn = f"arn:{self.partition}:apigateway:{self.region}::/restapis/{rest_api}/stages/api"
        self.edge = Edge(self, "Edge", stage_arn=stage_arn, signin_limit=config.waf_signin_limit,
                         link_limit=config.waf_link_limit, overall_limit=config.waf_overall_limit)
        self.statements = Statements(self, "Statements", key=self.key, role=self.api.role,
                                     pdf_days=config.statement_pdf_days, chalice=self.api.chalice)
        self.monitoring = Monitoring(
            self, "Monitoring", table=self.data.table, alarm_email=config.alarm_email, api_handler_name=handler
        )
        self.imports = Imports(self, "Imports", stage=config.stage, key=self.key, role=self.api.role,
                               alarm_topic=self.monitoring.topic,
                               function=self.api.chalice.get_resource(IMPORT_FUNCTION) if self.api.chalice else None)
        self.notify = Notify(self, "Notify", config=config, role=self.api.role, alarm_topic=self.monitoring.topic)
        if self.api.chalice is not None:
            self.notify.wire({f.node.id: f for f in _sam_functions(self.api.chalice)})
