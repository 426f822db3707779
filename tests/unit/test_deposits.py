"""Deposit math: every deposit equals its payout to the minor unit, whatever the input."""

from __future__ import annotations

import io
import json
import random
from datetime import UTC, datetime, timedelta
from decimal import Decimal
from pathlib import Path
from typing import Any

import fastavro
import pytest
from hypothesis import HealthCheck, assume, given, settings
from hypothesis import strategies as st

from ledgerstream.accounting import UnmappedError, deposit_commands, plan_deposit
from ledgerstream.accounting.deposits import (
    MAX_COMMAND_BYTES,
    Settled,
    composition,
    on_suspense,
)
from ledgerstream.accounting.model import BalanceTransaction, FeeDetail, Payout
from ledgerstream.commands import find_refs
from ledgerstream.money import step, to_minor
from ledgerstream.settings import AccountingSettings

T0 = datetime(2025, 3, 1, tzinfo=UTC)
PAYOUT_CURRENCIES = ["usd", "eur", "jpy", "kwd", "isk", "huf", "gbp"]
PRESENTMENT = ["usd", "eur", "gbp", "jpy", "kwd", "bhd", "krw", "chf"]
CATEGORIES = [
    "charge",
    "charge",
    "charge",
    "refund",
    "dispute",
    "dispute_reversal",
    "fee",
    "adjustment",
    "refund_failure",
    "some_new_category",
]
FEE_TYPES = ["stripe_fee", "application_fee", "payment_method_passthrough_fee", "tax"]


def cfg(**over: Any) -> AccountingSettings:
    ids = {c.upper(): str(11 + i) for i, c in enumerate(PAYOUT_CURRENCIES + PRESENTMENT)}
    banks = {c.upper(): str(500 + i) for i, c in enumerate(PAYOUT_CURRENCIES)}
    return AccountingSettings(netsuite_currency_ids=ids, netsuite_bank_account_ids=banks, **over)


@st.composite
def transactions(draw: st.DrawFn, currency: str) -> list[BalanceTransaction]:
    unit = step(currency, payout=True) * (10 if currency == "kwd" else 1)
    count = draw(st.integers(min_value=0, max_value=25))
    out = []
    for i in range(count):
        category = draw(st.sampled_from(CATEGORIES))
        magnitude = draw(st.integers(min_value=1, max_value=2_000_000)) * unit
        sign = (
            -1
            if category in ("refund", "dispute", "fee")
            else (draw(st.sampled_from([-1, 1])) if category == "adjustment" else 1)
        )
        amount = sign * magnitude
        fees = [
            FeeDetail(
                draw(st.integers(min_value=-500, max_value=50_000)) * unit,
                currency,
                draw(st.sampled_from(FEE_TYPES)),
            )
            for _ in range(draw(st.integers(min_value=0, max_value=3)))
        ]
        fee = sum(f.amount for f in fees) + draw(st.sampled_from([0, 0, 0, unit]))  # unitemised
        rate = source_amount = source_currency = None
        if category in ("charge", "refund") and draw(st.booleans()):
            source_currency = draw(st.sampled_from(PRESENTMENT))
            rate = Decimal(draw(st.integers(min_value=1, max_value=3_000_000))) / 10_000
            source_amount = draw(st.integers(min_value=1, max_value=1_000_000))
        prefix = {"charge": "ch_", "refund": "re_", "dispute": "dp_"}.get(category, "x_")
        out.append(
            BalanceTransaction(
                id=f"txn_{i:04d}",
                amount=amount,
                currency=currency,
                fee=fee,
                fee_details=tuple(fees),
                net=amount - fee,
                reporting_category=category,
                type=category,
                source=f"{prefix}{i:04d}",
                created=T0 + timedelta(minutes=i),
                exchange_rate=rate,
                source_amount=source_amount,
                source_currency=source_currency,
            )
        )
    return out


def payout_for(txns: list[BalanceTransaction], currency: str, amount: int | None = None) -> Payout:
    total = sum(t.net for t in txns) if amount is None else amount
    return Payout(
        id="po_TEST",
        amount=total,
        currency=currency,
        status="paid",
        automatic=True,
        arrival_date=T0 + timedelta(days=2),
        created=T0 + timedelta(days=1),
        balance_transaction="txn_payout",
    )


def body_total(body: dict[str, Any], currency: str) -> int:
    """The deposit total as NetSuite would compute it from the request body."""

    def minor(value: Any) -> int:
        return to_minor(Decimal(str(value)), currency)

    payments = sum(minor(x["paymentAmount"]) for x in body.get("payment", {}).get("items", []))
    other = sum(minor(x["amount"]) for x in body.get("other", {}).get("items", []))
    cashback = sum(minor(x["amount"]) for x in body.get("cashback", {}).get("items", []))
    return payments + other - cashback


