"""The WAF in front of the API: rate rules on sign-in/code and link endpoints (R19, R20, R28)."""

from __future__ import annotations

import aws_cdk as cdk
import pytest
from aws_cdk.assertions import Template

from infra.config import STAGES
from infra.stacks import FrontdeskStack


@pytest.fixture(scope="module")
def template() -> Template:
    app = cdk.App()
    return Template.from_stack(FrontdeskStack(app, STAGES["prod"], with_api=False))


def _rules(template: Template) -> dict[str, dict]:
    [acl] = template.find_resources("AWS::WAFv2::WebACL").values()
    return {r["Name"]: r for r in acl["Properties"]["Rules"]}


def test_signin_and_code_endpoints_are_rate_limited_per_address(template):
    rules = _rules(template)
    signin = rules["signin-per-ip"]["Statement"]["RateBasedStatement"]
    assert signin["AggregateKeyType"] == "IP" and signin["EvaluationWindowSec"] == 300
    assert signin["Limit"] == STAGES["prod"].waf_signin_limit <= 100
    assert _matches(signin) == {("/signin", "STARTS_WITH"), ("/api/signin", "STARTS_WITH")}
    assert rules["signin-per-ip"]["Action"] == {"Block": {}}
    links = rules["links-per-ip"]["Statement"]["RateBasedStatement"]
    assert _matches(links) == {("/l/", "STARTS_WITH"), ("/api/l/", "STARTS_WITH")}


def test_statement_code_lookups_are_rate_limited_per_address(template):
    """``GET /v1/clinics/{clinic}/statements/verify/{code}`` checks a code: limited like sign-in."""
    rule = _rules(template)["codes-per-ip"]
    codes = rule["Statement"]["RateBasedStatement"]
    assert rule["Action"] == {"Block": {}} and codes["AggregateKeyType"] == "IP"
    assert codes["Limit"] == STAGES["prod"].waf_signin_limit and codes["EvaluationWindowSec"] == 300
    assert _matches(codes) == {("/statements/verify/", "CONTAINS")}


def _matches(rate: dict) -> set[tuple[str, str]]:
    """(search string, constraint) of a rate rule's scope-down statement (one match or an OR)."""
    scope = rate["ScopeDownStatement"]
    statements = scope["OrStatement"]["Statements"] if "OrStatement" in scope else [scope]
    return {(m["ByteMatchStatement"]["SearchString"], m["ByteMatchStatement"]["PositionalConstraint"])
            for m in statements}


def test_managed_rule_groups_and_default_allow(template):
    [acl] = template.find_resources("AWS::WAFv2::WebACL").values()
    assert acl["Properties"]["Scope"] == "REGIONAL" and acl["Properties"]["DefaultAction"] == {"Allow": {}}
    names = set(_rules(template))
    assert {"AWSManagedRulesCommonRuleSet", "AWSManagedRulesKnownBadInputsRuleSet"} <= names
    priorities = [r["Priority"] for r in _rules(template).values()]
    assert len(priorities) == len(set(priorities))


@pytest.mark.slow
def test_the_acl_is_associated_with_the_api_stage():
    app = cdk.App()
    template = Template.from_stack(FrontdeskStack(app, STAGES["dev"], with_api=True))
    [assoc] = template.find_resources("AWS::WAFv2::WebACLAssociation").values()
    import json

    arn = json.dumps(assoc["Properties"]["ResourceArn"])
    assert "/restapis/" in arn and "/stages/api" in arn and "RestAPI" in arn
