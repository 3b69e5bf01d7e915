"""The stage's application secret: one Secrets Manager secret, ``frontdesk-<stage>/app``.

It holds ``code_pepper`` (generated here: the HMAC key of one-time codes, payment-link subjects
and statement verification codes, SECURITY.md R16) and, put by the operator after the first
deploy, ``stripe_secret_key``, ``stripe_webhook_secret`` and ``stripe_publishable_key``
(README, Production). The secret is encrypted with the stage key and retained.

The functions get only the secret's ARN (``FRONTDESK_SECRETS_ARN``) and read the values from
Secrets Manager on first use, cached per execution environment for minutes
(``chalicelib.core.secrets``; SERVERLESS-PERF-REL.md §6.3, R17: no secret in environment
variables, the template or ``.chalice/config.json``). So a value put into the secret reaches
the functions within the cache's lifetime, with no deploy. The grant ``secrets_read``
(``infra/roles.py``) is ``secretsmanager:GetSecretValue`` on exactly this secret's ARN; the
roles already hold ``kms:Decrypt`` on the stage key the secret is encrypted with.
"""

from __future__ import annotations

from collections.abc import Mapping

from aws_cdk import CfnResource, RemovalPolicy
from aws_cdk import aws_iam as iam
from aws_cdk import aws_kms as kms
from aws_cdk import aws_secretsmanager as secretsmanager
from constructs import Construct

from infra.roles import BY_LOGICAL_ID

#: The variable the application reads the secret's ARN from (``chalicelib.core.secrets.ARN_ENV``).
ARN_ENV = "FRONTDESK_SECRETS_ARN"
#: The grant (``infra/roles.py``) that lets a function read the secret.
GRANT = "secrets_read"


class Secrets(Construct):
    """The secret, the statement that reads it, and its ARN for the functions (module docstring)."""

    def __init__(self, scope: Construct, id_: str, *, stage: str, key: kms.IKey) -> None:
        super().__init__(scope, id_)
        self.secret = secretsmanager.Secret(
            self, "App", secret_name=f"frontdesk-{stage}/app", encryption_key=key,
            description=f"Frontdesk {stage}: code pepper and Stripe keys",
            generate_secret_string=secretsmanager.SecretStringGenerator(
                secret_string_template="{}", generate_string_key="code_pepper", password_length=48,
                exclude_punctuation=True),
            removal_policy=RemovalPolicy.RETAIN)

    def grants(self) -> dict[str, list[iam.PolicyStatement]]:
        """Grant name -> its statement: ``GetSecretValue`` on this secret's ARN, nothing else."""
        return {GRANT: [iam.PolicyStatement(sid="AppSecret", actions=["secretsmanager:GetSecretValue"],
                                            resources=[self.secret.secret_arn])]}

    def environment(self, logical_id: str) -> dict[str, str]:
        """Variables for the SAM function ``logical_id``: the secret's ARN if it may read it."""
        function = BY_LOGICAL_ID.get(logical_id)
        return {ARN_ENV: self.secret.secret_arn} if function is not None and GRANT in function.grants else {}

    def wire(self, functions: Mapping[str, CfnResource]) -> None:
        """Give every SAM function (logical id -> ``CfnResource``) that reads the secret its ARN."""
        for logical_id, fn in functions.items():
            for name, value in self.environment(logical_id).items():
                fn.add_override(f"Properties.Environment.Variables.{name}", value)
