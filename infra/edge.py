"""The edge: a WAF web ACL in front of the API with rate rules on sign-in and code endpoints.

SECURITY.md R20 and SERVERLESS-PERF-REL.md R19: the application caps code sends per destination
(whatever the source address); the WAF blocks one address beyond its limit per 5-minute window
before the request costs a Lambda invocation, and AWS's managed common and known-bad-inputs
rule groups screen the rest. Limits are per stage (``StageConfig``).
"""

from __future__ import annotations

from aws_cdk import Stack
from aws_cdk import aws_wafv2 as waf
from constructs import Construct

#: Path prefixes that send codes or check them: limited per source address (R19, R20).
SIGNIN_PATHS: tuple[str, ...] = ("/signin",)
#: Where payment links are exchanged: limited per source address (R28: token lookups).
LINK_PATHS: tuple[str, ...] = ("/l/",)


def _path_starts_with(prefix: str) -> waf.CfnWebACL.StatementProperty:
    return waf.CfnWebACL.StatementProperty(byte_match_statement=waf.CfnWebACL.ByteMatchStatementProperty(
        field_to_match=waf.CfnWebACL.FieldToMatchProperty(uri_path={}),
        positional_constraint="STARTS_WITH", search_string=prefix,
        text_transformations=[waf.CfnWebACL.TextTransformationProperty(priority=0, type="LOWERCASE")]))


def _rate_rule(name: str, priority: int, limit: int, prefixes: tuple[str, ...]) -> waf.CfnWebACL.RuleProperty:
    scope = (_path_starts_with(prefixes[0]) if len(prefixes) == 1 else waf.CfnWebACL.StatementProperty(
        or_statement=waf.CfnWebACL.OrStatementProperty(statements=[_path_starts_with(p) for p in prefixes])))
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

    ``signin_limit`` and ``link_limit`` are requests per source address per 5 minutes.
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
                _rate_rule("signin-per-ip", 0, signin_limit, SIGNIN_PATHS),
                _rate_rule("links-per-ip", 1, link_limit, LINK_PATHS),
                _rate_rule("all-per-ip", 2, overall_limit, ("/",)),
                _managed("AWSManagedRulesKnownBadInputsRuleSet", 3),
                _managed("AWSManagedRulesCommonRuleSet", 4),
            ],
        )
        if stage_arn is not None:
            waf.CfnWebACLAssociation(self, "Association", resource_arn=stage_arn, web_acl_arn=self.acl.attr_arn)
