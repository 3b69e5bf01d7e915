"""infra/: the stage stacks synthesized offline and asserted with aws_cdk.assertions and cfn-lint,
and the Chalice configuration they rely on (SERVERLESS.md 3.10, section 4 items 19-20; R6, R18).

The fast tests synthesize both stages once per module with ``with_api=False`` (no ``chalice
package``); the one ``slow`` test synthesizes the dev stage with the Chalice construct through
``python -m infra.app`` in a subprocess. None of them needs DynamoDB Local. CDK synthesis runs
``node`` (jsii), which must be on PATH.
"""

from __future__ import annotations

import dataclasses
import json
import os
import subprocess
import sys
import zipfile
from pathlib import Path
from typing import Any
from unittest import mock

import aws_cdk as cdk
import pytest
from aws_cdk.assertions import Capture, Match, Template
from cfnlint.api import lint_file

from chalicelib.core import config as app_config
from chalicelib.core import secrets as app_secrets
from chalicelib.payments.processors import stripe as app_stripe
from chalicelib.store import schema
from infra import package
from infra.api import LOGGING_CONFIG
from infra.app import build_app
from infra.config import STAGES, StageConfig
from infra.monitoring import FUNCTION_METRICS
from infra.roles import FUNCTIONS, function_timeout_seconds
from infra.secrets import ARN_ENV
from infra.stacks import FrontdeskStack

ROOT = Path(__file__).resolve().parent.parent
STAGE_NAMES = sorted(STAGES)

# Logical ids of the stateful resources and of the role Chalice is handed. They derive from the
# construct ids; a change means CloudFormation replaces the resource (an empty table, a new key).
PERMANENT_LOGICAL_IDS = {
    "AWS::DynamoDB::Table": "DataTableFDBAD0F2",
    "AWS::KMS::Key": "Key961B73FD",
    "AWS::IAM::Role": "ApiRoleDE7A08EC",
}

# What the app role may do to the table: written out here, independently of infra/api.py.
# (TransactWriteItems / TransactGetItems are not IAM actions: each item of a transaction is
# authorized by its own Put/Update/Delete/ConditionCheckItem or GetItem permission.)
EXPECTED_DYNAMODB_ACTIONS = {
    "dynamodb:GetItem",
    "dynamodb:PutItem",
    "dynamodb:UpdateItem",
    "dynamodb:DeleteItem",
    "dynamodb:ConditionCheckItem",
    "dynamodb:Query",
    "dynamodb:BatchGetItem",
    "dynamodb:BatchWriteItem",
    "dynamodb:DescribeTable",
}
EXPECTED_KMS_ACTIONS = {"kms:Decrypt", "kms:Encrypt", "kms:GenerateDataKey"}

# cfn-lint rule ids tolerated in synthesized templates, each with its reason. Errors are never
# tolerated; warnings only when listed here; informational (I...) findings are not checked.
CFN_LINT_IGNORED: dict[str, str] = {}


@pytest.fixture(scope="module")
def stacks() -> dict[str, FrontdeskStack]:
    app = build_app(with_api=False)
    found = {child.node.id: child for child in app.node.children if isinstance(child, FrontdeskStack)}
    assert sorted(found) == STAGE_NAMES
    return found


@pytest.fixture(scope="module")
def templates(stacks: dict[str, FrontdeskStack]) -> dict[str, dict[str, Any]]:
    return {name: Template.from_stack(stack).to_json() for name, stack in stacks.items()}


def _template(templates: dict[str, dict[str, Any]], stage: str) -> Template:
    return Template.from_json(templates[stage])


def _resources(template: dict[str, Any], type_: str) -> dict[str, dict[str, Any]]:
    return {k: v for k, v in template["Resources"].items() if v["Type"] == type_}


def _only(template: dict[str, Any], type_: str) -> tuple[str, dict[str, Any]]:
    found = _resources(template, type_)
    assert len(found) == 1, (type_, sorted(found))
    return next(iter(found.items()))


def _as_list(value: Any) -> list[Any]:
    return value if isinstance(value, list) else [value]


# --- the table -----------------------------------------------------------------------------


