"""Invoices paid outside Stripe, and charges captured after their authorisation, through the
whole pipeline.

A generated history in which the merchant marks some invoices paid out of band (a cheque or a
wire: ``paid_out_of_band``, no charge), some after a failed card payment and some after a
pre-payment credit note, voided or not. Each such invoice gets a customer payment ``oob_…``
applied to it for what no charge paid (BEHAVIOR.md, Invoices), the emulator accepting every
application (it refuses one beyond an invoice's amount remaining), and nothing is
dead-lettered. The same history authorises most one-off charges first (``captured: false``)
and captures them later: each becomes a customer payment in the deposit of the payout that
carries its capture. Some refunds fail days later: their money comes back through a customer
payment ``rf_re_…`` that a later payout deposits, and some payouts are returned by the bank:
their deposits send nothing to the bank, and the payout that pays the money out again takes it
back (the emulator accepts every deposit: none negative, no payment in two).
"""

from __future__ import annotations

import time
from decimal import Decimal
from pathlib import Path
from typing import Any

import pytest

from ledgerstream.accounting.deposits import on_suspense
from ledgerstream.commands import find_refs
from ledgerstream.money import to_minor
from ledgerstream.testing.generator import generate
from ledgerstream.testing.pipeline import Pipeline
from ledgerstream.testing.reference import reference_booking
from tests.integration.helpers import (
    consume_all,
    pipeline_on_double,
    post_webhooks,
    written_by_pipeline,
)
from tests.unit.test_ledger import CFG, SCENARIOS

pytestmark = [pytest.mark.integration, pytest.mark.usefixtures("local_stack")]


def test_invoices_paid_out_of_band_and_charges_captured_later_are_booked(tmp_path: Path) -> None:
    history = generate(SCENARIOS[4])  # out_of_band_rate 0.6, uncaptured_rate 0.9
    outside = {
        o["id"]: o
        for o in history.objects.values()
        if o["object"] == "invoice" and o.get("paid_out_of_band")
    }
    assert len(outside) >= 3
    book = reference_booking(history, CFG)
    expected = {(c.record_type, c.external_id) for c in book.commands.values()}
    assert {("customerPayment", f"oob_{i}") for i in outside} <= expected
    records, dead = written_by_pipeline(tmp_path, history, history.events, expected)
    assert {(r["type"], r["externalId"]) for r in records} == expected
    assert dead == []
    internal = {(r["type"], r["externalId"]): r["id"] for r in records}
    for record in records:
        if record["type"] == "customerPayment" and record["externalId"].startswith("oob_"):
            invoice = outside[record["externalId"].removeprefix("oob_")]
            [line] = record["apply"]["items"]
            assert str(line["doc"]["id"]) == str(internal[("invoice", invoice["id"])])
            paid = to_minor(Decimal(str(line["amount"])), invoice["currency"])
            assert paid == invoice["amount_due"]
            assert record["undepFunds"] is True  # waits for the bank receipt, in no payout
    captured = {e["data"]["object"]["id"] for e in history.events if e["type"] == "charge.captured"}
    assert captured and {("customerPayment", c) for c in captured} <= expected
    deposited = {
        str(line["id"])
        for r in records
        if r["type"] == "deposit"
        for line in r.get("payment", {}).get("items", [])
    }
    assert any(str(internal[("customerPayment", c)]) in deposited for c in captured)
    failed = [
        o["id"]
        for o in history.objects.values()
        if o["object"] == "refund" and o["status"] == "failed"
    ]
    assert failed and {("customerPayment", f"rf_{r}") for r in failed} <= expected
    returned = [
        o for o in history.objects.values() if o["object"] == "payout" and o["status"] == "failed"
    ]
    assert returned
    deposits = {r["externalId"]: r for r in records if r["type"] == "deposit"}
    for payout in returned:
        body = deposits[payout["id"]]
        total = (
            sum(Decimal(str(p["paymentAmount"])) for p in body.get("payment", {}).get("items", []))
            + sum(Decimal(str(o["amount"])) for o in body.get("other", {}).get("items", []))
            - sum(Decimal(str(c["amount"])) for c in body.get("cashback", {}).get("items", []))
        )
        assert total == 0  # nothing reached the bank


def _total(body: dict[str, Any]) -> Decimal:
    def of(sublist: str, field: str) -> Decimal:
        items = body.get(sublist, {}).get("items", [])
        return sum((Decimal(str(x[field])) for x in items), Decimal(0))

    return of("payment", "paymentAmount") + of("other", "amount") - of("cashback", "amount")


