"""infra/notify.py synthesized offline (SERVERLESS.md §3.7, SERVERLESS-PERF-REL.md §4, R7, R11,
R18): the work queue with visibility ≥ 6 × the worker's timeout and a dead-letter queue, the
SES configuration set publishing its events to SNS, the SMS configuration set, encrypted
topics, least-privilege sending, the alarms on undelivered work and reputation, and the SAM
wiring of the Chalice handlers (ReportBatchItemFailures, real queue and topic ARNs)."""

from __future__ import annotations

import json
from typing import Any

import aws_cdk as cdk
import pytest
from aws_cdk import CfnResource
from aws_cdk.assertions import Template
from cfnlint.api import lint_file

from infra import notify as infra_notify
from infra.config import STAGES
from infra.stacks import FrontdeskStack


@pytest.fixture(scope="module")
def stack() -> FrontdeskStack:
    return FrontdeskStack(cdk.App(), STAGES["dev"], with_api=False)


@pytest.fixture(scope="module")
def nested(stack) -> dict[str, Any]:
    return Template.from_stack(stack.notify).to_json()


def _of(template: dict[str, Any], type_: str) -> dict[str, dict[str, Any]]:
    return {k: v for k, v in template["Resources"].items() if v["Type"] == type_}


def test_the_stage_stack_gains_one_nested_stack_and_grants_in_the_roles(stack):
    parent = Template.from_stack(stack).to_json()
    nested_id = stack.resolve(stack.notify.nested_stack_resource.logical_id)
    assert parent["Resources"][nested_id]["Type"] == "AWS::CloudFormation::Stack"
    others = {k: v for k, v in parent["Resources"].items() if k != nested_id and v["Type"] != "AWS::IAM::Role"}
    assert "notify" not in json.dumps(others).lower()


def test_work_queue_visibility_covers_six_worker_timeouts_and_dead_letters_after_five(nested):
    timeout = infra_notify.worker_timeout_seconds("dev")
    assert timeout == json.loads((infra_notify.SOURCE_DIR / ".chalice" / "config.json").read_text())["lambda_timeout"]
    queues = _of(nested, "AWS::SQS::Queue")
    work = next(q["Properties"] for q in queues.values() if q["Properties"]["QueueName"] == "frontdesk-dev-notify")
    dlq_id = next(k for k, q in queues.items() if q["Properties"]["QueueName"] == "frontdesk-dev-notify-dlq")
    assert work["VisibilityTimeout"] >= 6 * timeout
    assert work["RedrivePolicy"] == {"deadLetterTargetArn": {"Fn::GetAtt": [dlq_id, "Arn"]}, "maxReceiveCount": 5}
    assert all(q["Properties"]["SqsManagedSseEnabled"] for q in queues.values())


def test_ses_configuration_set_sends_every_event_to_the_encrypted_topic(nested):
    template = Template.from_json(nested)
    template.has_resource_properties("AWS::SES::ConfigurationSet", {
        "Name": "frontdesk-dev-notify",
        "ReputationOptions": {"ReputationMetricsEnabled": True},
        "SuppressionOptions": {"SuppressedReasons": ["BOUNCE", "COMPLAINT"]},
    })
    [destination] = _of(nested, "AWS::SES::ConfigurationSetEventDestination").values()
    props = destination["Properties"]["EventDestination"]
    assert set(props["MatchingEventTypes"]) == {"send", "reject", "bounce", "complaint", "delivery",
                                                "deliveryDelay", "renderingFailure"}
    topics = _of(nested, "AWS::SNS::Topic")
    ses_topic = next(k for k, t in topics.items() if t["Properties"]["TopicName"] == "frontdesk-dev-notify-ses-events")
    assert props["SnsDestination"] == {"TopicARN": {"Ref": ses_topic}}
    assert len(topics) == 3 and all("KmsMasterKeyId" in t["Properties"] for t in topics.values())
    policies = json.dumps(_of(nested, "AWS::SNS::TopicPolicy"))
    assert "ses.amazonaws.com" in policies and "sms-voice.amazonaws.com" in policies


def test_sms_configuration_set_reports_delivery_status_to_its_topic(nested):
    [config_set] = _of(nested, "AWS::SMSVOICE::ConfigurationSet").values()
    [dest] = config_set["Properties"]["EventDestinations"]
    assert dest["Enabled"] and "TEXT_DELIVERED" in dest["MatchingEventTypes"]
    topics = _of(nested, "AWS::SNS::Topic")
    status = next(k for k, t in topics.items() if t["Properties"]["TopicName"] == "frontdesk-dev-notify-sms-status")
    assert dest["SnsDestination"] == {"TopicArn": {"Ref": status}}


