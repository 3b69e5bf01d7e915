"""Payment writes: take the guarantor's money safely and post it exactly once (DESIGN.md rules
3-5; SECURITY.md R29-R38; SERVERLESS.md 2.6-2.7).

**Three phases** per attempt: (1) a conditional put of the attempt keyed by the browser's
attempt key with a fingerprint of the request (a reused key with other parameters raises
IdempotencyConflict), then a claim: the created -> processing transition, which also holds the
amount against the balance (R31) and takes a lease; (2) the processor call with nothing held,
the attempt's key as the processor's idempotency key; (3) one ``TransactWriteItems`` through
``entry_post(..., also=...)``: the attempt's transition (conditioned on its status) and history,
the receipt, the ledger entry and posting key, the balance and lines, the hold's release, the
dunning reset and the webhook event's "handled" mark. Whoever holds the result may apply it
(return page, webhook, completer): the transition condition and the posting key let one win.

**Batches**: the day's online batch is opened by conditional put (the schedule, or the first
payment of the day): one batch per clinic and local business date. Receipts join a batch by
their gsi3 key only; totals are computed by Query at close. Staff batches belong to a user.

Money is integer cents; dates are the clinic's local dates; time comes from ``core.clock``.
Every public service takes ``clinic_id=`` and runs in that clinic's scope (R16).
"""

from __future__ import annotations

import functools
import hashlib
import json
import logging
import random
import time
from collections import Counter
from collections.abc import Callable, Iterable, Mapping
from contextlib import nullcontext
from dataclasses import dataclass, field, replace
from datetime import UTC, date, datetime, timedelta
from typing import Any, ParamSpec, TypeVar
from zoneinfo import ZoneInfo

from pynamodb.exceptions import PutError, PynamoDBException, UpdateError

from chalicelib.accounts import selectors as account_selectors
from chalicelib.accounts import services as accounts
from chalicelib.core import clock, config
from chalicelib.core.errors import (
    AlreadyExists,
    AlreadyPosted,
    ConcurrentPosting,
    ConditionFailed,
    DomainError,
    InsufficientBalance,
    InvalidInput,
    LineInCollections,
    NotFound,
    TryAgainLater,
    UnknownClinic,
    UnknownGuarantor,
)
from chalicelib.core.ids import new_id, require_id
from chalicelib.core.money import require_positive_cents
from chalicelib.ledger import services as ledger
from chalicelib.ledger.accounts import ESCROW, PAT_PAID, Account, EntryCode, Line
from chalicelib.ledger.selectors import GuarantorFigures, figures_from_item
from chalicelib.ledger.verify import clinic_ids
from chalicelib.notify import services as notify_services
from chalicelib.payments import rules
from chalicelib.payments.errors import (
    BatchClosed,
    IdempotencyConflict,
    InvalidTransition,
    PaymentInProgress,
    PaymentNotAllowed,
    ProcessorRejected,
    ProcessorTimeout,
    ProcessorUnavailable,
    RefundNotAllowed,
    UnknownAttempt,
    UnknownBatch,
    UnknownCard,
    UnknownReceipt,
)
from chalicelib.payments.faults import crash_point
from chalicelib.payments.processors import registry
from chalicelib.payments.processors.base import (
    Outcome,
    PaymentRequest,
    PaymentResult,
    ProcessorEvent,
    RefundRequest,
    RefundResult,
)
from chalicelib.payments.selectors import (
    PAYMENT,
    REFUND,
    AttemptView,
    BatchView,
    CardView,
    ReceiptView,
    RefundView,
    attempt_view,
    batch_members,
    batch_view,
    card_view,
    receipt_view,
    refund_view,
    totals_of,
)
from chalicelib.payments.states import (
    ATTEMPT_TRANSITIONS,
    AWAITING_RESULT,
    BATCH_TRANSITIONS,
    PENDING,
    AttemptStatus,
    BatchStatus,
    EventStatus,
    RefundStatus,
)
from chalicelib.store import keys
from chalicelib.store.db import RETRYABLE_ERRORS, Tx, TxFailed, clinic_scope, clinic_scoped
from chalicelib.store.models import BalanceItem, ClinicItem, GroupItem, GuarantorItem, Item
from chalicelib.store.models_payments import (
    AttemptHistoryItem,
    AttemptItem,
    BatchItem,
    CardItem,
    PaymentHoldItem,
    PaymentsConfigItem,
    ProcessorCustomerItem,
    ProcessorEventItem,
    ReceiptItem,
    RefundItem,
    StaffOpenBatchItem,
)
from chalicelib.tenants.groups import GroupSettings, settings_load

log = logging.getLogger(__name__)
T = TypeVar("T")
P = ParamSpec("P")

#: A driver's lease on a processing attempt; a retry or the completer may take over after it
#: (longer than the processor's worst case: 10 s timeout x 2 tries).
LEASE_SECONDS = 30
#: How long an attempt's amount stays held against the balance without a result.
HOLD_SECONDS = 30 * 60
#: A processor-hosted page not paid within this is canceled by the completer.
HOSTED_EXPIRY_SECONDS = 15 * 60
#: The completer looks at attempts older than this.
STUCK_AFTER_SECONDS = 120
#: A hosted card page left unpaid this long is abandoned once the guarantor starts another
#: payment that its hold blocks: it is canceled at the processor and the hold released (R31:
#: still one payable page at a time; a page opened moments ago keeps its hold: T2).
ABANDONED_AFTER_SECONDS = 120
#: Processor calls: at most this many tries for transient errors, jittered (T5: at most 5).
PROCESSOR_TRIES = 3
#: Batch close re-reads gsi3 until two reads agree (GSI lag, R15), waiting this long between.
CLOSE_SETTLE_SECONDS = 0.2
CLOSE_READS = 5
EVENT_LEASE_SECONDS = 60
EVENT_RETENTION_DAYS = 30
ONLINE_USER = "system"
ONLINE_DESCRIPTION = "Online payments"
OFFICE_METHODS = frozenset({"cash", "check"})
OFFICE_CHANNELS = frozenset({"office", "mail"})
_MESSAGES = {
    AttemptStatus.SUCCEEDED: "Payment received. Thank you.",
    AttemptStatus.PROCESSING: "We are confirming your payment with the card processor.",
    AttemptStatus.CANCELED: "This payment was not completed and nothing was charged.",
}


# --- context ---------------------------------------------------------------------------------


@dataclass(frozen=True)
class _Ctx:
    clinic_id: str
    time_zone: str
    processor: str
    account_id: str
    facility_accounts: dict[str, str]
    provider_accounts: dict[str, str]
    group_id: str | None
    settings: GroupSettings


def default_account(clinic_id: str) -> str:
    """The sandbox merchant account of a clinic without a processor set-up."""
    return f"acct_sbx_{clinic_id}"


def _context(clinic_id: str, group_id: str | None) -> _Ctx:
    """Clinic time zone, processor set-up and group settings (eventually consistent reads)."""
    cpk = keys.clinic_pk(clinic_id)
    wanted = [(cpk, keys.CLINIC), (cpk, keys.PAYMENTS_CONFIG)]
    if group_id:
        wanted.append((cpk, keys.group_sk(require_id(group_id, field="group_id"))))
    found = {it.sk: it for it in Item.batch_get(wanted)}
    clinic = found.get(keys.CLINIC)
    if not isinstance(clinic, ClinicItem):
        raise UnknownClinic(f"clinic {clinic_id} not found")
    group: GroupItem | None = None
    if group_id:
        got = found.get(keys.group_sk(group_id))
        if not isinstance(got, GroupItem):
            raise NotFound(f"group {group_id} not found")
        group = got
    else:
        groups = [g for g in GroupItem.query(cpk, GroupItem.sk.startswith("GRP#")) if isinstance(g, GroupItem)]
        group = next((g for g in groups if g.is_default), groups[0] if groups else None)
    cfg = found.get(keys.PAYMENTS_CONFIG)
    if isinstance(cfg, PaymentsConfigItem):
        processor, account = cfg.processor, cfg.account_id
        facility, provider = _plain(cfg.facility_accounts), _plain(cfg.provider_accounts)
    else:
        processor, account, facility, provider = "sandbox", default_account(clinic_id), {}, {}
    return _Ctx(clinic_id, clinic.time_zone, processor, account, facility, provider,
                group.group_id if group else None,
                settings_load(group.settings_json) if group else GroupSettings())


def _local_date(ctx_tz: str, at: datetime) -> date:
    return at.astimezone(ZoneInfo(ctx_tz)).date()


def _fingerprint(**parts: object) -> str:
    return hashlib.sha256(json.dumps(parts, sort_keys=True, default=str).encode()).hexdigest()


def _idempotency_key(clinic_id: str, guarantor_id: str, attempt_key: str) -> str:
    """The processor idempotency key of an attempt: clinic + guarantor + attempt (≤ 255)."""
    return f"pa_{clinic_id}_{guarantor_id}_{attempt_key}"


def return_url(clinic_id: str, guarantor_id: str, attempt_key: str) -> str:
    """Where the processor's page sends the browser back (the portal's ``/pay/done`` page)."""
    return (f"{config.settings().portal_url}/pay/done?c={clinic_id}&g={guarantor_id}"
            f"&a={attempt_key}")


def _sleep_jittered(attempt: int, base: float = 0.0) -> None:
    time.sleep(base + random.uniform(0.005, 0.03) * (attempt + 1))


def _call(fn: Callable[[], T]) -> T:
    """Call the processor; retry transient failures (nothing happened there) with jitter and
    the same idempotency key, at most PROCESSOR_TRIES. A timeout is not retried here: its
    outcome is unknown and is learned by retrieving the payment (T5)."""
    for attempt in range(PROCESSOR_TRIES):
        try:
            return fn()
        except ProcessorTimeout:
            raise
        except ProcessorUnavailable as exc:
            if attempt == PROCESSOR_TRIES - 1:
                raise
            _sleep_jittered(attempt, min(exc.retry_after or 0.0, 2.0))
    raise AssertionError("unreachable")


def transient_as_try_again(fn: Callable[P, T]) -> Callable[P, T]:
    """Turn a throttled, failed or timed-out DynamoDB request that escaped a service into
    TryAgainLater (HTTP 503, R5): the caller retries with the same key; nothing was half-done."""

    @functools.wraps(fn)
    def wrapper(*args: P.args, **kwargs: P.kwargs) -> T:
        try:
            return fn(*args, **kwargs)
        except PynamoDBException as exc:
            if _ambiguous(exc) or _code(exc) in RETRYABLE_ERRORS:
                raise TryAgainLater("the database is busy; try again") from exc
            raise
        except TxFailed as exc:
            if exc.retryable:
                raise TryAgainLater("the database is busy; try again") from exc
            raise

    return wrapper


def _code(exc: PynamoDBException) -> str | None:
    """DynamoDB's error code, or None when no answer came back (a timeout, a reset)."""
    response = getattr(exc.cause, "response", None)
    return response.get("Error", {}).get("Code") if isinstance(response, dict) else None


def _ambiguous(exc: PynamoDBException) -> bool:
    """A request whose outcome is unknown (read timeout after the server may have committed)."""
    return _code(exc) is None


# --- transitions -----------------------------------------------------------------------------


