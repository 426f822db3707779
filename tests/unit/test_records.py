import json

import pytest

from ledgerstream import topics
from ledgerstream.stripe_records import BadEvent, key_for, route, to_record, validate_event
from ledgerstream.testing.fixtures import slice_events


def test_routing() -> None:
    assert route("customer.created") is topics.STRIPE_CUSTOMER
    assert route("invoice.finalized") is topics.STRIPE_INVOICE
    assert route("charge.succeeded") is topics.STRIPE_CHARGE
    assert route("charge.dispute.created") is topics.STRIPE_DISPUTE  # longest prefix wins
    assert route("charge.refund.updated") is topics.STRIPE_REFUND
    assert route("refund.created") is topics.STRIPE_REFUND
    assert route("credit_note.created") is topics.STRIPE_CREDIT_NOTE
    assert route("payout.paid") is topics.STRIPE_PAYOUT
    assert route("customer.subscription.created") is None
    assert route("invoice.upcoming") is None
    assert route("balance.available") is None


def test_receivables_are_keyed_by_customer() -> None:
    customer, invoice, charge, _ = slice_events("k")
    cus = customer["data"]["object"]["id"]
    assert key_for(topics.STRIPE_CUSTOMER, customer["data"]["object"]) == cus
    assert key_for(topics.STRIPE_INVOICE, invoice["data"]["object"]) == cus
    assert key_for(topics.STRIPE_CHARGE, charge["data"]["object"]) == cus
    guest = {**charge["data"]["object"], "customer": None}
    assert key_for(topics.STRIPE_CHARGE, guest) == guest["id"]


def test_records_carry_typed_fields_and_the_original_object() -> None:
    _, invoice, charge, _ = slice_events("r")
    rec = to_record(topics.STRIPE_INVOICE, invoice)
    assert rec["event_id"] == invoice["id"]
    assert rec["total"] == 4900 and rec["currency"] == "usd"
    assert (
        rec["lines"][0]["price_id"] == invoice["data"]["object"]["lines"]["data"][0]["price"]["id"]
    )
    assert json.loads(rec["object_json"]) == invoice["data"]["object"]
    ch = to_record(topics.STRIPE_CHARGE, charge)
    assert ch["invoice"] == invoice["data"]["object"]["id"]
    assert ch["balance_transaction"].startswith("txn_")


@pytest.mark.parametrize(
    "payload",
    [
        [],
        "x",
        {"object": "charge"},
        {"object": "event", "id": "evt_1"},
        {"object": "event", "id": "evt_1", "type": "x", "created": 1, "data": {}},
        {
            "object": "event",
            "id": "evt_1",
            "type": 3,
            "created": 1,
            "data": {"object": {"id": "a"}},
        },
    ],
)
def test_not_an_event(payload: object) -> None:
    with pytest.raises(BadEvent):
        validate_event(payload)


def test_unreadable_object_is_a_bad_event() -> None:
    _, invoice, _, _ = slice_events("b")
    del invoice["data"]["object"]["currency"]
    with pytest.raises(BadEvent):
        to_record(topics.STRIPE_INVOICE, invoice)
