"""Imports: the S3 bucket clinics drop files into, the S3 -> Lambda notification, the failure
destination of the import function and its alarm (SERVERLESS-PERF-REL.md R8, §4.1).

- **Bucket** ``Drop`` named ``frontdesk-<stage>-imports-<account>-<region>``: SSE-KMS with the
  stage's key (bucket key on), all public access blocked, TLS required, objects owned by the
  bucket owner, retained; files expire after ``RETENTION_DAYS`` (they hold PHI and are already
  in the ledger). The grant ``imports_read`` (``infra/roles.py``) reads ``imports/*``.
- **Failure destination** ``Failures``: an SQS queue (stage key, TLS required, 14 days) that
  receives an import event after its 3 attempts; the grant ``imports_failed`` sends to it
  (Lambda sends as the function's role). An alarm fires on its first message.
- **When the app is packaged** (the Chalice construct exists): the bucket notifies the import
  function (``ImportObjectCreated``) for ``s3:ObjectCreated:*`` under ``imports/``, with the
  ``AWS::Lambda::Permission`` for S3; the function gets ``EventInvokeConfig`` (an override on the
  SAM function: ``MaximumRetryAttempts`` 2, ``MaximumEventAgeInSeconds`` 6 h, on failure ->
  ``Failures``), which Chalice cannot set; and an alarm fires on the first message in
  ``Failures`` (a bad file never disappears silently).

Chalice's SAM packager refuses ``@on_s3_event`` ("CloudFormation does not support modifying the
event notifications of existing buckets"): :func:`s3_events_wired_by_cdk` lets it package the
function without the event while the stack is built, and this construct wires the event itself
on a bucket the stack owns. The bucket's name is built from the stage, account and region, so the
permission's source ARN does not refer to the bucket resource (which depends on the permission).
"""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any

from aws_cdk import Aws, CfnResource, Duration, Fn, RemovalPolicy
from aws_cdk import aws_cloudwatch as cloudwatch
from aws_cdk import aws_cloudwatch_actions as cw_actions
from aws_cdk import aws_iam as iam
from aws_cdk import aws_kms as kms
from aws_cdk import aws_lambda as lambda_
from aws_cdk import aws_s3 as s3
from aws_cdk import aws_sns as sns
from aws_cdk import aws_sqs as sqs
from constructs import Construct

#: The SAM function Chalice generates for ``chalicelib.jobs.imports.import_object_created``.
FUNCTION = "ImportObjectCreated"
PREFIX = "imports/"
RETENTION_DAYS = 30
MAX_RETRY_ATTEMPTS = 2  # 3 attempts in all (R8)
MAX_EVENT_AGE_SECONDS = 6 * 3600


@contextmanager
def s3_events_wired_by_cdk() -> Iterator[None]:
    """While packaging the app for the CDK stack, let Chalice's SAM packager skip the S3 event
    of ``@on_s3_event`` handlers (it raises NotImplementedError otherwise); :class:`Imports`
    creates the notification. The packager is restored afterwards."""
    from chalice.package import SAMTemplateGenerator  # development-time Chalice: infra only

    original = SAMTemplateGenerator._generate_s3bucketnotification

    def skip(self: Any, resource: Any, template: dict[str, Any]) -> None:
        return None

    SAMTemplateGenerator._generate_s3bucketnotification = skip  # type: ignore[method-assign]
    try:
        yield
    finally:
        SAMTemplateGenerator._generate_s3bucketnotification = original  # type: ignore[method-assign]


