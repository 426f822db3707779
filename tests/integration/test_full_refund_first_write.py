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
import requests

from ledgerstream.testing.fixtures import signed
from ledgerstream.testing.generator import generate
from ledgerstream.testing.pipeline import AppThread, Pipeline
from ledgerstream.testing.reference import reference_booking
from ledgerstream.testing.stripe_double import StripeDouble
from tests.integration.helpers import ACCOUNTING_ENV
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

    double = StripeDouble(history)
    stripe = AppThread(double.app())
    pipe = Pipeline(
        tmp_path / "run",
        extra_env={
            **ACCOUNTING_ENV,
            "LEDGER_STRIPE_API_BASE": stripe.url,
            "LEDGER_STRIPE_MAX_REQUESTS_PER_S": "1000",
        },
    )
    try:
        pipe.start_all()
        for event in feed:
            body, header = signed(event, pipe.webhook_secret)
            answer = requests.post(
                pipe.webhook_url, data=body, headers={"Stripe-Signature": header}, timeout=30
            )
            assert answer.status_code == 200, answer.text
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
    finally:
        pipe.stop()
        stripe.close()

    rewritten = {eid: memos[eid]["version"] for eid in full if memos[eid]["version"] != 1}
    assert rewritten == {}, f"{len(rewritten)} of {len(full)} full refunds written twice"
