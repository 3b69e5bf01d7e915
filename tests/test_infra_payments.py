"""infra/payments.py and the consumer it wires (SERVERLESS-PERF-REL.md R7, R2): the processor-events
queue with its dead-letter queue and stuck-payment alarms, synthesized offline; and R7 end to
end on moto's SQS with the real handler against DynamoDB Local: a batch of 10 with 3 poison
records returns exactly 3 ``itemIdentifiers``, the 7 others are deleted, the poison reaches the
DLQ after ``maxReceiveCount``, and a redrive after the fix posts each payment once."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import aws_cdk as cdk
import pytest
from aws_cdk import CfnResource
from aws_cdk import aws_sns as sns
from aws_cdk.assertions import Template
from chalice.test import Client
from moto import mock_aws

from infra import payments as infra_payments
from infra.config import STAGES
from infra.roles import function_timeout_seconds
from infra.stacks import FrontdeskStack

ROOT = Path(__file__).resolve().parent.parent


def _of(template: dict[str, Any], type_: str, prefix: str = "Payments") -> dict[str, dict[str, Any]]:
    return {k: v for k, v in template["Resources"].items() if v["Type"] == type_ and k.startswith(prefix)}


@pytest.fixture(scope="module")
def template() -> dict[str, Any]:
    return dict(Template.from_stack(FrontdeskStack(cdk.App(), STAGES["prod"], with_api=False)).to_json())


def test_events_queue_has_a_dlq_after_five_receives_and_visibility_of_six_timeouts(template):
    queues = _of(template, "AWS::SQS::Queue")
    [(main_id, main)] = [(k, v) for k, v in queues.items() if "RedrivePolicy" in v["Properties"]]
    [(dlq_id, dlq)] = [(k, v) for k, v in queues.items() if k != main_id]
    timeout = function_timeout_seconds(infra_payments.CONSUMER, "prod")
    # The consumer calls the processor: its own 60 s (R6), not the app's default.
    assert timeout == json.loads((ROOT / ".chalice" / "config.json").read_text())[
        "lambda_functions"][infra_payments.CONSUMER]["lambda_timeout"] == 60
    assert main["Properties"]["VisibilityTimeout"] >= 6 * timeout
    assert main["Properties"]["RedrivePolicy"] == {"deadLetterTargetArn": {"Fn::GetAtt": [dlq_id, "Arn"]},
                                                   "maxReceiveCount": 5}
    assert dlq["Properties"]["MessageRetentionPeriod"] == 14 * 24 * 3600
    assert all(q["Properties"]["SqsManagedSseEnabled"] is True for q in queues.values())


def test_stuck_payments_alarm_on_waiting_and_dead_lettered_events(template):
    alarms = {a["Properties"]["MetricName"]: a["Properties"] for a in _of(template, "AWS::CloudWatch::Alarm").values()}
    assert set(alarms) == {"ApproximateAgeOfOldestMessage", "ApproximateNumberOfMessagesVisible"}
    assert alarms["ApproximateAgeOfOldestMessage"]["Threshold"] == 900
    assert alarms["ApproximateNumberOfMessagesVisible"]["Threshold"] == 1
    [(topic_id, _)] = _of(template, "AWS::SNS::Topic", prefix="Monitoring").items()
    assert all(a["AlarmActions"] == [{"Ref": topic_id}] for a in alarms.values())


def test_only_the_webhook_route_enqueues_and_only_the_consumer_consumes(template):
    holders: dict[str, dict[str, Any]] = {}
    for role_id, role in _of(template, "AWS::IAM::Role", prefix="").items():
        for s in role["Properties"]["Policies"][0]["PolicyDocument"]["Statement"]:
            if s["Sid"].startswith("Events"):
                holders[f"{role_id}:{s['Sid']}"] = s
    assert sorted(k.split(":")[1] + "@" + k.split(":")[0][:-8] for k in holders) == sorted([
        "EventsEnqueue@ApiRole", "EventsConsume@ApiRoleProcessorEventsConsume"])
    for statement in holders.values():
        assert "PaymentsEvents" in json.dumps(statement["Resource"])


def test_wiring_turns_on_partial_batch_failures_and_gives_every_function_the_queue():
    app = cdk.App()
    stack = cdk.Stack(app, "S")
    payments = infra_payments.Payments(stack, "Payments", stage="dev", alarm_topic=sns.Topic(stack, "T"))
    functions = {}
    for name, event in (("ProcessorEventsConsume", "ProcessorEventsConsumeSqsEventSource"), ("APIHandler", None)):
        props: dict[str, Any] = {"Runtime": "python3.11", "Handler": "app.app"}
        if event:  # as chalice package writes it: the decorator's placeholder queue
            props["Events"] = {event: {"Type": "SQS", "Properties": {"Queue": "frontdesk-processor-events"}}}
        functions[name] = CfnResource(stack, name, type="AWS::Serverless::Function", properties=props)
    payments.wire(functions)
    resources = app.synth().get_stack_by_name("S").template["Resources"]
    source = resources["ProcessorEventsConsume"]["Properties"]["Events"][infra_payments.CONSUMER_EVENT]["Properties"]
    assert source["FunctionResponseTypes"] == ["ReportBatchItemFailures"]
    assert source["Queue"] == stack.resolve(payments.queue.queue_arn)
    assert source["ScalingConfig"] == {"MaximumConcurrency": infra_payments.MAX_CONCURRENCY}
    for name in functions:
        env = resources[name]["Properties"]["Environment"]["Variables"]
        assert env["FRONTDESK_PROCESSOR_EVENTS_QUEUE_URL"] == stack.resolve(payments.queue.queue_url)
        assert env["FRONTDESK_PROCESSOR"] == "stripe"  # the sandbox is off in the cloud


def test_the_wired_names_are_the_ones_chalice_generates():
    from app import app

    assert infra_payments.CONSUMER in {e.name for e in app.event_sources}
    assert infra_payments.CONSUMER_FUNCTION == "".join(p.title() for p in infra_payments.CONSUMER.split("_"))


# --- R7 end to end: moto SQS with the redrive policy infra sets, the real handler, DynamoDB Local --


def _events_of(p: Any, amount: int) -> list[str]:
    """Bodies of the processor events one sandbox payment by ``p`` produces, recorded as the
    webhook route records them."""
    from chalicelib.payments import services
    from tests import payments_support as ps

    sandbox = ps.sandbox()
    before = len(sandbox.outbox)
    services.payment_attempt_submit(clinic_id=p.clinic_id, guarantor_id=p.guarantor_id, attempt_key=ps.key(),
                                    amount_choice="other", amount_cents=amount, token="tok_lost")
    bodies = []
    for event in list(sandbox.outbox)[before:]:
        raw = json.dumps(event).encode()
        parsed = sandbox.parse_webhook(payload=raw, headers={"Sandbox-Signature": sandbox.sign(raw)})
        r = services.processor_event_record(event=parsed)
        bodies.append(json.dumps({"clinic_id": r.clinic_id, "processor": r.processor, "event_id": r.event_id}))
    assert bodies
    return bodies


def _poll(sqs: Any, url: str, arn: str, client: Client) -> tuple[int, set[str]]:
    """One event-source-mapping cycle: receive ≤ 10, invoke, delete what did not fail."""
    got = sqs.receive_message(QueueUrl=url, MaxNumberOfMessages=10).get("Messages", [])
    if not got:
        return 0, set()
    records = [{"messageId": m["MessageId"], "receiptHandle": m["ReceiptHandle"], "body": m["Body"],
                "attributes": {}, "messageAttributes": {}, "md5OfBody": m["MD5OfBody"], "eventSource": "aws:sqs",
                "eventSourceARN": arn, "awsRegion": "us-east-1"} for m in got]
    payload = client.lambda_.invoke(infra_payments.CONSUMER, {"Records": records}).payload
    failed = {f["itemIdentifier"] for f in payload["batchItemFailures"]}
    for m in got:
        if m["MessageId"] not in failed:
            sqs.delete_message(QueueUrl=url, ReceiptHandle=m["ReceiptHandle"])
    return len(got), failed


@pytest.mark.usefixtures("dynamodb_endpoint")
def test_r7_three_poison_records_reach_the_dlq_and_a_redrive_posts_once(monkeypatch):
    from app import app
    from chalicelib.jobs import payments as jobs
    from tests import payments_support as ps

    for _ in ps.fresh_sandbox():
        good, bad = ps.payer(owes=(2_000,)), ps.payer(owes=(3_000,))
        good_bodies, bad_bodies = _events_of(good, 2_000), _events_of(bad, 3_000)
        bodies = (good_bodies * 7)[:7] + (bad_bodies * 3)[:3]
        handle = jobs.services.processor_event_handle

        def buggy(*, clinic_id: str, processor: str, event_id: str) -> Any:
            if clinic_id == bad.clinic_id:  # a bug (not a domain error) that fails one clinic's events
                raise RuntimeError("bug")
            return handle(clinic_id=clinic_id, processor=processor, event_id=event_id)

        monkeypatch.setattr(jobs.services, "processor_event_handle", buggy)
        with mock_aws(), Client(app) as client:
            import boto3

            sqs = boto3.client("sqs", region_name="us-east-1")
            dlq_url = sqs.create_queue(QueueName="events-dlq")["QueueUrl"]
            dlq_arn = sqs.get_queue_attributes(QueueUrl=dlq_url, AttributeNames=["QueueArn"])["Attributes"]["QueueArn"]
            redrive = json.dumps({"deadLetterTargetArn": dlq_arn, "maxReceiveCount": infra_payments.MAX_RECEIVES})
            url = sqs.create_queue(QueueName="events", Attributes={"VisibilityTimeout": "0",
                                                                   "RedrivePolicy": redrive})["QueueUrl"]
            arn = sqs.get_queue_attributes(QueueUrl=url, AttributeNames=["QueueArn"])["Attributes"]["QueueArn"]
            sqs.send_message_batch(QueueUrl=url, Entries=[{"Id": str(i), "MessageBody": b}
                                                          for i, b in enumerate(bodies)])

            received, failed = _poll(sqs, url, arn, client)
            assert (received, len(failed)) == (10, 3)  # exactly the 3 poison records; 7 deleted
            for _attempt in range(3 * infra_payments.MAX_RECEIVES):
                if _poll(sqs, url, arn, client)[0] == 0:
                    break
            dead = sqs.receive_message(QueueUrl=dlq_url, MaxNumberOfMessages=10, VisibilityTimeout=0)["Messages"]
            assert sorted(m["Body"] for m in dead) == sorted(bodies[7:])
            assert len(ps.payment_entries(good)) == 1 and ps.payment_entries(bad) == []

            monkeypatch.setattr(jobs.services, "processor_event_handle", handle)  # the fix
            for m in dead:  # redrive
                sqs.send_message(QueueUrl=url, MessageBody=m["Body"])
                sqs.delete_message(QueueUrl=dlq_url, ReceiptHandle=m["ReceiptHandle"])
            sqs.send_message(QueueUrl=url, MessageBody=good_bodies[0])  # and a stray duplicate
            while True:
                received, failed = _poll(sqs, url, arn, client)
                assert failed == set()
                if received == 0:
                    break
        assert len(ps.payment_entries(good)) == 1 and len(ps.payment_entries(bad)) == 1
        ps.verified(good.clinic_id)
        ps.verified(bad.clinic_id)
