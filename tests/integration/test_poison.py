"""Poison on every consumed topic: dead-lettered with provenance, and the next record handled.

For each stage that consumes a topic (router, payout contents, Stripe metadata writer, NetSuite
sink, and the sink's back-reference index), bad records are put before a good one: bytes that
are not Avro, an empty value, a tombstone, and valid Avro whose content is impossible. Each bad
record must land on ``<topic>.dlq`` with its original bytes and headers naming where it came
from and why; the good record after them must be handled; and a second run of the stage must
find nothing left to do (no crash loop on the same offset).
"""

from __future__ import annotations

import copy
import json
from typing import Any

import pytest
from confluent_kafka import Producer

from ledgerstream import settings, topics
from ledgerstream.avro import Serde
from ledgerstream.bootstrap import Bootstrap
from ledgerstream.commands import Command
from ledgerstream.producers.payouts import PayoutContents
from ledgerstream.producers.publisher import EventPublisher
from ledgerstream.producers.router import Router
from ledgerstream.sinks.stripe_metadata import MetadataWriter
from ledgerstream.testing.generator import History, Scenario, generate
from ledgerstream.testing.pipeline import Pipeline
from ledgerstream.testing.stripe_double import StripeDouble
from tests.integration.helpers import consume_all, drain, wait_caught_up

pytestmark = [pytest.mark.integration, pytest.mark.usefixtures("local_stack")]

NOT_AVRO = b"\x00\x00\x00\x00\x07not avro at all"
PROVENANCE = (
    "dlq.topic",
    "dlq.partition",
    "dlq.offset",
    "dlq.exception.class",
    "dlq.exception.message",
    "dlq.stage",
    "dlq.time",
)


@pytest.fixture(scope="module")
def history() -> History:
    return generate(Scenario(seed=5, customers=3, months=2, settlement_currencies=("usd",)))


def produce(spec: topics.TopicSpec, values: list[tuple[bytes, bytes | None]]) -> None:
    producer = Producer({**settings.kafka().client_config(), "enable.idempotence": True})
    for key, value in values:
        producer.produce(topics.name(spec), key=key, value=value)
    assert producer.flush(30) == 0


def serde(spec: topics.TopicSpec) -> Serde:
    return Serde(topics.name(spec), spec.schema or "")


def dead_letters(spec: topics.TopicSpec) -> list[dict[str, Any]]:
    found = []
    for msg in consume_all(topics.dlq_name(spec), timeout=15):
        headers = {k: (v or b"").decode() for k, v in msg.headers() or []}
        found.append({**headers, "value": msg.value()})
    return found


def assert_provenance(dead: list[dict[str, Any]], spec: topics.TopicSpec, stage: str) -> None:
    for letter in dead:
        assert all(h in letter for h in PROVENANCE), letter
        assert letter["dlq.topic"] == topics.name(spec)
        assert letter["dlq.partition"].isdigit() and letter["dlq.offset"].isdigit()
        assert letter["dlq.stage"] == stage
        assert letter["dlq.exception.message"]


def raw_event(event: Any, event_json: str | None = None) -> bytes:
    """A ``stripe.events`` record as the webhook writes it, around any JSON."""
    return serde(topics.STRIPE_EVENTS).dumps(
        {
            "event_id": "evt_poison",
            "event_type": "customer.created",
            "event_created": 1_700_000_000_000,
            "object_type": "customer",
            "object_id": "cus_poison",
            "source": "webhook",
            "event_json": event_json if event_json is not None else json.dumps(event),
        }
    )


