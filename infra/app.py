"""The CDK app: one :class:`~infra.stacks.FrontdeskStack` per stage.

    .venv/bin/python -m infra.app                   # synthesize dev and prod into $CDK_OUTDIR (or a tmp dir)
    .venv/bin/python -m infra.app --stage dev       # one stage
    npx aws-cdk synth dev                           # the same through the CDK CLI (cdk.json at the root)

Run from the repository root with it on ``PYTHONPATH``. The alarm address of a stage comes from
CDK context ``frontdesk:<stage>:alarm_email`` (``cdk deploy -c frontdesk:prod:alarm_email=ops@...``);
``frontdesk:<stage>:portal_url``, ``:sender_email`` and ``:sms_origination_number`` set the
deployment's public URL and default senders (``StageConfig.environment``).
The stacks are environment-agnostic unless the CDK CLI supplies an account and region.
"""

from __future__ import annotations

import argparse
import dataclasses
import os
import sys
from collections.abc import Iterable

import aws_cdk as cdk

from infra.config import STAGES
from infra.stacks import FrontdeskStack


def build_app(*, stages: Iterable[str] = tuple(STAGES), with_api: bool = True, outdir: str | None = None) -> cdk.App:
    """An app holding the stacks of ``stages`` (names of :data:`infra.config.STAGES`)."""
    app = cdk.App(outdir=outdir)
    account, region = os.environ.get("CDK_DEFAULT_ACCOUNT"), os.environ.get("CDK_DEFAULT_REGION")
    env = cdk.Environment(account=account, region=region) if account and region else None
    for name in stages:
        config = STAGES[name]
        email = app.node.try_get_context(f"frontdesk:{name}:alarm_email")
        if email:
            config = dataclasses.replace(config, alarm_email=str(email))
        settings: dict[str, str] = {}
        for field in ("portal_url", "sender_email", "sms_origination_number"):
            value = app.node.try_get_context(f"frontdesk:{name}:{field}")
            if value:
                settings[field] = str(value)
        config = dataclasses.replace(config, portal_url=settings.get("portal_url", config.portal_url),
                                     sender_email=settings.get("sender_email", config.sender_email),
                                     sms_origination_number=settings.get("sms_origination_number",
                                                                         config.sms_origination_number))
        FrontdeskStack(app, config, with_api=with_api, env=env)
    return app


def main(argv: list[str] | None = None) -> int:
    """Synthesize the cloud assembly and print where it went."""
    parser = argparse.ArgumentParser(prog="python -m infra.app", description=__doc__.split("\n\n")[0])
    parser.add_argument("--stage", action="append", choices=sorted(STAGES), help="repeatable; default all")
    parser.add_argument("--no-api", action="store_true", help="leave out the Chalice app (no chalice package)")
    args = parser.parse_args(argv)
    assembly = build_app(stages=args.stage or tuple(STAGES), with_api=not args.no_api).synth()
    print(assembly.directory, file=sys.stderr)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
