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
acknowledged (``ledgerstream.stage``). A record that cannot be read or routed (bad bytes, an
empty value, an event that is not one, an amount no record can hold, a fetch Stripe refuses)
goes to ``stripe.events.dlq`` with the reason and the next one is routed.
"""

from __future__ import annotations

import json
import logging
import signal
from collections.abc import Callable
from typing import Any, TypeVar

import stripe
from cachetools import LRUCache
from confluent_kafka import Message
from tenacity import RetryCallState, Retrying, retry_if_exception_type, stop_never, wait_exponential
from tenacity.wait import wait_base

from ledgerstream import settings, status, topics
from ledgerstream.avro import Serde
from ledgerstream.bootstrap import Bootstrap
from ledgerstream.producers.publisher import STAGE_DELIVERY_TIMEOUT_MS, PublishError
from ledgerstream.producers.stripe_api import StripeAPI
from ledgerstream.stage import ProduceFailed, Runner, Stage, serve_metrics
from ledgerstream.stripe_records import BadEvent

log = logging.getLogger(__name__)
_T = TypeVar("_T")


class Enricher:
    """Adds to an event's object what its booking needs and the event lacks (a charge's balance
    transaction, a refund's or dispute's charge, the lines of an invoice beyond the first few
    it embeds)."""

    def __init__(self, api: StripeAPI, wait: wait_base | None = None, cached_lines: int = 20_000):
        self.api = api
        # between attempts while Stripe is unreachable, rate-limits or fails
        self.wait = wait or wait_exponential(multiplier=1, min=1, max=60)
        # the full lines of finalized invoices, so that the several events of one invoice
        # (finalized, paid, payment_succeeded, ...) fetch them once; bounded by the number of
        # lines held, not of invoices (one invoice can have thousands)
        self.lines: LRUCache[str, list[dict[str, Any]]] = LRUCache(cached_lines, getsizeof=len)

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
        elif kind == "invoice" and (obj.get("lines") or {}).get("has_more"):
            lines = self._invoice_lines(obj)
            if lines is not None:
                listed = {**obj["lines"], "data": lines, "has_more": False}
                obj = {**obj, "lines": {**listed, "total_count": len(lines)}}
        if obj is event["data"]["object"]:
            return event
        return {**event, "data": {**event["data"], "object": obj}}

    def _invoice_lines(self, invoice: dict[str, Any]) -> list[dict[str, Any]] | None:
        """Every line of ``invoice`` (``GET /v1/invoices/{id}/lines``, all pages), or None if
        Stripe no longer has the invoice (a deleted draft)."""
        invoice_id = invoice["id"]
        cached = self.lines.get(invoice_id)
        if cached is not None:
            return cached
        path = f"/v1/invoices/{invoice_id}/lines"
        lines = self._retried(path, lambda: list(self.api.paginate(path, {})))
        # a finalized invoice's lines no longer change (Stripe: a line item can be updated only
        # before the invoice is finalized); a draft's are fetched again at each event
        if lines is not None and invoice.get("status") not in (None, "draft"):
            self.lines[invoice_id] = lines
        return lines

    def _fetch(self, kind: str, object_id: str) -> dict[str, Any] | None:
        """The object, or None if Stripe no longer has it."""
        return self._retried(f"{kind} {object_id}", lambda: self.api.retrieve(kind, object_id))

    def _retried(self, what: str, call: Callable[[], _T]) -> _T | None:
        """What ``call`` answers, or None if Stripe no longer has the object (404); retried for
        as long as Stripe is unreachable, rate-limits or fails (``StripeAPI`` already retried
        each call a few times)."""

        def report(state: RetryCallState) -> None:
            exc = state.outcome.exception() if state.outcome else None
            wait = state.next_action.sleep if state.next_action else 0.0
            log.warning(
                "fetching %s failed (%s); retrying in %.0fs", what, type(exc).__name__, wait
            )

        retrying = Retrying(
            retry=retry_if_exception_type(
                (stripe.APIConnectionError, stripe.APIError, stripe.RateLimitError)
            ),
            wait=self.wait,
            stop=stop_never,
            before_sleep=report,
            reraise=True,
        )
        try:
            return retrying(call)
        except stripe.InvalidRequestError as exc:
            if exc.http_status == 404:
                log.warning("%s: no longer exists; routed without it", what)
                return None
            raise


class Router(Stage):
    """``stripe.events`` → typed object records; a stage of ``ledgerstream.stage.Runner``."""

    name = "router"
    # Kafka not acknowledging, or Stripe refusing the API key: stop, re-read after a restart
    fatal = (PublishError, ProduceFailed, stripe.AuthenticationError, stripe.PermissionError)

    def __init__(self, boot: Bootstrap | None = None, batch: int = 200):
        boot = boot or Bootstrap()
        self.enricher = Enricher(boot.stripe_api())  # first: stops if the Stripe key is unset
        # a broker outage shorter than this is waited out, not a reason to stop
        self.publisher = boot.publisher(delivery_timeout_ms=STAGE_DELIVERY_TIMEOUT_MS)
        self.topic = topics.name(topics.STRIPE_EVENTS)
        self.serde = Serde(self.topic, topics.STRIPE_EVENTS.schema or "")
        self.group_id = settings.kafka().topic("ledgerstream-router")
        self.status_topic = status.topic()
        self.batch_size = batch
        self.out = 0  # routed records not yet acknowledged
        self.routed = 0
        self.runner = Runner(self)

    def add(self, record: Any, msg: Message) -> None:
        event = json.loads(record["event_json"])
        if not isinstance(event, dict):
            raise BadEvent("event_json is not a JSON object")
        typed = self.publisher.encode_typed(self.enricher.enrich(event))
        if typed is not None:
            self.publisher.enqueue(typed)  # a record Kafka cannot take raises here: dead letter
            self.out += 1
            self._status(event, typed.topic)

    def _status(self, event: dict[str, Any], routed_to: str) -> None:
        obj = (event.get("data") or {}).get("object") or {}
        oid = obj.get("id")
        if not isinstance(oid, str):
            return
        event_id = event.get("id") or f"{event.get('type')}@{event.get('created')}"
        self.runner.produce(
            self.status_topic,
            key=status.key(oid, "event", str(event_id)),
            value=status.value(
                event_id=event.get("id"),
                type=event.get("type"),
                created=event.get("created"),
                topic=routed_to,
            ),
        )

    def flush(self) -> None:
        if self.out:
            self.publisher.acknowledge()  # raises unless every record was acknowledged
            self.routed += self.out
            self.out = 0

    @property
    def dead_lettered(self) -> int:
        return self.runner.counts["dead_lettered"]

    def run(self) -> None:
        try:
            self.runner.run()
        finally:
            self.publisher.close()

    def stop(self, *_: Any) -> None:
        self.runner.stop()


def run(boot: Bootstrap | None = None) -> None:
    router = Router(boot)
    signal.signal(signal.SIGTERM, router.stop)
    signal.signal(signal.SIGINT, router.stop)
    serve_metrics(router.runner)
    router.run()