def test_router_dead_letters_every_kind_of_poison_and_routes_the_next_event(
    isolated: str, history: History, boot: Bootstrap
) -> None:
    good = next(e for e in history.events if e["type"] == "customer.created")
    invoice = next(e for e in history.events if e["type"] == "invoice.finalized")
    huge = copy.deepcopy(invoice)
    huge["data"]["object"]["total"] = huge["data"]["object"]["amount_due"] = 10**30
    string_object = {**good, "data": {"object": "cus_123"}}
    poison = [
        NOT_AVRO,  # not Avro
        b"",  # an empty value
        None,  # a tombstone
        raw_event(None, event_json="{not json"),  # Avro around broken JSON
        raw_event(None, event_json="[1, 2]"),  # JSON that is not an event
        raw_event(string_object),  # data.object is a string
        raw_event(huge),  # an amount no Avro long can hold
    ]
    publisher = EventPublisher()
    ok = publisher.encode_event(good)
    publisher.close()
    assert ok is not None
    produce(topics.STRIPE_EVENTS, [(b"k", v) for v in poison] + [(ok.key.encode(), ok.value)])
    router = Router(boot)
    drain(router)
    assert router.dead_lettered == len(poison)
    assert router.routed == 1
    customers = [
        serde(topics.STRIPE_CUSTOMER).loads(m.value())
        for m in consume_all(topics.name(topics.STRIPE_CUSTOMER))
    ]
    assert [c["id"] for c in customers] == [good["data"]["object"]["id"]]
    dead = dead_letters(topics.STRIPE_EVENTS)
    assert [d["value"] for d in dead] == poison  # the original bytes, in order
    assert_provenance(dead, topics.STRIPE_EVENTS, "router")
    # restarted, with one event more: it reads that one only (no crash loop on the poison)
    produce(topics.STRIPE_EVENTS, [(ok.key.encode(), ok.value)])
    again = Router(boot)
    drain(again)
    assert again.runner.counts["read"] == 1
    assert again.dead_lettered == 0 and again.routed == 1


def test_payout_contents_dead_letters_poison_and_unknown_payouts_and_lists_the_next(
    isolated: str, history: History, boot: Bootstrap
) -> None:
    paid = next(e for e in history.events if e["type"] == "payout.paid")
    unknown = copy.deepcopy(paid)
    unknown["data"]["object"]["id"] = "po_unknown_to_stripe"
    publisher = EventPublisher()
    ok, missing = publisher.encode_typed(paid), publisher.encode_typed(unknown)
    assert ok is not None and missing is not None
    record = serde(topics.STRIPE_PAYOUT).loads(ok.value)
    not_json = serde(topics.STRIPE_PAYOUT).dumps({**record, "object_json": "{not json"})
    poison = [NOT_AVRO, b"", None, not_json, missing.value]
    produce(
        topics.STRIPE_PAYOUT,
        [(b"po", v) for v in poison] + [(ok.key.encode(), ok.value)],
    )
    publisher.close()
    worker = PayoutContents(boot)
    drain(worker)
    dead = dead_letters(topics.STRIPE_PAYOUT)
    assert [d["value"] for d in dead] == poison
    assert_provenance(dead, topics.STRIPE_PAYOUT, "payout-contents")
    assert "po_unknown_to_stripe" in dead[-1]["dlq.exception.message"]
    txns = [
        serde(topics.STRIPE_PAYOUT_TRANSACTIONS).loads(m.value())
        for m in consume_all(topics.name(topics.STRIPE_PAYOUT_TRANSACTIONS))
    ]
    payout_id = paid["data"]["object"]["id"]
    assert {t["payout"] for t in txns} == {payout_id}
    assert len(txns) == len(history.payout_transactions[payout_id])
    # restarted, with the paid payout once more: it reads that one only
    produce(topics.STRIPE_PAYOUT, [(ok.key.encode(), ok.value)])
    again = PayoutContents(boot)
    drain(again)
    assert again.runner.counts["read"] == 1 and again.runner.counts["dead_lettered"] == 0


def backref(stripe_id: str, **changes: Any) -> bytes:
    return serde(topics.NETSUITE_BACKREFS).dumps(
        {
            "record_type": "customer",
            "external_id": stripe_id,
            "internal_id": "1234",
            "stripe_object": "customer",
            "stripe_id": stripe_id,
            "metadata_key": "netsuite_customer_id",
            "command_id": "c" * 64,
            "written_at": 1_700_000_000_000,
            **changes,
        }
    )


