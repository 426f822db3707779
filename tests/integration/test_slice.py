"""The first end-to-end slice through the real servers.

Signed webhooks → producer → Avro on the object topics (real registry) → faust worker →
NetSuite commands → sink (OAuth 1.0a PUT eid: upserts) → emulator → back-references →
metadata writer → stripe-mock (through a recording proxy, so we see stripe-mock accept them).
"""

from __future__ import annotations

import time

import pytest
import requests

from ledgerstream import topics
from ledgerstream.stack import url_of_stripe_mock
from ledgerstream.testing.fixtures import signed, slice_events
from ledgerstream.testing.pipeline import Pipeline
from tests.integration.helpers import RecordingProxy, end_offsets, wait_caught_up

pytestmark = [pytest.mark.integration, pytest.mark.usefixtures("local_stack")]


def deliver(pipeline: Pipeline, events: list[dict], secret: str | None = None) -> list[int]:
    codes = []
    for event in events:
        body, signature = signed(event, secret or pipeline.webhook_secret)
        resp = requests.post(
            pipeline.webhook_url, data=body, timeout=30, headers={"Stripe-Signature": signature}
        )
        codes.append(resp.status_code)
    return codes


def updates(proxy: RecordingProxy) -> list:
    return [x for x in proxy.exchanges if x.method == "POST"]


def test_slice_writes_one_customer_invoice_and_applied_payment(pipeline: Pipeline) -> None:
    proxy = RecordingProxy(url_of_stripe_mock())
    pipeline.extra_env["LEDGER_STRIPE_API_BASE"] = proxy.url
    try:
        pipeline.start_all()
        events = slice_events(seed=pipeline.name)
        cus, inv, ch = (e["data"]["object"]["id"] for e in events[:3])  # then invoice.paid
        txn = events[2]["data"]["object"]["balance_transaction"]

        assert deliver(pipeline, events) == [200] * 4
        records = pipeline.wait_for_records({"customer": 1, "invoice": 1, "customerPayment": 1})

        by_type = {r["type"]: r for r in records}
        assert sorted(by_type) == ["customer", "customerPayment", "invoice"]
        assert len(records) == 3
        customer, invoice, payment = (
            by_type[t] for t in ("customer", "invoice", "customerPayment")
        )
        assert customer["externalId"] == cus
        assert customer["companyName"] == "Acme Corporation"
        assert invoice["externalId"] == inv
        assert invoice["entity"] == {"id": customer["id"]}
        assert [str(line["amount"]) for line in invoice["item"]["items"]] == ["49.00"]
        assert payment["externalId"] == ch
        assert payment["customer"] == {"id": customer["id"]}
        assert str(payment["payment"]) == "49.00"
        assert payment["apply"]["items"] == [
            {"doc": {"id": invoice["id"]}, "apply": True, "amount": payment["payment"]}
        ]

        # back-references reach Stripe's metadata; stripe-mock accepts every update
        expected = {
            f"/v1/customers/{cus}": f"metadata[netsuite_customer_id]={customer['id']}",
            f"/v1/invoices/{inv}": f"metadata[netsuite_invoice_id]={invoice['id']}",
            f"/v1/charges/{ch}": f"metadata[netsuite_customer_payment_id]={payment['id']}",
        }
        deadline = time.monotonic() + 60
        while time.monotonic() < deadline and len(updates(proxy)) < 3:
            time.sleep(0.3)
        seen = {x.path: x for x in updates(proxy)}
        assert set(seen) == set(expected)
        for path, form in expected.items():
            assert seen[path].method == "POST"
            assert seen[path].status == 200
            assert requests.utils.unquote(seen[path].body) == form

        # the same four webhooks again: nothing changes anywhere downstream
        before = pipeline.records()
        commands_topic = pipeline.prefix + topics.NETSUITE_COMMANDS.name
        commands_before = sum(end_offsets(commands_topic).values())
        assert deliver(pipeline, events) == [200] * 4
        stripe_topics = [pipeline.prefix + s.name for s in topics.STRIPE_TOPICS]
        wait_caught_up(
            f"{pipeline.prefix}ledgerstream-router", [pipeline.prefix + topics.STRIPE_EVENTS.name]
        )
        wait_caught_up(f"{pipeline.name}-processor", stripe_topics)
        wait_caught_up(f"{pipeline.name}-netsuite-sink", [commands_topic])
        assert sum(end_offsets(commands_topic).values()) == commands_before == 3
        after = pipeline.records()
        assert after == before  # same ids, bodies, versions and lastModifiedDate
        assert all(r["version"] == 1 for r in after)
        assert len(updates(proxy)) == 3
        # the router's fetch of the charge's balance transaction was a valid call too
        fetches = [x for x in proxy.exchanges if x.method == "GET"]
        assert [x.path for x in fetches] == [f"/v1/balance_transactions/{txn}"] * len(fetches)
        assert fetches and all(x.status == 200 for x in fetches)
    finally:
        proxy.close()


def test_forged_signature_gets_400_and_publishes_nothing(pipeline: Pipeline) -> None:
    pipeline.start_all()
    stripe_topics = [
        pipeline.prefix + s.name for s in (topics.STRIPE_EVENTS, *topics.STRIPE_TOPICS)
    ]
    before = {t: end_offsets(t) for t in stripe_topics}
    events = slice_events(seed=pipeline.name)

    assert deliver(pipeline, events, secret="whsec_forged") == [400] * 4
    body, signature = signed(events[0], pipeline.webhook_secret)
    tampered = body.replace(b"Acme Corporation", b"Evil Corporation")
    resp = requests.post(
        pipeline.webhook_url, data=tampered, timeout=30, headers={"Stripe-Signature": signature}
    )
    assert resp.status_code == 400
    resp = requests.post(pipeline.webhook_url, data=body, timeout=30)  # no signature at all
    assert resp.status_code == 400

    assert {t: end_offsets(t) for t in stripe_topics} == before
    assert all(sum(offsets.values()) == 0 for offsets in before.values())
    # and the server is still up and publishing genuine events
    assert deliver(pipeline, events[:1]) == [200]
    assert sum(end_offsets(stripe_topics[0]).values()) == 1
