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

from decimal import Decimal
from pathlib import Path

import pytest

from ledgerstream.money import to_minor
from ledgerstream.testing.generator import generate
from ledgerstream.testing.reference import reference_booking
from tests.integration.helpers import written_by_pipeline
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
