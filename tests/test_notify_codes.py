"""Sign-in codes end to end through notify (SERVERLESS-PERF-REL.md R14, SECURITY.md R17-R20,
REFERENCE-PORTAL H7): ``links.code_request`` issues, ``notify.code_send`` delivers by SNS at
any hour and to a number that opted out of billing texts; sends per destination stay under the
cap; a code past its expiry but still stored is refused; 20 concurrent wrong guesses accept
nothing and burn the code; the code never reaches DynamoDB in the clear."""

from __future__ import annotations

import json
from concurrent.futures import ThreadPoolExecutor

import pytest

from chalicelib.accounts import selectors as account_selectors
from chalicelib.core.errors import CodeRefused, TooManyRequests
from chalicelib.links import services as links
from chalicelib.notify import contacts, services
from chalicelib.store import keys
from chalicelib.store.db import clinic_scope
from chalicelib.store.models import Item
from tests import notify_support as ns

pytestmark = pytest.mark.usefixtures("dynamodb_endpoint")


def _request(cid: str, group: str, p: ns.Payer) -> links.CodeRequest:
    last = account_selectors.guarantor_summary(clinic_id=cid, guarantor_id=p.guarantor_id).last_name
    return links.code_request(clinic_id=cid, group_id=group, first_name="Pat", last_name=last, contact=p.mobile,
                              address_hash="addr-1")


def _guess(cid: str, request_id: str, code: str) -> str:
    try:
        links.code_verify(clinic_id=cid, request_id=request_id, code=code)
        return "accepted"
    except CodeRefused:
        return "refused"


def test_r14_codes_are_sent_at_night_capped_expire_and_resist_guessing():
    with ns.aws():
        clock = ns.Clock(ns.utc(2026, 12, 2, 8, 0))  # 02:00 in Chicago
        cid = ns.clinic()
        from chalicelib.tenants import selectors as tenant_selectors

        group = tenant_selectors.groups_list(clinic_id=cid)[0].group_id
        p = ns.payer(cid, consent={"sms": False})
        services.consent_record(clinic_id=cid, channel="sms", destination=p.mobile, granted=False, source="portal")
        sent_codes = []
        for n in range(5):
            try:
                req = _request(cid, group, p)
            except TooManyRequests:
                continue
            assert req.send is not None
            channel, destination, code = req.send
            outcome = services.code_send(clinic_id=cid, request_id=req.request_id, channel=channel,
                                         destination=destination, code=code)
            assert outcome.status == "sent"  # not held by quiet hours or the opt-out (H7)
            sent_codes.append((req.request_id, code))
            clock.move(minutes=1)
        texts = [text for to, text in ns.sms_sent().values() if to == p.mobile]
        assert len(texts) == len(sent_codes) == 3  # 3 per destination per 15 minutes (R20)
        assert all(code in texts[i] for i, (_, code) in enumerate(sent_codes))
        with clinic_scope(cid):
            stored = json.dumps([it.serialize() for it in Item.query(
                keys.contact_pk(cid, "sms", contacts.destination_hash(p.mobile)))])
        assert not any(code in stored for _, code in sent_codes)

        # The latest code, guessed wrong 20 times at once: nothing accepted, and it is burnt.
        request_id, code = sent_codes[-1]
        wrong = [f"{(int(code) + k) % 1_000_000:06d}" for k in range(1, 21)]

        with ThreadPoolExecutor(max_workers=20) as pool:
            assert set(pool.map(lambda value: _guess(cid, request_id, value), wrong)) == {"refused"}
        assert _guess(cid, request_id, code) == "refused"  # over the attempt limit, even when right

        # A fresh code, not used, past its 10 minutes while its item is still stored (TTL lags).
        clock.move(minutes=30)
        req = _request(cid, group, p)
        assert req.send is not None
        services.code_send(clinic_id=cid, request_id=req.request_id, channel="sms", destination=req.send[1],
                           code=req.send[2])
        clock.move(minutes=10, seconds=1)
        with clinic_scope(cid):
            assert Item.get(keys.code_pk(cid, req.request_id), keys.SINGLE) is not None
        assert _guess(cid, req.request_id, req.send[2]) == "refused"
