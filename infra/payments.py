"""Payments in the cloud: the processor-events queue and its dead-letter queue, the alarms on
stuck payments, and the wiring of the consumer (SERVERLESS.md 3.7, SERVERLESS-PERF-REL.md R2, R7).

The webhook route records each processor event (its item is the dedupe, R20) and puts the ids
on ``Events`` (``chalicelib/payments/queue.py``, ``FRONTDESK_PROCESSOR_EVENTS_QUEUE_URL``);
``processor_events_consume`` (``chalicelib/jobs/payments.py``) posts them and reports partial
batch failures. A record that fails ``MAX_RECEIVES`` times goes to ``EventsDlq`` (kept 14 days
for a redrive; handling is idempotent, so a redrive posts nothing twice).

Stuck payments, from what AWS measures (the app emits no custom metric):

- ``EventsWaiting``: the oldest processor event has waited ``STUCK_SECONDS`` (15 minutes): a
  payment the processor confirmed is not in the ledger yet (the consumer is failing or throttled);
- ``EventsDeadLettered``: an event gave up after ``MAX_RECEIVES`` attempts (never posted
  without a redrive);
- the completer's and the consumer's Lambda errors (``infra/monitoring.py``, per function):
  attempts left pending are what the completer exists for.
"""

from __future__ import annotations

from typing import Any

from aws_cdk import Duration
from aws_cdk import aws_cloudwatch as cloudwatch
from aws_cdk import aws_cloudwatch_actions as cw_actions
from aws_cdk import aws_iam as iam
from aws_cdk import aws_sns as sns
from aws_cdk import aws_sqs as sqs
from constructs import Construct

from infra.roles import CONSUME_ACTIONS, function_timeout_seconds

#: The SAM function and event names Chalice generates for ``chalicelib.jobs.payments``.
CONSUMER = "processor_events_consume"
CONSUMER_FUNCTION = "ProcessorEventsConsume"
CONSUMER_EVENT = "ProcessorEventsConsumeSqsEventSource"
MAX_RECEIVES = 5
STUCK_SECONDS = 900
#: Consumers at once: postings for one guarantor conflict and retry; a few is plenty.
MAX_CONCURRENCY = 5
#: The processor of every cloud stage (``FRONTDESK_PROCESSOR``).
PROCESSOR = "stripe"


class Payments(Construct):
    """The processor-events queue, its DLQ and the stuck-payment alarms (module docstring)."""

    def __init__(self, scope: Construct, id_: str, *, stage: str, alarm_topic: sns.ITopic) -> None:
        super().__init__(scope, id_)
        #: Events that failed ``MAX_RECEIVES`` times, kept for a redrive.
        self.dead_letters = sqs.Queue(self, "EventsDlq", encryption=sqs.QueueEncryption.SQS_MANAGED,
                                      enforce_ssl=True, retention_period=Duration.days(14))
        #: One message per recorded processor event: ``{clinic_id, processor, event_id}`` (ids only).
        self.queue = sqs.Queue(
            self, "Events", encryption=sqs.QueueEncryption.SQS_MANAGED, enforce_ssl=True,
            visibility_timeout=Duration.seconds(6 * function_timeout_seconds(CONSUMER, stage)),
            retention_period=Duration.days(4),
            dead_letter_queue=sqs.DeadLetterQueue(max_receive_count=MAX_RECEIVES, queue=self.dead_letters))
        #: What the application reads from its environment (``chalicelib/payments/queue.py``), and
        #: the deployment's processor: Stripe, so the sandbox (payments in process memory, hosted
        #: pages standing for a processor's domain) is off and its pages answer 404
        #: (``chalicelib/payments/processors/registry.py``).
        self.environment = {"FRONTDESK_PROCESSOR_EVENTS_QUEUE_URL": self.queue.queue_url,
                            "FRONTDESK_PROCESSOR": PROCESSOR}
        period = Duration.minutes(5)
        #: Alarm construct id -> alarm; each notifies the stage's alarm topic.
        self.alarms: dict[str, cloudwatch.Alarm] = {}
        for alarm_id, metric, threshold, description in (
            ("EventsWaiting", self.queue.metric_approximate_age_of_oldest_message(period=period, statistic="Maximum"),
             STUCK_SECONDS, "A processor event has waited 15 minutes: a confirmed payment is not posted yet"),
            ("EventsDeadLettered",
             self.dead_letters.metric_approximate_number_of_messages_visible(period=period, statistic="Maximum"),
             1, "A processor event failed 5 times and is in the dead-letter queue: redrive after the fix"),
        ):
            alarm = metric.create_alarm(
                self, alarm_id, threshold=threshold, evaluation_periods=1, alarm_description=description,
                comparison_operator=cloudwatch.ComparisonOperator.GREATER_THAN_OR_EQUAL_TO_THRESHOLD,
                treat_missing_data=cloudwatch.TreatMissingData.NOT_BREACHING)
            alarm.add_alarm_action(cw_actions.SnsAction(alarm_topic))
            self.alarms[alarm_id] = alarm

    def grants(self) -> dict[str, list[iam.PolicyStatement]]:
        """Grant name (``infra/roles.py``) -> its statements on the events queue."""
        arn = self.queue.queue_arn
        return {
            "payments_enqueue": [iam.PolicyStatement(sid="EventsEnqueue", actions=["sqs:SendMessage"],
                                                     resources=[arn])],
            "payments_consume": [iam.PolicyStatement(sid="EventsConsume", actions=list(CONSUME_ACTIONS),
                                                     resources=[arn])],
        }

    def wire(self, functions: dict[str, Any]) -> None:
        """Give every SAM function (by logical id) the queue's URL and the processor, and point the consumer at
        ``Events`` with ``ReportBatchItemFailures`` (Chalice emits neither) and bounded concurrency."""
        for fn in functions.values():
            for name, value in self.environment.items():
                fn.add_override(f"Properties.Environment.Variables.{name}", value)
        if CONSUMER_FUNCTION not in functions:
            return
        event = f"Properties.Events.{CONSUMER_EVENT}.Properties"
        consumer = functions[CONSUMER_FUNCTION]
        consumer.add_override(f"{event}.Queue", self.queue.queue_arn)
        consumer.add_override(f"{event}.FunctionResponseTypes", ["ReportBatchItemFailures"])
        consumer.add_override(f"{event}.ScalingConfig", {"MaximumConcurrency": MAX_CONCURRENCY})
