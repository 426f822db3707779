"""``ledgerstream status <id>``: where one Stripe object is, from the status topic the
components write as they go."""

from __future__ import annotations

import subprocess
import time

import pytest

from ledgerstream.testing.fixtures import slice_events
from ledgerstream.testing.pipeline import Pipeline
from tests.integration.test_slice import deliver

pytestmark = [pytest.mark.integration, pytest.mark.usefixtures("local_stack")]


def status(pipeline: Pipeline, stripe_id: str) -> subprocess.CompletedProcess[str]:
    return pipeline.run_cli("status", stripe_id, timeout=60)


def test_status_follows_an_invoice_from_its_events_to_netsuite_and_back(
    pipeline: Pipeline,
) -> None:
    pipeline.start_all()
    events = slice_events(seed=pipeline.name)
    cus, inv, ch = (e["data"]["object"]["id"] for e in events[:3])
    assert deliver(pipeline, events) == [200] * 4
    records = pipeline.wait_for_records({"customer": 1, "invoice": 1, "customerPayment": 1})
    invoice = next(r for r in records if r["type"] == "invoice")
    # the metadata writer is the last to report; its line is waited for (polled, 60 s at most)
    deadline = time.monotonic() + 60
    shown = status(pipeline, inv)
    while "backref" not in shown.stdout and time.monotonic() < deadline:
        time.sleep(0.5)
        shown = status(pipeline, inv)
    assert shown.returncode == 0, shown.stdout + shown.stderr
    lines = shown.stdout.splitlines()
    stages = [line.split()[0] for line in lines[1:]]
    # its two events received, booked, its command sent, written, its back-reference set
    assert stages.count("received") == 2, shown.stdout
    assert {"processed", "sent", "written", "backref"} <= set(stages), shown.stdout
    assert stages[0] == "received"  # nothing can come before its first event
    for event in events[1:4:2]:  # invoice.finalized and invoice.paid
        assert event["id"] in shown.stdout
    written = next(line for line in lines if line.split()[0] == "written")
    assert f"NetSuite invoice {inv} internal id {invoice['id']}" in written
    account = pipeline.netsuite["LEDGER_NETSUITE_ACCOUNT_ID"].lower().replace("_", "-")
    assert f"https://{account}.app.netsuite.com/" in written and f"?id={invoice['id']}" in written
    backref = next(line for line in lines if line.split()[0] == "backref")
    assert f"'netsuite_invoice_id': '{invoice['id']}'" in backref
    charge = status(pipeline, ch).stdout
    assert "customerPayment" in charge and "FAILED" not in charge
    assert status(pipeline, "in_never_seen").returncode == 1
    assert cus in status(pipeline, cus).stdout
