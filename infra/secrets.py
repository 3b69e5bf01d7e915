"""The stage's application secrets: one Secrets Manager secret, ``frontdesk-<stage>/app``.

It holds ``code_pepper`` (generated here: the HMAC key of one-time codes, payment-link subjects
and statement verification codes, SECURITY.md R16) and, put by the operator after the first
deploy, ``stripe_secret_key``, ``stripe_webhook_secret`` and ``stripe_publishable_key``
(README, Production). The secret is encrypted with the stage key and retained.

The functions get the values as CloudFormation dynamic references
(``{{resolve:secretsmanager:<arn>:SecretString:<key>::<version>}}``): the synthesized template,
``.chalice/config.json`` and the CDK code hold no secret value (R17 scans them), and
CloudFormation resolves the reference when it deploys. The deployed function configuration does
hold the value (encrypted at rest); reading it from Secrets Manager at first use instead needs
an application change (a lazy reader in ``chalicelib.core.config`` and the processor registry),
listed in the README as the next step. A reference is re-resolved only when the template
changes, so the operator pins the secret's version (``secrets_version`` context) after a change.
"""

from __future__ import annotations

from collections.abc import Mapping

from aws_cdk import CfnResource, RemovalPolicy
from aws_cdk import aws_kms as kms
from aws_cdk import aws_secretsmanager as secretsmanager
from constructs import Construct

#: Environment variable -> key in the secret; the pepper goes to every function.
PEPPER = {"FRONTDESK_CODE_PEPPER": "code_pepper"}
STRIPE = {
    "FRONTDESK_STRIPE_SECRET_KEY": "stripe_secret_key",
    "FRONTDESK_STRIPE_WEBHOOK_SECRET": "stripe_webhook_secret",
    "FRONTDESK_STRIPE_PUBLISHABLE_KEY": "stripe_publishable_key",
}
#: Functions that call the processor (``chalicelib.payments``): the only ones given Stripe keys.
STRIPE_FUNCTIONS = frozenset({"APIHandler", "PaymentAttemptsComplete", "ProcessorEventsConsume"})


class Secrets(Construct):
    """The secret and the references the functions get (see the module docstring).

    ``stripe``: the operator has put the Stripe keys into the secret (``StageConfig.stripe``);
    until then the functions get no Stripe variables and the processor stays off.
    ``version``: a secret version id to pin the references to (after rotating a value).
    """

    def __init__(self, scope: Construct, id_: str, *, stage: str, key: kms.IKey, stripe: bool,
                 version: str | None) -> None:
        super().__init__(scope, id_)
        self.secret = secretsmanager.Secret(
            self, "App", secret_name=f"frontdesk-{stage}/app", encryption_key=key,
            description=f"Frontdesk {stage}: code pepper and Stripe keys",
            generate_secret_string=secretsmanager.SecretStringGenerator(
                secret_string_template="{}", generate_string_key="code_pepper", password_length=48,
                exclude_punctuation=True),
            removal_policy=RemovalPolicy.RETAIN)
        self.stripe = stripe
        self.version = version

    def reference(self, field: str) -> str:
        """The dynamic reference to ``field`` of the secret (a string CloudFormation resolves)."""
        return self.secret.secret_value_from_json(field).unsafe_unwrap() if self.version is None else (
            f"{{{{resolve:secretsmanager:{self.secret.secret_arn}:SecretString:{field}::{self.version}}}}}")

    def environment(self, logical_id: str) -> dict[str, str]:
        """Variables (dynamic references) for the SAM function ``logical_id``."""
        wanted = dict(PEPPER)
        if self.stripe and logical_id in STRIPE_FUNCTIONS:
            wanted.update(STRIPE)
        return {name: self.reference(field) for name, field in wanted.items()}

    def wire(self, functions: Mapping[str, CfnResource]) -> None:
        """Add the references to every SAM function (logical id -> ``CfnResource``)."""
        for logical_id, fn in functions.items():
            for name, value in self.environment(logical_id).items():
                fn.add_override(f"Properties.Environment.Variables.{name}", value)