@pytest.mark.parametrize("stage", STAGE_NAMES)
def test_one_table_retained_and_protected(templates, stage):
    template = _template(templates, stage)
    template.resource_count_is("AWS::DynamoDB::Table", 1)
    template.has_resource(
        "AWS::DynamoDB::Table",
        {
            "DeletionPolicy": "Retain",
            "UpdateReplacePolicy": "Retain",
            "Properties": Match.object_like(
                {
                    "TableName": f"frontdesk-{stage}",
                    "BillingMode": "PAY_PER_REQUEST",
                    "DeletionProtectionEnabled": True,
                }
            ),
        },
    )


@pytest.mark.parametrize("stage", STAGE_NAMES)
def test_table_matches_store_schema(templates, stage):
    template = _template(templates, stage)
    key_id = PERMANENT_LOGICAL_IDS["AWS::KMS::Key"]
    gsis = Capture()
    template.has_resource_properties(
        "AWS::DynamoDB::Table",
        {
            "KeySchema": [
                {"AttributeName": schema.PK, "KeyType": "HASH"},
                {"AttributeName": schema.SK, "KeyType": "RANGE"},
            ],
            "PointInTimeRecoverySpecification": {"PointInTimeRecoveryEnabled": True},
            "TimeToLiveSpecification": {"AttributeName": schema.TTL, "Enabled": True},
            "SSESpecification": {
                "SSEEnabled": True,
                "SSEType": "KMS",
                "KMSMasterKeyId": {"Fn::GetAtt": [key_id, "Arn"]},
            },
            "LocalSecondaryIndexes": Match.absent(),
            "Replicas": Match.absent(),
            "GlobalSecondaryIndexes": gsis,
        },
    )
    by_name = {g["IndexName"]: g for g in gsis.as_array()}
    assert set(by_name) == {g.name for g in schema.GSIS}
    for gsi in schema.GSIS:
        assert by_name[gsi.name]["KeySchema"] == [
            {"AttributeName": gsi.pk, "KeyType": "HASH"},
            {"AttributeName": gsi.sk, "KeyType": "RANGE"},
        ]
        assert by_name[gsi.name]["Projection"] == {"ProjectionType": "ALL"}
    # Same key attributes, all strings, as the DynamoDB Local table the tests run on.
    _, table = _only(templates[stage], "AWS::DynamoDB::Table")
    expected = schema.table_definition("x")["AttributeDefinitions"]
    assert sorted(table["Properties"]["AttributeDefinitions"], key=str) == sorted(expected, key=str)


@pytest.mark.parametrize("stage", STAGE_NAMES)
def test_stateful_logical_ids_are_permanent(stacks, templates, stage):
    """A renamed construct id gives a new logical id, and CloudFormation a new, empty table."""
    for type_, logical_id in PERMANENT_LOGICAL_IDS.items():
        if type_ == "AWS::IAM::Role":  # one role per function; the API handler's keeps its id
            assert logical_id in _resources(templates[stage], type_)
        else:
            assert _only(templates[stage], type_)[0] == logical_id
    stack = stacks[stage]
    table_arn = {"Fn::GetAtt": [PERMANENT_LOGICAL_IDS["AWS::DynamoDB::Table"], "Arn"]}
    assert stack.resolve(stack.data.table.table_arn) == table_arn


@pytest.mark.parametrize("stage", STAGE_NAMES)
def test_key_rotates_and_is_retained(templates, stage):
    template = _template(templates, stage)
    template.resource_count_is("AWS::KMS::Key", 1)
    template.has_resource(
        "AWS::KMS::Key",
        {"DeletionPolicy": "Retain", "Properties": Match.object_like({"EnableKeyRotation": True})},
    )


# --- the application role ------------------------------------------------------------------