def _transition(tx: Tx, pk: str, attempt_key: str, frm: Iterable[AttemptStatus], to: AttemptStatus,
                reason: str, now: datetime, actions: Iterable[Any] = ()) -> None:
    """Add a compare-and-set transition of an attempt and its history item to ``tx``.

    Raises InvalidTransition unless every state in ``frm`` may move to ``to``.
    """
    sources = tuple(frm)
    for source in sources:
        if to not in ATTEMPT_TRANSITIONS[source]:
            raise InvalidTransition(f"payment attempt cannot go from {source} to {to}")
    acts = [AttemptItem.status.set(to.value), AttemptItem.updated_at.set(now), *actions]
    if to not in PENDING:
        acts += [AttemptItem.gsi1pk.remove(), AttemptItem.gsi1sk.remove(), AttemptItem.lease_until.remove()]
    tx.update(AttemptItem(pk, keys.attempt_sk(attempt_key)), acts,
              condition=AttemptItem.status.is_in(*[s.value for s in sources]), versioned=False)
    tx.put(AttemptHistoryItem(pk, keys.attempt_history_sk(attempt_key, now.isoformat(), to.value),
                              attempt_key=attempt_key, old="|".join(s.value for s in sources),
                              new=to.value, reason=reason[:200], at=now),
           condition=AttemptHistoryItem.pk.does_not_exist())


def _reload(item: AttemptItem) -> AttemptItem:
    return AttemptItem.get(item.pk, item.sk, consistent_read=True)


def _view(item: AttemptItem) -> AttemptView:
    view = attempt_view(item)
    if not view.message and AttemptStatus(item.status) in _MESSAGES:
        return replace(view, message=_MESSAGES[AttemptStatus(item.status)])
    return view


def _release_hold(tx: Tx, pk: str, attempt_key: str) -> None:
    tx.update(PaymentHoldItem(pk, keys.PAYMENT_HOLDS),
              [PaymentHoldItem.holds[attempt_key].remove(), PaymentHoldItem.rev.set(PaymentHoldItem.rev + 1)],
              condition=PaymentHoldItem.pk.exists(), versioned=False)


def _mark_event(tx: Tx, event_pk: str | None, now: datetime) -> None:
    if event_pk:
        tx.update(ProcessorEventItem(event_pk, keys.EVENT),
                  [ProcessorEventItem.status.set(EventStatus.HANDLED.value),
                   ProcessorEventItem.handled_at.set(now), ProcessorEventItem.lease_until.remove()],
                  condition=ProcessorEventItem.status == EventStatus.HANDLING.value, versioned=False)


# --- phase 1 and the claim ---------------------------------------------------------------------


@transient_as_try_again
@clinic_scoped
def payment_attempt_start(*, clinic_id: str, guarantor_id: str, attempt_key: str, amount_choice: str,
                          amount_cents: int | None = None, method: str = "card", group_id: str | None = None,
                          card_id: str | None = None, store_card: bool = False) -> AttemptView:
    """Start a payment on the processor's hosted page (the usual QuickPay/portal flow).

    Phase 1 records the attempt; the claim holds the amount; the processor creates its page
    and the view's ``redirect_url`` sends the browser there (our pages never take a card, R1).
    A stored card (``card_id``) with the group's *Require CVV* re-collects the CVC on that page.
    Replays with the same key return the same attempt (and page). ``amount_choice`` is
    ``current_balance``, ``amount_due`` or ``other`` (with ``amount_cents``); the amount is
    computed here from the ledger (R29).

    Raises InvalidInput/InvalidAmount, PaymentNotAllowed, PaymentInProgress, IdempotencyConflict,
    UnknownGuarantor, UnknownCard, TryAgainLater (processor or database busy).
    """
    return _start(clinic_id=clinic_id, guarantor_id=guarantor_id, attempt_key=attempt_key,
                  choice=amount_choice, requested_cents=amount_cents, method=method, flow="hosted",
                  token=None, card_id=card_id, store_card=store_card, group_id=group_id)


@transient_as_try_again
@clinic_scoped
def payment_attempt_submit(*, clinic_id: str, guarantor_id: str, attempt_key: str, amount_choice: str,
                           amount_cents: int | None = None, token: str | None = None,
                           card_id: str | None = None, method: str = "card", group_id: str | None = None,
                           store_card: bool = False) -> AttemptView:
    """Pay with a processor token (a stored card without *Require CVV*, a Payment Element's
    payment method, a wallet token): all three phases in this call.

    Returns the attempt: ``succeeded`` with its receipt, ``failed`` with a message safe to show,
    ``requires_action`` with the 3-D Secure ``redirect_url``, or ``processing`` when the
    processor's answer was lost (the webhook or the completer finishes it; never charged twice).
    Raises as :func:`payment_attempt_start`; PaymentInProgress (HTTP 409) while another request
    is completing the same attempt.
    """
    if not token and not card_id:
        raise InvalidInput("a token or a stored card is needed to pay")
    return _start(clinic_id=clinic_id, guarantor_id=guarantor_id, attempt_key=attempt_key,
                  choice=amount_choice, requested_cents=amount_cents, method=method, flow="token",
                  token=token, card_id=card_id, store_card=store_card, group_id=group_id)


def _start(*, clinic_id: str, guarantor_id: str, attempt_key: str, choice: str, requested_cents: int | None,
           method: str, flow: str, token: str | None, card_id: str | None, store_card: bool,
           group_id: str | None, channel: str = "online", user_id: str | None = None,
           batch_id: str | None = None, part_key: str | None = None, split_group: str | None = None,
           account_id: str | None = None) -> AttemptView:
    require_id(guarantor_id, field="guarantor_id")
    require_id(attempt_key, field="attempt_key")
    try:
        amount_choice = rules.AmountChoice(choice)
    except ValueError:
        raise InvalidInput(f"amount_choice must be one of {[c.value for c in rules.AmountChoice]}") from None
    if token is not None and (not isinstance(token, str) or not 3 <= len(token) <= 100):
        raise InvalidInput("token is not a processor token")
    crash_point("attempt.before_record")
    fingerprint = _fingerprint(guarantor=guarantor_id, choice=amount_choice.value, amount=requested_cents,
                               method=method, flow=flow, token=token, card=card_id, store=store_card,
                               part=part_key, channel=channel)
    pk = keys.guarantor_pk(clinic_id, guarantor_id)
    sk = keys.attempt_sk(attempt_key)
    ctx = _context(clinic_id, group_id)
    found = {it.sk: it for it in Item.batch_get([(pk, sk), (pk, keys.PAYMENT_HOLDS), (pk, keys.PROFILE)],
                                                consistent_read=True)}
    existing = found.get(sk)
    if isinstance(existing, AttemptItem):
        return _replay(ctx, existing, fingerprint)
    profile = found.get(keys.PROFILE)
    if not isinstance(profile, GuarantorItem):
        raise UnknownGuarantor(f"guarantor {guarantor_id} not found")
    hold = found.get(keys.PAYMENT_HOLDS)
    hold = hold if isinstance(hold, PaymentHoldItem) else None
    figures = _figures(pk, ctx)
    now = clock.now()
    held = rules.held_cents(_holds(hold), now_epoch=int(now.timestamp()), except_key=split_group or attempt_key)
    try:
        amount = rules.amount_resolve(choice=amount_choice, requested_cents=requested_cents,
                                      balances=figures.balances, settings=ctx.settings, held_cents=held)
    except PaymentInProgress:
        if not _abandoned_release(ctx, pk, hold, except_key=split_group or attempt_key, now=now):
            raise
        hold = _hold_read(pk)
        figures = _figures(pk, ctx)  # an abandoned page may have been paid after all: it posted
        held = rules.held_cents(_holds(hold), now_epoch=int(now.timestamp()),
                                except_key=split_group or attempt_key)
        amount = rules.amount_resolve(choice=amount_choice, requested_cents=requested_cents,
                                      balances=figures.balances, settings=ctx.settings, held_cents=held)
    processor = registry.get(ctx.processor)
    rules.method_check(method=method, settings=ctx.settings, wallets_supported=processor.capabilities.wallets,
                       split=split_group is not None)
    if card_id is not None:
        card = _active_card(pk, card_id)
        token = card.token
        if flow == "token" and ctx.settings.require_cvv:
            raise PaymentNotAllowed("this group requires the card's security code: pay on the card page")
    item = AttemptItem(
        pk, sk, attempt_key=attempt_key, guarantor_id=guarantor_id, status=AttemptStatus.CREATED.value,
        fingerprint=fingerprint, amount_cents=amount, amount_choice=amount_choice.value,
        amount_due_cents=figures.balances.amount_due, method=method, channel=channel, flow=flow,
        processor=ctx.processor, account_id=account_id or ctx.account_id, group_id=ctx.group_id,
        payment_token=token, card_id=card_id,
        store_card=bool(store_card and ctx.settings.stored_cards and processor.capabilities.stored_cards
                        and card_id is None),
        dunning_reset=int(profile.dunning_count or 0) > 0 and amount >= figures.balances.amount_due,
        held=True, batch_id=batch_id, user_id=user_id, split_group=split_group, part_key=part_key,
        business_date=_local_date(ctx.time_zone, now).isoformat(), created_at=now, updated_at=now,
        gsi1pk=keys.attempts_pending_gsi1pk(clinic_id), gsi1sk=f"{now.isoformat()}#{guarantor_id}#{attempt_key}",
    )
    try:
        item.save(condition=AttemptItem.pk.does_not_exist())
    except PutError as exc:
        if _code(exc) == "ConditionalCheckFailedException" or _ambiguous(exc):
            try:
                stored = AttemptItem.get(pk, sk, consistent_read=True)
            except AttemptItem.DoesNotExist:
                raise TryAgainLater("the payment could not be recorded; try again") from exc
            if stored.status != AttemptStatus.CREATED.value or stored.fingerprint != fingerprint \
                    or stored.created_at != item.created_at:
                return _replay(ctx, stored, fingerprint)
            item = stored  # our own put, whose answer was lost (R4)
        else:
            raise
    crash_point("attempt.after_record")
    return _claim_and_drive(ctx, item, hold=hold, figures=figures)


#: The attempt states of a hosted page that :func:`_abandoned_release` may cancel.
_ABANDONABLE = frozenset({AttemptStatus.PROCESSING.value, AttemptStatus.REQUIRES_ACTION.value})


def _abandoned_release(ctx: _Ctx, pk: str, hold: PaymentHoldItem | None, *, except_key: str,
                       now: datetime) -> bool:
    """Settle the guarantor's hosted card pages that hold the balance and were left unpaid for
    ``ABANDONED_AFTER_SECONDS`` (still open, or stopped at a 3-D Secure challenge, recorded or
    not): each is asked of the processor and canceled there if still unpaid (a page paid
    meanwhile posts instead), which releases its hold. True when any was settled, so the caller
    re-reads the hold and the balance. Attempts of ``except_key``'s own split group are left
    alone. Raises ProcessorUnavailable and storage errors."""
    settled = False
    for key, entry in _holds(hold).items():
        if key == except_key or key.startswith(f"{except_key}.") or entry.get("u", 0) <= int(now.timestamp()):
            continue
        try:
            other = AttemptItem.get(pk, keys.attempt_sk(key), consistent_read=True)
        except AttemptItem.DoesNotExist:
            continue
        # A page whose card went into a 3-D Secure challenge nobody finished is just as unpaid,
        # whether or not its ``requires_action`` was recorded yet (webhook, return page).
        if other.status not in _ABANDONABLE or other.flow != "hosted" or not other.redirect_url \
                or (now - other.created_at).total_seconds() < ABANDONED_AFTER_SECONDS:
            continue
        other_ctx = ctx if other.group_id == ctx.group_id else _context(ctx.clinic_id, other.group_id)
        settled |= _complete(other_ctx, other, stuck=True, abandoned=True).status not in _ABANDONABLE
    return settled


