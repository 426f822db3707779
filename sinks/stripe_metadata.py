"""Stripe metadata writer: ``netsuite.backrefs`` → ``netsuite_*_id`` keys on the Stripe objects.

Guarantee: at-least-once and idempotent (setting a metadata key to the same value twice is a
no-op for Stripe). Updates are coalesced per Stripe object within a batch (one call sets every
key the batch has for that object; an object's back-references are keyed per NetSuite record,
as compaction needs, so they may sit on different partitions and come in different batches:
then each is a call of its own); calls are spread to at most
``LEDGER_STRIPE_MAX_REQUESTS_PER_S``; 429s, 5xx and connection errors back off (jittered
exponential) and retry. Stripe refusing an update for good (e.g. the object does not exist)
sends the object's back-references to ``netsuite.backrefs.dlq`` with the reason; wrong API keys
stop the writer. The offset is committed after every update of the batch was accepted or
dead-lettered (``ledgerstream.stage``); an unreadable record goes to the dead-letter topic too.
"""

from __future__ import annotations

import logging
import signal
from typing import Any

import stripe
from confluent_kafka import Message
from tenacity import Retrying, retry_if_exception, stop_after_attempt, wait_random_exponential

from ledgerstream import metrics, settings, status, topics
from ledgerstream.avro import Serde
from ledgerstream.bootstrap import Bootstrap
from ledgerstream.producers.stripe_api import Throttle
from ledgerstream.stage import ProduceFailed, Runner, Stage, serve_metrics

log = logging.getLogger(__name__)


def _retryable(exc: BaseException) -> bool:
    return isinstance(exc, stripe.RateLimitError | stripe.APIConnectionError) or (
        isinstance(exc, stripe.APIError) and (exc.http_status or 500) >= 500
    )


class MetadataWriter(Stage):
    """A stage of ``ledgerstream.stage.Runner``: back-references in, Stripe metadata out."""

    name = "stripe-metadata"
    tombstones = True  # the back-reference topic is compacted
    fatal = (SystemExit, ProduceFailed)

    def __init__(self, boot: Bootstrap | None = None, cfg: settings.MetadataSettings | None = None):
        boot = boot or Bootstrap()
        self.cfg = cfg or settings.MetadataSettings()
        self.client = boot.stripe_client()
        self.topic = topics.name(topics.NETSUITE_BACKREFS)
        self.serde = Serde(self.topic, topics.NETSUITE_BACKREFS.schema or "")
        self.group_id = self.cfg.metadata_group_id
        self.batch_size = self.cfg.metadata_batch_size
        self.throttle = Throttle(boot.stripe.stripe_max_requests_per_s)
        self.updated = 0
        self.calls = 0
        # what the records read since the last flush ask for, coalesced per Stripe object
        self.updates: dict[tuple[str, str], dict[str, str]] = {}
        self.sources: dict[tuple[str, str], list[Message]] = {}
        self.status_topic = status.topic()
        self.runner = Runner(self)

    @property
    def dead_lettered(self) -> int:
        return self.runner.counts["dead_lettered"]

    def add(self, record: Any, msg: Message) -> None:
        if record is None or not record.get("metadata_key"):
            return  # a tombstone, or a record with nothing to write back
        key = (record["stripe_object"], record["stripe_id"])
        self.updates.setdefault(key, {})[record["metadata_key"]] = record["internal_id"]
        self.sources.setdefault(key, []).append(msg)

    def flush(self) -> None:
        if self.updates:
            # cleared only once applied: if Stripe stays unreachable this raises, nothing is
            # committed, and a retry (or the replacement process) applies them again
            self.apply(self.updates, self.sources)
            self.updates, self.sources = {}, {}

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
            # per_price item mode: the service sale item of a price, the discount item of a
            # coupon (netsuite_service_sale_item_id, netsuite_discount_item_id)
            "price": v1.prices,
            "coupon": v1.coupons,
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
            if service is None:  # not dropped: kept in the dead-letter topic with the reason
                unknown = ValueError(f"no Stripe metadata update for object type {obj!r}")
                for msg in (sources or {}).get((obj, stripe_id), []):
                    self._dead_letter(msg, unknown)
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
                        try:
                            service.update(stripe_id, params={"metadata": metadata})
                        except Exception as exc:
                            outcome = metrics.stripe_outcome(exc)
                            metrics.STRIPE_CALLS.labels("update", outcome).inc()
                            raise
                        metrics.STRIPE_CALLS.labels("update", "ok").inc()
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
            self.runner.produce(
                self.status_topic,
                key=status.key(stripe_id, "backref"),
                value=status.value(metadata=metadata),
            )

    def _dead_letter(self, msg: Message, exc: Exception) -> None:
        self.runner.dead_letter(msg, exc)

    def run(self) -> None:
        self.runner.run()

    def stop(self, *_: Any) -> None:
        self.runner.stop()


def run(boot: Bootstrap | None = None) -> None:
    writer = MetadataWriter(boot)
    signal.signal(signal.SIGTERM, writer.stop)
    signal.signal(signal.SIGINT, writer.stop)
    serve_metrics(writer.runner)
    writer.run()