@pytest.mark.parametrize("stage", STAGE_NAMES)
def test_every_role_is_least_privilege(templates, stage):
    """Section 4 item 19 / R18: one role per function, each with exactly the DynamoDB actions on
    the table and its indexes, KMS on the stage key, its own logs, and nothing else in this
    stack's template (grants on queues, buckets and topics: tests/test_infra_roles.py); no
    wildcard action and no ``"Resource": "*"`` but SNS Publish to phone numbers."""
    template = templates[stage]
    roles = _resources(template, "AWS::IAM::Role")
    assert len(roles) == len(FUNCTIONS)
    assert _resources(template, "AWS::IAM::Policy") == {}, "every permission is inline in its role"
    table_arn = {"Fn::GetAtt": [PERMANENT_LOGICAL_IDS["AWS::DynamoDB::Table"], "Arn"]}
    key_arn = {"Fn::GetAtt": [PERMANENT_LOGICAL_IDS["AWS::KMS::Key"], "Arn"]}
    for role_id, role in roles.items():
        assert "ManagedPolicyArns" not in role["Properties"]
        assert role["Properties"]["AssumeRolePolicyDocument"]["Statement"] == [
            {"Action": "sts:AssumeRole", "Effect": "Allow", "Principal": {"Service": "lambda.amazonaws.com"}}
        ]
        statements = [s for p in role["Properties"]["Policies"] for s in p["PolicyDocument"]["Statement"]]
        by_sid = {s["Sid"]: s for s in statements}
        assert len(by_sid) == len(statements), role_id
        for statement in statements:
            assert statement["Effect"] == "Allow"
            actions, resources = _as_list(statement["Action"]), _as_list(statement["Resource"])
            assert not [a for a in actions if "*" in a], statement
            assert "NotAction" not in statement and "NotResource" not in statement
            if "*" in resources:
                assert (statement["Sid"], actions, resources) == ("SendSms", ["sns:Publish"], ["*"])
        assert set(by_sid["Table"]["Action"]) == EXPECTED_DYNAMODB_ACTIONS
        assert by_sid["Table"]["Resource"] == [table_arn, {"Fn::Join": ["", [table_arn, "/index/*"]]}]
        assert set(by_sid["TableKey"]["Action"]) == EXPECTED_KMS_ACTIONS and by_sid["TableKey"]["Resource"] == key_arn
        assert {a.split(":")[0] for a in by_sid["Logs"]["Action"]} == {"logs"}
        assert f":log-group:/aws/lambda/frontdesk-{stage}-*:*" in json.dumps(by_sid["Logs"]["Resource"])
        others = [a for s in statements if s["Sid"] != "Table" for a in _as_list(s["Action"])]
        assert not any(a.startswith("dynamodb:") for a in others)


@pytest.mark.parametrize("stage", STAGE_NAMES)
def test_chalice_gets_the_cdk_role_and_the_table(stacks, stage):
    stack = stacks[stage]
    stage_config = stack.resolve(stack.api.stage_config)
    assert stage_config["autogen_policy"] is False
    assert stage_config["manage_iam_role"] is False
    assert stage_config["iam_role_arn"] == {"Fn::GetAtt": [PERMANENT_LOGICAL_IDS["AWS::IAM::Role"], "Arn"]}
    table_ref = {"Ref": PERMANENT_LOGICAL_IDS["AWS::DynamoDB::Table"]}
    assert stage_config["environment_variables"] == {"FRONTDESK_TABLE": table_ref}
    assert stack.api.chalice is None  # with_api=False: nothing packaged


def _wired(stage: str) -> tuple[FrontdeskStack, dict[str, Any]]:
    """A stage stack with stand-ins for the packaged SAM functions (as ``chalice package`` writes
    them: the stage's variables, no role), wired as the real ones are (``FrontdeskStack.wire``)."""
    stack = FrontdeskStack(cdk.App(), STAGES[stage], with_api=False)
    functions = {f.logical_id: cdk.CfnResource(stack, f.logical_id, type="AWS::Serverless::Function", properties={
        "Runtime": "python3.11", "Handler": "app.app",
        "Environment": {"Variables": {"FRONTDESK_TABLE": stack.data.table.table_name}}}) for f in FUNCTIONS}
    stack.wire(functions)
    return stack, Template.from_stack(stack).to_json()


@pytest.fixture(scope="module")
def wired() -> dict[str, tuple[FrontdeskStack, dict[str, Any]]]:
    return {stage: _wired(stage) for stage in STAGE_NAMES}