def _figures(pk: str, ctx: _Ctx) -> GuarantorFigures:
    try:
        balance = BalanceItem.get(pk, keys.BALANCE, consistent_read=True)
    except BalanceItem.DoesNotExist:
        raise UnknownGuarantor("guarantor not found") from None
    return figures_from_item(balance, include_new_charges=ctx.settings.include_new_charges)


def _active_card(pk: str, card_id: str) -> CardItem:
    try:
        card = CardItem.get(pk, keys.card_sk(require_id(card_id, field="card_id")), consistent_read=True)
    except CardItem.DoesNotExist:
        raise UnknownCard("this stored card is not available") from None
    if not card_view(card).active:
        raise UnknownCard("this stored card is expired or was removed; please use another card")
    return card


def _replay(ctx: _Ctx, item: AttemptItem, fingerprint: str) -> AttemptView:
    if item.fingerprint != fingerprint:
        raise IdempotencyConflict("this payment was already started with different details; "
                                  "reload the page to start a new payment")
    return _resume(ctx, item)


def _resume(ctx: _Ctx, item: AttemptItem) -> AttemptView:
    """Continue an attempt found by its key: the stored outcome, the same page, or a takeover
    of a driver that crashed (its lease expired)."""
    status = AttemptStatus(item.status)
    if status is AttemptStatus.CREATED:
        return _claim_and_drive(ctx, item, hold=None, figures=None)
    if status is AttemptStatus.PROCESSING:
        now = clock.now()
        if item.lease_until is not None and item.lease_until > now:
            if item.flow == "hosted" and item.redirect_url:
                return _view(item)
            raise PaymentInProgress("this payment is being completed; check again in a moment")
        taken = _take_lease(item, now)
        if taken is None:
            raise PaymentInProgress("this payment is being completed; check again in a moment")
        return _drive(ctx, taken)
    return _view(item)


def _take_lease(item: AttemptItem, now: datetime) -> AttemptItem | None:
    """Take over a processing attempt whose driver's lease expired; None if someone else did."""
    lease = now + timedelta(seconds=LEASE_SECONDS)
    cond = (AttemptItem.status == AttemptStatus.PROCESSING.value) & (AttemptItem.drives == int(item.drives))
    try:
        item.update(actions=[AttemptItem.lease_until.set(lease), AttemptItem.drives.set(int(item.drives) + 1),
                             AttemptItem.updated_at.set(now)], condition=cond, add_version_condition=False)
    except UpdateError as exc:
        if _code(exc) == "ConditionalCheckFailedException":
            return None
        raise
    return item


def _claim_and_drive(ctx: _Ctx, item: AttemptItem, *, hold: PaymentHoldItem | None,
                     figures: GuarantorFigures | None) -> AttemptView:
    """created -> processing with a lease, holding the amount (R31); then phase 2."""
    pk, key = item.pk, item.attempt_key
    group_key = item.split_group or key
    for attempt in range(4):
        now = clock.now()
        if figures is None:
            hold = _hold_read(pk)
            figures = _figures(pk, ctx)  # read after the hold: a posting since bumps its rev
            held = rules.held_cents(_holds(hold), now_epoch=int(now.timestamp()), except_key=group_key)
            if not ctx.settings.prepayment_allowed and item.amount_cents > figures.balances.current_balance - held:
                tx = Tx()
                _transition(tx, pk, key, [AttemptStatus.CREATED], AttemptStatus.CANCELED,
                            "balance paid or held by another payment", now,
                            [AttemptItem.message.set("This balance was already paid or is being paid.")])
                _commit_quietly(tx)
                raise PaymentInProgress("a payment of this balance is already in progress or done")
        lease = now + timedelta(seconds=LEASE_SECONDS)
        tx = Tx()
        _transition(tx, pk, key, [AttemptStatus.CREATED], AttemptStatus.PROCESSING, "claimed", now,
                    [AttemptItem.lease_until.set(lease), AttemptItem.drives.set(int(item.drives) + 1)])
        entry = {"c": int(item.amount_cents), "u": int(now.timestamp()) + HOLD_SECONDS}
        if hold is None:
            tx.put(PaymentHoldItem(pk, keys.PAYMENT_HOLDS, holds={key: entry}, rev=1),
                   condition=PaymentHoldItem.pk.does_not_exist())
        else:
            expired = [k for k, h in _holds(hold).items() if h.get("u", 0) <= int(now.timestamp()) and k != key]
            tx.update(PaymentHoldItem(pk, keys.PAYMENT_HOLDS),
                      [PaymentHoldItem.holds[key].set(entry), PaymentHoldItem.rev.set(int(hold.rev) + 1),
                       *[PaymentHoldItem.holds[k].remove() for k in expired[:20]]],
                      condition=PaymentHoldItem.rev == int(hold.rev), versioned=False)
        try:
            tx.commit()
        except TxFailed as failed:
            if item.sk in failed.reasons and not failed.retryable:
                return _resume(ctx, _reload(item))
            figures = None
            _sleep_jittered(attempt)
            continue
        except TryAgainLater:
            figures = None
            _sleep_jittered(attempt)
            continue
        except PynamoDBException as exc:
            if not _ambiguous(exc):
                raise
            fresh = _reload(item)
            if fresh.status == AttemptStatus.PROCESSING.value and int(fresh.drives) == int(item.drives) + 1:
                item = fresh  # our claim committed; its answer was lost (R4)
                break
            if fresh.status != AttemptStatus.CREATED.value:
                return _resume(ctx, fresh)
            figures = None
            continue
        item.status, item.lease_until, item.drives = AttemptStatus.PROCESSING.value, lease, int(item.drives) + 1
        break
    else:
        raise TryAgainLater("the payment service is busy; try again")
    crash_point("attempt.after_claim")
    return _drive(ctx, item)


def _plain(value: Any) -> dict[str, Any]:
    """A stored map as a plain dict (PynamoDB gives raw maps as MapAttribute objects)."""
    if value is None:
        return {}
    return dict(value.as_dict()) if hasattr(value, "as_dict") else dict(value)


def _holds(hold: PaymentHoldItem | None) -> dict[str, dict[str, int]]:
    return {k: {f: int(v) for f, v in _plain(h).items()} for k, h in _plain(hold.holds if hold else None).items()}


def _hold_read(pk: str) -> PaymentHoldItem | None:
    try:
        return PaymentHoldItem.get(pk, keys.PAYMENT_HOLDS, consistent_read=True)
    except PaymentHoldItem.DoesNotExist:
        return None


def _commit_quietly(tx: Tx) -> bool:
    try:
        tx.commit()
    except TxFailed:
        return False
    return True


# --- phase 2 ---------------------------------------------------------------------------------


def _request(ctx: _Ctx, item: AttemptItem, customer: str | None = None) -> PaymentRequest:
    clinic_id = ctx.clinic_id
    metadata = {"clinic_id": clinic_id, "guarantor_id": item.guarantor_id, "attempt_key": item.attempt_key}
    if item.split_group:
        metadata["split_group"] = item.split_group
    return PaymentRequest(
        idempotency_key=_idempotency_key(clinic_id, item.guarantor_id, item.attempt_key),
        amount_cents=int(item.amount_cents), account_id=item.account_id, metadata=metadata,
        token=item.payment_token, customer=customer,
        return_url=return_url(clinic_id, item.guarantor_id, item.attempt_key),
        save_card=bool(item.store_card), require_cvc=bool(item.card_id and ctx.settings.require_cvv),
        wallet=item.method if item.method in rules.WALLETS else None,
    )


def _drive(ctx: _Ctx, item: AttemptItem) -> AttemptView:
    """Phase 2 with nothing held: ask the processor, then apply what it says (phase 3)."""
    processor = registry.get(item.processor)
    customer = (_customer_id(ctx, item.pk, item.guarantor_id, item.processor, item.account_id)
                if item.store_card and item.flow == "token" else None)
    request = _request(ctx, item, customer)
    try:
        if item.flow == "hosted":
            if item.processor_reference:
                result = _call(lambda: processor.payment_retrieve(reference=str(item.processor_reference),
                                                                  account_id=item.account_id))
            else:
                result = _call(lambda: processor.checkout_create(request))
        else:
            result = _call(lambda: processor.charge(request, reference=item.processor_reference,
                                                    on_reference=lambda ref: _remember_reference(item, ref)))
    except ProcessorTimeout:
        log.warning("processor timeout; attempt left processing", extra={"attempt": item.attempt_key})
        return replace(_view(item), message=_MESSAGES[AttemptStatus.PROCESSING])
    except ProcessorUnavailable:
        _lease_release(item)
        raise
    except ProcessorRejected as exc:
        result = PaymentResult(Outcome.DECLINED, reference=item.processor_reference,
                               amount_cents=int(item.amount_cents), decline_code="rejected", message=str(exc))
    crash_point("processor.after_call")
    if result.outcome is Outcome.PENDING and item.flow == "hosted":
        return _remember_page(item, result)
    return _apply(ctx, item, result)


def _remember_reference(item: AttemptItem, reference: str) -> None:
    """A recovery point: the processor's payment id, stored before any money moves."""
    cond = (AttemptItem.status == AttemptStatus.PROCESSING.value) & (
        AttemptItem.processor_reference.does_not_exist() | (AttemptItem.processor_reference == reference))
    item.update(actions=[AttemptItem.processor_reference.set(reference)], condition=cond,
                add_version_condition=False)


def _remember_page(item: AttemptItem, result: PaymentResult) -> AttemptView:
    acts: list[Any] = [AttemptItem.processor_reference.set(str(result.reference)),
                       AttemptItem.redirect_url.set(str(result.redirect_url))]
    if result.client_secret:
        acts.append(AttemptItem.client_secret.set(result.client_secret))
    try:
        item.update(actions=acts, condition=AttemptItem.status == AttemptStatus.PROCESSING.value,
                    add_version_condition=False)
    except UpdateError as exc:
        if _code(exc) != "ConditionalCheckFailedException":
            raise
        return _view(_reload(item))
    return _view(item)


def _lease_release(item: AttemptItem) -> None:
    """Let the next retry drive at once after a transient processor failure (nothing happened)."""
    try:
        item.update(actions=[AttemptItem.lease_until.set(clock.now())],
                    condition=(AttemptItem.status == AttemptStatus.PROCESSING.value)
                    & (AttemptItem.drives == int(item.drives)), add_version_condition=False)
    except UpdateError:
        log.info("lease already moved on", extra={"attempt": item.attempt_key})


def _customer_id(ctx: _Ctx, pk: str, guarantor_id: str, processor: str, account_id: str) -> str:
    """The guarantor's customer at the processor account, created once (conditional put)."""
    sk = keys.processor_customer_sk(processor, account_id)
    try:
        return ProcessorCustomerItem.get(pk, sk, consistent_read=True).customer
    except ProcessorCustomerItem.DoesNotExist:
        pass
    customer = registry.get(processor).customer_create(
        account_id=account_id, metadata={"clinic_id": ctx.clinic_id, "guarantor_id": guarantor_id})
    try:
        ProcessorCustomerItem(pk, sk, customer=customer).save(condition=ProcessorCustomerItem.pk.does_not_exist())
    except PutError:
        return ProcessorCustomerItem.get(pk, sk, consistent_read=True).customer
    return customer


# --- phase 3 ---------------------------------------------------------------------------------


