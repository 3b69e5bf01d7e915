"""Statements: the PDF bucket and the statement-run queue with its dead-letter queue
(PRODUCT.md §4; SERVERLESS.md 3.7; SERVERLESS-PERF-REL.md R7).

- **Bucket** ``Pdfs``: SSE-KMS with the stage's key (bucket key on), all public access blocked,
  TLS required (``enforce_ssl``), objects owned by the bucket owner, retained on stack deletion;
  a lifecycle rule expires statement PDFs after ``StageConfig.statement_pdf_days`` (default 120,
  REFERENCE-PORTAL.md J6) and aborts stale multipart uploads.
- **Queue** ``Pages`` (one message per run page, ids only) and ``PagesDlq``: SQS-managed
  encryption, TLS required, visibility timeout 6 x the consumer's Lambda timeout, a message
  moves to the DLQ after 5 receives; the DLQ keeps messages 14 days for a redrive.
- **Access**: the app role (``Api/Role``) is granted through the bucket's and queues' resource
  policies, naming the role's ARN, not by adding identity policies: the role keeps its single
  inline policy (tests/test_infra.py) and the grants live beside the resources they open. KMS
  already allows the role to use the stage key.
- **Chalice**: when the app is packaged, every function gets ``FRONTDESK_STORAGE=s3``, the bucket,
  the queue URL and the PDF window as environment variables; the SQS consumer's event source is
  pointed at this stage's queue (the decorator names a placeholder) and gets
  ``FunctionResponseTypes: [ReportBatchItemFailures]``, which Chalice does not emit.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

from aws_cdk import Duration, RemovalPolicy
from aws_cdk import aws_iam as iam
from aws_cdk import aws_kms as kms
from aws_cdk import aws_s3 as s3
from aws_cdk import aws_sqs as sqs
from constructs import Construct

#: The SAM function and event names Chalice generates for ``chalicelib.jobs.statements``.
CONSUMER_FUNCTION = "StatementPages"
CONSUMER_EVENT = "StatementPagesSqsEventSource"
MAX_RECEIVES = 5
S3_ACTIONS = ("s3:PutObject", "s3:GetObject")
SQS_ACTIONS = ("sqs:SendMessage", "sqs:ReceiveMessage", "sqs:DeleteMessage", "sqs:GetQueueAttributes",
               "sqs:ChangeMessageVisibility")


def consumer_timeout_seconds() -> int:
    """The SQS consumer's Lambda timeout from ``.chalice/config.json`` (its per-function setting,
    else the app's), which the queue's visibility timeout must exceed sixfold (R7)."""
    config = json.loads((Path(__file__).resolve().parent.parent / ".chalice" / "config.json").read_text())
    default = int(config.get("lambda_timeout", 60))
    return int(config.get("lambda_functions", {}).get("statement_pages", {}).get("lambda_timeout", default))


class Statements(Construct):
    """The statement PDF bucket and run queues of one stage (see the module docstring)."""

    def __init__(self, scope: Construct, id_: str, *, key: kms.IKey, role: iam.IRole, pdf_days: int,
                 chalice: Any = None) -> None:
        super().__init__(scope, id_)
        principal = iam.ArnPrincipal(role.role_arn)
        #: Statement PDFs (PHI): private, encrypted with the stage key, expired after ``pdf_days``.
        self.bucket = s3.Bucket(
            self, "Pdfs",
            encryption=s3.BucketEncryption.KMS, encryption_key=key, bucket_key_enabled=True,
            block_public_access=s3.BlockPublicAccess.BLOCK_ALL, enforce_ssl=True,
            object_ownership=s3.ObjectOwnership.BUCKET_OWNER_ENFORCED,
            removal_policy=RemovalPolicy.RETAIN,
            lifecycle_rules=[s3.LifecycleRule(id="expire-statement-pdfs", expiration=Duration.days(pdf_days),
                                              abort_incomplete_multipart_upload_after=Duration.days(1))],
        )
        self.bucket.add_to_resource_policy(iam.PolicyStatement(
            sid="AppReadsAndWritesPdfs", principals=[principal], actions=list(S3_ACTIONS),
            resources=[self.bucket.arn_for_objects("*")]))
        #: Pages that failed ``MAX_RECEIVES`` times, kept for a redrive.
        self.dead_letters = sqs.Queue(self, "PagesDlq", encryption=sqs.QueueEncryption.SQS_MANAGED,
                                      enforce_ssl=True, retention_period=Duration.days(14))
        #: One message per statement-run page.
        self.queue = sqs.Queue(
            self, "Pages", encryption=sqs.QueueEncryption.SQS_MANAGED, enforce_ssl=True,
            visibility_timeout=Duration.seconds(6 * consumer_timeout_seconds()),
            dead_letter_queue=sqs.DeadLetterQueue(max_receive_count=MAX_RECEIVES, queue=self.dead_letters))
        self.queue.add_to_resource_policy(iam.PolicyStatement(
            sid="AppSendsAndConsumesPages", principals=[principal], actions=list(SQS_ACTIONS),
            resources=[self.queue.queue_arn]))
        self.dead_letters.add_to_resource_policy(iam.PolicyStatement(
            sid="AppRedrivesPages", principals=[principal], actions=list(SQS_ACTIONS),
            resources=[self.dead_letters.queue_arn]))
        #: What the application reads from its environment (``chalicelib.core.config``).
        self.environment = {
            "FRONTDESK_STORAGE": "s3",
            "FRONTDESK_STATEMENTS_BUCKET": self.bucket.bucket_name,
            "FRONTDESK_STATEMENTS_QUEUE_URL": self.queue.queue_url,
            "FRONTDESK_STATEMENT_PDF_DAYS": str(pdf_days),
        }
        if chalice is not None:
            self._wire(chalice)

    def _wire(self, chalice: Any) -> None:
        from aws_cdk import CfnResource

        for child in chalice.sam_template.node.children:
            if isinstance(child, CfnResource) and child.cfn_resource_type == "AWS::Serverless::Function":
                for name, value in self.environment.items():
                    child.add_override(f"Properties.Environment.Variables.{name}", value)
        consumer = chalice.get_resource(CONSUMER_FUNCTION)
        event = f"Properties.Events.{CONSUMER_EVENT}.Properties"
        consumer.add_override(f"{event}.Queue", self.queue.queue_arn)
        consumer.add_override(f"{event}.FunctionResponseTypes", ["ReportBatchItemFailures"])