@pytest.mark.parametrize("stage", STAGE_NAMES)
def test_no_function_environment_holds_a_secret(wired, stage):
    """R17, §6.3: functions get the app secret's ARN (those holding ``secrets_read``), never a
    value nor a CloudFormation dynamic reference (which would put the value into the deployed
    function configuration); the sandbox is off (``FRONTDESK_PROCESSOR=stripe``)."""
    _, template = wired[stage]
    (secret_id, secret) = _only(template, "AWS::SecretsManager::Secret")
    assert secret["Properties"]["Name"] == f"frontdesk-{stage}/app" and secret["DeletionPolicy"] == "Retain"
    for function in FUNCTIONS:
        env = template["Resources"][function.logical_id]["Properties"]["Environment"]["Variables"]
        text = json.dumps(env)
        assert "resolve:secretsmanager" not in text and "SecretString" not in text, function.name
        assert not {"FRONTDESK_CODE_PEPPER", "FRONTDESK_STRIPE_SECRET_KEY", "FRONTDESK_STRIPE_WEBHOOK_SECRET",
                    "FRONTDESK_STRIPE_PUBLISHABLE_KEY", "FRONTDESK_SANDBOX_SECRET"} & set(env), function.name
        assert env.get(ARN_ENV) == ({"Ref": secret_id} if "secrets_read" in function.grants else None), function.name
        assert env["FRONTDESK_PROCESSOR"] == "stripe"


@pytest.mark.parametrize("stage", STAGE_NAMES)
def test_get_secret_value_on_exactly_the_app_secret(wired, stage):
    """R18: ``secretsmanager:GetSecretValue`` on the app secret's ARN, for the functions that read
    it (all but the import function), and no other Secrets Manager permission anywhere."""
    _, template = wired[stage]
    (secret_id, _) = _only(template, "AWS::SecretsManager::Secret")
    for function in FUNCTIONS:
        [role_id, _] = template["Resources"][function.logical_id]["Properties"]["Role"]["Fn::GetAtt"]
        statements = [s for p in template["Resources"][role_id]["Properties"]["Policies"]
                      for s in p["PolicyDocument"]["Statement"]]
        found = [s for s in statements if "secretsmanager" in json.dumps(s["Action"])]
        if "secrets_read" in function.grants:
            assert found == [{"Sid": "AppSecret", "Effect": "Allow", "Action": "secretsmanager:GetSecretValue",
                              "Resource": {"Ref": secret_id}}], function.name
        else:
            assert found == [], function.name
    assert [f.name for f in FUNCTIONS if "secrets_read" not in f.grants] == ["import_object_created"]


@pytest.mark.parametrize("stage", STAGE_NAMES)
def test_every_function_logs_json_at_info(wired, stage):
    """Lambda advanced logging on every function: JSON records, application level INFO (never
    botocore's DEBUG wire log), platform records at WARN, into the group made with retention."""
    _, template = wired[stage]
    assert LOGGING_CONFIG == {"LogFormat": "JSON", "ApplicationLogLevel": "INFO", "SystemLogLevel": "WARN"}
    groups = {json.dumps(g["Properties"]["LogGroupName"]) for g in _resources(template, "AWS::Logs::LogGroup").values()}
    for function in FUNCTIONS:
        props = template["Resources"][function.logical_id]["Properties"]
        assert props["LoggingConfig"] == LOGGING_CONFIG, function.name
        assert json.dumps({"Fn::Join": ["", ["/aws/lambda/", {"Ref": function.logical_id}]]}) in groups


# --- the rest of the stack -----------------------------------------------------------------


@pytest.mark.parametrize("stage", STAGE_NAMES)
def test_stack_names_and_alarms(stacks, templates, stage):
    assert stacks[stage].stack_name == f"frontdesk-{stage}"
    template = _template(templates, stage)
    template.resource_count_is("AWS::SNS::Subscription", 0)  # no address configured by default
    alarms = _resources(templates[stage], "AWS::CloudWatch::Alarm")
    # Table throttles; dead letters of statement pages and processor events, and processor events
    # waiting (stuck payments); the import failure destination. (Per-function alarms need the
    # packaged app: the slow test; notification alarms live in the nested stack.)
    assert sorted(a["Properties"]["MetricName"] for a in alarms.values()) == sorted([
        "ReadThrottleEvents", "WriteThrottleEvents", "ApproximateNumberOfMessagesVisible",
        "ApproximateNumberOfMessagesVisible", "ApproximateNumberOfMessagesVisible", "ApproximateAgeOfOldestMessage"])
    (topic_id, _) = _only(templates[stage], "AWS::SNS::Topic")
    assert all(a["Properties"]["AlarmActions"] == [{"Ref": topic_id}] for a in alarms.values())


