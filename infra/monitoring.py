"""Alarms of a stage and the topic they notify."""

from __future__ import annotations

from aws_cdk import Duration
from aws_cdk import aws_cloudwatch as cloudwatch
from aws_cdk import aws_cloudwatch_actions as cw_actions
from aws_cdk import aws_dynamodb as dynamodb
from aws_cdk import aws_sns as sns
from aws_cdk import aws_sns_subscriptions as subscriptions
from constructs import Construct


class Monitoring(Construct):
    """An SNS topic for alarms (with ``alarm_email`` subscribed when given) and the alarms.

    Alarms: read and write throttle events on the table (on-demand tables still throttle on a
    hot partition, SERVERLESS.md section 4 item 9), and errors of the API handler when the
    application is packaged (``api_handler_name``: the ``Ref`` of the SAM function). Alarm
    messages carry metric names and counts only, never PHI, so the topic uses SNS defaults
    rather than the data key (CloudWatch would otherwise need a grant on the data key).
    """

    def __init__(
        self,
        scope: Construct,
        id_: str,
        *,
        table: dynamodb.Table,
        alarm_email: str | None,
        api_handler_name: str | None,
    ) -> None:
        super().__init__(scope, id_)
        #: Where every alarm of the stage goes.
        self.topic = sns.Topic(self, "Topic")
        if alarm_email:
            self.topic.add_subscription(subscriptions.EmailSubscription(alarm_email))
        period = Duration.minutes(5)
        metrics = {
            "TableReadThrottles": table.metric("ReadThrottleEvents", statistic="Sum", period=period),
            "TableWriteThrottles": table.metric("WriteThrottleEvents", statistic="Sum", period=period),
        }
        if api_handler_name is not None:
            metrics["ApiHandlerErrors"] = cloudwatch.Metric(
                namespace="AWS/Lambda",
                metric_name="Errors",
                dimensions_map={"FunctionName": api_handler_name},
                statistic="Sum",
                period=period,
            )
        #: Alarm construct id -> alarm; every one fires on a single non-zero 5-minute period.
        self.alarms: dict[str, cloudwatch.Alarm] = {}
        for name, metric in metrics.items():
            alarm = metric.create_alarm(
                self,
                name,
                threshold=1,
                evaluation_periods=1,
                comparison_operator=cloudwatch.ComparisonOperator.GREATER_THAN_OR_EQUAL_TO_THRESHOLD,
                treat_missing_data=cloudwatch.TreatMissingData.NOT_BREACHING,
            )
            alarm.add_alarm_action(cw_actions.SnsAction(self.topic))
            self.alarms[name] = alarm