def _deposit_view(body: dict[str, Any], names: dict[str, str]) -> dict[str, Any]:
    """What a deposit deposits (payments by Stripe id) and what it put on suspense, and its
    total: from a NetSuite record (``names``: internal id -> externalId) or a command body."""
    paid = sorted(
        names[str(x["id"])] if "id" in x else x["$ref"]["externalId"]
        for x in body.get("payment", {}).get("items", [])
    )
    suspense = sorted(
        (sub, x["memo"], str(x["account"]["id"]))
        for sub in ("other", "cashback")
        for x in body.get(sub, {}).get("items", [])
        if "on suspense until written" in x["memo"]
    )
    return {"paid": paid, "suspense": suspense, "total": _total(body)}


def test_blocked_customers_and_second_charges_leave_every_deposit_posted_and_balanced(
    tmp_path: Path,
) -> None:
    """Issue 12, deposits always post: a blocked customer's records and a second charge on a
    paid invoice never reach NetSuite, yet their money is in payouts. Every deposit posts,
    balanced, with exactly those lines on suspense (the sink's wait shortened to 30 s), and
    nothing is dead-lettered."""
    history = generate(SCENARIOS[5])  # blocked_rate 0.3, second_charge_rate 0.3
    blocked = {
        o["id"]
        for o in history.objects.values()
        if o["object"] == "customer" and o["metadata"].get("netsuite_block_integration")
    }
    charged: dict[str, list[str]] = {}
    for o in history.objects.values():
        if o["object"] == "charge" and o["invoice"] and o["status"] == "succeeded":
            charged.setdefault(o["invoice"], []).append(o["id"])
    second = {
        c
        for invoice, ids in charged.items()
        for c in ids
        if history.objects[invoice]["charge"] != c
    }
    assert blocked and second
    book = reference_booking(history, CFG)
    expected = {(c.record_type, c.external_id) for c in book.commands.values()}
    deposits = {c.external_id: c for c in book.commands.values() if c.record_type == "deposit"}
    never = {ref for c in deposits.values() for ref in find_refs(c.body) if ref not in expected}
    blocked_charges = {
        o["id"]
        for o in history.objects.values()
        if o["object"] == "charge" and o["customer"] in blocked and o["balance_transaction"]
    }
    assert blocked_charges and {("customerPayment", c) for c in blocked_charges} <= never
    assert {("customerPayment", c) for c in second} <= never
    assert not any(eid == b for _, eid in expected for b in blocked)  # the customer stays out
    want = {}
    for eid, cmd in deposits.items():
        missing = [r for r in find_refs(cmd.body) if r in never]
        body = on_suspense(cmd.body, missing, CFG.netsuite_suspense_account_id)
        assert body is not None
        want[eid] = _deposit_view(body, {})
    assert sum(len(v["suspense"]) for v in want.values()) == len(never)

    with pipeline_on_double(tmp_path, history, LEDGER_SINK_DEPENDENCY_TIMEOUT_S="30") as pipe:
        post_webhooks(pipe, history.events)
        got = _posted_deposits(pipe, want, expected)
    assert got == want


def _posted_deposits(
    pipe: Pipeline, want: dict[str, Any], expected: set[tuple[str, str]]
) -> dict[str, Any]:
    """The deposits as NetSuite holds them once they match ``want`` (a deposit posted on
    suspense is rewritten when a late record is written: the final state is what counts), or
    at the deadline; NetSuite then holds exactly the ``expected`` records and no command was
    dead-lettered."""
    counts: dict[str, int] = {}
    for rtype, _ in expected:
        counts[rtype] = counts.get(rtype, 0) + 1
    records = pipe.wait_for_records(counts, timeout=600)
    deadline = time.monotonic() + 120
    while True:
        pipe.check_alive()
        records = pipe.records()
        names = {str(r["id"]): r["externalId"] for r in records}
        got = {r["externalId"]: _deposit_view(r, names) for r in records if r["type"] == "deposit"}
        if got == want or time.monotonic() > deadline:
            break
        time.sleep(1)
    assert {(r["type"], r["externalId"]) for r in records} == expected
    assert consume_all(pipe.prefix + "netsuite.commands.dlq", timeout=3) == []
    return got


