"""Statements: the PDF bucket and the statement-run queue with its dead-letter queue
(PRODUCT.md §4; SERVERLESS.md 3.7; SERVERLESS-PERF-REL.md R7).

- **Bucket** ``Pdfs``: SSE-KMS with the stage's key (bucket key on), all public access blocked,
  TLS required (``enforce_ssl``), objects owned by the bucket owner, retained on stack deletion;
  a lifecycle rule expires statement PDFs after ``StageConfig.statement_pdf_days`` (default 120,
  REFERENCE-PORTAL.md J6) and aborts stale multipart uploads.
- **Queue** ``Pages`` (one message per run page, ids only) and ``PagesDlq``: SQS-managed
  encryption, TLS required, visibility timeout 6 x the consumer's Lambda timeout, a message
  moves to the DLQ after 5 receives; the DLQ keeps messages 14 days for a redrive.
- **Access**: :meth:`Statements.grants` gives the statements of the grants ``pdfs_read``,
  ``pdfs_write``, ``statements_enqueue`` and ``statements_consume`` (``infra/roles.py``), which
  go into the roles of the functions that hold them (exact actions on the bucket's objects and
  the queue's ARN); every role may already use the stage key.
- **Chalice**: when the app is packaged, every function gets ``FRONTDESK_STORAGE=s3``, the bucket,
  the queue URL and the PDF window as environment variables; the SQS consumer's event source is
  pointed at this stage's queue (the decorator names a placeholder) and gets
  ``FunctionResponseTypes: [ReportBatchItemFailures]``, which Chalice does not emit.
"""

from __future__ import annotations

from typing import Any

from aws_cdk import Duration, RemovalPolicy
from aws_cdk import aws_iam as iam
from aws_cdk import aws_kms as kms
from aws_cdk import aws_s3 as s3
from aws_cdk import aws_sqs as sqs
from constructs import Construct

from infra.roles import CONSUME_ACTIONS, function_timeout_seconds

#: The SAM function and event names Chalice generates for ``chalicelib.jobs.statements``.
CONSUMER_FUNCTION = "StatementPages"
CONSUMER_EVENT = "StatementPagesSqsEventSource"
MAX_RECEIVES = 5


def consumer_timeout_seconds(stage: str = "prod") -> int:
    """The SQS consumer's Lambda timeout from ``.chalice/config.json`` (Chalice's lookup order),
    which the queue's visibility timeout must exceed sixfold (R7)."""
    return function_timeout_seconds("statement_pages", stage)


class Statements(Construct):
    """The statement PDF bucket and run queues of one stage (see the module docstring)."""

    def __init__(self, scope: Construct, id_: str, *, key: kms.IKey, pdf_days: int, stage: str = "prod",
                 chalice: Any = None) -> None:
        super().__init__(scope, id_)
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
        #: Pages that failed ``MAX_RECEIVES`` times, kept for a redrive.
        self.dead_letters = sqs.Queue(self, "PagesDlq", encryption=sqs.QueueEncryption.SQS_MANAGED,
                                      enforce_ssl=True, retention_period=Duration.days(14))
        #: One message per statement-run page.
        self.queue = sqs.Queue(
            self, "Pages", encryption=sqs.QueueEncryption.SQS_MANAGED, enforce_ssl=True,
            visibility_timeout=Duration.seconds(6 * consumer_timeout_seconds(stage)),
            dead_letter_queue=sqs.DeadLetterQueue(max_receive_count=MAX_RECEIVES, queue=self.dead_letters))
        #: What the application reads from its environment (``chalicelib.core.config``).
        self.environment = {
            "FRONTDESK_STORAGE": "s3",
            "FRONTDESK_STATEMENTS_BUCKET": self.bucket.bucket_name,
            "FRONTDESK_STATEMENTS_QUEUE_URL": self.queue.queue_url,
            "FRONTDESK_STATEMENT_PDF_DAYS": str(pdf_days),
        }
        if chalice is not None:
            from infra.api import _sam_functions

            self.wire({f.node.id: f for f in _sam_functions(chalice)})

    def grants(self) -> dict[str, list[iam.PolicyStatement]]:
        """Grant name (``infra/roles.py``) -> its statements on this construct's bucket and queue."""
        pdfs = self.bucket.arn_for_objects("*")
        return {
            "pdfs_read": [iam.PolicyStatement(sid="PdfsRead", actions=["s3:GetObject"], resources=[pdfs])],
            "pdfs_write": [iam.PolicyStatement(sid="PdfsWrite", actions=["s3:PutObject", "s3:GetObject"],
                                               resources=[pdfs])],
            "statements_enqueue": [iam.PolicyStatement(sid="PagesEnqueue", actions=["sqs:SendMessage"],
                                                       resources=[self.queue.queue_arn])],
            "statements_consume": [iam.PolicyStatement(sid="PagesConsume", actions=list(CONSUME_ACTIONS),
                                                       resources=[self.queue.queue_arn])],
        }

    def wire(self, functions: dict[str, Any]) -> None:
        """Give every SAM function (logical id -> resource) the bucket, queue and PDF window, and
        point the consumer at the stage's queue with ``ReportBatchItemFailures``."""
        for child in functions.values():
            for name, value in self.environment.items():
                child.add_override(f"Properties.Environment.Variables.{name}", value)
        if CONSUMER_FUNCTION not in functions:
            return
        consumer = functions[CONSUMER_FUNCTION]
        event = f"Properties.Events.{CONSUMER_EVENT}.Properties"
        consumer.add_override(f"{event}.Queue", self.queue.queue_arn)
        consumer.add_override(f"{event}.FunctionResponseTypes", ["ReportBatchItemFailures"])
