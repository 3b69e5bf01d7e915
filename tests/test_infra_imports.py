"""infra/imports.py: the import bucket, the S3 -> Lambda notification, the failure destination
and its alarm (SERVERLESS-PERF-REL.md R8), synthesized offline.

The stage stacks are built without the Chalice construct (fast); the function wiring is checked
on the construct with a stand-in SAM function of the same logical id, and the packaging patch on
Chalice's own SAM generator. (``tests/test_infra.py``'s slow test packages the real app, with
the import handler, through :func:`infra.imports.s3_events_wired_by_cdk`.)
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import aws_cdk as cdk
import pytest
from aws_cdk import aws_kms as kms
from aws_cdk import aws_sns as sns
from aws_cdk.assertions import Match, Template

from infra.app import build_app
from infra.imports import FUNCTION, MAX_EVENT_AGE_SECONDS, PREFIX, Imports, s3_events_wired_by_cdk
from infra.stacks import FrontdeskStack


def _resources(template: dict[str, Any], type_: str) -> dict[str, dict[str, Any]]:
    return {k: v for k, v in template["Resources"].items() if v["Type"] == type_}


@pytest.fixture(scope="module")
def dev() -> dict[str, Any]:
    app = build_app(stages=["dev"], with_api=False)
    [stack] = [c for c in app.node.children if isinstance(c, FrontdeskStack)]
    return Template.from_stack(stack).to_json()


def test_the_import_bucket_is_private_encrypted_and_named_per_stage(dev):
    buckets = {k: v for k, v in _resources(dev, "AWS::S3::Bucket").items() if k.startswith("ImportsDrop")}
    [(logical_id, bucket)] = buckets.items()
    props = bucket["Properties"]
    assert bucket["DeletionPolicy"] == "Retain"
    assert props["BucketName"] == {"Fn::Join": ["-", ["frontdesk-dev-imports", {"Ref": "AWS::AccountId"},
                                                      {"Ref": "AWS::Region"}]]}
    sse = props["BucketEncryption"]["ServerSideEncryptionConfiguration"][0]
    assert sse["ServerSideEncryptionByDefault"]["SSEAlgorithm"] == "aws:kms" and sse["BucketKeyEnabled"] is True
    assert props["PublicAccessBlockConfiguration"] == {"BlockPublicAcls": True, "BlockPublicPolicy": True,
                                                       "IgnorePublicAcls": True, "RestrictPublicBuckets": True}
    assert props["LifecycleConfiguration"]["Rules"][0]["ExpirationInDays"] == 30
    [policy] = [p for p in _resources(dev, "AWS::S3::BucketPolicy").values()
                if p["Properties"]["Bucket"] == {"Ref": logical_id}]
    statements = policy["Properties"]["PolicyDocument"]["Statement"]
    assert any(s["Effect"] == "Deny" and s["Condition"] == {"Bool": {"aws:SecureTransport": "false"}}
               for s in statements)
    assert [s for s in statements if s["Effect"] == "Allow"] == []  # access is in the function roles
    [read] = [s for r in _resources(dev, "AWS::IAM::Role").values() for p in r["Properties"]["Policies"]
              for s in p["PolicyDocument"]["Statement"] if s["Sid"] == "ImportsRead"]
    assert read["Action"] == "s3:GetObject" and PREFIX + "*" in json.dumps(read["Resource"])
    assert "frontdesk-dev-imports" in json.dumps(read["Resource"])
    assert logical_id not in json.dumps(read["Resource"])  # no reference to the bucket: no cycle


def test_the_failure_destination_is_an_encrypted_queue_only_the_import_function_may_send_to(dev):
    queues = {k: v for k, v in _resources(dev, "AWS::SQS::Queue").items() if k.startswith("ImportsFailures")}
    [(logical_id, queue)] = queues.items()
    assert queue["Properties"]["MessageRetentionPeriod"] == 14 * 24 * 3600
    assert "KmsMasterKeyId" in queue["Properties"]
    holders = {role_id: s for role_id, r in _resources(dev, "AWS::IAM::Role").items()
               for p in r["Properties"]["Policies"] for s in p["PolicyDocument"]["Statement"]
               if s["Sid"] == "ImportsFailed"}
    [(role_id, send)] = holders.items()
    assert role_id.startswith("ApiRoleImportObjectCreated")
    assert send["Action"] == "sqs:SendMessage" and send["Resource"] == {"Fn::GetAtt": [logical_id, "Arn"]}


def _wired() -> dict[str, Any]:
    """The construct given a stand-in for the SAM function Chalice generates."""
    stack = cdk.Stack(cdk.App(), "wired")
    key = kms.Key(stack, "Key")
    topic = sns.Topic(stack, "Topic")
    function = cdk.CfnResource(stack, FUNCTION, type="AWS::Serverless::Function",
                               properties={"Handler": "app.import_object_created", "Runtime": "python3.11"})
    Imports(stack, "Imports", stage="prod", key=key, alarm_topic=topic, function=function)
    return Template.from_stack(stack).to_json()


def test_the_bucket_notifies_the_import_function_for_new_objects_under_the_prefix():
    template = _wired()
    [(bucket_id, bucket)] = _resources(template, "AWS::S3::Bucket").items()
    [config] = bucket["Properties"]["NotificationConfiguration"]["LambdaConfigurations"]
    assert config == {"Event": "s3:ObjectCreated:*", "Filter": {"S3Key": {"Rules": [{"Name": "prefix",
                                                                                      "Value": PREFIX}]}},
                      "Function": {"Fn::GetAtt": [FUNCTION, "Arn"]}}
    [(permission_id, permission)] = _resources(template, "AWS::Lambda::Permission").items()
    assert permission["Properties"]["Principal"] == "s3.amazonaws.com"
    assert permission["Properties"]["FunctionName"] == {"Ref": FUNCTION}
    assert "frontdesk-prod-imports" in json.dumps(permission["Properties"]["SourceArn"])
    assert bucket_id not in json.dumps(permission)  # no reference back to the bucket: no cycle
    assert permission_id in bucket["DependsOn"]


def test_three_attempts_then_the_failure_destination_and_an_alarm():
    """R8: MaximumRetryAttempts and MaximumEventAgeInSeconds and the destination are asserted here
    because Chalice cannot set them; the alarm fires on the first failed event."""
    template = _wired()
    function = template["Resources"][FUNCTION]["Properties"]
    [(queue_id, _)] = _resources(template, "AWS::SQS::Queue").items()
    assert function["EventInvokeConfig"] == {
        "MaximumRetryAttempts": 2, "MaximumEventAgeInSeconds": MAX_EVENT_AGE_SECONDS,
        "DestinationConfig": {"OnFailure": {"Type": "SQS", "Destination": {"Fn::GetAtt": [queue_id, "Arn"]}}}}
    Template.from_json(template).has_resource_properties("AWS::CloudWatch::Alarm", {
        "MetricName": "ApproximateNumberOfMessagesVisible", "Namespace": "AWS/SQS", "Threshold": 1,
        "ComparisonOperator": "GreaterThanOrEqualToThreshold",
        "Dimensions": [{"Name": "QueueName", "Value": {"Fn::GetAtt": [queue_id, "QueueName"]}}],
        "AlarmActions": [{"Ref": Match.string_like_regexp("Topic")}],
    })


def test_chalice_packages_the_s3_handler_only_inside_the_patch():
    """Chalice's SAM generator refuses @on_s3_event; the stack packages inside the patch."""
    from chalice.package import SAMTemplateGenerator

    generate = SAMTemplateGenerator._generate_s3bucketnotification
    with pytest.raises(NotImplementedError):
        generate(object.__new__(SAMTemplateGenerator), object(), {})
    with s3_events_wired_by_cdk():
        template: dict[str, Any] = {"Resources": {}}
        SAMTemplateGenerator._generate_s3bucketnotification(object.__new__(SAMTemplateGenerator), object(), template)
        assert template == {"Resources": {}}
    assert SAMTemplateGenerator._generate_s3bucketnotification is generate


def test_the_import_function_has_time_and_memory_for_large_files():
    config = json.loads((Path(__file__).resolve().parent.parent / ".chalice" / "config.json").read_text())
    settings = config["lambda_functions"]["import_object_created"]
    assert settings["lambda_timeout"] == 900 and settings["lambda_memory_size"] >= 1769
