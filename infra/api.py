"""The application: its Lambda role, the Chalice stage configuration, and the Chalice app itself.

Chalice's CDK construct (``chalice.cdk.Chalice``) runs ``chalice package`` while the CDK app is
synthesized and includes the generated SAM template with ``CfnInclude``. It is the least active
part of Chalice (SERVERLESS.md 1.2 item 6), so everything about it stays in this module.
"""

from __future__ import annotations

import os
from collections.abc import Iterator, Mapping
from contextlib import contextmanager
from pathlib import Path
from typing import Any

from aws_cdk import ArnFormat, CfnResource, RemovalPolicy, Stack, Stage, Token
from aws_cdk import aws_dynamodb as dynamodb
from aws_cdk import aws_iam as iam
from aws_cdk import aws_kms as kms
from aws_cdk import aws_logs as logs
from constructs import Construct

from infra import package
from infra.config import StageConfig
from infra.roles import FUNCTIONS

#: The API handler's logical id in the SAM template.
API_FUNCTION = "APIHandler"

#: The repository root: ``app.py``, ``chalicelib/`` and ``.chalice/config.json`` (Chalice's source_dir).
SOURCE_DIR = Path(__file__).resolve().parent.parent

#: Everything the application does to the table (PynamoDB models and ``store.db``): item reads
#: and writes, queries on the table and its GSIs, batches, transactions, and DescribeTable
#: (PynamoDB reads the key schema once per connection). No Scan: it is never on a request path.
#:
#: There is no IAM action for the ``TransactWriteItems`` / ``TransactGetItems`` APIs: IAM
#: authorizes each item of a transaction by its own action (Put/Update/Delete/ConditionCheckItem,
#: GetItem), all listed here. Listing ``dynamodb:TransactWriteItems`` would grant nothing, and
#: cfn-lint flags it (W3037: not an action of the dynamodb service).
DYNAMODB_ACTIONS: tuple[str, ...] = (
    "dynamodb:GetItem",
    "dynamodb:PutItem",
    "dynamodb:UpdateItem",
    "dynamodb:DeleteItem",
    "dynamodb:ConditionCheckItem",
    "dynamodb:Query",
    "dynamodb:BatchGetItem",
    "dynamodb:BatchWriteItem",
    "dynamodb:DescribeTable",
)

#: What DynamoDB needs of the caller on a table encrypted with a customer-managed key.
KMS_ACTIONS: tuple[str, ...] = ("kms:Decrypt", "kms:Encrypt", "kms:GenerateDataKey")

#: Lambda advanced logging for every function: JSON lines (the ``extra=`` fields of a log call
#: become keys; tests/test_logging_phi.py checks they carry no PHI or secret), application
#: records at INFO and above (never botocore's DEBUG wire log, which prints request bodies),
#: and the platform's own records at WARN. The log group stays ``/aws/lambda/<function>``.
LOGGING_CONFIG: dict[str, str] = {"LogFormat": "JSON", "ApplicationLogLevel": "INFO", "SystemLogLevel": "WARN"}

#: Basic execution, scoped to this stack's functions. CreateLogGroup is left out on purpose: this
#: construct creates each function's log group with the stage's retention, and a function allowed
#: to create its own would recreate one without retention if it were ever deleted.
LOGS_ACTIONS: tuple[str, ...] = ("logs:CreateLogStream", "logs:PutLogEvents")


