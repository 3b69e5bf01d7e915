"""Per-stage settings of the CDK app: what differs between ``dev`` and ``prod`` and nothing else.

The Chalice stage of the same name in ``.chalice/config.json`` holds what Chalice itself reads
(API Gateway stage, Lambda timeout and memory, DynamoDB timeouts); this holds what only the
cloud deployment needs (table name, log retention, alarm address, API throttling).
"""

from __future__ import annotations

from dataclasses import dataclass

# CloudWatch Logs accepts only these retention periods (days); Chalice passes the number through.
LOG_RETENTION_DAYS = frozenset(
    {1, 3, 5, 7, 14, 30, 60, 90, 120, 150, 180, 365, 400, 545, 731, 1096, 1827, 2192, 2557, 2922, 3288, 3653}
)


@dataclass(frozen=True)
class StageConfig:
    """Everything one stage's stack needs, immutable.

    ``stage`` is also the stack's construct id and the Chalice stage name (the Chalice CDK
    construct takes its stage from the path of its scope), so it must be a stage of
    ``.chalice/config.json``. ``throttle_rate`` is requests per second and ``throttle_burst``
    the token-bucket size, applied to every method of the API Gateway stage (below the account
    default of 10,000 / 5,000). ``alarm_email``, when set, is subscribed to the alarm topic.
    ``waf_*_limit`` are requests per source address per 5 minutes at the WAF (infra/edge.py).
    ``statement_pdf_days`` is how long statement PDFs are kept (S3 lifecycle, infra/statements.py).
    ``portal_url`` (the portal's public base URL, ``FRONTDESK_PORTAL_URL``), ``sender_email``
    (``FRONTDESK_SENDER_EMAIL``) and ``sms_origination_number`` (``FRONTDESK_SMS_ORIGINATION_NUMBER``)
    go to every function when set (:meth:`environment`).
    """

    stage: str
    log_retention_days: int
    throttle_rate: float
    throttle_burst: int
    alarm_email: str | None = None
    waf_signin_limit: int = 50
    waf_link_limit: int = 150
    waf_overall_limit: int = 2000
    statement_pdf_days: int = 120
    portal_url: str | None = None
    sender_email: str | None = None
    sms_origination_number: str | None = None

    def __post_init__(self) -> None:
        if not self.stage.isidentifier() or self.stage != self.stage.lower():
            raise ValueError(f"stage must be a lower-case identifier: {self.stage!r}")
        if self.log_retention_days not in LOG_RETENTION_DAYS:
            raise ValueError(f"CloudWatch Logs does not accept a retention of {self.log_retention_days} days")
        if self.throttle_rate <= 0 or self.throttle_burst <= 0:
            raise ValueError("API throttling rate and burst must be positive")
        if self.portal_url is not None and not self.portal_url.startswith("https://"):
            raise ValueError("the portal URL of a cloud stage is https://")
        if not 1 <= self.statement_pdf_days <= 3650:
            raise ValueError("statement PDFs are kept 1 to 3650 days")

    def environment(self) -> dict[str, str]:
        """The deployment's own settings as the application reads them (only those set)."""
        values = {"FRONTDESK_PORTAL_URL": self.portal_url, "FRONTDESK_SENDER_EMAIL": self.sender_email,
                  "FRONTDESK_SMS_ORIGINATION_NUMBER": self.sms_origination_number}
        return {name: value for name, value in values.items() if value}

    @property
    def table_name(self) -> str:
        """The table's physical name, ``frontdesk-<stage>`` (what ``FRONTDESK_TABLE`` is set to)."""
        return f"frontdesk-{self.stage}"

    @property
    def stack_name(self) -> str:
        """The CloudFormation stack name, ``frontdesk-<stage>``; Lambda function names start with it."""
        return f"frontdesk-{self.stage}"


STAGES: dict[str, StageConfig] = {
    "dev": StageConfig(stage="dev", log_retention_days=30, throttle_rate=50, throttle_burst=100),
    "prod": StageConfig(stage="prod", log_retention_days=400, throttle_rate=500, throttle_burst=1000),
}
