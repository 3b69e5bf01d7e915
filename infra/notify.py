"""Notifications in the cloud (PRODUCT.md §8, SERVERLESS.md §2.5, SERVERLESS-PERF-REL.md §4):
the work queue and its dead-letter queue, the SES configuration set with its events on SNS,
the SMS configuration set with delivery status on SNS, the inbound-SMS topic, what the app's
role may do with them, the alarms, and the wiring of the Chalice handlers to these resources.

A nested stack, so the stage stack's template stays small: everything here is additive. What
the functions may do with these resources is :meth:`Notify.grants` (``send``,
``notify_enqueue``, ``notify_consume`` in ``infra/roles.py``), in the roles of the parent stack. The
handlers in ``chalicelib/jobs/notify.py`` name logical queue and topics; :meth:`Notify.wire`
points each event source at this stage's real ones (SAM overrides), turns on
``ReportBatchItemFailures`` (Chalice does not emit it) and caps the worker's concurrency so the
per-process send limiter adds up to the provider's rate.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

from aws_cdk import Duration, NestedStack, RemovalPolicy, Stack
from aws_cdk import aws_cloudwatch as cloudwatch
from aws_cdk import aws_cloudwatch_actions as cw_actions
from aws_cdk import aws_iam as iam
from aws_cdk import aws_kms as kms
from aws_cdk import aws_ses as ses
from aws_cdk import aws_smsvoice as smsvoice
from aws_cdk import aws_sns as sns
from aws_cdk import aws_sqs as sqs
from constructs import Construct

from infra.config import StageConfig
from infra.roles import CONSUME_ACTIONS, function_timeout_seconds

SOURCE_DIR = Path(__file__).resolve().parent.parent

#: Chalice function (logical id) -> its event's logical id in the SAM template, per handler of
#: ``chalicelib/jobs/notify.py`` (Chalice names them ``<Function>SqsEventSource`` etc.).
WORKER = ("NotifyWorker", "NotifyWorkerSqsEventSource")
SES_EVENTS = ("NotifySesEvents", "NotifySesEventsSnsSubscription")
SMS_STATUS = ("NotifySmsStatus", "NotifySmsStatusSnsSubscription")
SMS_INBOUND = ("NotifySmsInbound", "NotifySmsInboundSnsSubscription")
WORKER_MAX_CONCURRENCY = 2  # the least SQS allows; the limiter gives each process rate / 2
#: Provider rates for the whole worker (per second); each process gets rate / concurrency.
SES_RATE = 14
SMS_RATE = 3
SES_EVENTS_TYPES = (ses.EmailSendingEvent.SEND, ses.EmailSendingEvent.REJECT, ses.EmailSendingEvent.BOUNCE,
                    ses.EmailSendingEvent.COMPLAINT, ses.EmailSendingEvent.DELIVERY,
                    ses.EmailSendingEvent.DELIVERY_DELAY, ses.EmailSendingEvent.RENDERING_FAILURE)
SMS_EVENT_TYPES = ("TEXT_DELIVERED", "TEXT_SUCCESSFUL", "TEXT_INVALID", "TEXT_INVALID_MESSAGE", "TEXT_UNREACHABLE",
                   "TEXT_CARRIER_UNREACHABLE", "TEXT_BLOCKED", "TEXT_CARRIER_BLOCKED", "TEXT_SPAM", "TEXT_UNKNOWN",
                   "TEXT_TTL_EXPIRED")
#: Email reputation alarms fire well below SES's review thresholds of 5% and 0.1% (R11).
BOUNCE_ALARM = 0.02
COMPLAINT_ALARM = 0.0005


def worker_timeout_seconds(stage: str) -> int:
    """The worker's Lambda timeout from ``.chalice/config.json`` (Chalice's lookup order)."""
    return function_timeout_seconds("notify_worker", stage)


class Notify(NestedStack):
    """The stage's notification resources (see the module docstring).

    - ``queue`` (visibility six times the worker's timeout, SSE) with ``dlq`` after 5 receives;
    - ``ses_events``, ``sms_status``, ``sms_inbound``: SNS topics encrypted with ``key``, which
      SES and End User Messaging SMS may use to publish;
    - ``configuration_set`` (SES, ``<stack>-notify``: reputation metrics, account suppression
      of bounces and complaints, every sending event to ``ses_events``) and
      ``sms_configuration_set`` (delivery events to ``sms_status``). Inbound SMS reach
      ``sms_inbound`` through each clinic's phone number (two-way channel), registered per
      number outside this stack;
    - :meth:`grants`: send email through the configuration set, publish SMS, enqueue and
      consume the work queue;
    - ``alarms`` to ``alarm_topic``: messages dead-lettered, work older than 15 minutes, bounce
      rate ≥ 2%, complaint rate ≥ 0.05%, SMS success rate under 90%.
    """

    def __init__(self, scope: Construct, id_: str, *, config: StageConfig, alarm_topic: sns.ITopic) -> None:
        super().__init__(scope, id_, description=f"Frontdesk {config.stage}: notifications")
        name = f"{config.stack_name}-notify"
        self.queue_name = name
        self.worker_timeout = function_timeout_seconds("notify_worker", config.stage)
        self.dlq = sqs.Queue(self, "DeadLetters", queue_name=f"{name}-dlq", retention_period=Duration.days(14),
                             encryption=sqs.QueueEncryption.SQS_MANAGED, enforce_ssl=True)
        self.queue = sqs.Queue(
            self, "Work", queue_name=name,
            visibility_timeout=Duration.seconds(max(6 * self.worker_timeout, 120)),
            retention_period=Duration.days(4), encryption=sqs.QueueEncryption.SQS_MANAGED, enforce_ssl=True,
            dead_letter_queue=sqs.DeadLetterQueue(queue=self.dlq, max_receive_count=5))
        self.key = kms.Key(self, "TopicKey", description=f"Frontdesk {config.stage}: notification topics",
                           enable_key_rotation=True, removal_policy=RemovalPolicy.RETAIN)
        for service in ("ses.amazonaws.com", "sms-voice.amazonaws.com"):
            self.key.add_to_resource_policy(iam.PolicyStatement(
                sid=f"Publish{service.split('.')[0].title().replace('-', '')}",
                principals=[iam.ServicePrincipal(service)],
                actions=["kms:GenerateDataKey*", "kms:Decrypt"], resources=["*"]))
        self.ses_events = sns.Topic(self, "SesEvents", topic_name=f"{name}-ses-events", master_key=self.key)
        self.sms_status = sns.Topic(self, "SmsStatus", topic_name=f"{name}-sms-status", master_key=self.key)
        self.sms_inbound = sns.Topic(self, "SmsInbound", topic_name=f"{name}-sms-inbound", master_key=self.key)
        account = Stack.of(self).account
        for topic, service in ((self.ses_events, "ses.amazonaws.com"), (self.sms_status, "sms-voice.amazonaws.com"),
                               (self.sms_inbound, "sms-voice.amazonaws.com")):
            topic.add_to_resource_policy(iam.PolicyStatement(
                principals=[iam.ServicePrincipal(service)], actions=["sns:Publish"], resources=[topic.topic_arn],
                conditions={"StringEquals": {"aws:SourceAccount": account}}))
        self.configuration_set = ses.ConfigurationSet(
            self, "Emails", configuration_set_name=name, reputation_metrics=True, sending_enabled=True,
            suppression_reasons=ses.SuppressionReasons.BOUNCES_AND_COMPLAINTS)
        self.configuration_set.add_event_destination(
            "ToSns", destination=ses.EventDestination.sns_topic(self.ses_events), events=list(SES_EVENTS_TYPES))
        self.sms_configuration_set = smsvoice.CfnConfigurationSet(
            self, "Texts", configuration_set_name=name,
            event_destinations=[smsvoice.CfnConfigurationSet.EventDestinationProperty(
                event_destination_name="delivery-status", enabled=True,
                matching_event_types=list(SMS_EVENT_TYPES),
                sns_destination=smsvoice.CfnConfigurationSet.SnsDestinationProperty(
                    topic_arn=self.sms_status.topic_arn))])
        period = Duration.minutes(5)
        metrics: dict[str, tuple[cloudwatch.Metric, float, cloudwatch.ComparisonOperator]] = {
            "DeadLettered": (self.dlq.metric_approximate_number_of_messages_visible(period=period, statistic="Maximum"),
                             1, cloudwatch.ComparisonOperator.GREATER_THAN_OR_EQUAL_TO_THRESHOLD),
            "WorkWaiting": (self.queue.metric_approximate_age_of_oldest_message(period=period, statistic="Maximum"),
                            900, cloudwatch.ComparisonOperator.GREATER_THAN_OR_EQUAL_TO_THRESHOLD),
            "BounceRate": (cloudwatch.Metric(namespace="AWS/SES", metric_name="Reputation.BounceRate",
                                             statistic="Maximum", period=period),
                           BOUNCE_ALARM, cloudwatch.ComparisonOperator.GREATER_THAN_OR_EQUAL_TO_THRESHOLD),
            "ComplaintRate": (cloudwatch.Metric(namespace="AWS/SES", metric_name="Reputation.ComplaintRate",
                                                statistic="Maximum", period=period),
                              COMPLAINT_ALARM, cloudwatch.ComparisonOperator.GREATER_THAN_OR_EQUAL_TO_THRESHOLD),
            "SmsSuccess": (cloudwatch.Metric(namespace="AWS/SNS", metric_name="SMSSuccessRate", statistic="Average",
                                             period=Duration.hours(1)),
                           0.9, cloudwatch.ComparisonOperator.LESS_THAN_THRESHOLD),
        }
        #: Alarm construct id -> alarm; each notifies the stage's alarm topic.
        self.alarms: dict[str, cloudwatch.Alarm] = {}
        for alarm_id, (metric, threshold, comparison) in metrics.items():
            alarm = metric.create_alarm(self, alarm_id, threshold=threshold, evaluation_periods=1,
                                        comparison_operator=comparison,
                                        treat_missing_data=cloudwatch.TreatMissingData.NOT_BREACHING)
            alarm.add_alarm_action(cw_actions.SnsAction(alarm_topic))
            self.alarms[alarm_id] = alarm

    def grants(self) -> dict[str, list[iam.PolicyStatement]]:
        """Grant name (``infra/roles.py``) -> its statements (for roles outside this nested stack)."""
        stack = Stack.of(self)
        identities = stack.format_arn(service="ses", resource="identity", resource_name="*")
        config_set_arn = stack.format_arn(service="ses", resource="configuration-set", resource_name=self.queue_name)
        queue = self.queue.queue_arn
        return {
            "send": [
                iam.PolicyStatement(sid="SendEmail", actions=["ses:SendEmail"], resources=[identities, config_set_arn]),
                # Publishing to a phone number has no resource ARN: IAM requires "*" (the one documented
                # exception to R18); topics are not published to by the app.
                iam.PolicyStatement(sid="SendSms", actions=["sns:Publish"], resources=["*"]),
            ],
            "notify_enqueue": [iam.PolicyStatement(sid="NotifyEnqueue", actions=["sqs:SendMessage"],
                                                   resources=[queue])],
            "notify_consume": [iam.PolicyStatement(sid="NotifyConsume", actions=list(CONSUME_ACTIONS),
                                                   resources=[queue])],
        }

    def function_environment(self) -> dict[str, str]:
        """What every function of the app needs to send (``chalicelib/notify/config.py``)."""
        return {
            "FRONTDESK_CHANNEL": "aws",
            "FRONTDESK_NOTIFY_QUEUE_URL": self.queue.queue_url,
            "FRONTDESK_SES_CONFIGURATION_SET": self.configuration_set.configuration_set_name,
            "FRONTDESK_SES_RATE": str(SES_RATE / WORKER_MAX_CONCURRENCY),
            "FRONTDESK_SMS_RATE": str(SMS_RATE / WORKER_MAX_CONCURRENCY),
            "FRONTDESK_NOTIFY_KEEP_BODIES": "0",
        }

    def wire(self, functions: dict[str, Any]) -> None:
        """Point the SAM functions (logical id -> ``CfnResource``, as Chalice generated them) at
        this stage's queue and topics, and add the environment to every function (its values
        come from this stack's outputs, so each function is created after this stack and its
        sending policy)."""
        worker, worker_event = WORKER
        events = f"Properties.Events.{worker_event}.Properties"
        if worker in functions:
            fn = functions[worker]
            fn.add_override(f"{events}.Queue", self.queue.queue_arn)
            fn.add_override(f"{events}.FunctionResponseTypes", ["ReportBatchItemFailures"])
            fn.add_override(f"{events}.ScalingConfig", {"MaximumConcurrency": WORKER_MAX_CONCURRENCY})
        for (function, event), topic in ((SES_EVENTS, self.ses_events), (SMS_STATUS, self.sms_status),
                                         (SMS_INBOUND, self.sms_inbound)):
            if function in functions:
                functions[function].add_override(f"Properties.Events.{event}.Properties.Topic", topic.topic_arn)
        for fn in functions.values():
            for key, value in self.function_environment().items():
                fn.add_override(f"Properties.Environment.Variables.{key}", value)
