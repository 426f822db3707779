"""A customer who paid an invoice twice: one payment applied, whatever arrives first.

The second succeeded charge on an invoice is sent before the invoice's ``invoice.paid``: the
order in which the processor used to apply it as a second full payment (NetSuite would refuse
it beyond the invoice's amount remaining, as the emulator now does). Through the whole
pipeline, only the charge Stripe names as the invoice's ``charge`` is applied; the other is
skipped (BEHAVIOR.md, Payments).
"""

from __future__ import annotations

import copy
import dataclasses
from decimal import Decimal
from pathlib import Path
from typing import Any

import pytest

from ledgerstream.testing.generator import History, generate
from ledgerstream.testing.reference import reference_booking
from tests.integration.helpers import written_by_pipeline
from tests.unit.test_ledger import CFG, SCENARIOS

pytestmark = [pytest.mark.integration, pytest.mark.usefixtures("local_stack")]

SECOND = "ch_paidtwice0000000000000"


def paid_twice(history: History) -> tuple[History, str, list[dict[str, Any]]]:
    """The history plus a second succeeded charge of its first paid invoice, and the feed
    with that charge's event placed just before the invoice's ``invoice.paid``."""
    events = list(history.events)
    at, paid = next(
        (i, e)
        for i, e in enumerate(events)
        if e["type"] == "invoice.paid" and e["data"]["object"].get("charge")
    )
    invoice = paid["data"]["object"]
    first = next(
        e
        for e in events
        if e["type"] == "charge.succeeded" and e["data"]["object"]["id"] == invoice["charge"]
    )
    event = copy.deepcopy(first)
    event["id"] = "evt_paidtwice000000000000"
    charge = event["data"]["object"]
    charge.update(id=SECOND, balance_transaction=None, receipt_number=None)
    objects = {**history.objects, SECOND: charge}
    feed = [*events[:at], event, *events[at:]]
    with_second = dataclasses.replace(history, events=sorted(feed, key=lambda e: e["created"]))
    with_second.objects = objects
    return with_second, invoice["id"], feed


def test_a_second_charge_on_a_paid_invoice_is_not_applied_again(tmp_path: Path) -> None:
    history, invoice_id, feed = paid_twice(generate(SCENARIOS[0]))
    book = reference_booking(history, CFG)
    assert f"customerPayment/{SECOND}" not in book.commands
    expected = {(c.record_type, c.external_id) for c in book.commands.values()}
    records, dead = written_by_pipeline(tmp_path, history, feed, expected)
    assert {(r["type"], r["externalId"]) for r in records} == expected
    assert dead == []
    invoice = next(r for r in records if (r["type"], r["externalId"]) == ("invoice", invoice_id))
    applied = [
        Decimal(str(line["amount"]))
        for r in records
        if r["type"] == "customerPayment"
        for line in r.get("apply", {}).get("items", [])
        if str(line["doc"]["id"]) == str(invoice["id"])
    ]
    total = sum(Decimal(str(line["amount"])) for line in invoice["item"]["items"])
    assert applied == [total]  # one payment, of the whole invoice
