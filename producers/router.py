"""Router: ``stripe.events`` → the typed object topics, fetching what an event does not carry.

Every source writes raw events to ``stripe.events``; this consumer group turns each into the
typed record of its object topic. Before that it completes what the pipeline needs and the
event lacks, so every source yields the same records:

- a succeeded charge gets its balance transaction (settlement amount, fee, exchange rate: the
  payment records Stripe's rate so NetSuite books what Stripe settled);
- a refund or dispute gets its charge (its customer and invoice: the key that co-partitions it
  with the customer's other records).

Fetches go through the rate-limited Stripe client and are retried while Stripe is unreachable;
an object Stripe no longer has (404) is routed as it is. The Webhook path stays fast because
fetching happens here, not while Stripe waits for the webhook's answer.

Guarantee: at-least-once; the consumer offset is committed after the typed records were
acknowledged. An event that cannot be read goes to ``stripe.events.dlq`` with the reason.
"""

from __future__ import annotations

import json
import logging
import signal
import time
from typing import Any

import stripe
from confluent_kafka import Consumer, Message, Producer

from ledgerstream import settings, topics
from ledgerstream.avro import Serde
from ledgerstream.kafka_util import dead_letter_headers, is_real_error, where
from ledgerstream.stripe_records import BadEvent
from producers.publisher import EventPublisher, Outgoing
from producers.stripe_api import StripeAPI

log = logging.getLogger(__name__)


class Enricher:
    def __init__(self, api: StripeAPI):
        self.api = api

    def enrich(self, event: dict[str, Any]) -> dict[str, Any]:
        obj = event["data"]["object"]
        kind = obj.get("object")
        if kind == "charge" and obj.get("status") == "succeeded":
            txn = obj.get("balance_transaction")
            if isinstance(txn, str):
                fetched = self._fetch("balance_transactions", txn)
                if fetched is not None:
                    obj = {**obj, "balance_transaction": fetched}
        elif kind in ("refund", "dispute"):
            charge = obj.get("charge")
            if isinstance(charge, str):
                fetched = self._fetch("charges", charge)
                if fetched is not None:
                    obj = {**obj, "charge": fetched}
        if obj is event["data"]["object"]:
            return event
        return {**event, "data": {**event["data"], "object": obj}}

    def _fetch(self, kind: str, object_id: str) -> dict[str, Any] | None:
        delay = 1.0
        while True:
            try:
                return self.api.retrieve(kind, object_id)
            except stripe.InvalidRequestError as exc:
                if exc.http_status == 404:
                    log.warning("%s %s no longer exists; routed without it", kind, object_id)
                    return None
                raise
            except (stripe.APIConnectionError, stripe.APIError, stripe.RateLimitError) as exc:
                log.warning(
                    "fetching %s %s failed (%s); retrying in %.0fs",
                    kind,
                    object_id,
                    type(exc).__name__,
                    delay,
                )
                time.sleep(delay)
                delay = min(delay * 2, 60)


class Router:
    def __init__(
        self,
        api: StripeAPI | None = None,
        publisher: EventPublisher | None = None,
        batch: int = 200,
    ):
        self.publisher = publisher or EventPublisher()
        self.enricher = Enricher(api or StripeAPI())
        self.topic = topics.name(topics.STRIPE_EVENTS)
        self.serde = Serde(self.topic, topics.STRIPE_EVENTS.schema or "")
        kafka = settings.kafka()
        self.consumer = Consumer(
            {
                **kafka.client_config(),
                "group.id": kafka.topic("ledgerstream-router"),
                "enable.auto.commit": False,
                "auto.offset.reset": "earliest",
            }
        )
        self.dlq = Producer({**kafka.client_config(), "enable.idempotence": True})
        self.batch = batch
        self.running = True
        self.routed = 0
        self.dead_lettered = 0

    def route(self, msg: Message) -> Outgoing | None:
        raw = self.serde.loads(msg.value() or b"")
        event = json.loads(raw["event_json"])
        return self.publisher.encode_typed(self.enricher.enrich(event))

    def run(self, idle_exit_s: float | None = None) -> None:
        self.consumer.subscribe([self.topic])
        idle = time.monotonic()
        while self.running:
            msgs = self.consumer.consume(self.batch, timeout=0.5)
            if not msgs:
                if idle_exit_s is not None and time.monotonic() - idle > idle_exit_s:
                    break
                continue
            idle = time.monotonic()
            out: list[Outgoing] = []
            for msg in msgs:
                if msg.error():
                    if is_real_error(msg):
                        log.error("consumer error: %s", msg.error())
                    continue
                try:
                    typed = self.route(msg)
                except (BadEvent, ValueError, KeyError, TypeError) as exc:
                    self._dead_letter(msg, exc)
                    continue
                if typed is not None:
                    out.append(typed)
            self.publisher.send_all(out)
            if self.dlq.flush(30):
                raise RuntimeError("dead letters were not acknowledged")
            self.consumer.commit(asynchronous=False)
            self.routed += len(out)
        self.consumer.close()
        self.publisher.close()

    def _dead_letter(self, msg: Message, exc: Exception) -> None:
        topic, partition, offset = where(msg)
        log.error("dead letter %s[%d]@%d: %s", topic, partition, offset, exc)
        headers: list[tuple[str, str | bytes | None]] = [
            *dead_letter_headers(topic, partition, offset, exc)
        ]
        self.dlq.produce(
            topics.dlq_name(topics.STRIPE_EVENTS), key=msg.key(), value=msg.value(), headers=headers
        )
        self.dead_lettered += 1

    def stop(self, *_: Any) -> None:
        self.running = False


def run() -> None:
    router = Router()
    signal.signal(signal.SIGTERM, router.stop)
    signal.signal(signal.SIGINT, router.stop)
    router.run()