def _apply(ctx: _Ctx, item: AttemptItem, result: PaymentResult, event_pk: str | None = None) -> AttemptView:
    """Apply the processor's authoritative result to the attempt (phase 3)."""
    if item.status not in {s.value for s in AWAITING_RESULT}:
        return _view(item)
    outcome = result.outcome
    if outcome is Outcome.SUCCEEDED:
        if result.amount_cents and result.amount_cents != int(item.amount_cents):
            log.error("processor amount differs from the attempt; left for review",
                      extra={"attempt": item.attempt_key})
            return _view(item)
        return _post_success(ctx, item, result, event_pk)
    if outcome is Outcome.DECLINED:
        return _post_failure(ctx, item, result, event_pk)
    if outcome in (Outcome.REQUIRES_ACTION, Outcome.CANCELED):
        now = clock.now()
        to = AttemptStatus.REQUIRES_ACTION if outcome is Outcome.REQUIRES_ACTION else AttemptStatus.CANCELED
        if item.status == to.value:
            return _view(item)
        tx = Tx()
        acts: list[Any] = [AttemptItem.processor_reference.set(result.reference)] if result.reference else []
        if result.redirect_url:
            acts.append(AttemptItem.redirect_url.set(result.redirect_url))
        if to is AttemptStatus.CANCELED:
            acts.append(AttemptItem.message.set(_MESSAGES[AttemptStatus.CANCELED]))
            _release_hold(tx, item.pk, item.attempt_key)
        _transition(tx, item.pk, item.attempt_key, [AttemptStatus(item.status)], to, f"processor: {outcome}", now, acts)
        _mark_event(tx, event_pk, now)
        _commit_quietly(tx)
        return _view(_reload(item))
    return _view(item)


def _batch_for(ctx: _Ctx, item: AttemptItem | None, now: datetime) -> tuple[str, str, bool]:
    """(batch id, business date, staff batch?) for a receipt posted now."""
    if item is not None and item.batch_id:
        try:
            batch = BatchItem.get(keys.clinic_pk(ctx.clinic_id), keys.batch_sk(item.batch_id), consistent_read=True)
            if batch.status == BatchStatus.OPEN.value:
                return batch.batch_id, batch.business_date, True
        except BatchItem.DoesNotExist:
            pass
        log.warning("staff batch not open; payment goes to the online batch", extra={"batch": item.batch_id})
    batch_id, day = _online_batch(ctx, now)
    return batch_id, day, False


def _online_batch(ctx: _Ctx, now: datetime) -> tuple[str, str]:
    """The open online batch for today's local date, opened by conditional put if missing; if
    staff closed today's, the next day's (R36: later payments go to the current open batch)."""
    day = _local_date(ctx.time_zone, now)
    for _ in range(8):
        item = _online_batch_item(ctx.clinic_id, day.isoformat(), read_first=True)
        if item.status == BatchStatus.OPEN.value:
            return item.batch_id, item.business_date
        day += timedelta(days=1)
    raise BatchClosed("no open online batch in the next week; reopen one")


def _online_batch_item(clinic_id: str, business_date: str, *, read_first: bool) -> BatchItem:
    pk, sk = keys.clinic_pk(clinic_id), keys.batch_sk(keys.online_batch_id(business_date))
    if read_first:
        try:
            return BatchItem.get(pk, sk, consistent_read=True)  # a batch closed a moment ago is closed
        except BatchItem.DoesNotExist:
            pass
    item = BatchItem(pk, sk, batch_id=keys.online_batch_id(business_date), batch_kind="online",
                     business_date=business_date, description=ONLINE_DESCRIPTION, user_id=ONLINE_USER,
                     status=BatchStatus.OPEN.value, opened_at=clock.now())
    try:
        item.save(condition=BatchItem.pk.does_not_exist())
    except PutError as exc:
        if _code(exc) != "ConditionalCheckFailedException" and not _ambiguous(exc):
            raise
        return BatchItem.get(pk, sk, consistent_read=True)
    return item


def _receipt(ctx: _Ctx, *, pk: str, guarantor_id: str, receipt_id: str, receipt_type: str, status: str,
             amount: int, method: str, channel: str, batch_id: str, business_date: str, now: datetime,
             user_id: str, **extra: Any) -> ReceiptItem:
    return ReceiptItem(
        pk, keys.receipt_sk(receipt_id), receipt_id=receipt_id, guarantor_id=guarantor_id,
        receipt_type=receipt_type, status=status, amount_cents=amount, method=method, channel=channel,
        batch_id=batch_id, business_date=business_date, posted_at=now, user_id=user_id,
        email_requested=ctx.settings.email_receipts and receipt_type == PAYMENT and amount > 0,
        gsi3pk=keys.batch_receipts_gsi3pk(ctx.clinic_id, batch_id), gsi3sk=f"{now.isoformat()}#{receipt_id}",
        **extra,
    )


def _post_success(ctx: _Ctx, item: AttemptItem, result: PaymentResult, event_pk: str | None) -> AttemptView:
    now = clock.now()
    pk, key = item.pk, item.attempt_key
    batch_id, business_date, staff_batch = _batch_for(ctx, item, now)
    amount = int(item.amount_cents)
    lines = account_selectors.service_lines_list(clinic_id=ctx.clinic_id, guarantor_id=item.guarantor_id)
    plan = rules.auto_post_plan(amount_cents=amount, lines=lines, auto_post=ctx.settings.auto_post,
                                part_key=item.part_key)
    receipt_id = new_id("r")
    card = result.card
    save = bool(item.store_card and card is not None and result.reusable_token)

    def also(tx: Tx, seq: int) -> None:
        acts = [AttemptItem.receipt_id.set(receipt_id), AttemptItem.message.set(_MESSAGES[AttemptStatus.SUCCEEDED])]
        if result.reference:
            acts.append(AttemptItem.processor_reference.set(result.reference))
        if card is not None:
            acts += [AttemptItem.card_brand.set(card.brand), AttemptItem.card_last4.set(card.last4)]
        _transition(tx, pk, key, AWAITING_RESULT, AttemptStatus.SUCCEEDED, "processor: succeeded", now, acts)
        tx.put(_receipt(ctx, pk=pk, guarantor_id=item.guarantor_id, receipt_id=receipt_id, receipt_type=PAYMENT,
                        status="paid", amount=amount, method=item.method, channel=item.channel,
                        batch_id=batch_id, business_date=business_date, now=now,
                        user_id=item.user_id or ONLINE_USER, attempt_key=key, processor=item.processor,
                        processor_reference=result.reference,
                        card_brand=card.brand if card else None, card_last4=card.last4 if card else None,
                        entry_seq=seq, applied=dict(plan), escrow_cents=amount - sum(plan.values()),
                        part_key=item.part_key,
                        original_date=item.business_date if item.business_date != business_date else None),
               condition=ReceiptItem.pk.does_not_exist())
        if staff_batch:
            tx.check(BatchItem, keys.clinic_pk(ctx.clinic_id), keys.batch_sk(batch_id),
                     BatchItem.status == BatchStatus.OPEN.value)
        if item.held:
            _release_hold(tx, pk, key)
        if item.dunning_reset:
            tx.update(GuarantorItem(pk, keys.PROFILE), [GuarantorItem.dunning_count.set(0)],
                      condition=GuarantorItem.pk.exists(), versioned=False)
        if save and card is not None:
            tx.put(CardItem(pk, keys.card_sk(f"card_{receipt_id}"), card_id=f"card_{receipt_id}",
                            processor=item.processor, account_id=item.account_id,
                            token=str(result.reusable_token), brand=card.brand, last4=card.last4,
                            exp_month=card.exp_month, exp_year=card.exp_year, created_at=now),
                   condition=CardItem.pk.does_not_exist())
        _mark_event(tx, event_pk, now)

    for attempt in range(4):
        try:
            accounts.patient_payment_post(clinic_id=ctx.clinic_id, guarantor_id=item.guarantor_id,
                                          amount_cents=amount, applications=plan, source_key=f"attempt:{key}",
                                          method=item.method, also=also)
            break
        except (InsufficientBalance, LineInCollections):
            lines = account_selectors.service_lines_list(clinic_id=ctx.clinic_id, guarantor_id=item.guarantor_id)
            plan = {} if attempt >= 1 else rules.auto_post_plan(
                amount_cents=amount, lines=lines, auto_post=ctx.settings.auto_post, part_key=item.part_key)
        except AlreadyPosted:
            return _view(_reload(item))
        except ConditionFailed as exc:
            if item.sk in exc.keys:
                return _view(_reload(item))  # another request applied the result first
            if staff_batch and keys.batch_sk(batch_id) in exc.keys:
                batch_id, business_date = _online_batch(ctx, now)  # closed meanwhile: money still posts
                staff_batch = False
                continue
            if keys.EVENT in exc.keys:
                event_pk = None  # another handler holds the event now; post without marking it
                continue
            raise
        except PynamoDBException as exc:
            if not _ambiguous(exc):
                raise
            fresh = _reload(item)  # a timeout after the commit? (R4)
            if fresh.status != item.status:
                return _view(fresh)
    else:
        raise TryAgainLater("the payment could not be posted yet; it will be completed shortly")
    crash_point("posting.after_commit")
    _reminders_cancel(ctx.clinic_id, item.guarantor_id)
    view = _view(_reload(item))
    _receipt_email(ctx, view, group_id=item.group_id,
                   guarantor_id=item.guarantor_id, business_date=business_date)
    return view


def _receipt_email(ctx: _Ctx, view: AttemptView, *, group_id: str | None, guarantor_id: str,
                   business_date: str) -> None:
    """Queue the emailed receipt when the group says so and an email is on file (E6). The
    message id is derived from the receipt, so a second call queues nothing; best effort after
    the commit (the receipt is on screen and in the portal either way)."""
    if not view.receipt_id or not ctx.settings.email_receipts:
        return
    try:
        notify_services.receipt_email_queue(
            clinic_id=ctx.clinic_id, guarantor_id=guarantor_id, receipt_id=view.receipt_id,
            receipt_number=view.receipt_id, paid_on=business_date,
            transaction_number=view.processor_reference or "", card_brand=view.card_brand or "card",
            card_last4=view.card_last4 or "", amount_cents=view.amount_cents, group_id=group_id)
    except (DomainError, PynamoDBException):
        log.warning("receipt email not queued", extra={"clinic_id": ctx.clinic_id})


def _reminders_cancel(clinic_id: str, guarantor_id: str) -> None:
    """A payment by any channel cancels pending reminders at once (PRODUCT.md §8). After the
    commit and best effort: a reminder that escapes (a crash here) still re-checks the live
    balance at send time and is suppressed for a paid balance."""
    try:
        notify_services.reminders_cancel(clinic_id=clinic_id, guarantor_id=guarantor_id, reason="payment")
    except (DomainError, PynamoDBException):
        log.warning("reminders not cancelled after a payment", extra={"clinic_id": clinic_id})


def _post_failure(ctx: _Ctx, item: AttemptItem, result: PaymentResult, event_pk: str | None) -> AttemptView:
    """A declined attempt: status failed and an Unsuccessful receipt of 0 (E5, C4); no entry."""
    now = clock.now()
    pk, key = item.pk, item.attempt_key
    batch_id, business_date, _ = _batch_for(ctx, item, now)
    message = result.message or "The payment was declined. Please use another card."
    receipt_id = new_id("r")
    tx = Tx()
    _transition(tx, pk, key, AWAITING_RESULT, AttemptStatus.FAILED, f"processor: {result.decline_code}", now,
                [AttemptItem.decline_code.set(result.decline_code or "declined"), AttemptItem.message.set(message),
                 AttemptItem.receipt_id.set(receipt_id)]
                + ([AttemptItem.processor_reference.set(result.reference)] if result.reference else []))
    tx.put(_receipt(ctx, pk=pk, guarantor_id=item.guarantor_id, receipt_id=receipt_id, receipt_type=PAYMENT,
                    status="unsuccessful", amount=0, method=item.method, channel=item.channel, batch_id=batch_id,
                    business_date=business_date, now=now, user_id=item.user_id or ONLINE_USER, attempt_key=key,
                    processor=item.processor, processor_reference=result.reference,
                    card_brand=result.card.brand if result.card else None,
                    card_last4=result.card.last4 if result.card else None),
           condition=ReceiptItem.pk.does_not_exist())
    if item.held:
        _release_hold(tx, pk, key)
    _mark_event(tx, event_pk, now)
    try:
        tx.commit()
    except TxFailed as failed:
        if failed.retryable:
            raise TryAgainLater("the payment result could not be saved yet") from failed
    except PynamoDBException as exc:
        if not _ambiguous(exc):
            raise
    return _view(_reload(item))