def test_alarm_email_is_subscribed_when_configured():
    app = cdk.App()
    config = dataclasses.replace(STAGES["dev"], alarm_email="ops@example.org")
    template = Template.from_stack(FrontdeskStack(app, config, with_api=False))
    template.resource_count_is("AWS::SNS::Subscription", 1)
    template.has_resource_properties("AWS::SNS::Subscription", {"Protocol": "email", "Endpoint": "ops@example.org"})


def test_stage_config_rejects_what_aws_or_chalice_would():
    with pytest.raises(ValueError):
        StageConfig(stage="Dev", log_retention_days=30, throttle_rate=1, throttle_burst=1)
    with pytest.raises(ValueError):
        StageConfig(stage="dev", log_retention_days=31, throttle_rate=1, throttle_burst=1)
    with pytest.raises(ValueError):
        StageConfig(stage="dev", log_retention_days=30, throttle_rate=0, throttle_burst=1)
    assert STAGES["prod"].table_name == "frontdesk-prod"


@pytest.mark.parametrize("stage", STAGE_NAMES)
def test_cfn_lint_finds_no_errors_or_warnings(templates, stage, tmp_path):
    path = tmp_path / f"{stage}.template.json"
    path.write_text(json.dumps(templates[stage], indent=1))
    findings = [
        f"{m.rule.id} {m.message[:200]} (line {m.linenumber})"
        for m in lint_file(path)
        if m.rule.id[0] in "EW" and m.rule.id not in CFN_LINT_IGNORED
    ]
    assert findings == []


# --- .chalice/config.json ------------------------------------------------------------------


def _chalice_config() -> dict[str, Any]:
    return json.loads((ROOT / ".chalice" / "config.json").read_text())


def test_every_cdk_stage_is_a_chalice_stage():
    """The Chalice construct packages the stage named like the stack; it must exist in the file."""
    assert set(STAGES) <= set(_chalice_config()["stages"])


def test_chalice_never_writes_iam_policies():
    """R18: Chalice's policy generator cannot see PynamoDB's calls; every stage turns it off."""
    config = _chalice_config()
    for name, stage in config["stages"].items():
        assert stage.get("autogen_policy", config.get("autogen_policy", True)) is False, name
        for function, settings in stage.get("lambda_functions", {}).items():
            assert settings.get("autogen_policy", False) is False, (name, function)


def _dynamodb_worst_case_seconds(environment: dict[str, str]) -> float:
    """(connect + read) × (1 + retries), with the app's own defaults for unset variables."""
    with mock.patch.dict(os.environ, environment, clear=True):
        app_config.reset()
        try:
            s = app_config.settings()
            return (s.ddb_connect_timeout + s.ddb_read_timeout) * (1 + s.ddb_max_retries)
        finally:
            app_config.reset()


def test_lambda_timeout_covers_dynamodb_worst_case():
    """R6: the worst case of one request, Σ (connect + read) × attempts over what the function
    calls (DynamoDB always; Secrets Manager when it reads the app secret; Stripe when it calls
    the processor), stays within half the function's Lambda timeout, and below API Gateway's
    29 s for the API, in every stage with every per-function override. (Retry back-off sleeps
    between attempts, a few seconds at most, fall in the other half of the Lambda timeout.)"""
    config = _chalice_config()
    stripe_worst = sum(app_stripe.TIMEOUT) * (1 + app_stripe.MAX_NETWORK_RETRIES)
    secrets_worst = (app_secrets.CONNECT_TIMEOUT + app_secrets.READ_TIMEOUT) * app_secrets.MAX_ATTEMPTS
    assert (stripe_worst, secrets_worst) == (app_stripe.WORST_CASE_SECONDS, app_secrets.WORST_CASE_SECONDS) == (12, 6)
    for name, stage in config["stages"].items():
        env = {**config.get("environment_variables", {}), **stage.get("environment_variables", {})}
        dynamodb_worst = _dynamodb_worst_case_seconds(env)
        for function in FUNCTIONS:
            worst = (dynamodb_worst + ("secrets_read" in function.grants) * secrets_worst
                     + function.processor * stripe_worst)
            timeout = function_timeout_seconds(function.name, name)
            assert worst <= 0.5 * timeout, (name, function.name, worst, timeout)
            if function.name == "api_handler":
                assert worst == 9 + 6 + 12 < 29, (name, worst)
                assert timeout >= 2 * worst
    # The functions that call the processor are the API and the three payment jobs.
    assert {f.name for f in FUNCTIONS if f.processor} == {
        "api_handler", "reference_batches_open", "payment_attempts_complete", "processor_events_consume"}


