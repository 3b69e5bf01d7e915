"""The edge: a WAF web ACL in front of the API with rate rules on sign-in and code endpoints.

SECURITY.md R20 and SERVERLESS-PERF-REL.md R19: the application caps code sends per destination
(whatever the source address); the WAF blocks one address beyond its limit per 5-minute window
before the request costs a Lambda invocation, and AWS's managed common and known-bad-inputs
rule groups screen the rest. Limits are per stage (``StageConfig``).

The path WAF inspects is the one the client sent: ``/api/signin`` on the ``execute-api`` URL
(the API Gateway stage comes first), ``/signin`` behind a custom domain mapped to the stage. Each
rule therefore matches both forms (:func:`path_forms`).
"""

from __future__ import annotations

from aws_cdk import Stack
from aws_cdk import aws_wafv2 as waf
from constructs import Construct

#: Path prefixes that send codes or check them: limited per source address (R19, R20): the
#: sign-in form, the code request and the code check (``/signin``, ``/signin/code``).
SIGNIN_PATHS: tuple[str, ...] = ("/signin",)
#: Where payment links are exchanged: limited per source address (R28: token lookups).
LINK_PATHS: tuple[str, ...] = ("/l/",)
#: Statement verification codes, looked up by anyone holding a paper statement
#: (``GET /v1/clinics/{clinic}/statements/verify/{code}``): matched anywhere in the path.
CODE_PATHS: tuple[str, ...] = ("/statements/verify/",)
#: The API Gateway stage (``api_gateway_stage`` in ``.chalice/config.json``).
API_STAGE = "api"


def path_forms(prefix: str, stage: str = API_STAGE) -> tuple[str, str]:
    """``prefix`` as a custom domain sends it and as the ``execute-api`` URL does (stage first)."""
    return prefix, f"/{stage}{prefix}"


def _path_match(text: str, constraint: str) -> waf.CfnWebACL.StatementProperty:
    return waf.CfnWebACL.StatementProperty(byte_match_statement=waf.CfnWebACL.ByteMatchStatementProperty(
        field_to_match=waf.CfnWebACL.FieldToMatchProperty(uri_path={}),
        positional_constraint=constraint, search_string=text,
        text_transformations=[waf.CfnWebACL.TextTransformationProperty(priority=0, type="LOWERCASE")]))


def _rate_rule(name: str, priority: int, limit: int, prefixes: tuple[str, ...],
               constraint: str = "STARTS_WITH") -> waf.CfnWebACL.RuleProperty:
    matches = [_path_match(p, constraint) for p in prefixes]
    scope = matches[0] if len(matches) == 1 else waf.CfnWebACL.StatementProperty(
        or_statement=waf.CfnWebACL.OrStatementProperty(statements=matches))
    return waf.CfnWebACL.RuleProperty(
        name=name, priority=priority, action=waf.CfnWebACL.RuleActionProperty(block={}),
        statement=waf.CfnWebACL.StatementProperty(rate_based_statement=waf.CfnWebACL.RateBasedStatementProperty(
            aggregate_key_type="IP", limit=limit, evaluation_window_sec=300, scope_down_statement=scope)),
        visibility_config=waf.CfnWebACL.VisibilityConfigProperty(
            cloud_watch_metrics_enabled=True, metric_name=name, sampled_requests_enabled=True))


def _managed(name: str, priority: int) -> waf.CfnWebACL.RuleProperty:
    return waf.CfnWebACL.RuleProperty(
        name=name, priority=priority, override_action=waf.CfnWebACL.OverrideActionProperty(none={}),
        statement=waf.CfnWebACL.StatementProperty(managed_rule_group_statement=waf.CfnWebACL.ManagedRuleGroupStatementProperty(
            vendor_name="AWS", name=name)),
        visibility_config=waf.CfnWebACL.VisibilityConfigProperty(
            cloud_watch_metrics_enabled=True, metric_name=name, sampled_requests_enabled=True))


class Edge(Construct):
    """The web ACL; associated with the API stage when ``stage_arn`` is given.

    ``signin_limit`` (sign-in and statement-code lookups, each rule separately), ``link_limit``
    and ``overall_limit`` are requests per source address per 5 minutes.
    """

    def __init__(self, scope: Construct, id_: str, *, stage_arn: str | None, signin_limit: int,
                 link_limit: int, overall_limit: int) -> None:
        super().__init__(scope, id_)
        stack = Stack.of(self)
        self.acl = waf.CfnWebACL(
            self, "WebAcl", scope="REGIONAL", default_action=waf.CfnWebACL.DefaultActionProperty(allow={}),
            name=f"{stack.stack_name}-edge",
            visibility_config=waf.CfnWebACL.VisibilityConfigProperty(
                cloud_watch_metrics_enabled=True, metric_name=f"{stack.stack_name}-edge",
                sampled_requests_enabled=True),
            rules=[
                _rate_rule("signin-per-ip", 0, signin_limit, tuple(f for p in SIGNIN_PATHS for f in path_forms(p))),
                _rate_rule("codes-per-ip", 1, signin_limit, CODE_PATHS, constraint="CONTAINS"),
                _rate_rule("links-per-ip", 2, link_limit, tuple(f for p in LINK_PATHS for f in path_forms(p))),
                _rate_rule("all-per-ip", 3, overall_limit, ("/",)),
                _managed("AWSManagedRulesKnownBadInputsRuleSet", 4),
                _managed("AWSManagedRulesCommonRuleSet", 5),
            ],
        )
        if stage_arn is not None:
            waf.CfnWebACLAssociation(self, "Association", resource_arn=stage_arn, web_acl_arn=self.acl.attr_arn)