def test_only_the_functions_that_send_may_send_and_nothing_wider(stack, nested):
    parent = Template.from_stack(stack).to_json()
    assert _of(nested, "AWS::IAM::Policy") == {} and _of(parent, "AWS::IAM::Policy") == {}
    grants: dict[str, dict[str, Any]] = {}
    for role_id, role in _of(parent, "AWS::IAM::Role").items():
        for statement in role["Properties"]["Policies"][0]["PolicyDocument"]["Statement"]:
            grants.setdefault(statement["Sid"], {})[role_id] = statement
    senders = {r.split("Role")[1][:-8] or "APIHandler" for r in grants["SendEmail"]}
    assert senders == {"APIHandler", "NotifyWorker", "NotifySmsInbound"}
    assert set(grants["SendSms"]) == set(grants["SendEmail"])
    for statement in grants["SendEmail"].values():
        assert statement["Action"] == "ses:SendEmail"
        assert "configuration-set/frontdesk-dev-notify" in json.dumps(statement["Resource"])
    for statement in grants["SendSms"].values():  # publishing to a phone number has no resource ARN
        assert statement == {"Sid": "SendSms", "Action": "sns:Publish", "Effect": "Allow", "Resource": "*"}
    [consumer] = grants["NotifyConsume"]
    assert consumer.startswith("ApiRoleNotifyWorker")
    for sid in ("NotifyEnqueue", "NotifyConsume"):
        for statement in grants[sid].values():
            assert "Fn::GetAtt" in json.dumps(statement["Resource"]) and "Outputs" in json.dumps(statement["Resource"])
            assert not any(a.endswith("*") for a in ([statement["Action"]] if isinstance(statement["Action"], str)
                                                     else statement["Action"]))


def test_alarms_on_undelivered_work_and_reputation_notify_the_stage_topic(nested):
    alarms = {a["Properties"]["MetricName"]: a["Properties"] for a in _of(nested, "AWS::CloudWatch::Alarm").values()}
    assert set(alarms) == {"ApproximateNumberOfMessagesVisible", "ApproximateAgeOfOldestMessage",
                           "Reputation.BounceRate", "Reputation.ComplaintRate", "SMSSuccessRate"}
    assert alarms["Reputation.BounceRate"]["Threshold"] == 0.02  # below SES review at 5%
    assert alarms["Reputation.ComplaintRate"]["Threshold"] == 0.0005  # below SES review at 0.1%
    assert alarms["ApproximateAgeOfOldestMessage"]["Threshold"] == 900
    assert all(len(a["AlarmActions"]) == 1 for a in alarms.values())


def test_wiring_points_chalice_handlers_at_the_stage_resources():
    app = cdk.App()
    stack = cdk.Stack(app, "S")
    from aws_cdk import aws_sns as sns

    notify = infra_notify.Notify(stack, "Notify", config=STAGES["dev"], alarm_topic=sns.Topic(stack, "T"))
    functions = {}
    for name, event, kind in (("NotifyWorker", "NotifyWorkerSqsEventSource", "SQS"),
                              ("NotifySesEvents", "NotifySesEventsSnsSubscription", "SNS"),
                              ("NotifySmsStatus", "NotifySmsStatusSnsSubscription", "SNS"),
                              ("NotifySmsInbound", "NotifySmsInboundSnsSubscription", "SNS"),
                              ("APIHandler", None, None)):
        props: dict[str, Any] = {"Runtime": "python3.11", "Handler": "app.app"}
        if event:  # as chalice package writes them: logical names, not this stage's ARNs
            props["Events"] = {event: {"Type": kind, "Properties": {"Queue" if kind == "SQS" else "Topic": "x"}}}
        functions[name] = CfnResource(stack, name, type="AWS::Serverless::Function", properties=props)
    notify.wire(functions)
    template = app.synth().get_stack_by_name("S").template
    worker = template["Resources"]["NotifyWorker"]
    source = worker["Properties"]["Events"]["NotifyWorkerSqsEventSource"]["Properties"]
    assert source["FunctionResponseTypes"] == ["ReportBatchItemFailures"]
    assert source["ScalingConfig"] == {"MaximumConcurrency": 2}
    assert "Outputs" in json.dumps(source["Queue"]) and "Arn" in json.dumps(source["Queue"])
    for name, event in (infra_notify.SES_EVENTS, infra_notify.SMS_STATUS, infra_notify.SMS_INBOUND):
        topic = template["Resources"][name]["Properties"]["Events"][event]["Properties"]["Topic"]
        assert "Fn::GetAtt" in topic
    for name in functions:
        env = template["Resources"][name]["Properties"]["Environment"]["Variables"]
        assert env["FRONTDESK_CHANNEL"] == "aws" and env["FRONTDESK_NOTIFY_KEEP_BODIES"] == "0"
        assert float(env["FRONTDESK_SES_RATE"]) * 2 == infra_notify.SES_RATE
        assert "Fn::GetAtt" in json.dumps(env["FRONTDESK_NOTIFY_QUEUE_URL"])  # created after the nested stack


def test_the_handlers_wired_are_the_ones_the_app_registers():
    from app import app

    names = {"NotifyWorker": "notify_worker", "NotifySesEvents": "notify_ses_events",
             "NotifySmsStatus": "notify_sms_status", "NotifySmsInbound": "notify_sms_inbound"}
    registered = {e.name for e in app.event_sources}
    for logical, (function, event) in zip(names, (infra_notify.WORKER, infra_notify.SES_EVENTS,
                                                  infra_notify.SMS_STATUS, infra_notify.SMS_INBOUND), strict=True):
        assert function == logical and names[logical] in registered
        assert event.startswith(logical)


def test_cfn_lint_finds_no_errors_or_warnings_in_the_nested_template(nested, tmp_path):
    path = tmp_path / "notify.template.json"
    path.write_text(json.dumps(nested, indent=1))
    findings = [f"{m.rule.id} {m.message[:200]}" for m in lint_file(path) if m.rule.id[0] in "EW"]
    assert findings == []
