"""Payout contents: every balance transaction a paid payout settled, for the deposit.

A consumer of ``stripe.payout``: when an automatic payout is paid (``payout.paid`` or
``payout.reconciliation_completed``, or a backfilled paid payout), it lists
``GET /v1/balance_transactions?payout=po_…`` (all pages, sources expanded for the currency
conversion lines) and publishes one ``stripe.payout_transactions`` record per transaction,
keyed by payout id, each naming how many the payout has, so the processors can tell when the
list is complete. The offset is committed after the broker acknowledged them all.
"""

from __future__ import annotations

import json
import logging
import signal
from typing import Any

from confluent_kafka import Consumer

from ledgerstream import settings, topics
from ledgerstream.avro import Serde
from ledgerstream.kafka_util import is_real_error
from producers.publisher import EventPublisher
from producers.stripe_api import StripeAPI

log = logging.getLogger(__name__)


def wants_contents(payout: dict[str, Any]) -> bool:
    return bool(payout.get("automatic")) and payout.get("status") == "paid"


def publish_payout_contents(
    api: StripeAPI, publisher: EventPublisher, payout: dict[str, Any]
) -> int:
    txns = api.payout_transactions(payout["id"])
    publisher.send_all(publisher.encode_payout_transactions(payout, txns))
    return len(txns)


class PayoutContents:
    def __init__(self, api: StripeAPI | None = None, publisher: EventPublisher | None = None):
        self.api = api or StripeAPI()
        self.publisher = publisher or EventPublisher()
        self.topic = topics.name(topics.STRIPE_PAYOUT)
        self.serde = Serde(self.topic, topics.STRIPE_PAYOUT.schema or "")
        self.consumer = Consumer(
            {
                **settings.kafka().client_config(),
                "group.id": settings.kafka().topic("ledgerstream-payout-contents"),
                "enable.auto.commit": False,
                "auto.offset.reset": "earliest",
            }
        )
        self.running = True
        self.done: set[str] = set()

    def run(self, idle_exit_s: float | None = None) -> None:
        import time

        self.consumer.subscribe([self.topic])
        idle = time.monotonic()
        while self.running:
            msg = self.consumer.poll(0.5)
            if msg is None:
                if idle_exit_s is not None and time.monotonic() - idle > idle_exit_s:
                    break
                continue
            idle = time.monotonic()
            if msg.error():
                if is_real_error(msg):
                    log.error("consumer error: %s", msg.error())
                continue
            rec = self.serde.loads(msg.value() or b"")
            payout = json.loads(rec["object_json"])
            if wants_contents(payout) and payout["id"] not in self.done:
                count = publish_payout_contents(self.api, self.publisher, payout)
                self.done.add(payout["id"])
                log.info("payout %s: %d balance transactions published", payout["id"], count)
            self.consumer.commit(message=msg, asynchronous=False)
        self.consumer.close()
        self.publisher.close()

    def stop(self, *_: Any) -> None:
        self.running = False


def run() -> None:
    worker = PayoutContents()
    signal.signal(signal.SIGTERM, worker.stop)
    signal.signal(signal.SIGINT, worker.stop)
    worker.run()