def test_worst_case_uses_the_app_defaults():
    assert _dynamodb_worst_case_seconds({}) == (1 + 2) * (1 + 2)


# --- the Chalice construct (slow: chalice package builds the Lambda bundle) ------------------


@pytest.mark.slow
def test_dev_stack_with_chalice_app_synthesizes_offline(tmp_path):
    """``python -m infra.app --stage dev`` with the Chalice construct: ``chalice package`` runs
    (Linux wheels come from PyPI or pip's cache), the SAM template is included, the function
    runs as the CDK role with the table's name, throttling and log retention are set, and the
    whole template passes cfn-lint. In a subprocess, because loading app.py for packaging
    changes the process (environment, imported modules)."""
    env = {**os.environ, "CDK_OUTDIR": str(tmp_path / "cdk.out"), "PYTHONPATH": str(ROOT)}
    run = subprocess.run(
        [sys.executable, "-m", "infra.app", "--stage", "dev"],
        cwd=ROOT,
        env=env,
        capture_output=True,
        text=True,
        timeout=600,
    )
    assert run.returncode == 0, run.stderr[-4000:]
    assert "Could not install dependencies" not in run.stdout + run.stderr, run.stdout[-4000:]
    out = tmp_path / "cdk.out"
    template = json.loads((out / "dev.template.json").read_text())
    table_ref = {"Ref": PERMANENT_LOGICAL_IDS["AWS::DynamoDB::Table"]}
    roles = _resources(template, "AWS::IAM::Role")

    assert template["Transform"] == "AWS::Serverless-2016-10-31"
    functions = _resources(template, "AWS::Serverless::Function")
    assert sorted(functions) == sorted(f.logical_id for f in FUNCTIONS)
    used_roles = set()
    for logical_id, function in functions.items():
        props = function["Properties"]
        [role_id, _] = props["Role"]["Fn::GetAtt"]
        assert role_id in roles and role_id not in used_roles, logical_id  # a role of its own
        used_roles.add(role_id)
        env = props["Environment"]["Variables"]
        assert env["FRONTDESK_TABLE"] == table_ref
        assert "FRONTDESK_CODE_PEPPER" not in env and "resolve:secretsmanager" not in json.dumps(env)
        assert ("SecretsApp" in json.dumps(env.get(ARN_ENV))) == (logical_id != "ImportObjectCreated")
        assert "PaymentsEvents" in json.dumps(env["FRONTDESK_PROCESSOR_EVENTS_QUEUE_URL"])
        assert env["FRONTDESK_PROCESSOR"] == "stripe"
        assert props["LoggingConfig"] == LOGGING_CONFIG
        assert props["Timeout"] == function_timeout_seconds(next(f.name for f in FUNCTIONS
                                                                 if f.logical_id == logical_id), "dev")
        assert props["Runtime"] == "python3.11"
    assert functions["APIHandler"]["Properties"]["Role"] == {"Fn::GetAtt": [PERMANENT_LOGICAL_IDS["AWS::IAM::Role"],
                                                                             "Arn"]}
    assert len(_resources(template, "AWS::DynamoDB::Table")) == 1
    # R17: no secret value anywhere in the template (nor a reference), none in .chalice/config.json.
    text = json.dumps(template) + (ROOT / ".chalice" / "config.json").read_text()
    for marker in ("sk_live_", "sk_test_", "rk_live_", "whsec_", "frontdesk-local-development-pepper",
                   "resolve:secretsmanager"):
        assert marker not in text

    groups = _resources(template, "AWS::Logs::LogGroup")
    named = {json.dumps(g["Properties"]["LogGroupName"]): g for g in groups.values()}
    for logical_id in functions:
        group = named[json.dumps({"Fn::Join": ["", ["/aws/lambda/", {"Ref": logical_id}]]})]
        assert group["Properties"]["RetentionInDays"] == STAGES["dev"].log_retention_days
        assert group["DeletionPolicy"] == "Retain"

    (_, api) = _only(template, "AWS::Serverless::Api")
    assert api["Properties"]["MethodSettings"] == [
        {
            "ResourcePath": "/*",
            "HttpMethod": "*",
            "ThrottlingRateLimit": STAGES["dev"].throttle_rate,
            "ThrottlingBurstLimit": STAGES["dev"].throttle_burst,
        }
    ]
    # Errors and Throttles alarms for every function.
    watched = {(a["Properties"]["MetricName"], json.dumps(a["Properties"]["Dimensions"][0]["Value"]))
               for a in _resources(template, "AWS::CloudWatch::Alarm").values()
               if a["Properties"].get("Namespace") == "AWS/Lambda"}
    assert watched == {(m, json.dumps({"Ref": f})) for f in functions for m in FUNCTION_METRICS}

    # B4: the Lambda bundle (slimmed, infra/package.py) holds the app and Linux builds of the
    # compiled dependencies, and is within 15 MB zipped and 62.5 MB unzipped, without tests or docs.
    [bundle] = list(out.glob("asset.*.zip"))
    with zipfile.ZipFile(bundle) as zf:
        names = zf.namelist()
    tops = {n.split("/")[0] for n in names}
    assert {"app.py", "chalicelib", "pynamodb", "argon2", "pyotp", "aws_lambda_powertools", "fhir"} <= tops
    assert any(n.startswith("_argon2_cffi_bindings/") and n.endswith(".so") for n in names)
    assert "tests" not in tops and not any(n.startswith(("tests/", "docs/", "bench/", "infra/")) for n in names)
    sizes = package.sizes(bundle)
    print(f"B4 bundle: {sizes.zipped / 1e6:.2f} MB zipped ({sizes.zipped / 50e6:.2f} of 50 MB), "
          f"{sizes.unzipped / 1e6:.2f} MB unzipped ({sizes.unzipped / 250e6:.2f} of 250 MB); "
          f"largest: {package.largest(bundle, 3)}")
    assert sizes.zipped <= package.ZIPPED_LIMIT and sizes.unzipped <= package.UNZIPPED_LIMIT
    assert package.offending(names) == []
    _slim_bundle_runs(bundle, tmp_path / "bundle")

    findings = [
        f"{m.rule.id} {m.message[:200]}"
        for m in lint_file(out / "dev.template.json")
        if m.rule.id[0] in "EW" and m.rule.id not in CFN_LINT_IGNORED
    ]
    assert findings == []


