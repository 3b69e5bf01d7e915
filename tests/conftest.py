"""Test session: DynamoDB Local (AWS's emulator) and the request hook every test runs under.

The hook (SERVERLESS-PERF-REL.md B2, SECURITY R16) sees every DynamoDB request PynamoDB makes
through the shared client: it counts requests and write/read units by the published formulas,
and fails the test on any Scan or on any key outside the clinic whose service is running.
Set AWS_ENDPOINT_URL_DYNAMODB to use a DynamoDB Local that is already running.
"""

from __future__ import annotations

import os
import uuid
from collections.abc import Iterator

import pytest

from chalicelib import dynamodb_local
from chalicelib.core import clock, config
from chalicelib.store import db, tables
from tests.ddb_hook import RequestLog

pytest_plugins = ["tests.browser"]


@pytest.fixture(scope="session")
def dynamodb_endpoint() -> Iterator[str]:
    existing = os.environ.get("AWS_ENDPOINT_URL_DYNAMODB")
    table = f"frontdesk-test-{uuid.uuid4().hex[:8]}"
    os.environ["FRONTDESK_TABLE"] = table
    if existing:
        config.reset()
        db.bind()
        tables.table_create(table_name=table)
        yield existing
        return
    with dynamodb_local.running() as endpoint:
        os.environ["AWS_ENDPOINT_URL_DYNAMODB"] = endpoint
        config.reset()
        db.bind()
        tables.table_create(table_name=table)
        yield endpoint
        os.environ.pop("AWS_ENDPOINT_URL_DYNAMODB", None)


@pytest.fixture(scope="session")
def request_log(dynamodb_endpoint: str) -> Iterator[RequestLog]:
    log = RequestLog()
    db.add_request_hook(log.hook)
    yield log
    db.remove_request_hook(log.hook)


@pytest.fixture(autouse=True)
def _checked_requests(request: pytest.FixtureRequest) -> Iterator[None]:
    """Every test that touches DynamoDB runs under the hook; its violations fail the test."""
    if "dynamodb_endpoint" not in request.fixturenames:
        yield
        return
    log: RequestLog = request.getfixturevalue("request_log")
    log.reset()
    yield
    assert not log.violations, "DynamoDB request violations:\n" + "\n".join(log.violations[:10])


@pytest.fixture(autouse=True)
def _real_clock() -> Iterator[None]:
    yield
    clock.set_source(None)
