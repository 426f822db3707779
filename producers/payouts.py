"""Payout contents: every balance transaction a paid payout settled, for the deposit.

A consumer of ``stripe.payout``: when an automatic payout is paid (``payout.paid`` or
``payout.reconciliation_completed``, or a backfilled paid payout) or failed, it lists
``GET /v1/balance_transactions?payout=po_…`` (all pages, sources expanded for the currency
conversion lines) and publishes one ``stripe.payout_transactions`` record per transaction,
keyed by payout id, each naming how many the payout has, so the processors can tell when the
list is complete. The offset is committed after the broker acknowledged them all
(``ledgerstream.stage``). A record that cannot be read, or a payout Stripe refuses to list
(e.g. 404), goes to ``stripe.payout.dlq`` with the reason; the next payout is handled.
"""

from __future__ import annotations

import json
import logging
import signal
from typing import Any

import stripe
from confluent_kafka import Message
from tenacity import Retrying, retry_if_exception, stop_never, wait_random_exponential

from ledgerstream import settings, topics
from ledgerstream.avro import Serde
from ledgerstream.bootstrap import Bootstrap
from ledgerstream.producers.publisher import STAGE_DELIVERY_TIMEOUT_MS, EventPublisher, PublishError
from ledgerstream.producers.stripe_api import StripeAPI
from ledgerstream.stage import ProduceFailed, Runner, Stage, serve_metrics
from ledgerstream.stripe_records import BadEvent

log = logging.getLogger(__name__)


def _transient(exc: BaseException) -> bool:
    return isinstance(exc, stripe.APIConnectionError | stripe.RateLimitError) or (
        isinstance(exc, stripe.APIError) and (exc.http_status or 500) >= 500
    )


def wants_contents(payout: dict[str, Any]) -> bool:
    """Paid, or failed (its deposit still takes its transactions out of Undeposited Funds)."""
    return bool(payout.get("automatic")) and payout.get("status") in ("paid", "failed")


def publish_payout_contents(
    api: StripeAPI, publisher: EventPublisher, payout: dict[str, Any]
) -> int:
    txns = api.payout_transactions(payout["id"])
    publisher.send_all(publisher.encode_payout_transactions(payout, txns))
    return len(txns)


class PayoutContents(Stage):
    """A stage of ``ledgerstream.stage.Runner``: a paid payout in, its transactions out."""

    name = "payout-contents"
    fatal = (PublishError, ProduceFailed, stripe.AuthenticationError, stripe.PermissionError)

    def __init__(self, boot: Bootstrap | None = None):
        boot = boot or Bootstrap()
        self.api = boot.stripe_api()  # first: stops if the Stripe key is unset
        # a broker outage shorter than this is waited out, not a reason to stop
        self.publisher = boot.publisher(delivery_timeout_ms=STAGE_DELIVERY_TIMEOUT_MS)
        self.topic = topics.name(topics.STRIPE_PAYOUT)
        self.serde = Serde(self.topic, topics.STRIPE_PAYOUT.schema or "")
        self.group_id = settings.kafka().topic("ledgerstream-payout-contents")
        self.batch_size = 20
        self.done: set[str] = set()
        self.runner = Runner(self)

    def add(self, record: Any, msg: Message) -> None:
        payout = json.loads(record["object_json"])
        if not isinstance(payout, dict) or not isinstance(payout.get("id"), str):
            raise BadEvent("object_json is not a payout")
        if wants_contents(payout) and payout["id"] not in self.done:
            # Stripe unreachable or failing: wait it out (never dead-letter a payout for that);
            # a refusal (404: no such payout) raises and dead-letters it
            for attempt in Retrying(
                retry=retry_if_exception(_transient),
                wait=wait_random_exponential(multiplier=1, max=60),
                stop=stop_never,
                reraise=True,
                before_sleep=lambda state: log.warning(
                    "listing payout %s failed (%s); retrying",
                    payout["id"],
                    state.outcome.exception() if state.outcome else "",
                ),
            ):
                with attempt:
                    count = publish_payout_contents(self.api, self.publisher, payout)
            self.done.add(payout["id"])
            log.info("payout %s: %d balance transactions published", payout["id"], count)

    def run(self) -> None:
        try:
            self.runner.run()
        finally:
            self.publisher.close()

    def stop(self, *_: Any) -> None:
        self.runner.stop()


def run(boot: Bootstrap | None = None) -> None:
    worker = PayoutContents(boot)
    signal.signal(signal.SIGTERM, worker.stop)
    signal.signal(signal.SIGINT, worker.stop)
    serve_metrics(worker.runner)
    worker.run()
