"""Stripe metadata writer: ``netsuite.backrefs`` → ``netsuite_*_id`` keys on the Stripe objects.

Guarantee: at-least-once and idempotent (setting a metadata key to the same value twice is a
no-op for Stripe). Updates are coalesced per Stripe object within a batch; the offset is
committed after Stripe accepted every update of the batch. 429s back off and retry.
"""

from __future__ import annotations

import logging
import signal
import time
from typing import Any

import stripe
from confluent_kafka import Consumer
from tenacity import Retrying, retry_if_exception, stop_after_attempt, wait_random_exponential

from ledgerstream import settings, topics
from ledgerstream.avro import Serde
from ledgerstream.kafka_util import is_real_error

log = logging.getLogger(__name__)


def stripe_client() -> stripe.StripeClient:
    cfg = settings.stripe()
    return stripe.StripeClient(
        cfg.stripe_api_key.get_secret_value(),
        base_addresses={"api": cfg.stripe_api_base},
        stripe_version=cfg.stripe_api_version,
        max_network_retries=2,
    )


def _retryable(exc: BaseException) -> bool:
    return isinstance(exc, stripe.RateLimitError | stripe.APIConnectionError) or (
        isinstance(exc, stripe.APIError) and (exc.http_status or 500) >= 500
    )


class MetadataWriter:
    def __init__(
        self,
        client: stripe.StripeClient | None = None,
        cfg: settings.MetadataSettings | None = None,
    ):
        self.cfg = cfg or settings.MetadataSettings()
        self.client = client or stripe_client()
        self.topic = topics.name(topics.NETSUITE_BACKREFS)
        self.serde = Serde(self.topic, topics.NETSUITE_BACKREFS.schema or "")
        self.consumer = Consumer(
            {
                **settings.kafka().client_config(),
                "group.id": self.cfg.metadata_group_id,
                "enable.auto.commit": False,
                "auto.offset.reset": "earliest",
            }
        )
        self.running = True
        self.updated = 0

    def services(self) -> dict[str, Any]:
        v1 = self.client.v1
        return {
            "customer": v1.customers,
            "invoice": v1.invoices,
            "charge": v1.charges,
            "refund": v1.refunds,
            "dispute": v1.disputes,
            "credit_note": v1.credit_notes,
            "payout": v1.payouts,
        }

    def apply(self, updates: dict[tuple[str, str], dict[str, str]]) -> None:
        services = self.services()
        for (obj, stripe_id), metadata in sorted(updates.items()):
            service = services.get(obj)
            if service is None:
                log.warning("no Stripe metadata update for object type %s", obj)
                continue
            for attempt in Retrying(
                retry=retry_if_exception(_retryable),
                wait=wait_random_exponential(multiplier=0.5, max=30),
                stop=stop_after_attempt(8),
                reraise=True,
            ):
                with attempt:
                    service.update(stripe_id, params={"metadata": metadata})
            self.updated += 1
            log.info("stripe %s %s metadata %s", obj, stripe_id, metadata)

    def run(self, idle_exit_s: float | None = None) -> None:
        self.consumer.subscribe([self.topic])
        idle_since = time.monotonic()
        while self.running:
            msgs = self.consumer.consume(self.cfg.metadata_batch_size, timeout=0.5)
            updates: dict[tuple[str, str], dict[str, str]] = {}
            for msg in msgs:
                value = msg.value()
                if msg.error() or value is None:
                    if is_real_error(msg):
                        log.error("consumer error: %s", msg.error())
                    continue
                ref = self.serde.loads(value)
                if ref.get("metadata_key"):
                    key = (ref["stripe_object"], ref["stripe_id"])
                    updates.setdefault(key, {})[ref["metadata_key"]] = ref["internal_id"]
            if updates:
                self.apply(updates)
            if msgs:
                self.consumer.commit(asynchronous=False)
                idle_since = time.monotonic()
            elif idle_exit_s is not None and time.monotonic() - idle_since > idle_exit_s:
                break
        self.consumer.close()

    def stop(self, *_: Any) -> None:
        self.running = False


def run() -> None:
    writer = MetadataWriter()
    signal.signal(signal.SIGTERM, writer.stop)
    signal.signal(signal.SIGINT, writer.stop)
    writer.run()
