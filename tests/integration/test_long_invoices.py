"""Invoices of 25 and 250 lines through the whole pipeline: signed webhooks in, NetSuite out.

Stripe embeds only an invoice's first 10 lines (``lines.has_more``); the Stripe double serves
the rest at ``GET /v1/invoices/{id}/lines`` as Stripe does (pages of at most 100). Each
NetSuite invoice must carry every line, as the reference booking does, and its payment must be
applied to it.
"""

from __future__ import annotations

from decimal import Decimal
from pathlib import Path
from typing import Any

import pytest

from ledgerstream.testing.generator import Scenario, generate
from ledgerstream.testing.reference import reference_booking
from tests.integration.helpers import pipeline_on_double, post_webhooks
from tests.unit.test_ledger import CFG

pytestmark = [pytest.mark.integration, pytest.mark.usefixtures("local_stack")]

SCENARIO = Scenario(
    seed=6,
    customers=3,
    months=2,
    settlement_currencies=("usd", "jpy"),
    refund_rate=0.0,
    dispute_rate=0.0,
    credit_note_rate=0.0,
    long_invoice_rate=0.5,
)


def amounts(body: dict[str, Any]) -> list[Decimal]:
    return [Decimal(str(line["amount"])) for line in body["item"]["items"]]


def test_invoices_of_25_and_250_lines_reach_netsuite_with_every_line(tmp_path: Path) -> None:
    history = generate(SCENARIO)
    long = history.invoice_lines
    assert sorted({len(lines) for lines in long.values()}) == [25, 250]
    book = reference_booking(history, CFG)
    assert book.dead_letters == []
    invoices = {c.external_id: c for c in book.commands.values() if c.record_type == "invoice"}
    payments = [c for c in book.commands.values() if c.record_type == "customerPayment"]
    assert set(long) <= set(invoices)

    with pipeline_on_double(tmp_path, history) as pipe:
        post_webhooks(pipe, history.events)
        records = pipe.wait_for_records(
            {"invoice": len(invoices), "customerPayment": len(payments)}, timeout=300
        )

    written = {r["externalId"]: r for r in records if r["type"] == "invoice"}
    for invoice_id, lines in long.items():
        want = invoices[invoice_id].body
        got = written[invoice_id]
        assert len(got["item"]["items"]) == len(want["item"]["items"]) >= len(lines)
        assert amounts(got) == amounts(want)
    # nothing went to a dead-letter topic on the way: every payment found its invoice
    applied = {
        item["doc"]["id"]
        for r in records
        if r["type"] == "customerPayment"
        for item in r["apply"]["items"]
    }
    assert {written[i]["id"] for i in long if history.objects[i]["status"] == "paid"} <= applied
