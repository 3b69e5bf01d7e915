"""SMS through Amazon SNS ``Publish`` to a phone number, from the clinic's origination number,
as Transactional (PRODUCT.md §8).

Created on first use with botocore retries off (a retried read timeout could text twice);
throttling is retried by :func:`with_throttle_retries`. A publish refused because the number
opted out is permanent and suppresses the contact point (SERVERLESS-PERF-REL.md §4.3: "a
publish to an opted-out number is a terminal outcome, never a retry").
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from chalicelib.notify import config
from chalicelib.notify.channels.base import LazyClient, Outgoing, RateLimiter, with_throttle_retries

if TYPE_CHECKING:
    from mypy_boto3_sns import SNSClient


class SnsChannel:
    """SNS SMS; one ``Publish`` per message."""

    name = "sms"

    def __init__(self) -> None:
        self._client = LazyClient("sns")
        self.limiter = RateLimiter(config.settings().sms_rate)

    @property
    def client(self) -> SNSClient:
        client: SNSClient = self._client.get()
        return client

    def send(self, message: Outgoing) -> str:
        attributes: dict[str, Any] = {
            "AWS.SNS.SMS.SMSType": {"DataType": "String", "StringValue": "Transactional"},
        }
        origination = message.sender or config.settings().sms_origination_number
        if origination:
            attributes["AWS.MM.SMS.OriginationNumber"] = {"DataType": "String", "StringValue": origination}

        def call() -> str:
            return str(self.client.publish(PhoneNumber=message.to, Message=message.text,
                                           MessageAttributes=attributes)["MessageId"])

        return with_throttle_retries(call, limiter=self.limiter)
