"""Alarms of a stage and the topic they notify."""

from __future__ import annotations

from collections.abc import Mapping

from aws_cdk import CfnResource, Duration
from aws_cdk import aws_cloudwatch as cloudwatch
from aws_cdk import aws_cloudwatch_actions as cw_actions
from aws_cdk import aws_dynamodb as dynamodb
from aws_cdk import aws_sns as sns
from aws_cdk import aws_sns_subscriptions as subscriptions
from aws_cdk import aws_sqs as sqs
from constructs import Construct

#: Lambda metrics alarmed per function: any error or throttle in a 5-minute period.
FUNCTION_METRICS: tuple[str, ...] = ("Errors", "Throttles")


class Monitoring(Construct):
    """An SNS topic for alarms (with ``alarm_email`` subscribed when given) and the alarms.

    Alarms here: read and write throttle events on the table (on-demand tables still throttle
    on a hot partition, SERVERLESS.md section 4 item 9); :meth:`dead_letters` for a queue's
    dead-letter queue; :meth:`watch_functions` for the Errors and Throttles of every packaged
    function (the ``Ref`` of each SAM function is its name). Other constructs add their own
    alarms on this topic (imports, notifications, payments). Alarm messages carry metric names
    and counts only, never PHI, so the topic uses SNS defaults rather than the data key
    (CloudWatch would otherwise need a grant on the data key).
    """

    def __init__(self, scope: Construct, id_: str, *, table: dynamodb.Table, alarm_email: str | None) -> None:
        super().__init__(scope, id_)
        #: Where every alarm of the stage goes.
        self.topic = sns.Topic(self, "Topic")
        if alarm_email:
            self.topic.add_subscription(subscriptions.EmailSubscription(alarm_email))
        self.period = Duration.minutes(5)
        #: Alarm construct id -> alarm; every one fires on a single non-zero 5-minute period.
        self.alarms: dict[str, cloudwatch.Alarm] = {}
        self._alarm("TableReadThrottles", table.metric("ReadThrottleEvents", statistic="Sum", period=self.period))
        self._alarm("TableWriteThrottles", table.metric("WriteThrottleEvents", statistic="Sum", period=self.period))

    def _alarm(self, alarm_id: str, metric: cloudwatch.Metric, description: str | None = None) -> cloudwatch.Alarm:
        alarm = metric.create_alarm(
            self,
            alarm_id,
            threshold=1,
            evaluation_periods=1,
            alarm_description=description,
            comparison_operator=cloudwatch.ComparisonOperator.GREATER_THAN_OR_EQUAL_TO_THRESHOLD,
            treat_missing_data=cloudwatch.TreatMissingData.NOT_BREACHING,
        )
        alarm.add_alarm_action(cw_actions.SnsAction(self.topic))
        self.alarms[alarm_id] = alarm
        return alarm

    def dead_letters(self, alarm_id: str, queue: sqs.IQueue, what: str) -> cloudwatch.Alarm:
        """An alarm on the first message in the dead-letter ``queue`` (``what`` names its work)."""
        metric = queue.metric_approximate_number_of_messages_visible(period=self.period, statistic="Maximum")
        return self._alarm(alarm_id, metric, f"{what} failed every attempt and waits in a dead-letter queue")

    def watch_functions(self, functions: Mapping[str, CfnResource]) -> None:
        """Errors and Throttles alarms for every SAM function (logical id -> resource)."""
        for logical_id, function in sorted(functions.items()):
            for metric_name in FUNCTION_METRICS:
                metric = cloudwatch.Metric(
                    namespace="AWS/Lambda",
                    metric_name=metric_name,
                    dimensions_map={"FunctionName": function.ref},
                    statistic="Sum",
                    period=self.period,
                )
                self._alarm(f"{logical_id}{metric_name}", metric, f"{metric_name} in {logical_id}")