class Imports(Construct):
    """The import bucket, the failure destination and, given the function, its wiring and alarm.

    ``function``: the SAM function resource of the import handler (``chalice.get_resource(
    FUNCTION)``) or None when the app is not packaged. ``alarm_topic``: where the alarm goes.
    """

    def __init__(self, scope: Construct, id_: str, *, stage: str, key: kms.IKey,
                 alarm_topic: sns.ITopic, function: CfnResource | None = None) -> None:
        super().__init__(scope, id_)
        #: The bucket's name, built without a reference to the bucket (see the module docstring).
        self.bucket_name = Fn.join("-", ["frontdesk", stage, "imports", Aws.ACCOUNT_ID, Aws.REGION])
        #: Where clinics drop files: ``imports/<clinic id>/<file>``.
        self.bucket = s3.Bucket(
            self, "Drop", bucket_name=self.bucket_name,
            encryption=s3.BucketEncryption.KMS, encryption_key=key, bucket_key_enabled=True,
            block_public_access=s3.BlockPublicAccess.BLOCK_ALL, enforce_ssl=True,
            object_ownership=s3.ObjectOwnership.BUCKET_OWNER_ENFORCED, removal_policy=RemovalPolicy.RETAIN,
            lifecycle_rules=[s3.LifecycleRule(id="expire-imported-files", expiration=Duration.days(RETENTION_DAYS),
                                              abort_incomplete_multipart_upload_after=Duration.days(1))],
        )
        #: The on-failure destination of the import function (R8).
        self.failures = sqs.Queue(self, "Failures", encryption=sqs.QueueEncryption.KMS, encryption_master_key=key,
                                  enforce_ssl=True, retention_period=Duration.days(14))
        self.alarm = self.failures.metric_approximate_number_of_messages_visible(
            period=Duration.minutes(5), statistic="Maximum",
        ).create_alarm(
            self, "FailuresAlarm", threshold=1, evaluation_periods=1,
            comparison_operator=cloudwatch.ComparisonOperator.GREATER_THAN_OR_EQUAL_TO_THRESHOLD,
            treat_missing_data=cloudwatch.TreatMissingData.NOT_BREACHING,
            alarm_description="An imported file failed 3 times; its S3 event is in the failure queue",
        )
        self.alarm.add_alarm_action(cw_actions.SnsAction(alarm_topic))
        if function is not None:
            self.wire(function)

    def grants(self) -> dict[str, list[iam.PolicyStatement]]:
        """Grant name (``infra/roles.py``) -> its statements on the bucket and the failure queue."""
        return {
            # The ARN from the bucket's name, not a reference to the bucket: the bucket depends on
            # the function (its notification), the function on its role.
            "imports_read": [iam.PolicyStatement(sid="ImportsRead", actions=["s3:GetObject"], resources=[
                Fn.join("", ["arn:", Aws.PARTITION, ":s3:::", self.bucket_name, f"/{PREFIX}*"])])],
            "imports_failed": [iam.PolicyStatement(sid="ImportsFailed", actions=["sqs:SendMessage"],
                                                   resources=[self.failures.queue_arn])],
        }

    def wire(self, function: CfnResource) -> None:
        """Notify ``function`` (the SAM import function) of new files, with its retries and failure
        destination (R8)."""
        permission = lambda_.CfnPermission(
            self, "S3Invokes", action="lambda:InvokeFunction", function_name=function.ref,
            principal="s3.amazonaws.com", source_account=Aws.ACCOUNT_ID,
            source_arn=Fn.join("", ["arn:", Aws.PARTITION, ":s3:::", self.bucket_name]))
        cfn_bucket = self.bucket.node.default_child
        assert isinstance(cfn_bucket, s3.CfnBucket)
        cfn_bucket.add_property_override("NotificationConfiguration.LambdaConfigurations", [{
            "Event": "s3:ObjectCreated:*",
            "Filter": {"S3Key": {"Rules": [{"Name": "prefix", "Value": PREFIX}]}},
            "Function": function.get_att("Arn"),
        }])
        cfn_bucket.node.add_dependency(permission)  # S3 checks the permission when it saves the notification
        function.add_property_override("EventInvokeConfig", {
            "MaximumRetryAttempts": MAX_RETRY_ATTEMPTS,
            "MaximumEventAgeInSeconds": MAX_EVENT_AGE_SECONDS,
            "DestinationConfig": {"OnFailure": {"Type": "SQS", "Destination": self.failures.queue_arn}},
        })
