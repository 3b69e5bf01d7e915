"""infra/statements.py: the statement PDF bucket and the run queues (PRODUCT.md §4, R7), synthesized
offline; the Chalice wiring is checked on a stand-in SAM template (the slow test packages the app)."""

from __future__ import annotations

import dataclasses
import json
import os
import subprocess
import sys
from pathlib import Path
from typing import Any

import aws_cdk as cdk
import pytest
from aws_cdk import cloudformation_include as cfn_inc
from aws_cdk.assertions import Template

from infra import statements as infra_statements
from infra.config import STAGES, StageConfig
from infra.stacks import FrontdeskStack

ROOT = Path(__file__).resolve().parent.parent
ROLE = {"Fn::GetAtt": ["ApiRoleDE7A08EC", "Arn"]}
KEY = {"Fn::GetAtt": ["Key961B73FD", "Arn"]}


@pytest.fixture(scope="module")
def template() -> dict[str, Any]:
    app = cdk.App()
    return dict(Template.from_stack(FrontdeskStack(app, STAGES["prod"], with_api=False)).to_json())


def _of(template: dict[str, Any], type_: str, prefix: str = "Statements") -> dict[str, dict[str, Any]]:
    """Resources of ``type_`` whose logical id starts with ``prefix`` (the construct's own)."""
    return {k: v for k, v in template["Resources"].items() if v["Type"] == type_ and k.startswith(prefix)}


def test_pdf_bucket_is_private_encrypted_with_the_stage_key_and_expires_pdfs(template):
    [(bucket_id, bucket)] = _of(template, "AWS::S3::Bucket").items()
    props = bucket["Properties"]
    assert bucket["DeletionPolicy"] == "Retain"
    [rule] = props["BucketEncryption"]["ServerSideEncryptionConfiguration"]
    assert rule["ServerSideEncryptionByDefault"] == {"SSEAlgorithm": "aws:kms", "KMSMasterKeyID": KEY}
    assert rule["BucketKeyEnabled"] is True
    assert props["PublicAccessBlockConfiguration"] == {
        "BlockPublicAcls": True, "BlockPublicPolicy": True, "IgnorePublicAcls": True, "RestrictPublicBuckets": True}
    assert props["OwnershipControls"] == {"Rules": [{"ObjectOwnership": "BucketOwnerEnforced"}]}
    [lifecycle] = props["LifecycleConfiguration"]["Rules"]
    assert lifecycle["ExpirationInDays"] == 120 == STAGES["prod"].statement_pdf_days
    assert lifecycle["Status"] == "Enabled" and lifecycle["AbortIncompleteMultipartUpload"]["DaysAfterInitiation"] == 1
    [(_, policy)] = _of(template, "AWS::S3::BucketPolicy").items()
    statements = policy["Properties"]["PolicyDocument"]["Statement"]
    deny = [s for s in statements if s["Effect"] == "Deny"]
    assert deny and deny[0]["Condition"] == {"Bool": {"aws:SecureTransport": "false"}}
    assert [s for s in statements if s["Effect"] == "Allow"] == []  # access is in the function roles
    grants = _role_statements(template)
    objects = {"Fn::Join": ["", [{"Fn::GetAtt": [bucket_id, "Arn"]}, "/*"]]}
    assert {r: sorted(_list(s["Action"])) for (r, sid), s in grants.items() if sid.startswith("Pdfs")} == {
        "ApiRoleDE7A08EC": ["s3:GetObject"],  # the portal presigns PDF links
        _role_of(template, "StatementPages"): ["s3:GetObject", "s3:PutObject"],
        _role_of(template, "BalanceNoticesBill"): ["s3:GetObject", "s3:PutObject"],  # bills at once
    }
    assert all(s["Resource"] == objects for (_, sid), s in grants.items() if sid.startswith("Pdfs"))


def test_pdf_window_comes_from_the_stage_config():
    config = dataclasses.replace(STAGES["dev"], statement_pdf_days=30)
    t = Template.from_stack(FrontdeskStack(cdk.App(), config, with_api=False)).to_json()
    [bucket] = _of(t, "AWS::S3::Bucket").values()
    assert bucket["Properties"]["LifecycleConfiguration"]["Rules"][0]["ExpirationInDays"] == 30
    with pytest.raises(ValueError):
        StageConfig(stage="dev", log_retention_days=30, throttle_rate=1, throttle_burst=1, statement_pdf_days=0)


def test_queue_has_a_dead_letter_queue_and_a_visibility_above_six_lambda_timeouts(template):
    queues = _of(template, "AWS::SQS::Queue")
    [(main_id, main)] = [(k, v) for k, v in queues.items() if "RedrivePolicy" in v["Properties"]]
    [(dlq_id, dlq)] = [(k, v) for k, v in queues.items() if k != main_id]
    timeout = infra_statements.consumer_timeout_seconds()
    config = json.loads((ROOT / ".chalice" / "config.json").read_text())
    assert timeout == config["lambda_functions"]["statement_pages"]["lambda_timeout"]
    assert main["Properties"]["VisibilityTimeout"] >= 6 * timeout
    assert main["Properties"]["RedrivePolicy"] == {"deadLetterTargetArn": {"Fn::GetAtt": [dlq_id, "Arn"]},
                                                   "maxReceiveCount": infra_statements.MAX_RECEIVES}
    assert dlq["Properties"]["MessageRetentionPeriod"] == 14 * 24 * 3600
    for queue in (main, dlq):
        assert queue["Properties"]["SqsManagedSseEnabled"] is True
    for _, policy in _of(template, "AWS::SQS::QueuePolicy").items():
        statements = policy["Properties"]["PolicyDocument"]["Statement"]
        assert any(s["Effect"] == "Deny" and s["Condition"] == {"Bool": {"aws:SecureTransport": "false"}}
                   for s in statements)
        assert [s for s in statements if s["Effect"] == "Allow"] == []
    grants = _role_statements(template)
    main = {"Fn::GetAtt": [main_id, "Arn"]}
    assert grants[(_role_of(template, "StatementRunsStart"), "PagesEnqueue")]["Action"] == "sqs:SendMessage"
    consume = grants[(_role_of(template, "StatementPages"), "PagesConsume")]
    assert set(consume["Action"]) == {"sqs:ReceiveMessage", "sqs:DeleteMessage", "sqs:ChangeMessageVisibility",
                                      "sqs:GetQueueAttributes"} and consume["Resource"] == main
    assert {r for (r, sid) in grants if sid.startswith("Pages")} == {_role_of(template, "StatementRunsStart"),
                                                                   _role_of(template, "StatementPages")}