def test_metadata_writer_dead_letters_poison_and_writes_the_next_back_reference(
    isolated: str, double: StripeDouble, history: History, boot: Bootstrap
) -> None:
    customer = next(e for e in history.events if e["type"] == "customer.created")
    cus = customer["data"]["object"]["id"]
    # the last is valid Avro naming a customer Stripe does not have: Stripe refuses it (404)
    poison = [NOT_AVRO, b"", backref("cus_not_in_stripe")]
    produce(
        topics.NETSUITE_BACKREFS,
        [(b"customer/x", v) for v in poison]
        + [(b"customer/t", None)]  # a tombstone: the topic is compacted, nothing to do
        + [(f"customer/{cus}".encode(), backref(cus))],
    )
    writer = MetadataWriter(boot)
    drain(writer)
    assert writer.updated == 1 and writer.dead_lettered == len(poison)
    dead = dead_letters(topics.NETSUITE_BACKREFS)
    assert [d["value"] for d in dead] == poison
    assert_provenance(dead, topics.NETSUITE_BACKREFS, "stripe-metadata")
    assert double.objects[cus]["metadata"]["netsuite_customer_id"] == "1234"
    # restarted, with the back-reference once more: it reads that one only
    produce(topics.NETSUITE_BACKREFS, [(f"customer/{cus}".encode(), backref(cus))])
    again = MetadataWriter(boot)
    drain(again)
    assert again.runner.counts["read"] == 1 and again.dead_lettered == 0


def test_netsuite_sink_dead_letters_poison_commands_ignores_poison_back_references(
    pipe: Pipeline,
) -> None:
    good = Command(
        "customer",
        "cus_after_poison",
        {"companyName": "After poison", "subsidiary": {"id": "1"}},
        "customer",
        "cus_after_poison",
        "netsuite_customer_id",
    )
    commands = serde(topics.NETSUITE_COMMANDS)
    # valid Avro, same record, but a body that is no NetSuite record
    not_a_command = {**good.to_avro(), "body_json": "[1, 2, 3]"}
    poison = [NOT_AVRO, b"", None, commands.dumps(not_a_command)]
    produce(topics.NETSUITE_BACKREFS, [(b"customer/x", NOT_AVRO)])  # read by the sink's index
    produce(
        topics.NETSUITE_COMMANDS,
        [(b"customer/x", v) for v in poison]
        + [(good.key.encode(), commands.dumps(good.to_avro()))],
    )
    pipe.start("emulator", "emulator", "netsuite")
    pipe.wait_http(f"{pipe.emulator_url}/_emulator/records", "emulator")
    pipe.start("sink", "sink", "netsuite")
    wait_caught_up(
        pipe.env()["LEDGER_SINK_GROUP_ID"],
        [topics.name(topics.NETSUITE_COMMANDS)],
        timeout=90,
        check=pipe.check_alive,
    )
    assert [r["externalId"] for r in pipe.records("customer")] == ["cus_after_poison"]
    dead = dead_letters(topics.NETSUITE_COMMANDS)
    assert [d["value"] for d in dead] == poison
    assert_provenance(dead, topics.NETSUITE_COMMANDS, "netsuite-sink")


def test_metadata_writer_writes_item_ids_on_prices_and_coupons(
    isolated: str, double: StripeDouble, history: History, boot: Bootstrap
) -> None:
    """per_price item mode books a service sale item per price and a discount item per
    coupon; their internal ids go back to Stripe like every other (they were dropped)."""
    price = next(o["id"] for o in history.objects.values() if o["object"] == "price")
    coupon = next(o["id"] for o in history.objects.values() if o["object"] == "coupon")
    refs = [
        ("price", price, "serviceSaleItem", "netsuite_service_sale_item_id", "501"),
        ("coupon", coupon, "discountItem", "netsuite_discount_item_id", "502"),
    ]
    produce(
        topics.NETSUITE_BACKREFS,
        [
            (
                f"{rtype}/{sid}".encode(),
                backref(
                    sid,
                    record_type=rtype,
                    stripe_object=obj,
                    metadata_key=key,
                    internal_id=internal,
                ),
            )
            for obj, sid, rtype, key, internal in refs
        ],
    )
    writer = MetadataWriter(boot)
    drain(writer)
    assert writer.updated == 2 and writer.dead_lettered == 0
    assert double.objects[price]["metadata"]["netsuite_service_sale_item_id"] == "501"
    assert double.objects[coupon]["metadata"]["netsuite_discount_item_id"] == "502"
