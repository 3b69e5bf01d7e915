"""The pay link a notification carries is written with the send's claim (one transaction), so a
send costs three DynamoDB requests and a lost claim leaves no link behind (PRODUCT.md §6, §8;
SECURITY.md R25, R40; SERVERLESS-PERF-REL.md B7)."""

from __future__ import annotations

import re

import pytest

from chalicelib.links import services as links
from chalicelib.notify import context, local, selectors, services, templates
from chalicelib.notify.outbox import MessageRef, transition
from chalicelib.store import keys
from chalicelib.store.db import clinic_scope
from chalicelib.store.models_links import LinkItem
from tests import notify_support as ns

pytestmark = pytest.mark.usefixtures("dynamodb_endpoint")


def _links(cid: str, gid: str) -> list[LinkItem]:
    with clinic_scope(cid):
        return [it for it in LinkItem.gsi1.query(keys.guarantor_links_gsi1pk(cid, gid)) if isinstance(it, LinkItem)]


def test_a_send_is_one_read_one_claim_with_its_link_and_one_mark(tmp_path, request_log):
    ns.Clock(ns.utc(2026, 11, 30, 16, 0))  # 10:00 in Chicago
    with ns.console(tmp_path):
        cid = ns.clinic()
        p = ns.payer(cid, mobile=False)
        services.balance_notification_queue(clinic_id=cid, guarantor_id=p.guarantor_id,
                                            statement_id=ns.statement_id(p))
        context.clinic_context(cid)  # configuration, cached per process (not what is counted here)
        request_log.reset()
        assert local.drain().sent == 1
        # BatchGetItem (message, profile, balance, contact point, cap), the claim with the link
        # and the cap count (TransactWriteItems), the mark (UpdateItem): no group read, no
        # separate link write.
        assert request_log.operations == {"BatchGetItem": 1, "TransactWriteItems": 1, "UpdateItem": 1}
        [row] = selectors.outbox_list(clinic_id=cid, guarantor_id=p.guarantor_id)
        url = re.search(r"http\S+/l/\S+", row.body_text or "")
        assert url is not None
        resolved = links.link_resolve(token=url.group(0).rsplit("/l/", 1)[1].rstrip(".,)"))
        assert (resolved.guarantor_id, resolved.kind, resolved.statement_id) == \
            (p.guarantor_id, links.LinkKind.EMAIL, ns.statement_id(p))
        assert len(_links(cid, p.guarantor_id)) == 1


def test_a_claim_lost_to_a_cancellation_sends_nothing_and_leaves_no_link(tmp_path, monkeypatch):
    ns.Clock(ns.utc(2026, 11, 30, 16, 0))
    with ns.console(tmp_path):
        cid = ns.clinic()
        p = ns.payer(cid, mobile=False)
        [q] = services.balance_notification_queue(clinic_id=cid, guarantor_id=p.guarantor_id,
                                                  statement_id=ns.statement_id(p))
        render = templates.render

        def render_then_cancelled(*args, **kwargs):
            # A payment cancels the message between the send's read and its claim.
            transition(MessageRef(cid, q.ref.owner, q.ref.message_id), to="cancelled", expect=("queued",),
                       reason="cancelled:payment")
            return render(*args, **kwargs)

        monkeypatch.setattr(templates, "render", render_then_cancelled)
        outcome = services.message_send(clinic_id=cid, owner=q.ref.owner, message_id=q.ref.message_id)
        assert (outcome.status, outcome.reason) == ("skipped", "lost_claim")
        assert _links(cid, p.guarantor_id) == []
        assert not (tmp_path / "outbox.jsonl").exists()