# --- completing: return page, webhooks, the completer -----------------------------------------


@transient_as_try_again
@clinic_scoped
def payment_attempt_complete(*, clinic_id: str, guarantor_id: str, attempt_key: str) -> AttemptView:
    """Finish an attempt from the processor's own record (the return page): retrieve, apply.

    Safe to call any number of times, concurrently with the webhook and the completer (R34:
    the processor's current state decides, never the browser's parameters). Raises UnknownAttempt.
    """
    pk = keys.guarantor_pk(clinic_id, require_id(guarantor_id, field="guarantor_id"))
    try:
        item = AttemptItem.get(pk, keys.attempt_sk(require_id(attempt_key, field="attempt_key")),
                               consistent_read=True)
    except AttemptItem.DoesNotExist:
        raise UnknownAttempt("payment not found") from None
    return _complete(_context(clinic_id, item.group_id), item)


def _complete(ctx: _Ctx, item: AttemptItem, *, event_pk: str | None = None, stuck: bool = False,
              abandoned: bool = False) -> AttemptView:
    status = AttemptStatus(item.status)
    if status not in PENDING:
        return _view(item)
    now = clock.now()
    if status is AttemptStatus.CREATED:
        if stuck:  # never claimed: the processor was never called
            tx = Tx()
            _transition(tx, item.pk, item.attempt_key, [status], AttemptStatus.CANCELED,
                        "completer: never submitted", now, [AttemptItem.message.set(_MESSAGES[AttemptStatus.CANCELED])])
            _commit_quietly(tx)
            return _view(_reload(item))
        return _view(item)
    lease_live = item.lease_until is not None and item.lease_until > now
    if stuck and status is AttemptStatus.PROCESSING and lease_live:
        return _view(item)
    processor = registry.get(item.processor)
    try:
        if item.processor_reference:
            result = _call(lambda: processor.payment_retrieve(reference=str(item.processor_reference),
                                                              account_id=item.account_id))
        else:
            result = _call(lambda: processor.payment_find(
                idempotency_key=_idempotency_key(ctx.clinic_id, item.guarantor_id, item.attempt_key),
                account_id=item.account_id))
    except ProcessorUnavailable:
        if stuck:
            return _view(item)
        raise
    age = (now - item.created_at).total_seconds()
    if result.outcome is Outcome.NOT_FOUND:
        if stuck and not lease_live:
            tx = Tx()
            _transition(tx, item.pk, item.attempt_key, [status], AttemptStatus.CANCELED,
                        "completer: processor has no record", now,
                        [AttemptItem.message.set(_MESSAGES[AttemptStatus.CANCELED])])
            _release_hold(tx, item.pk, item.attempt_key)
            _commit_quietly(tx)
            return _view(_reload(item))
        return _view(item)
    if stuck and result.outcome in (Outcome.PENDING, Outcome.REQUIRES_ACTION) and result.reference \
            and (abandoned or age > HOSTED_EXPIRY_SECONDS):  # a page or a challenge nobody finished
        result = _call(lambda: processor.payment_cancel(reference=str(result.reference), account_id=item.account_id))
    return _apply(ctx, item, result, event_pk)


@transient_as_try_again
def payment_attempts_complete_stuck(*, clinic_id: str, older_than_seconds: int = STUCK_AFTER_SECONDS) -> Counter[str]:
    """The completer (DESIGN.md rule 4): finish the clinic's attempts pending for longer than
    ``older_than_seconds`` by asking the processor. Charged ones post, declined ones fail,
    never-charged ones and pages unpaid after 15 minutes are canceled. Returns statuses counted.
    Safe to run twice or concurrently (each step is conditional)."""
    with clinic_scope(require_id(clinic_id, field="clinic_id")):
        cutoff = clock.now() - timedelta(seconds=older_than_seconds)
        counts: Counter[str] = Counter()
        contexts: dict[str | None, _Ctx] = {}
        for found in AttemptItem.gsi1.query(keys.attempts_pending_gsi1pk(clinic_id),
                                            AttemptItem.gsi1sk < cutoff.isoformat()):
            if not isinstance(found, AttemptItem):
                continue
            try:
                item = _reload(found)
            except AttemptItem.DoesNotExist:
                continue
            if item.group_id not in contexts:
                contexts[item.group_id] = _context(clinic_id, item.group_id)
            try:
                counts[_complete(contexts[item.group_id], item, stuck=True).status] += 1
            except (TryAgainLater, PaymentInProgress):
                counts["retry_later"] += 1
        return counts


def payment_attempts_complete_all(*, older_than_seconds: int = STUCK_AFTER_SECONDS) -> Counter[str]:
    """Run the completer for every clinic (the scheduled Lambda)."""
    total: Counter[str] = Counter()
    for cid in clinic_ids():
        total.update(payment_attempts_complete_stuck(clinic_id=cid, older_than_seconds=older_than_seconds))
    return total


# --- the webhook inbox -------------------------------------------------------------------------


@dataclass(frozen=True)
class RecordedEvent:
    """Where a webhook event was recorded; ``needs_handling`` when it should be (re)queued."""

    clinic_id: str
    processor: str
    event_id: str
    is_new: bool
    status: str
    needs_handling: bool


def _event_clinic(event: ProcessorEvent) -> str | None:
    """The clinic an event belongs to: its metadata names it and the event's merchant account
    must be one of that clinic's accounts at that processor (R20: else unknown)."""
    cid = event.metadata.get("clinic_id", "")
    try:
        require_id(cid, field="clinic_id")
    except InvalidInput:
        return None
    with clinic_scope(cid):
        cpk = keys.clinic_pk(cid)
        found = {it.sk: it for it in Item.batch_get([(cpk, keys.CLINIC), (cpk, keys.PAYMENTS_CONFIG)])}
    if not isinstance(found.get(keys.CLINIC), ClinicItem):
        return None
    cfg = found.get(keys.PAYMENTS_CONFIG)
    if isinstance(cfg, PaymentsConfigItem):
        processor = cfg.processor
        account_ids = {cfg.account_id, *_plain(cfg.facility_accounts).values(),
                       *_plain(cfg.provider_accounts).values()}
    else:
        processor, account_ids = "sandbox", {default_account(cid)}
    if event.processor != processor or event.account_id not in account_ids:
        return None
    return cid


@transient_as_try_again
def processor_event_record(*, event: ProcessorEvent) -> RecordedEvent:
    """Record a verified webhook event once per event id (conditional put, DESIGN.md rule 3).

    An event for an unknown merchant account or payment is stored apart as ``unmatched`` and
    logged as an alert, and still acknowledged (R20: no retry storm). ``needs_handling`` is True
    for a new event and for a redelivery of one never handled (a crash before the hand-off).
    """
    require_id(event.event_id, field="event_id")
    cid = _event_clinic(event)
    now = clock.now()
    status = EventStatus.RECEIVED if cid else EventStatus.UNMATCHED
    owner = cid or keys.UNMATCHED_CLINIC
    pk = keys.processor_event_pk(owner, event.processor, event.event_id)
    item = ProcessorEventItem(
        pk, keys.EVENT, processor=event.processor, event_id=event.event_id, event_type=event.event_type,
        account_id=event.account_id, reference=event.reference, object_kind=event.object_kind,
        metadata=dict(event.metadata), status=status.value, received_at=now,
        expires_at_epoch=int(now.timestamp()) + EVENT_RETENTION_DAYS * 86400,
    )
    with clinic_scope(owner) if cid else nullcontext():
        try:
            item.save(condition=ProcessorEventItem.pk.does_not_exist())
        except PutError as exc:
            if _code(exc) != "ConditionalCheckFailedException" and not _ambiguous(exc):
                raise
            stored = ProcessorEventItem.get(pk, keys.EVENT, consistent_read=True)
            stale = stored.status == EventStatus.HANDLING.value and (
                stored.lease_until is None or stored.lease_until < now)
            return RecordedEvent(owner, event.processor, event.event_id, False, stored.status,
                                 cid is not None and (stored.status in (EventStatus.RECEIVED.value,
                                                                        EventStatus.FAILED.value) or stale))
    if cid is None:
        log.warning("ALERT processor event for an unknown account or clinic",
                    extra={"processor": event.processor, "event_id": event.event_id, "account": event.account_id})
    return RecordedEvent(owner, event.processor, event.event_id, True, status.value, cid is not None)


@transient_as_try_again
def processor_event_handle(*, clinic_id: str, processor: str, event_id: str) -> str:
    """Handle a recorded event (SQS consumer or inline): claim it (received -> handling), find
    the attempt or refund named in its metadata, re-fetch the payment from the processor (R34)
    and apply it; the posting transaction marks the event handled. Returns the final status.

    Safe to run twice and concurrently: a lost claim returns the stored status. A transient
    failure marks the event failed and re-raises (the queue redelivers).
    """
    with clinic_scope(require_id(clinic_id, field="clinic_id")):
        pk = keys.processor_event_pk(clinic_id, processor, event_id)
        now = clock.now()
        item = ProcessorEventItem(pk, keys.EVENT)
        claimable = ProcessorEventItem.status.is_in(EventStatus.RECEIVED.value, EventStatus.FAILED.value) | (
            (ProcessorEventItem.status == EventStatus.HANDLING.value) & (ProcessorEventItem.lease_until < now))
        try:
            item.update(actions=[ProcessorEventItem.status.set(EventStatus.HANDLING.value),
                                 ProcessorEventItem.lease_until.set(now + timedelta(seconds=EVENT_LEASE_SECONDS))],
                        condition=claimable & ProcessorEventItem.pk.exists(), add_version_condition=False)
        except UpdateError as exc:
            if _code(exc) != "ConditionalCheckFailedException":
                raise
            try:
                return str(ProcessorEventItem.get(pk, keys.EVENT, consistent_read=True).status)
            except ProcessorEventItem.DoesNotExist:
                return "missing"
        event = ProcessorEventItem.get(pk, keys.EVENT, consistent_read=True)
        try:
            final = _event_apply(clinic_id, event, pk)
        except (TryAgainLater, PaymentInProgress, ConcurrentPosting) as exc:
            _event_finish(pk, EventStatus.FAILED, str(exc))
            raise
        if final is not None:
            _event_finish(pk, final)
        crash_point("webhook.after_handle")
        return str(ProcessorEventItem.get(pk, keys.EVENT, consistent_read=True).status)


