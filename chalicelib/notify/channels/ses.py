"""Email through Amazon SES (v1 ``SendEmail``), with the deployment's configuration set so
delivery, bounce and complaint events reach the SES-events SNS topic (PRODUCT.md §8).

The client is created on first use, with botocore retries OFF: botocore would retry a read
timeout, which can send an email twice; only throttling (proof of non-acceptance) is retried,
by :func:`with_throttle_retries`. Message tags carry ids (clinic, owner, message) so every SES
event names our message without a lookup.
"""

from __future__ import annotations

from email.utils import formataddr
from typing import TYPE_CHECKING, Any

from chalicelib.notify import config
from chalicelib.notify.channels.base import LazyClient, Outgoing, RateLimiter, with_throttle_retries

if TYPE_CHECKING:
    from mypy_boto3_ses import SESClient


class SesChannel:
    """SES email; one ``SendEmail`` per message."""

    name = "email"

    def __init__(self) -> None:
        self._client = LazyClient("ses")
        self.limiter = RateLimiter(config.settings().ses_rate)

    @property
    def client(self) -> SESClient:
        client: SESClient = self._client.get()
        return client

    def send(self, message: Outgoing) -> str:
        cfg = config.settings()
        sender = message.sender or cfg.sender_email
        body: dict[str, Any] = {"Text": {"Data": message.text, "Charset": "UTF-8"}}
        if message.html:
            body["Html"] = {"Data": message.html, "Charset": "UTF-8"}
        kwargs: dict[str, Any] = {
            "Source": formataddr((message.sender_name, sender)) if message.sender_name else sender,
            "Destination": {"ToAddresses": [message.to]},
            "Message": {"Subject": {"Data": message.subject or "", "Charset": "UTF-8"}, "Body": body},
            "Tags": [{"Name": k, "Value": v} for k, v in sorted(message.tags.items())],
        }
        if cfg.ses_configuration_set:
            kwargs["ConfigurationSetName"] = cfg.ses_configuration_set

        def call() -> str:
            return str(self.client.send_email(**kwargs)["MessageId"])

        return with_throttle_retries(call, limiter=self.limiter)
