"""A backfill over objects already seen live brings them to their latest state, in NetSuite.

Live, every event reaches the pipeline except one invoice's ``invoice.voided``: NetSuite holds
that invoice open. A backfill then reads every object from the Stripe double's list endpoints,
in its state of now; the invoice is read voided and must be closed (its closing credit memo
applied to it). Stamped with its creation time, the backfilled invoice was older than the live
``invoice.finalized`` and was ignored, so the invoice stayed open.
"""

from __future__ import annotations

import collections
from pathlib import Path

import pytest

from ledgerstream.testing.generator import Scenario, generate
from ledgerstream.testing.reference import reference_booking
from tests.integration.helpers import pipeline_on_double, post_webhooks
from tests.unit.test_ledger import CFG

pytestmark = [pytest.mark.integration, pytest.mark.usefixtures("local_stack")]

SCENARIO = Scenario(seed=5, customers=4, months=3, failure_rate=0.3)  # one voided invoice


def test_a_backfill_closes_an_invoice_whose_void_was_missed_live(tmp_path: Path) -> None:
    history = generate(SCENARIO)
    void = next(e for e in history.events if e["type"] == "invoice.voided")
    invoice_id = void["data"]["object"]["id"]
    book = reference_booking(history, CFG)
    assert book.dead_letters == []
    close = f"creditMemo/cm_close_{invoice_id}"
    assert close in book.commands
    everything = collections.Counter(c.record_type for c in book.commands.values())
    live = everything - collections.Counter(["creditMemo"])  # all but the closing memo

    with pipeline_on_double(tmp_path, history) as pipe:
        post_webhooks(pipe, [e for e in history.events if e is not void])  # the void missed
        before = pipe.wait_for_records(dict(live), timeout=300)
        start = str(history.events[0]["created"] - 86400)
        out = pipe.cli("producer", "backfill", "--from", start, "--no-progress", timeout=300)
        after = pipe.wait_for_records(dict(everything), timeout=300)

    assert f"invoices={sum(1 for o in history.objects.values() if o['object'] == 'invoice')}" in (
        out
    )
    memo = "cm_close_" + invoice_id
    assert memo not in {r["externalId"] for r in before}  # live, the invoice stood open
    closing = next(r for r in after if r["externalId"] == memo)
    invoice = next(r for r in after if r["externalId"] == invoice_id)
    assert [item["doc"]["id"] for item in closing["apply"]["items"]] == [invoice["id"]]
    # nothing else changed: the backfill brought every other object to the state it had
    assert collections.Counter(r["type"] for r in after) == everything