def _event_apply(clinic_id: str, event: ProcessorEventItem, pk: str) -> EventStatus | None:
    """Apply one event; None when the posting transaction already marked it handled."""
    meta = _plain(event.metadata)
    gid = meta.get("guarantor_id", "")
    try:
        require_id(gid, field="guarantor_id")
    except InvalidInput:
        return EventStatus.UNMATCHED
    gpk = keys.guarantor_pk(clinic_id, gid)
    if event.object_kind == "refund":
        refund_key = meta.get("refund_key", "")
        try:
            refund = RefundItem.get(gpk, keys.refund_sk(require_id(refund_key, field="refund_key")),
                                    consistent_read=True)
        except (RefundItem.DoesNotExist, InvalidInput):
            log.warning("ALERT refund event for an unknown refund", extra={"event_id": event.event_id})
            return EventStatus.UNMATCHED
        if refund.status == RefundStatus.PROCESSING.value:
            _refund_resume(clinic_id, refund)
        return EventStatus.HANDLED
    try:
        attempt = AttemptItem.get(gpk, keys.attempt_sk(require_id(meta.get("attempt_key", ""), field="attempt_key")),
                                  consistent_read=True)
    except (AttemptItem.DoesNotExist, InvalidInput):
        log.warning("ALERT payment event for an unknown payment", extra={"event_id": event.event_id})
        return EventStatus.UNMATCHED
    if attempt.processor_reference and event.reference and attempt.processor_reference != event.reference:
        return EventStatus.IGNORED
    if attempt.status not in {s.value for s in PENDING}:
        return EventStatus.HANDLED  # late or duplicate: the attempt already has its result
    _complete(_context(clinic_id, attempt.group_id), attempt, event_pk=pk)
    stored = ProcessorEventItem.get(pk, keys.EVENT, consistent_read=True)
    return None if stored.status == EventStatus.HANDLED.value else EventStatus.HANDLED


def _event_finish(pk: str, status: EventStatus, error: str | None = None) -> None:
    acts: list[Any] = [ProcessorEventItem.status.set(status.value), ProcessorEventItem.lease_until.remove(),
            ProcessorEventItem.handled_at.set(clock.now())]
    if error:
        acts.append(ProcessorEventItem.error.set(error[:300]))
    try:
        ProcessorEventItem(pk, keys.EVENT).update(
            actions=acts, condition=ProcessorEventItem.status == EventStatus.HANDLING.value,
            add_version_condition=False)
    except UpdateError as exc:
        if _code(exc) != "ConditionalCheckFailedException":
            raise


# --- reference batches -------------------------------------------------------------------------


def _batch_item(clinic_id: str, batch_id: str) -> BatchItem:
    try:
        return BatchItem.get(keys.clinic_pk(clinic_id), keys.batch_sk(require_id(batch_id, field="batch_id")),
                             consistent_read=True)
    except BatchItem.DoesNotExist:
        raise UnknownBatch(f"batch {batch_id} not found") from None


@clinic_scoped
def batch_open_online(*, clinic_id: str, business_date: str) -> BatchView:
    """Open the clinic's online batch for ``business_date`` (``YYYY-MM-DD``, the clinic's local
    date): one conditional put; a second call, a replayed schedule event or a concurrent first
    payment gets the same batch (description "Online payments", user "system"; E3)."""
    day = date.fromisoformat(business_date).isoformat()
    return batch_view(_online_batch_item(clinic_id, day, read_first=False))


@clinic_scoped
def batch_open(*, clinic_id: str, user_id: str, description: str = "Office payments",
               business_date: str | None = None) -> BatchView:
    """Open a staff batch for office and mail payments; a user has one open batch at a time.

    Raises AlreadyExists when the user already has one open.
    """
    require_id(user_id, field="user_id")
    ctx = _context(clinic_id, None)
    day = date.fromisoformat(business_date) if business_date else _local_date(ctx.time_zone, clock.now())
    batch_id = new_id("b")
    cpk = keys.clinic_pk(clinic_id)
    item = BatchItem(cpk, keys.batch_sk(batch_id), batch_id=batch_id, batch_kind="staff",
                     business_date=day.isoformat(), description=description.strip()[:100] or "Office payments",
                     user_id=user_id, status=BatchStatus.OPEN.value, opened_at=clock.now())
    tx = Tx()
    tx.put(item, condition=BatchItem.pk.does_not_exist())
    tx.put(StaffOpenBatchItem(cpk, keys.staff_open_batch_sk(user_id), batch_id=batch_id, is_open=True),
           condition=StaffOpenBatchItem.pk.does_not_exist() | (StaffOpenBatchItem.is_open == False))  # noqa: E712
    try:
        tx.commit()
    except TxFailed as exc:
        if keys.staff_open_batch_sk(user_id) in exc.reasons:
            raise AlreadyExists("you already have an open batch; close it first") from exc
        raise
    return batch_view(item)


def _batch_transition(item: BatchItem, to: BatchStatus, actions: list[Any], tx: Tx | None = None) -> Tx:
    old = BatchStatus(item.status)
    if to not in BATCH_TRANSITIONS[old]:
        raise BatchClosed(f"batch {item.batch_id} is {old.value}; it cannot become {to.value}")
    tx = tx or Tx()
    tx.update(BatchItem(item.pk, item.sk), [BatchItem.status.set(to.value), BatchItem.rev.set(int(item.rev) + 1),
                                            *actions],
              condition=(BatchItem.status == old.value) & (BatchItem.rev == int(item.rev)), versioned=False)
    return tx


@clinic_scoped
def batch_close(*, clinic_id: str, batch_id: str, user_id: str) -> BatchView:
    """Reconcile and close a batch: open -> closing (new online payments now go to the next
    business date), then Query its receipts until two reads agree (GSI lag, R15), then store
    count, sums and checksum and close it (R36). Raises UnknownBatch, BatchClosed."""
    require_id(user_id, field="user_id")
    item = _batch_item(clinic_id, batch_id)
    if item.status == BatchStatus.OPEN.value:
        try:
            _batch_transition(item, BatchStatus.CLOSING, []).commit()
        except TxFailed as exc:
            raise BatchClosed("the batch changed while closing; try again") from exc
        item = _batch_item(clinic_id, batch_id)
    if item.status != BatchStatus.CLOSING.value:
        raise BatchClosed(f"batch {batch_id} is {item.status}")
    totals = totals_of(batch_members(clinic_id, batch_id))
    for _ in range(CLOSE_READS):
        time.sleep(CLOSE_SETTLE_SECONDS)
        again = totals_of(batch_members(clinic_id, batch_id))
        if again == totals:
            break
        totals = again
    now = clock.now()
    tx = _batch_transition(item, BatchStatus.CLOSED, [
        BatchItem.closed_at.set(now), BatchItem.closed_by.set(user_id),
        BatchItem.receipt_count.set(totals.receipt_count), BatchItem.unsuccessful_count.set(totals.unsuccessful_count),
        BatchItem.payments_cents.set(totals.payments_cents), BatchItem.refunds_cents.set(totals.refunds_cents),
        BatchItem.checksum.set(totals.checksum)])
    if item.batch_kind == "staff":
        tx.update(StaffOpenBatchItem(item.pk, keys.staff_open_batch_sk(item.user_id)),
                  [StaffOpenBatchItem.is_open.set(False)],
                  condition=StaffOpenBatchItem.batch_id == batch_id, versioned=False)
    try:
        tx.commit()
    except TxFailed as exc:
        raise BatchClosed("the batch changed while closing; try again") from exc
    return batch_view(_batch_item(clinic_id, batch_id))


@clinic_scoped
def batch_reopen(*, clinic_id: str, batch_id: str, user_id: str) -> BatchView:
    """Reopen a closed batch (not a locked one). A staff batch becomes its owner's open batch
    again (AlreadyExists if the owner has another open). Raises UnknownBatch, BatchClosed."""
    require_id(user_id, field="user_id")
    item = _batch_item(clinic_id, batch_id)
    tx = _batch_transition(item, BatchStatus.OPEN, [BatchItem.archived.set(False)])
    if item.batch_kind == "staff":
        tx.put(StaffOpenBatchItem(item.pk, keys.staff_open_batch_sk(item.user_id), batch_id=batch_id, is_open=True),
               condition=StaffOpenBatchItem.pk.does_not_exist() | (StaffOpenBatchItem.is_open == False))  # noqa: E712
    try:
        tx.commit()
    except TxFailed as exc:
        if keys.staff_open_batch_sk(item.user_id) in exc.reasons:
            raise AlreadyExists("the batch's user has another batch open") from exc
        raise BatchClosed("the batch changed; try again") from exc
    return batch_view(_batch_item(clinic_id, batch_id))


@clinic_scoped
def batch_lock(*, clinic_id: str, batch_id: str, user_id: str) -> BatchView:
    """Lock a closed batch: it can never be reopened. Raises UnknownBatch, BatchClosed."""
    require_id(user_id, field="user_id")
    item = _batch_item(clinic_id, batch_id)
    try:
        _batch_transition(item, BatchStatus.LOCKED, []).commit()
    except TxFailed as exc:
        raise BatchClosed("the batch changed; try again") from exc
    return batch_view(_batch_item(clinic_id, batch_id))


@clinic_scoped
def batch_archive(*, clinic_id: str, batch_id: str, user_id: str) -> BatchView:
    """Archive a closed or locked batch (hidden from lists unless archived ones are asked for)."""
    require_id(user_id, field="user_id")
    item = _batch_item(clinic_id, batch_id)
    if item.status not in (BatchStatus.CLOSED.value, BatchStatus.LOCKED.value):
        raise BatchClosed("only a closed or locked batch can be archived")
    item.update(actions=[BatchItem.archived.set(True)], condition=BatchItem.status == item.status,
                add_version_condition=False)
    return batch_view(_batch_item(clinic_id, batch_id))


@clinic_scoped
def batch_verify(*, clinic_id: str, batch_id: str) -> list[str]:
    """Recompute a closed batch's members and compare with what was stored at close (R36)."""
    item = _batch_item(clinic_id, batch_id)
    if item.checksum is None:
        return []
    totals = totals_of(batch_members(clinic_id, batch_id))
    return [] if totals.checksum == item.checksum else [
        f"batch {batch_id}: {totals.receipt_count} receipts now, {item.receipt_count} at close"]


def batches_open_due(*, at: datetime) -> list[str]:
    """The scheduled opener: for each clinic whose local day starts in the hour of ``at`` (the
    event's scheduled time, not now), open that day's online batch. Returns the batch ids
    (replays and late deliveries converge on the same batches, DESIGN.md rule 5)."""
    opened = []
    for cid in clinic_ids():
        with clinic_scope(cid):
            try:
                tz = ClinicItem.get(keys.clinic_pk(cid), keys.CLINIC).time_zone
            except ClinicItem.DoesNotExist:
                continue
        local = at.astimezone(ZoneInfo(tz))
        if local.hour == 0:
            opened.append(batch_open_online(clinic_id=cid, business_date=local.date().isoformat()).batch_id)
    return opened


@clinic_scoped
def batch_reconcile(*, clinic_id: str, batch_id: str) -> list[str]:
    """Compare a batch's card receipts with the processor's settlement report for its business
    date (the clinic's local day, midnight to midnight in its zone, as UTC instants): payments
    the processor settled that the batch lacks, and the reverse."""
    batch = _batch_item(clinic_id, batch_id)
    ctx = _context(clinic_id, None)
    day = date.fromisoformat(batch.business_date)
    zone = ZoneInfo(ctx.time_zone)
    start = datetime.combine(day, datetime.min.time(), zone).astimezone(UTC)
    end = datetime.combine(day + timedelta(days=1), datetime.min.time(), zone).astimezone(UTC)
    report = registry.get(ctx.processor).settlement_report(account_id=ctx.account_id, start=start, end=end)
    settled = {line.reference for line in report if line.kind == "charge"}
    ours = {r.processor_reference for r in batch_members(clinic_id, batch_id)
            if r.receipt_type == PAYMENT and r.status != "unsuccessful" and r.processor_reference}
    return ([f"settled but not in the batch: {ref}" for ref in sorted(settled - ours)]
            + [f"in the batch but not settled: {ref}" for ref in sorted(ours - settled)])


