"""Stripe metadata writer: ``netsuite.backrefs`` → ``netsuite_*_id`` keys on the Stripe objects.

Guarantee: at-least-once and idempotent (setting a metadata key to the same value twice is a
no-op for Stripe). Updates are coalesced per Stripe object within a batch (one call sets every
key the batch has for that object); calls are spread to at most
``LEDGER_STRIPE_MAX_REQUESTS_PER_S``; 429s, 5xx and connection errors back off (jittered
exponential) and retry. Stripe refusing an update for good (e.g. the object does not exist)
sends the object's back-references to ``netsuite.backrefs.dlq`` with the reason; wrong API keys
stop the writer. The offset is committed after every update of the batch was accepted or
dead-lettered.
"""

from __future__ import annotations

import logging
import signal
import time
from typing import Any

import stripe
from confluent_kafka import Consumer, Message, Producer
from tenacity import Retrying, retry_if_exception, stop_after_attempt, wait_random_exponential

from ledgerstream import settings, topics
from ledgerstream.avro import Serde
from ledgerstream.kafka_util import dead_letter_headers, is_real_error, where
from producers.stripe_api import Throttle

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
        self.producer = Producer({**settings.kafka().client_config(), "acks": "all"})
        self.throttle = Throttle(settings.stripe().stripe_max_requests_per_s)
        self.running = True
        self.updated = 0
        self.calls = 0
        self.dead_lettered = 0

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

    def apply(
        self,
        updates: dict[tuple[str, str], dict[str, str]],
        sources: dict[tuple[str, str], list[Message]] | None = None,
    ) -> None:
        """One update call per Stripe object; permanent refusals go to the dead-letter topic."""
        services = self.services()
        for (obj, stripe_id), metadata in sorted(updates.items()):
            service = services.get(obj)
            if service is None:
                log.warning("no Stripe metadata update for object type %s", obj)
                continue
            try:
                for attempt in Retrying(
                    retry=retry_if_exception(_retryable),
                    wait=wait_random_exponential(multiplier=0.5, max=30),
                    stop=stop_after_attempt(8),
                    reraise=True,
                ):
                    with attempt:
                        self.throttle.wait()
                        self.calls += 1
                        service.update(stripe_id, params={"metadata": metadata})
            except stripe.AuthenticationError as exc:
                raise SystemExit(
                    f"stripe metadata writer stopped: Stripe refuses the API key ({exc}); "
                    "check LEDGER_STRIPE_API_KEY"
                ) from exc
            except (stripe.InvalidRequestError, stripe.PermissionError) as exc:
                for msg in (sources or {}).get((obj, stripe_id), []):
                    self._dead_letter(msg, exc)
                continue
            self.updated += 1
            log.info("stripe %s %s metadata %s", obj, stripe_id, metadata)

    def _dead_letter(self, msg: Message, exc: Exception) -> None:
        topic, partition, offset = where(msg)
        log.error("dead letter %s[%d]@%d: %s", topic, partition, offset, exc)
        self.producer.produce(
            topics.dlq_name(topics.NETSUITE_BACKREFS),
            key=msg.key(),
            value=msg.value(),
            headers=[*dead_letter_headers(topic, partition, offset, exc)],
        )
        self.dead_lettered += 1

    def run(self, idle_exit_s: float | None = None) -> None:
        self.consumer.subscribe([self.topic])
        idle_since = time.monotonic()
        while self.running:
            msgs = self.consumer.consume(self.cfg.metadata_batch_size, timeout=0.5)
            updates: dict[tuple[str, str], dict[str, str]] = {}
            sources: dict[tuple[str, str], list[Message]] = {}
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
                    sources.setdefault(key, []).append(msg)
            if updates:
                self.apply(updates, sources)
            if msgs:
                if self.producer.flush(30) != 0:
                    raise SystemExit("stripe metadata writer: dead letters not acknowledged")
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