#: Run with only the bundle on sys.path (``-S``: no site-packages): every AWS client the app makes,
#: a presigned S3 URL, the app, the Stripe adapter, the PDF renderer, and a FHIR R4B validation.
_BUNDLE_CHECK = """
import sys, boto3
assert all(not p.endswith("site-packages") for p in sys.path), sys.path
for service in sys.argv[1].split(","):
    boto3.client(service, region_name="us-east-1", aws_access_key_id="x", aws_secret_access_key="x")
s3 = boto3.client("s3", region_name="us-east-1", aws_access_key_id="x", aws_secret_access_key="x")
assert "Signature=" in s3.generate_presigned_url("get_object", Params={"Bucket": "b", "Key": "k"})
import app, chalicelib.payments.processors.stripe, chalicelib.statements.render, chalicelib.imports.fhir
from fhir.resources.R4B import get_fhir_model_class
get_fhir_model_class("Bundle").model_validate({"resourceType": "Bundle", "type": "collection", "entry": [
    {"resource": {"resourceType": "Patient", "id": "p1", "name": [{"family": "Doe", "given": ["Ann"]}]}}]})
print("bundle ok")
"""


def _slim_bundle_runs(bundle: Path, tree: Path) -> None:
    with zipfile.ZipFile(bundle) as zf:
        zf.extractall(tree)
    env = {"PATH": os.environ.get("PATH", ""), "PYTHONPATH": str(tree), "AWS_DEFAULT_REGION": "us-east-1",
           "FRONTDESK_TABLE": "frontdesk-dev"}
    run = subprocess.run([sys.executable, "-S", "-c", _BUNDLE_CHECK, ",".join(sorted(package.AWS_SERVICES))],
                         cwd=tree, env=env, capture_output=True, text=True, timeout=300)
    assert run.returncode == 0 and "bundle ok" in run.stdout, run.stderr[-4000:]