@st.composite
def merchant(draw: st.DrawFn) -> tuple[str, list[BalanceTransaction]]:
    currency = draw(st.sampled_from(PAYOUT_CURRENCIES))
    txns = draw(transactions(currency))
    assume(sum(t.net for t in txns) >= 0)
    return currency, txns


HEAVY = settings(max_examples=400, deadline=None, suppress_health_check=[HealthCheck.too_slow])


@HEAVY
@given(merchant())
def test_deposit_lines_sum_exactly_to_the_payout(
    case: tuple[str, list[BalanceTransaction]],
) -> None:
    currency, txns = case
    payout = payout_for(txns, currency)
    plan = plan_deposit(payout, txns, cfg(), expected=len(txns))
    assert plan.complete, plan.problems
    assert plan.total == payout.amount
    [command] = deposit_commands(plan, cfg())
    assert body_total(command.body, currency) == payout.amount
    # what the status page and the demo's report show adds up to the same total
    assert sum(composition(command.body, currency).values()) == payout.amount
    assert command.payout_amount == payout.amount and command.payout_currency == currency


@HEAVY
@given(merchant(), st.randoms(use_true_random=False))
def test_order_and_duplicates_do_not_matter(
    case: tuple[str, list[BalanceTransaction]], rnd: random.Random
) -> None:
    currency, txns = case
    payout = payout_for(txns, currency)
    reference = deposit_commands(plan_deposit(payout, txns, cfg()), cfg())
    shuffled = txns + rnd.sample(txns, k=len(txns) // 2)  # duplicates, as a replay delivers
    rnd.shuffle(shuffled)
    again = deposit_commands(plan_deposit(payout, shuffled, cfg()), cfg())
    assert [c.body_json for c in again] == [c.body_json for c in reference]
    assert [c.command_id for c in again] == [c.command_id for c in reference]


@HEAVY
@given(merchant(), st.data())
def test_a_missing_transaction_waits_or_posts_a_labelled_variance(
    case: tuple[str, list[BalanceTransaction]], data: st.DataObject
) -> None:
    currency, txns = case
    assume(any(t.net for t in txns))
    payout = payout_for(txns, currency)
    missing = data.draw(st.sampled_from([t for t in txns if t.net]))
    received = [t for t in txns if t is not missing]
    plan = plan_deposit(payout, received, cfg(), expected=len(txns))
    assert not plan.complete
    assert plan.variance == missing.net
    assert deposit_commands(plan, cfg(deposit_variance_policy="wait")) == []
    [posted] = deposit_commands(plan, cfg(deposit_variance_policy="post"))
    assert body_total(posted.body, currency) == payout.amount
    assert "POSTED WITH VARIANCE" in posted.body["memo"]
    labelled = [
        x
        for sub in ("other", "cashback")
        for x in posted.body.get(sub, {}).get("items", [])
        if x["memo"].startswith("Stripe variance")
    ]
    assert len(labelled) == 1
    assert labelled[0]["account"] == {"id": cfg().netsuite_suspense_account_id}


@HEAVY
@given(merchant())
def test_unsynced_sources_go_to_suspense_and_still_balance(
    case: tuple[str, list[BalanceTransaction]],
) -> None:
    currency, txns = case
    payout = payout_for(txns, currency)
    blocked = {t.source for t in txns[::3]}

    def resolve(t: BalanceTransaction) -> Settled | None:
        if t.source in blocked:
            return None
        kind = "customerPayment" if t.reporting_category == "charge" else "customerRefund"
        return Settled(kind, t.source or t.id)

    plan = plan_deposit(payout, txns, cfg(), resolve=resolve)
    [command] = deposit_commands(plan, cfg())
    assert body_total(command.body, currency) == payout.amount
    referenced = {
        item["$ref"]["externalId"] for item in command.body.get("payment", {}).get("items", [])
    }
    assert not referenced & blocked


@HEAVY
@given(merchant(), st.data(), st.sampled_from([10_000, 3]))
def test_records_never_written_go_to_suspense_and_the_deposit_still_balances(
    case: tuple[str, list[BalanceTransaction]], data: st.DataObject, cap: int
) -> None:
    """Issue 12: a deposit whose payments NetSuite never got (blocked through a parent, a
    second charge skipped, a dead-lettered record) posts after the sink's wait with those lines
    on suspense, each part keeping its total."""
    currency, txns = case
    payout = payout_for(txns, currency)
    settings_ = cfg(deposit_max_lines=cap)
    commands = deposit_commands(plan_deposit(payout, txns, settings_), settings_)
    for number, command in enumerate(commands):
        refs = find_refs(command.body)
        missing = data.draw(st.lists(st.sampled_from(refs), unique=True) if refs else st.just([]))
        assert command.suspense_account == settings_.netsuite_suspense_account_id
        body = on_suspense(command.body, missing, command.suspense_account)
        assert body is not None
        assert body_total(body, currency) == (payout.amount if number == 0 else 0)
        assert not set(find_refs(body)) & set(missing)
        labelled = [
            x["memo"]
            for sub in ("other", "cashback")
            for x in body.get(sub, {}).get("items", [])
            if x["account"] == {"id": settings_.netsuite_suspense_account_id}
        ]
        for _, external_id in missing:
            assert sum(external_id in memo for memo in labelled) == 1, external_id
            assert external_id in body["memo"] or len(missing) > 10
    # a missing record that is not one of the deposit's payments: nothing to move
    if commands:
        assert on_suspense(commands[0].body, [("invoice", "in_X")], "105") is None


def test_currency_conversion_rounding_goes_to_a_conversion_line() -> None:
    # EUR 10.00 at 1.08235 = USD 10.8235: Stripe settled 10.83, NetSuite books 10.82
    txn = BalanceTransaction(
        id="txn_fx",
        amount=1083,
        currency="usd",
        fee=61,
        fee_details=(FeeDetail(61, "usd", "stripe_fee"),),
        net=1022,
        reporting_category="charge",
        type="charge",
        source="ch_FX",
        created=T0,
        exchange_rate=Decimal("1.08235"),
        source_amount=1000,
        source_currency="eur",
    )
    payout = payout_for([txn], "usd")
    [command] = deposit_commands(plan_deposit(payout, [txn], cfg()), cfg())
    body = command.body
    assert body["payment"]["items"] == [
        {
            "$ref": {"type": "customerPayment", "externalId": "ch_FX"},
            "deposit": True,
            "paymentAmount": Decimal("10.82"),
        }
    ]
    assert body["other"]["items"] == [
        {"account": {"id": "105"}, "amount": Decimal("0.01"), "memo": "Currency conversion EUR→USD"}
    ]
    assert body["cashback"]["items"] == [
        {"account": {"id": "104"}, "amount": Decimal("0.61"), "memo": "Stripe fees: stripe_fee"}
    ]
    assert body_total(body, "usd") == payout.amount == 1022
    assert composition(body, "usd") == {
        "payments": 1082,
        "currency conversion": 1,
        "fee: stripe_fee": -61,
    }


def test_payout_own_transaction_and_dispute_fees() -> None:
    txns = [
        BalanceTransaction("txn_po", -5000, "usd", 0, (), -5000, "payout", "payout", "po_TEST", T0),
        BalanceTransaction(
            "txn_ch",
            20000,
            "usd",
            610,
            (FeeDetail(610, "usd", "stripe_fee"),),
            19390,
            "charge",
            "charge",
            "ch_1",
            T0,
        ),
        BalanceTransaction(
            "txn_dp",
            -10000,
            "usd",
            1500,
            (FeeDetail(1500, "usd", "stripe_fee", "Dispute fee"),),
            -11500,
            "dispute",
            "adjustment",
            "dp_1",
            T0,
        ),
        BalanceTransaction(
            "txn_dr",
            10000,
            "usd",
            -1500,
            (FeeDetail(-1500, "usd", "stripe_fee", "Dispute fee refund"),),
            11500,
            "dispute_reversal",
            "adjustment",
            "dp_1",
            T0,
        ),
    ]
    payout = payout_for(txns[1:], "usd")
    plan = plan_deposit(payout, txns, cfg(), expected=3)
    assert plan.complete and plan.total == payout.amount == 19390
    memos = {(ln.sublist, ln.memo): ln.amount for ln in plan.lines}
    assert memos[("cashback", "Stripe fees: stripe_fee")] == 610
    # the dispute fee and its refund net out on the dispute_fee account line
    assert ("cashback", "Stripe fees: dispute_fee") not in memos
    assert memos[("other", "Stripe dispute reversal dp_1 (txn_dr)")] == 10000
    assert memos[("payment", "Stripe: dp_1")] == -10000
    [command] = deposit_commands(plan, cfg())
    assert composition(command.body, "usd") == {
        "payments": 20000,
        "refunds": -10000,
        "fee: stripe_fee": -610,
        "dispute reversal": 10000,
    }


def test_negative_payout_is_refused() -> None:
    txn = BalanceTransaction("txn_r", -100, "usd", 0, (), -100, "refund", "refund", "re_1", T0)
    with pytest.raises(UnmappedError):
        plan_deposit(payout_for([txn], "usd"), [txn], cfg())


def test_zero_decimal_and_three_decimal_payouts_render_exactly() -> None:
    for currency, amount, text in (
        ("jpy", 12345, "12345"),
        ("kwd", 12340, "12.340"),
        ("isk", 50000, "500"),
    ):
        txn = BalanceTransaction(
            "txn_1", amount, currency, 0, (), amount, "charge", "charge", "ch_1", T0
        )
        [command] = deposit_commands(plan_deposit(payout_for([txn], currency), [txn], cfg()), cfg())
        assert json.loads(command.body_json)["payment"]["items"][0]["paymentAmount"] == json.loads(
            text
        )
        assert command.body_json.count(f'"paymentAmount":{text}') == 1


def lines_of(body: dict[str, Any]) -> int:
    return sum(len(body.get(s, {}).get("items", [])) for s in ("payment", "other", "cashback"))


def check_parts(commands: list[Any], payout: Payout, cap: int) -> None:
    """po_…, po_…-2, …: each at most ``cap`` lines; the first the payout's amount, the others
    zero; every payment line in exactly one part."""
    assert [c.external_id for c in commands] == [payout.id] + [
        f"{payout.id}-{n}" for n in range(2, len(commands) + 1)
    ]
    totals = [body_total(c.body, payout.currency) for c in commands]
    assert totals == [payout.amount] + [0] * (len(commands) - 1)
    assert all(lines_of(c.body) <= cap for c in commands)
    assert commands[0].metadata_key == "netsuite_deposit_id"
    paid = [
        p["$ref"]["externalId"]
        for c in commands
        for p in c.body.get("payment", {}).get("items", [])
    ]
    assert len(paid) == len(set(paid))


@settings(max_examples=200, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(merchant(), st.integers(min_value=2, max_value=6))
def test_a_payout_beyond_the_line_cap_becomes_several_deposits_that_add_up(
    case: tuple[str, list[BalanceTransaction]], cap: int
) -> None:
    currency, txns = case
    payout = payout_for(txns, currency)
    small = cfg(deposit_max_lines=cap)
    plan = plan_deposit(payout, txns, small)
    commands = deposit_commands(plan, small)
    if len(plan.lines) <= cap:
        assert len(commands) == 1
    check_parts(commands, payout, cap)
    reference = {
        p["$ref"]["externalId"]
        for p in deposit_commands(plan, cfg())[0].body.get("payment", {}).get("items", [])
    }
    assert {
        p["$ref"]["externalId"]
        for c in commands
        for p in c.body.get("payment", {}).get("items", [])
    } == reference


def test_a_payout_of_25_000_transactions_becomes_deposits_under_both_caps() -> None:
    """NetSuite's 10,000 lines per deposit (the default ``deposit_max_lines``), and Kafka's
    1 MiB per message: 10,000 payment lines with their references weigh more than that, so
    the parts are smaller."""
    rnd = random.Random(25)
    txns = []
    for i in range(25_000):
        refund = i % 7 == 0
        amount = rnd.randint(100, 90_000) * (-1 if refund else 1)
        fee = 0 if refund else 30 + amount * 29 // 1000
        txns.append(
            BalanceTransaction(
                id=f"txn_{i:05d}",
                amount=amount,
                currency="usd",
                fee=fee,
                fee_details=(FeeDetail(fee, "usd", "stripe_fee"),) if fee else (),
                net=amount - fee,
                reporting_category="refund" if refund else "charge",
                type="refund" if refund else "charge",
                source=f"{'re' if refund else 'ch'}_{i:05d}",
                created=T0 + timedelta(seconds=i),
            )
        )
    payout = payout_for(txns, "usd")
    plan = plan_deposit(payout, txns, cfg(), expected=len(txns))
    assert plan.complete and len(plan.lines) == 25_001  # a line per transaction, one fee line
    commands = deposit_commands(plan, cfg())
    assert len(commands) >= 3
    check_parts(commands, payout, 10_000)
    assert sum(lines_of(c.body) for c in commands) == 25_001 + len(commands)  # + carry lines
    schema = fastavro.parse_schema(json.loads(Path("schemas/netsuite_command.avsc").read_text()))
    for command in commands:  # each as the processor sends it: one Avro message under 1 MiB
        encoded = io.BytesIO()
        fastavro.schemaless_writer(encoded, schema, command.to_avro())
        assert len(encoded.getvalue()) <= MAX_COMMAND_BYTES + 1_000
