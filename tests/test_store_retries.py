"""Writes whose answer is lost: DynamoDB applied them, the read timed out, the SDK retried.

The retry must not fail against the call's own write (seen in the demo on a loaded machine:
``clinic_create`` said "already exists" for the clinic it had just created). The fault is
injected at the one adapter: a botocore ``before-send`` handler sends the first request to
DynamoDB Local for real, then raises ReadTimeoutError so botocore retries it.
"""

from __future__ import annotations

import uuid
from collections.abc import Iterator
from contextlib import contextmanager

import pytest
import urllib3
from botocore.exceptions import ReadTimeoutError

from chalicelib.accounts import services as accounts
from chalicelib.accounts.selectors import guarantor_summary
from chalicelib.core.errors import AlreadyExists
from chalicelib.store import db, tables
from chalicelib.tenants import selectors as tenant_selectors
from chalicelib.tenants import services as tenants
from tests import factories

pytestmark = pytest.mark.usefixtures("dynamodb_endpoint")


@contextmanager
def answer_lost(operation: str) -> Iterator[list[int]]:
    """The first ``operation`` request reaches DynamoDB, its answer does not; yields a list
    holding the number of requests lost (to assert the fault really happened)."""
    lost: list[int] = [0]
    http = urllib3.PoolManager()

    def handler(request: object, **_: object) -> None:
        if lost[0]:
            return None
        lost[0] += 1
        http.request(request.method, request.url, body=request.body,  # type: ignore[attr-defined]
                     headers=dict(request.headers))  # type: ignore[attr-defined]
        raise ReadTimeoutError(endpoint_url=request.url)  # type: ignore[attr-defined]

    events = db.connection().client.meta.events
    events.register(f"before-send.dynamodb.{operation}", handler, unique_id="answer-lost")
    try:
        yield lost
    finally:
        events.unregister(f"before-send.dynamodb.{operation}", unique_id="answer-lost")


def test_a_create_whose_answer_is_lost_is_not_reported_as_already_existing():
    with answer_lost("PutItem") as lost:
        cid = tenants.clinic_create(name="Lost Answer Clinic", time_zone="America/Chicago")
    assert lost == [1]
    assert tenant_selectors.clinic_get(clinic_id=cid).name == "Lost Answer Clinic"


def test_a_transaction_whose_answer_is_lost_commits_once():
    cid = factories.clinic("Lost Answer Tx")
    with answer_lost("TransactWriteItems") as lost:
        gid = accounts.guarantor_create(clinic_id=cid, first_name="Ana", last_name="Lopez")
    assert lost == [1]
    assert guarantor_summary(clinic_id=cid, guarantor_id=gid).figures.balances.current_balance == 0


def test_a_real_conflict_is_still_a_conflict():
    cid = factories.clinic("Conflict Clinic")
    tenants.group_create(clinic_id=cid, name="Main", group_id="grp_main")
    with pytest.raises(AlreadyExists):
        tenants.group_create(clinic_id=cid, name="Other", group_id="grp_main")
    gid = accounts.guarantor_create(clinic_id=cid, first_name="Ana", last_name="Lopez")
    with pytest.raises(AlreadyExists):
        accounts.guarantor_create(clinic_id=cid, first_name="Ana", last_name="Lopez", guarantor_id=gid)


def test_creating_the_table_survives_a_lost_answer():
    name = f"frontdesk-retry-{uuid.uuid4().hex[:8]}"
    try:
        with answer_lost("CreateTable") as lost:
            assert tables.table_create(table_name=name) is True
        assert lost == [1]
        assert tables.table_create(table_name=name) is False
    finally:
        tables.table_delete(table_name=name)