class Api(Construct):
    """One role per function of the app and, when ``package`` is true, the Chalice application.

    Roles are written here and handed to the functions (``autogen_policy: false``,
    ``manage_iam_role: false``, ``iam_role_arn`` for the API handler, a ``Role`` override on
    every other packaged function), because Chalice's policy generator cannot see PynamoDB's
    calls (SERVERLESS.md section 4 item 19), and Chalice's CDK construct takes one role for all.
    Every role holds one inline policy: :data:`DYNAMODB_ACTIONS` on the table and
    ``<table arn>/index/*``, :data:`KMS_ACTIONS` on the stage key, :data:`LOGS_ACTIONS` on
    ``/aws/lambda/<stack name>-*``, and the statements of its function's grants
    (``infra/roles.py``: ``grants`` maps a grant name to its statements); no wildcard actions,
    and ``"Resource": "*"`` only for SNS ``Publish`` to phone numbers, which has no ARN. The
    policy is inline so that it exists before any function of the included SAM template runs.
    ``role`` (construct id ``Role``, permanent) is the API handler's; ``roles`` maps each
    function's logical id to its role.

    ``stage_config`` is the Chalice stage configuration (same shape as a stage of
    ``.chalice/config.json``) passed to the construct; it overrides the file. ``chalice`` is the
    ``chalice.cdk.Chalice`` construct, or ``None`` when ``package`` is false (fast tests: running
    ``chalice package`` builds the Lambda bundle with Linux wheels from PyPI). ``bundle`` is the
    slimmed bundle's :class:`infra.package.Sizes` when packaged.
    """

    def __init__(
        self,
        scope: Construct,
        id_: str,
        *,
        config: StageConfig,
        table: dynamodb.ITable,
        key: kms.IKey,
        package: bool,
        grants: Mapping[str, list[iam.PolicyStatement]] | None = None,
    ) -> None:
        super().__init__(scope, id_)
        stack = Stack.of(self)
        grants = grants or {}
        log_groups = stack.format_arn(
            service="logs",
            resource="log-group",
            resource_name=f"/aws/lambda/{config.stack_name}-*",
            arn_format=ArnFormat.COLON_RESOURCE_NAME,
        )

        def base() -> list[iam.PolicyStatement]:
            return [
                iam.PolicyStatement(
                    sid="Table",
                    actions=list(DYNAMODB_ACTIONS),
                    resources=[table.table_arn, f"{table.table_arn}/index/*"],
                ),
                iam.PolicyStatement(sid="TableKey", actions=list(KMS_ACTIONS), resources=[key.key_arn]),
                iam.PolicyStatement(sid="Logs", actions=list(LOGS_ACTIONS), resources=[f"{log_groups}:*"]),
            ]

        #: Function logical id -> the role it runs as.
        self.roles: dict[str, iam.Role] = {}
        for function in FUNCTIONS:
            statements = base()
            for grant in sorted(function.grants):
                statements.extend(grants.get(grant, []))
            construct_id = "Role" if function.logical_id == API_FUNCTION else f"Role{function.logical_id}"
            self.roles[function.logical_id] = iam.Role(
                self,
                construct_id,
                assumed_by=iam.ServicePrincipal("lambda.amazonaws.com"),
                description=f"Frontdesk {config.stage}: Lambda function {function.name}",
                inline_policies={"Frontdesk": iam.PolicyDocument(statements=statements)},
            )
        #: The API handler's role (construct id permanent: Chalice refers to its ARN).
        self.role = self.roles[API_FUNCTION]
        self.stage_config: dict[str, Any] = {
            "autogen_policy": False,
            "manage_iam_role": False,
            "iam_role_arn": self.role.role_arn,
            "environment_variables": {"FRONTDESK_TABLE": table.table_name},
        }
        self.chalice: Any = None
        self.bundle: Any = None
        #: Function logical id (in the SAM template) -> its log group with the stage's retention.
        self.log_groups: dict[str, logs.CfnLogGroup] = {}
        self._log_retention_days = config.log_retention_days
        if package:
            self.chalice = _chalice_app(stack, config=config, stage_config=self.stage_config)
            self.bundle = self.chalice.bundle_sizes

    def attach(self, functions: Mapping[str, CfnResource]) -> None:
        """Give each packaged SAM function (logical id -> resource) its role, its log group with
        the stage's retention (retained on delete) and :data:`LOGGING_CONFIG`.

        Raises ValueError for a function ``infra/roles.py`` does not list."""
        for name, sam_function in functions.items():
            if name not in self.roles:
                raise ValueError(f"chalice package made a function {name} that infra/roles.py does not list")
            sam_function.add_property_override("Role", self.roles[name].role_arn)
            sam_function.add_property_override("LoggingConfig", dict(LOGGING_CONFIG))
            group = logs.CfnLogGroup(
                self,
                f"{name}Logs",
                log_group_name=f"/aws/lambda/{sam_function.ref}",
                retention_in_days=self._log_retention_days,
            )
            group.apply_removal_policy(RemovalPolicy.RETAIN)
            self.log_groups[name] = group

    def functions(self) -> dict[str, CfnResource]:
        """The packaged SAM functions by logical id (empty when not packaged)."""
        return {f.node.id: f for f in _sam_functions(self.chalice)} if self.chalice is not None else {}