# --- office and mail payments ---------------------------------------------------------------


def _open_staff_batch(clinic_id: str, user_id: str) -> BatchItem:
    cpk = keys.clinic_pk(clinic_id)
    try:
        pointer = StaffOpenBatchItem.get(cpk, keys.staff_open_batch_sk(require_id(user_id, field="user_id")),
                                         consistent_read=True)
    except StaffOpenBatchItem.DoesNotExist:
        raise BatchClosed("open a batch before posting payments") from None
    batch = _batch_item(clinic_id, pointer.batch_id)
    if not pointer.is_open or batch.status != BatchStatus.OPEN.value:
        raise BatchClosed("your batch is closed; open a new batch")
    return batch


@transient_as_try_again
@clinic_scoped
def office_payment_post(*, clinic_id: str, guarantor_id: str, user_id: str, amount_cents: int, method: str,
                        receipt_key: str, channel: str = "office", check_number: str | None = None,
                        copay_cents: int = 0, applications: Mapping[str, int] | None = None,
                        group_id: str | None = None) -> ReceiptView:
    """Post a cash or check payment taken at the desk or by mail into the user's open batch.

    ``receipt_key`` makes it exactly once (a second call returns the same receipt). Applied to
    ``applications`` when given, else auto-posted per the group (E4; a copay amount blocks
    auto-post and the money waits in escrow). Card payments go through the processor's hosted
    page (:func:`office_card_payment_start`): no staff card entry (R5). Raises InvalidInput,
    BatchClosed (no open batch, or closed meanwhile), UnknownGuarantor, InsufficientBalance.
    """
    cents = require_positive_cents(amount_cents)
    if method not in OFFICE_METHODS:
        raise InvalidInput(f"method must be one of {sorted(OFFICE_METHODS)}")
    if channel not in OFFICE_CHANNELS:
        raise InvalidInput(f"channel must be one of {sorted(OFFICE_CHANNELS)}")
    if copay_cents < 0 or copay_cents > cents:
        raise InvalidInput("copay_cents must be between 0 and the amount")
    require_id(receipt_key, field="receipt_key")
    pk = keys.guarantor_pk(clinic_id, require_id(guarantor_id, field="guarantor_id"))
    receipt_id = "r_" + hashlib.sha256(f"{guarantor_id}:{receipt_key}".encode()).hexdigest()[:16]
    batch = _open_staff_batch(clinic_id, user_id)
    ctx = _context(clinic_id, group_id)
    if applications is not None:
        plan = dict(applications)
    else:
        lines = account_selectors.service_lines_list(clinic_id=clinic_id, guarantor_id=guarantor_id)
        plan = rules.auto_post_plan(amount_cents=cents, lines=lines, auto_post=ctx.settings.auto_post,
                                    copay_cents=copay_cents)
    now = clock.now()

    def also(tx: Tx, seq: int) -> None:
        tx.put(_receipt(ctx, pk=pk, guarantor_id=guarantor_id, receipt_id=receipt_id, receipt_type=PAYMENT,
                        status="paid", amount=cents, method=method, channel=channel, batch_id=batch.batch_id,
                        business_date=batch.business_date, now=now, user_id=user_id, check_number=check_number,
                        entry_seq=seq, applied=dict(plan), escrow_cents=cents - sum(plan.values()),
                        copay_cents=copay_cents),
               condition=ReceiptItem.pk.does_not_exist())
        tx.check(BatchItem, batch.pk, batch.sk, BatchItem.status == BatchStatus.OPEN.value)

    try:
        accounts.patient_payment_post(clinic_id=clinic_id, guarantor_id=guarantor_id, amount_cents=cents,
                                      applications=plan, source_key=f"office:{receipt_key}", method=method,
                                      also=also)
    except AlreadyPosted:
        pass
    except ConditionFailed as exc:
        if batch.sk in exc.keys:
            raise BatchClosed("your batch was closed; open a new batch") from exc
        raise
    stored = ReceiptItem.get(pk, keys.receipt_sk(receipt_id), consistent_read=True)
    if int(stored.amount_cents) != cents or stored.method != method:
        raise IdempotencyConflict("this receipt key was used for a different payment")
    _reminders_cancel(clinic_id, guarantor_id)
    return receipt_view(stored)


@transient_as_try_again
@clinic_scoped
def office_card_payment_start(*, clinic_id: str, guarantor_id: str, user_id: str, attempt_key: str,
                              amount_cents: int, channel: str = "office", group_id: str | None = None) -> AttemptView:
    """A card payment taken by staff: the processor's hosted page (handed to the guarantor or the
    processor's own phone tools; never a card field in our app, R5). The receipt goes into the
    user's open batch. Raises as :func:`payment_attempt_start` and BatchClosed."""
    if channel not in OFFICE_CHANNELS:
        raise InvalidInput(f"channel must be one of {sorted(OFFICE_CHANNELS)}")
    batch = _open_staff_batch(clinic_id, user_id)
    return _start(clinic_id=clinic_id, guarantor_id=guarantor_id, attempt_key=attempt_key,
                  choice=rules.AmountChoice.OTHER.value, requested_cents=amount_cents, method="card",
                  flow="hosted", token=None, card_id=None, store_card=False, group_id=group_id,
                  channel=channel, user_id=user_id, batch_id=batch.batch_id)


# --- split payments -------------------------------------------------------------------------


@transient_as_try_again
@clinic_scoped
def payment_split_submit(*, clinic_id: str, guarantor_id: str, attempt_key: str, token: str,
                         parts: Mapping[str, int], group_id: str | None = None) -> list[AttemptView]:
    """Pay several facilities' (or providers') balances with one card: one processor transaction
    per merchant account, each its own attempt ``<key>.<n>`` with its own receipt applied to its
    part's lines; wallets are off (PRODUCT.md §5, REFERENCE-PORTAL.md C6).

    ``parts`` maps facility (or provider) id -> cents, per the group's split mode. Raises
    PaymentNotAllowed (split off, unknown part, above the part's balance), and as
    :func:`payment_attempt_submit` for each part.
    """
    require_id(attempt_key, field="attempt_key")
    if len(attempt_key) > 56:
        raise InvalidInput("attempt_key must be at most 56 characters for a split payment")
    ctx = _context(clinic_id, group_id)
    mode = ctx.settings.split_payments
    if mode == "none" or not registry.get(ctx.processor).capabilities.split:
        raise PaymentNotAllowed("split payments are not enabled")
    if not parts:
        raise PaymentNotAllowed("choose what to pay")
    figures = _figures(keys.guarantor_pk(clinic_id, require_id(guarantor_id, field="guarantor_id")), ctx)
    balances: Counter[str] = Counter()
    for part in figures.parts:
        balances[part.facility_id if mode == "facility" else part.provider_id] += part.current_balance
    accounts_by_part = ctx.facility_accounts if mode == "facility" else ctx.provider_accounts
    for part_id, cents in parts.items():
        require_positive_cents(cents, field=f"parts[{part_id}]")
        if part_id not in balances:
            raise PaymentNotAllowed(f"nothing is owed to {mode} {part_id}")
        if cents > balances[part_id] and not ctx.settings.prepayment_allowed:
            raise PaymentNotAllowed(f"the amount for {mode} {part_id} is more than its balance")
    views = []
    for n, (part_id, cents) in enumerate(sorted(parts.items()), start=1):
        views.append(_start(clinic_id=clinic_id, guarantor_id=guarantor_id, attempt_key=f"{attempt_key}.{n}",
                            choice=rules.AmountChoice.OTHER.value, requested_cents=cents, method="card",
                            flow="token", token=token, card_id=None, store_card=False, group_id=group_id,
                            part_key=f"{mode}:{part_id}", split_group=attempt_key,
                            account_id=accounts_by_part.get(part_id) or ctx.account_id))
    return views


# --- refunds and voids -------------------------------------------------------------------------


@transient_as_try_again
@clinic_scoped
def refund_issue(*, clinic_id: str, guarantor_id: str, receipt_id: str, amount_cents: int, refund_key: str,
                 user_id: str, reason: str = "", void: bool = False) -> RefundView:
    """Refund (or void, while its batch is open) part or all of a payment receipt.

    Three phases like a payment (R38): the amount is reserved on the receipt under its revision
    together with the refund item keyed by ``refund_key`` (so concurrent refunds never exceed
    what was received, and a retried request refunds once); the processor refunds with its own
    idempotency key; one posting transaction writes the Patient Refund receipt, the entry that
    takes the money back out of escrow and un-applies lines (newest first), and the original
    receipt's new status. Cash and check receipts skip the processor.

    Raises InvalidAmount, UnknownReceipt, RefundNotAllowed, IdempotencyConflict, TryAgainLater.
    """
    cents = require_positive_cents(amount_cents)
    require_id(refund_key, field="refund_key")
    require_id(user_id, field="user_id")
    pk = keys.guarantor_pk(clinic_id, require_id(guarantor_id, field="guarantor_id"))
    rsk = keys.receipt_sk(require_id(receipt_id, field="receipt_id"))
    fingerprint = _fingerprint(receipt=receipt_id, amount=cents, void=void)
    for attempt in range(5):
        found = {it.sk: it for it in Item.batch_get([(pk, keys.refund_sk(refund_key)), (pk, rsk)],
                                                    consistent_read=True)}
        existing = found.get(keys.refund_sk(refund_key))
        if isinstance(existing, RefundItem):
            if existing.fingerprint != fingerprint:
                raise IdempotencyConflict("this refund key was used for a different refund")
            return _refund_resume(clinic_id, existing)
        receipt = found.get(rsk)
        if not isinstance(receipt, ReceiptItem) or receipt.receipt_type != PAYMENT:
            raise UnknownReceipt(f"payment receipt {receipt_id} not found")
        if receipt.status in ("unsuccessful", "voided") or int(receipt.amount_cents) <= 0:
            raise RefundNotAllowed("this receipt has nothing to refund")
        left = int(receipt.amount_cents) - int(receipt.refund_reserved_cents)
        if cents > left:
            raise RefundNotAllowed(f"at most {left} cents of this receipt can still be refunded")
        if void:
            if cents != int(receipt.amount_cents) or int(receipt.refund_reserved_cents):
                raise RefundNotAllowed("a void cancels the whole payment; refund part of it instead")
            if _batch_item(clinic_id, receipt.batch_id).status != BatchStatus.OPEN.value:
                raise RefundNotAllowed("the payment's batch is closed; refund it instead of voiding")
        now = clock.now()
        refund = RefundItem(pk, keys.refund_sk(refund_key), refund_key=refund_key, receipt_id=receipt_id,
                            status=RefundStatus.PROCESSING.value, fingerprint=fingerprint, amount_cents=cents,
                            void=void, reason=reason[:200] or "refund", user_id=user_id, created_at=now,
                            updated_at=now)
        tx = Tx()
        tx.put(refund, condition=RefundItem.pk.does_not_exist())
        reserved = int(receipt.refund_reserved_cents) + cents
        tx.update(ReceiptItem(pk, rsk), [ReceiptItem.refund_reserved_cents.set(reserved),
                                         ReceiptItem.rev.set(int(receipt.rev) + 1)],
                  condition=ReceiptItem.rev == int(receipt.rev), versioned=False)
        try:
            tx.commit()
        except (TxFailed, TryAgainLater):
            _sleep_jittered(attempt)
            continue
        return _refund_resume(clinic_id, refund)
    raise TryAgainLater("the receipt is busy; try the refund again")