def test_the_customer_balance_in_netsuite_is_stripe_s_after_the_whole_pipeline(
    tmp_path: Path,
) -> None:
    """Issue 12: credit notes credited to the customer's balance and invoices paid from it
    (in full, or in part beside a charge), through the pipeline: NetSuite holds exactly the
    reference booking's records, and each customer's open credit there (its credit memos less
    what they are applied to and what refunds paid out) is its Stripe ``customer.balance``."""
    history = generate(SCENARIOS[6])  # balance_credit_rate 0.8
    book = reference_booking(history, CFG)
    expected = {(c.record_type, c.external_id) for c in book.commands.values()}
    records, dead = written_by_pipeline(tmp_path, history, history.events, expected)
    assert {(r["type"], r["externalId"]) for r in records} == expected
    assert dead == []
    credit, applied_to_invoices = _open_credit(records, history)
    assert applied_to_invoices  # balance credits paid later invoices
    balances = {
        o["id"]: -o["balance"] for o in history.objects.values() if o["object"] == "customer"
    }
    assert any(balances.values())
    assert {c: credit.get(c, 0) for c in balances} == balances


def _open_credit(records: list[dict[str, Any]], history: Any) -> tuple[dict[str, int], int]:
    """Each customer's open credit in NetSuite (minor units): its credit memos less what they
    are applied to and what customer refunds paid out of them; and how many credit-note memos
    are applied to invoices."""
    by_id = {str(r["id"]): r for r in records}
    refunded: dict[str, Decimal] = {}
    for r in records:
        if r["type"] == "customerRefund":
            for line in r["apply"]["items"]:
                target = by_id[str(line["doc"]["id"])]
                if target["type"] == "creditMemo":
                    key = target["externalId"]
                    refunded[key] = refunded.get(key, Decimal(0)) + Decimal(str(line["amount"]))
    credit: dict[str, int] = {}
    applied_to_invoices = 0
    for r in records:
        if r["type"] != "creditMemo":
            continue
        total = sum(Decimal(str(x["amount"])) for x in r["item"]["items"])
        applied = sum(Decimal(str(x["amount"])) for x in r.get("apply", {}).get("items", []))
        if r["externalId"].startswith("cm_cn_") and applied:
            applied_to_invoices += 1
        left = total - applied - refunded.get(r["externalId"], Decimal(0))
        assert left >= 0, r["externalId"]
        customer = by_id[str(r["entity"]["id"])]["externalId"]
        currency = next(
            o["currency"]
            for o in history.objects.values()
            if o["object"] == "invoice" and o["customer"] == customer
        )
        credit[customer] = credit.get(customer, 0) + to_minor(left, currency)
    return credit, applied_to_invoices


def test_a_history_with_every_hard_case_ends_with_every_deposit_posted_and_balanced(
    tmp_path: Path,
) -> None:
    """Issue 12, done when: a generated history with every case enabled (long invoices,
    individuals, out-of-band and balance-paid invoices, captures, failed refunds and payouts,
    blocked customers, second charges, credit notes voided or credited to the balance) goes
    through the pipeline and ends with NetSuite holding exactly the reference booking, every
    deposit posted and balanced (what NetSuite never got on suspense), nothing dead-lettered,
    and every customer's open credit equal to its Stripe balance."""
    history = generate(SCENARIOS[7])
    book = reference_booking(history, CFG)
    assert not book.waiting and not book.dead_letters
    expected = {(c.record_type, c.external_id) for c in book.commands.values()}
    deposits = {c.external_id: c for c in book.commands.values() if c.record_type == "deposit"}
    never = {ref for c in deposits.values() for ref in find_refs(c.body) if ref not in expected}
    assert never  # the blocked customer's payments and the second charges
    want = {}
    for eid, cmd in deposits.items():
        missing = [r for r in find_refs(cmd.body) if r in never]
        body = on_suspense(cmd.body, missing, CFG.netsuite_suspense_account_id)
        assert body is not None
        want[eid] = _deposit_view(body, {})
    with pipeline_on_double(tmp_path, history, LEDGER_SINK_DEPENDENCY_TIMEOUT_S="30") as pipe:
        post_webhooks(pipe, history.events)
        got = _posted_deposits(pipe, want, expected)
        records = pipe.records()
    assert got == want
    credit, _ = _open_credit(records, history)
    balances = {
        o["id"]: -o["balance"] for o in history.objects.values() if o["object"] == "customer"
    }
    assert {c: credit.get(c, 0) for c in balances} == balances
