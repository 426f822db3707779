"""A full refund is written once, with the invoice's own lines, whatever arrives first.

The invoices' paid states are sent last, after every refund and dispute: the processor books
each refund while its invoice is still open in its tables. A refund of a whole invoice must
still be written with the invoice's lines at once (NetSuite's record version 1), not with one
generic "Partial refund" line first and rewritten when the invoice's paid state comes.
"""

from __future__ import annotations

import time
from pathlib import Path

import pytest

from ledgerstream.testing.generator import generate
from ledgerstream.testing.reference import reference_booking
from tests.integration.helpers import pipeline_on_double, post_webhooks
from tests.unit.test_ledger import CFG, SCENARIOS

pytestmark = [pytest.mark.integration, pytest.mark.usefixtures("local_stack")]


def test_full_refunds_are_written_once_when_the_invoice_s_paid_state_comes_last(
    tmp_path: Path,
) -> None:
    history = generate(SCENARIOS[0])  # refunds and disputes of invoiced charges
    book = reference_booking(history, CFG)
    full = {
        cmd.external_id: len(cmd.body["item"]["items"])
        for cmd in book.commands.values()
        if cmd.record_type == "creditMemo"
        and cmd.stripe_object in ("refund", "dispute")
        and not any(
            str(line.get("description", "")).startswith("Partial ")
            for line in cmd.body["item"]["items"]
        )
    }
    assert len(full) >= 3

    def paid(event: dict[str, object]) -> bool:
        obj = event["data"]["object"]  # type: ignore[index]
        return obj["object"] == "invoice" and obj["status"] == "paid"  # type: ignore[index]

    late = [e for e in history.events if paid(e)]
    feed = [e for e in history.events if not paid(e)] + late

    with pipeline_on_double(tmp_path, history) as pipe:
        post_webhooks(pipe, feed)
        # every full refund's memo carries all of its invoice's lines (its final form)
        deadline = time.monotonic() + 300
        while True:
            pipe.check_alive()
            memos = {r["externalId"]: r for r in pipe.records("creditMemo")}
            done = {
                eid
                for eid, lines in full.items()
                if eid in memos and len(memos[eid]["item"]["items"]) == lines
            }
            if done == set(full):
                break
            assert time.monotonic() < deadline, (
                f"memos not in their final form: {full.keys() - done}"
            )
            time.sleep(0.5)
        # the paid states were booked too: the invoices' payments are applied
        pipe.wait_for_records(
            {
                "customerPayment": sum(
                    1 for c in book.commands.values() if c.record_type == "customerPayment"
                )
            },
            timeout=300,
        )
        memos = {r["externalId"]: r for r in pipe.records("creditMemo")}

    rewritten = {eid: memos[eid]["version"] for eid in full if memos[eid]["version"] != 1}
    assert rewritten == {}, f"{len(rewritten)} of {len(full)} full refunds written twice"