def _list(value: Any) -> list[Any]:
    return value if isinstance(value, list) else [value]


def _role_of(template: dict[str, Any], function: str) -> str:
    [role_id] = [k for k in _of(template, "AWS::IAM::Role", prefix="") if k.startswith(f"ApiRole{function}")]
    return role_id


def _role_statements(template: dict[str, Any]) -> dict[tuple[str, str], dict[str, Any]]:
    """(role logical id, statement Sid) -> statement, over every role of the stack."""
    return {(role_id, s["Sid"]): s for role_id, r in _of(template, "AWS::IAM::Role", prefix="").items()
            for p in r["Properties"]["Policies"] for s in p["PolicyDocument"]["Statement"]}


def test_roles_hold_all_permissions_inline(template):
    assert _of(template, "AWS::IAM::Policy", prefix="") == {}
    assert "ApiRoleDE7A08EC" in _of(template, "AWS::IAM::Role", prefix="")


class _FakeChalice:
    """Stands in for chalice.cdk.Chalice: a SAM template with the functions Chalice generates."""

    def __init__(self, stack: cdk.Stack, path: Path) -> None:
        self.sam_template = cfn_inc.CfnInclude(stack, "Sam", template_file=str(path))

    def get_resource(self, name: str) -> cdk.CfnResource:
        return self.sam_template.get_resource(name)


def test_chalice_functions_get_the_bucket_queue_and_partial_batch_failures(tmp_path):
    sam = {"Resources": {
        "APIHandler": {"Type": "AWS::Serverless::Function", "Properties": {
            "Environment": {"Variables": {"FRONTDESK_TABLE": "t"}}}},
        "StatementPages": {"Type": "AWS::Serverless::Function", "Properties": {
            "Environment": {"Variables": {"FRONTDESK_TABLE": "t"}},
            "Events": {"StatementPagesSqsEventSource": {"Type": "SQS", "Properties": {
                "Queue": {"Fn::Sub": "arn:${AWS::Partition}:sqs:${AWS::Region}:${AWS::AccountId}:frontdesk-statements"},
                "BatchSize": 1}}}}}}}
    path = tmp_path / "sam.json"
    path.write_text(json.dumps(sam))
    stack = cdk.Stack(cdk.App(), "s")
    key = cdk.aws_kms.Key(stack, "Key")
    built = infra_statements.Statements(stack, "Statements", key=key, pdf_days=120,
                                        chalice=_FakeChalice(stack, path))
    resources = Template.from_stack(stack).to_json()["Resources"]
    queue_ref = stack.resolve(built.queue.queue_url)
    for name in ("APIHandler", "StatementPages"):
        env = resources[name]["Properties"]["Environment"]["Variables"]
        assert env["FRONTDESK_STORAGE"] == "s3" and env["FRONTDESK_TABLE"] == "t"
        assert env["FRONTDESK_STATEMENTS_QUEUE_URL"] == queue_ref
        assert env["FRONTDESK_STATEMENTS_BUCKET"] == stack.resolve(built.bucket.bucket_name)
        assert env["FRONTDESK_STATEMENT_PDF_DAYS"] == "120"
    event = resources["StatementPages"]["Properties"]["Events"]["StatementPagesSqsEventSource"]["Properties"]
    assert event["FunctionResponseTypes"] == ["ReportBatchItemFailures"]
    assert event["Queue"] == stack.resolve(built.queue.queue_arn)


@pytest.mark.slow
def test_packaged_app_has_the_statement_consumer_wired(tmp_path):
    """``chalice package`` (through ``python -m infra.app``) generates the consumer under the names
    infra/statements.py overrides, and the overrides land in the synthesized template."""
    env = {**os.environ, "CDK_OUTDIR": str(tmp_path / "cdk.out"), "PYTHONPATH": str(ROOT)}
    run = subprocess.run([sys.executable, "-m", "infra.app", "--stage", "dev"], cwd=ROOT, env=env,
                         capture_output=True, text=True, timeout=600)
    assert run.returncode == 0, run.stderr[-4000:]
    template = json.loads((tmp_path / "cdk.out" / "dev.template.json").read_text())
    consumer = template["Resources"][infra_statements.CONSUMER_FUNCTION]["Properties"]
    event = consumer["Events"][infra_statements.CONSUMER_EVENT]["Properties"]
    assert event["FunctionResponseTypes"] == ["ReportBatchItemFailures"]
    assert "Fn::GetAtt" in event["Queue"]
    assert consumer["Environment"]["Variables"]["FRONTDESK_STORAGE"] == "s3"
    assert consumer["Timeout"] == infra_statements.consumer_timeout_seconds()