def _chalice_app(stack: Stack, *, config: StageConfig, stage_config: dict[str, Any]) -> Any:
    """Package the app with ``chalice package`` and include its SAM template in ``stack``.

    The construct's scope is the stack itself because the construct takes the Chalice stage
    name from its scope's path, and the stack's construct id is the stage name. API throttling
    is set on the SAM ``RestAPI`` (Chalice has no setting for it).
    """
    from chalice.cdk import Chalice  # development-time Chalice: never imported under chalicelib

    class SlimChalice(Chalice):
        """The construct, with the bundle slimmed (``infra/package.py``, B4) before it becomes
        the code asset."""

        bundle_sizes: package.Sizes

        def _generate_sam_template_with_assets(self, chalice_out_dir: str, package_id: str) -> str:
            bundle = Path(self._sam_package_dir) / "deployment.zip"
            self.bundle_sizes = package.slim(bundle, bundle)
            return str(super()._generate_sam_template_with_assets(chalice_out_dir, package_id))

    with _packaging_environment(stack):
        chalice = SlimChalice(stack, "Chalice", source_dir=str(SOURCE_DIR), stage_config=stage_config)
    chalice.get_resource("RestAPI").add_property_override(
        "MethodSettings",
        [
            {
                "ResourcePath": "/*",
                "HttpMethod": "*",
                "ThrottlingRateLimit": config.throttle_rate,
                "ThrottlingBurstLimit": config.throttle_burst,
            }
        ],
    )
    return chalice


@contextmanager
def _packaging_environment(stack: Stack) -> Iterator[None]:
    """Run ``chalice package`` from the cloud assembly directory, with a region, then restore.

    - The construct writes ``chalice.out/`` into the current directory; working from the
      assembly's outdir keeps it inside ``cdk.out`` (or a test's tmp dir), not the repository.
    - Packaging creates an API Gateway client only to name the service principal, which needs
      a region; an environment-agnostic stack has none, so ``us-east-1`` stands in (the
      principal is the same in every commercial region).
    - Loading ``app.py`` copies the stage's environment variables into ``os.environ`` (CDK
      tokens, here); the environment is put back afterwards.
    """
    saved_env = dict(os.environ)
    saved_cwd = os.getcwd()
    stage = Stage.of(stack)
    assert stage is not None, "a stack always has an enclosing stage (the App)"
    outdir = Path(stage.outdir)
    outdir.mkdir(parents=True, exist_ok=True)
    if not (os.environ.get("AWS_REGION") or os.environ.get("AWS_DEFAULT_REGION")):
        os.environ["AWS_DEFAULT_REGION"] = "us-east-1" if Token.is_unresolved(stack.region) else stack.region
    os.chdir(outdir)
    try:
        yield
    finally:
        os.chdir(saved_cwd)
        os.environ.clear()
        os.environ.update(saved_env)


def _sam_functions(chalice: Any) -> list[CfnResource]:
    """The ``AWS::Serverless::Function`` resources of the included template (API handler, and any
    scheduled or event handler Chalice generates), in template order."""
    return [
        child
        for child in chalice.sam_template.node.children
        if isinstance(child, CfnResource) and child.cfn_resource_type == "AWS::Serverless::Function"
    ]