def _refund_resume(clinic_id: str, refund: RefundItem) -> RefundView:
    """Phases 2 and 3 of a refund reserved before (also the retry and webhook path)."""
    if refund.status != RefundStatus.PROCESSING.value:
        return refund_view(refund)
    pk = refund.pk
    receipt = ReceiptItem.get(pk, keys.receipt_sk(refund.receipt_id), consistent_read=True)
    result: RefundResult | None = None
    if receipt.processor and receipt.processor_reference:
        attempt = AttemptItem.get(pk, keys.attempt_sk(str(receipt.attempt_key)), consistent_read=True)
        processor = registry.get(receipt.processor)
        request = RefundRequest(
            idempotency_key=f"rf_{clinic_id}_{receipt.guarantor_id}_{refund.refund_key}",
            reference=receipt.processor_reference, amount_cents=int(refund.amount_cents),
            account_id=attempt.account_id,
            metadata={"clinic_id": clinic_id, "guarantor_id": receipt.guarantor_id,
                      "refund_key": refund.refund_key, "receipt_id": receipt.receipt_id},
            void=bool(refund.void))
        try:
            result = _call(lambda: processor.refund(request))
        except ProcessorTimeout:
            return refund_view(refund)  # the webhook or a retry of the same refund key finishes it
        except ProcessorRejected as exc:
            result = RefundResult(Outcome.DECLINED, message=str(exc))
        crash_point("refund.after_processor")
        if result.outcome is Outcome.DECLINED:
            return _refund_fail(refund, result.message)
        if result.outcome is not Outcome.SUCCEEDED:
            return refund_view(refund)
    return _refund_post(clinic_id, refund, result.reference if result else None)


def _refund_fail(refund: RefundItem, message: str) -> RefundView:
    now = clock.now()
    tx = Tx()
    tx.update(RefundItem(refund.pk, refund.sk),
              [RefundItem.status.set(RefundStatus.FAILED.value), RefundItem.message.set(message[:300]),
               RefundItem.updated_at.set(now)],
              condition=RefundItem.status == RefundStatus.PROCESSING.value, versioned=False)
    tx.update(ReceiptItem(refund.pk, keys.receipt_sk(refund.receipt_id)),
              [ReceiptItem.refund_reserved_cents.set(ReceiptItem.refund_reserved_cents - int(refund.amount_cents)),
               ReceiptItem.rev.set(ReceiptItem.rev + 1)], condition=ReceiptItem.pk.exists(), versioned=False)
    _commit_quietly(tx)
    return refund_view(RefundItem.get(refund.pk, refund.sk, consistent_read=True))


def _refund_lines(pk: str, clinic_id: str, guarantor_id: str, receipt: ReceiptItem, cents: int) -> list[Line]:
    """The entry lines of a refund: money out of patient cash, taken from escrow first, then by
    un-applying this receipt's lines, newest first, then other paid lines (never below zero)."""
    balance = BalanceItem.get(pk, keys.BALANCE, consistent_read=True)
    escrow = max(0, int(balance.totals.get(ESCROW, 0)))
    lines = [Line(Account.PAT_CASH, -cents)]
    take = min(escrow, cents)
    if take:
        lines.append(Line(Account.ESCROW, take))
    left = cents - take
    service_lines = list(reversed(account_selectors.service_lines_list(clinic_id=clinic_id, guarantor_id=guarantor_id)))
    ordered = [sl for sl in service_lines if sl.line_id in receipt.applied] + \
              [sl for sl in service_lines if sl.line_id not in receipt.applied]
    for sl in ordered:
        if left <= 0:
            break
        if sl.in_collections:
            continue
        back = min(left, sl.money.get(PAT_PAID, 0))
        if back > 0:
            lines.append(Line(Account.PAT_AR, back, sl.line_id))
            left -= back
    if left > 0:
        raise RefundNotAllowed("the refund is more than this guarantor's received money can cover")
    return lines


def _refund_batch(ctx: _Ctx, user_id: str, now: datetime) -> tuple[str, str]:
    """A cash or check refund goes into the refunding user's open batch, else the online one."""
    try:
        batch = _open_staff_batch(ctx.clinic_id, user_id)
    except BatchClosed:
        return _online_batch(ctx, now)
    return batch.batch_id, batch.business_date


def _refund_post(clinic_id: str, refund: RefundItem, processor_refund: str | None) -> RefundView:
    pk = refund.pk
    cents = int(refund.amount_cents)
    ctx = _context(clinic_id, None)
    for attempt in range(4):
        receipt = ReceiptItem.get(pk, keys.receipt_sk(refund.receipt_id), consistent_read=True)
        now = clock.now()
        batch_id, day = _online_batch(ctx, now) if receipt.processor else _refund_batch(ctx, refund.user_id, now)
        lines = _refund_lines(pk, clinic_id, receipt.guarantor_id, receipt, cents)
        refunded = int(receipt.refunded_cents) + cents
        new_status = "voided" if refund.void else ("refunded" if refunded >= int(receipt.amount_cents)
                                                   else "partially_refunded")
        refund_receipt_id = new_id("r")

        def also(tx: Tx, seq: int, receipt: ReceiptItem = receipt, batch_id: str = batch_id, day: str = day,
                 refunded: int = refunded, new_status: str = new_status, rid: str = refund_receipt_id,
                 now: datetime = now) -> None:
            tx.update(RefundItem(pk, refund.sk),
                      [RefundItem.status.set(RefundStatus.SUCCEEDED.value), RefundItem.refund_receipt_id.set(rid),
                       RefundItem.processor_reference.set(processor_refund or ""), RefundItem.updated_at.set(now)],
                      condition=RefundItem.status == RefundStatus.PROCESSING.value, versioned=False)
            tx.put(_receipt(ctx, pk=pk, guarantor_id=receipt.guarantor_id, receipt_id=rid, receipt_type=REFUND,
                            status="refunded", amount=cents, method=receipt.method, channel=receipt.channel,
                            batch_id=batch_id, business_date=day, now=now, user_id=refund.user_id,
                            processor=receipt.processor, processor_reference=processor_refund,
                            card_brand=receipt.card_brand, card_last4=receipt.card_last4, entry_seq=seq,
                            original_receipt_id=receipt.receipt_id, refund_key=refund.refund_key),
                   condition=ReceiptItem.pk.does_not_exist())
            tx.update(ReceiptItem(pk, receipt.sk),
                      [ReceiptItem.refunded_cents.set(refunded), ReceiptItem.status.set(new_status),
                       ReceiptItem.rev.set(int(receipt.rev) + 1)],
                      condition=ReceiptItem.rev == int(receipt.rev), versioned=False)
            if receipt.attempt_key:
                to = AttemptStatus.REFUNDED if new_status != "partially_refunded" else AttemptStatus.PARTIALLY_REFUNDED
                _transition(tx, pk, receipt.attempt_key, [AttemptStatus.SUCCEEDED, AttemptStatus.PARTIALLY_REFUNDED],
                            to, f"refund {refund.refund_key}", now)

        try:
            ledger.entry_post(clinic_id=clinic_id, guarantor_id=receipt.guarantor_id, code=EntryCode.PATIENT_REFUND,
                              lines=lines, source_key=f"refund:{refund.refund_key}",
                              meta={"receipt": receipt.receipt_id}, also=also)
            break
        except AlreadyPosted:
            break
        except (ConditionFailed, InsufficientBalance) as exc:
            if isinstance(exc, ConditionFailed) and refund.sk in exc.keys:
                break
            _sleep_jittered(attempt)
    else:
        raise TryAgainLater("the refund is taken; its posting will be retried")
    return refund_view(RefundItem.get(pk, refund.sk, consistent_read=True))


# --- stored cards -----------------------------------------------------------------------------


@clinic_scoped
def card_store(*, clinic_id: str, guarantor_id: str, token: str, group_id: str | None = None) -> CardView:
    """Store a card the processor tokenized (its setup page, or staff adding one through the
    processor's tools): keep the reusable token, brand, last 4 and expiry (E1, R2).

    Raises PaymentNotAllowed when the group or the processor does not store cards.
    """
    pk = keys.guarantor_pk(clinic_id, require_id(guarantor_id, field="guarantor_id"))
    ctx = _context(clinic_id, group_id)
    processor = registry.get(ctx.processor)
    if not ctx.settings.stored_cards or not processor.capabilities.stored_cards:
        raise PaymentNotAllowed("stored cards are not enabled")
    if not isinstance(token, str) or not 3 <= len(token) <= 100:
        raise InvalidInput("token is not a processor token")
    profile = Item.batch_get([(pk, keys.PROFILE)])
    if not any(isinstance(p, GuarantorItem) for p in profile):
        raise UnknownGuarantor(f"guarantor {guarantor_id} not found")
    customer = _customer_id(ctx, pk, guarantor_id, ctx.processor, ctx.account_id)
    reusable, details = processor.card_save(token=token, customer=customer, account_id=ctx.account_id)
    card_id = new_id("card")
    item = CardItem(pk, keys.card_sk(card_id), card_id=card_id, processor=ctx.processor, account_id=ctx.account_id,
                    token=reusable, customer=customer, brand=details.brand, last4=details.last4,
                    exp_month=details.exp_month, exp_year=details.exp_year, created_at=clock.now())
    item.save(condition=CardItem.pk.does_not_exist())
    return card_view(item)


@clinic_scoped
def card_remove(*, clinic_id: str, guarantor_id: str, card_id: str) -> None:
    """Remove a stored card: detached at the processor and kept here inactive (never edited).

    Safe to run twice, also at once (a double-submitted form): the processors' detach is
    idempotent, and the flag moves only from active, so the first removal time stands.
    Another guarantor's card id is the same miss as an unknown one (R16). Raises UnknownCard.
    """
    pk = keys.guarantor_pk(clinic_id, require_id(guarantor_id, field="guarantor_id"))
    try:
        card = CardItem.get(pk, keys.card_sk(require_id(card_id, field="card_id")), consistent_read=True)
    except CardItem.DoesNotExist:
        raise UnknownCard("this stored card is not available") from None
    if not card.active:
        return
    registry.get(card.processor).card_remove(token=card.token, account_id=card.account_id)
    try:
        card.update(actions=[CardItem.active.set(False), CardItem.removed_at.set(clock.now())],
                    condition=CardItem.active == True, add_version_condition=False)  # noqa: E712
    except UpdateError as exc:
        if exc.cause_response_code != "ConditionalCheckFailedException":
            raise


# --- set-up -----------------------------------------------------------------------------------


@dataclass(frozen=True)
class PaymentsConfig:
    processor: str
    account_id: str
    facility_accounts: dict[str, str] = field(default_factory=dict)
    provider_accounts: dict[str, str] = field(default_factory=dict)


@clinic_scoped
def payments_config_set(*, clinic_id: str, processor: str, account_id: str,
                        facility_accounts: Mapping[str, str] | None = None,
                        provider_accounts: Mapping[str, str] | None = None) -> PaymentsConfig:
    """Set the clinic's processor and merchant account(s) (Stripe: connected ``acct_`` ids).

    Raises InvalidInput for an unconfigured processor or a malformed account id.
    """
    if processor not in registry.aliases():
        raise InvalidInput(f"processor must be one of {registry.aliases()}")
    for acct in [account_id, *(facility_accounts or {}).values(), *(provider_accounts or {}).values()]:
        require_id(acct, field="account_id")
    item = PaymentsConfigItem(keys.clinic_pk(clinic_id), keys.PAYMENTS_CONFIG, processor=processor,
                              account_id=account_id, facility_accounts=dict(facility_accounts or {}),
                              provider_accounts=dict(provider_accounts or {}), updated_at=clock.now())
    item.save()
    return PaymentsConfig(processor, account_id, dict(facility_accounts or {}), dict(provider_accounts or {}))
