"""Publishing Stripe events to Kafka, awaiting the broker's acknowledgement.

Every source (webhook, Events API poller, replay file, backfill) writes the event unchanged to
``stripe.events``; the router (``.router``) fetches what an event does not carry and
writes the typed records of the object topics, so all sources take exactly one path.

Guarantee: ``publish`` returns only after the broker acknowledged the record (acks=all,
idempotent producer), so a webhook answered 2xx is durably in Kafka. A failure raises, and the
caller answers 5xx so that Stripe retries.
"""

from __future__ import annotations

import asyncio
import json
import logging
import threading
from dataclasses import dataclass
from typing import Any

from confluent_kafka import KafkaError, Message, Producer

from ledgerstream import settings, topics
from ledgerstream import stripe_records as records
from ledgerstream.avro import Serde

log = logging.getLogger(__name__)


# the router and payout contents wait this long for the broker (librdkafka's default): a broker
# restart is waited out; the webhook waits only LEDGER_PUBLISH_TIMEOUT_MS (Stripe retries)
STAGE_DELIVERY_TIMEOUT_MS = 300_000


class PublishError(RuntimeError):
    pass


@dataclass(frozen=True)
class Outgoing:
    """One encoded record on its way to Kafka."""

    topic: str
    key: str
    value: bytes
    headers: list[tuple[str, str | bytes | None]]


class EventPublisher:
    """Routes Stripe events to their topics; one idempotent Kafka producer for all of them."""

    def __init__(self, delivery_timeout_ms: int | None = None):
        timeout = delivery_timeout_ms or settings.kafka().publish_timeout_ms
        conf = {
            **settings.kafka().client_config(),
            "enable.idempotence": True,
            "acks": "all",
            "linger.ms": 2,
            "delivery.timeout.ms": timeout,
            "request.timeout.ms": min(30000, timeout),
            "client.id": "ledgerstream-producer",
            "error_cb": self._on_error,
        }
        self._producer = Producer(conf)
        self._serdes = {
            spec.name: Serde(topics.name(spec), spec.schema or "")
            for spec in (
                topics.STRIPE_EVENTS,
                *topics.STRIPE_TOPICS,
                topics.STRIPE_PAYOUT_TRANSACTIONS,
            )
        }
        # every piece of state exists before the threads start: the poll thread serves the
        # error callback at once, and a broker refusing the first connection made it fail on
        # a missing attribute and die (no delivery report served after that)
        self._stop = threading.Event()
        # set while no broker answers: a webhook then gets its 503 at once instead of after
        # the whole delivery timeout (Stripe retries it either way)
        self.down = threading.Event()
        self._answered = threading.Event()  # a broker has answered since start-up
        self._suspect = threading.Event()
        self.counts: dict[str, int] = {"published": 0, "ignored": 0, "rejected": 0}
        self._lock = threading.Lock()
        self._errors: list[str] = []  # delivery errors of enqueued records, until acknowledged
        self._enqueued = 0
        self._poller = threading.Thread(target=self._poll, name="kafka-poll", daemon=True)
        self._watcher = threading.Thread(target=self._watch, name="kafka-watch", daemon=True)
        self._poller.start()
        self._watcher.start()

    def _poll(self) -> None:
        while not self._stop.is_set():
            self._producer.poll(0.1)

    def _on_error(self, err: KafkaError) -> None:
        if err.code() == KafkaError._ALL_BROKERS_DOWN:
            self._suspect.set()

    def _watch(self) -> None:
        """librdkafka says every broker connection is down (a broker that closed an idle
        connection says so too): ask the cluster; only if it does not answer is it down, until
        it answers again."""
        while not self._stop.is_set():
            if not self._suspect.wait(0.5):
                continue
            self._suspect.clear()
            while not self._stop.is_set() and not self.answers(timeout=2):
                if not self.down.is_set():
                    log.warning("no Kafka broker answers: webhooks get 503 until one does")
                self.down.set()
                self._stop.wait(1)
            if self._stop.is_set():
                return
            if self.down.is_set():
                log.warning("a Kafka broker answers again")
            self._answered.set()
            self.down.clear()

    def encode_event(self, event: dict[str, Any], source: str = "webhook") -> Outgoing | None:
        """Validate a Stripe Event for the raw topic; None for a type the pipeline ignores.

        Anything that makes the event unencodable (a field of the wrong type or out of range)
        raises ``BadEvent``: a client error, never a server one.
        """
        records.validate_event(event)
        if records.route(event["type"]) is None:
            return None
        try:
            return self._raw(event, source)
        except records.BadEvent:
            raise
        except (ValueError, TypeError, KeyError, OverflowError, OSError) as exc:
            raise records.BadEvent(f"event cannot be stored: {type(exc).__name__}: {exc}") from exc

    def encode_object(self, obj: dict[str, Any], read_at: int | None = None) -> Outgoing | None:
        """An object read from a list endpoint (backfill), in an Event envelope stamped with
        when Stripe answered the read (``records.object_event``)."""
        event = records.object_event(obj, read_at)
        return None if records.route(event["type"]) is None else self._raw(event, "backfill")

    def _raw(self, event: dict[str, Any], source: str) -> Outgoing:
        obj = event["data"]["object"]
        record = {
            "event_id": event.get("id"),
            "event_type": event["type"],
            "event_created": records.timestamp(event["created"]),
            "object_type": str(obj.get("object") or ""),
            "object_id": str(obj["id"]),
            "source": source,
            "event_json": json.dumps(event, separators=(",", ":")),
        }
        headers: list[tuple[str, str | bytes | None]] = [("stripe-event-type", event["type"])]
        if event.get("id"):
            headers.append(("stripe-event-id", str(event["id"])))
        serde = self._serdes[topics.STRIPE_EVENTS.name]
        return Outgoing(
            topics.name(topics.STRIPE_EVENTS), str(obj["id"]), serde.dumps(record), headers
        )

    def encode_typed(self, event: dict[str, Any]) -> Outgoing | None:
        """The typed record of an event's object, for its object topic (the router's output)."""
        spec = records.route(event["type"])
        if spec is None:
            return None
        record = records.to_record(spec, event)
        key = records.key_for(spec, event["data"]["object"])
        headers: list[tuple[str, str | bytes | None]] = [("stripe-event-type", event["type"])]
        if event.get("id"):
            headers.append(("stripe-event-id", str(event["id"])))
        return Outgoing(topics.name(spec), key, self._serdes[spec.name].dumps(record), headers)

    def encode_payout_transactions(
        self, payout: dict[str, Any], txns: list[dict[str, Any]]
    ) -> list[Outgoing]:
        """The payout's balance transactions, one record each, keyed by payout id."""
        serde = self._serdes[topics.STRIPE_PAYOUT_TRANSACTIONS.name]
        topic = topics.name(topics.STRIPE_PAYOUT_TRANSACTIONS)
        out = []
        for index, txn in enumerate(txns):
            source = txn.get("source") if isinstance(txn.get("source"), dict) else None
            record = records.payout_transaction(payout, txn, index, len(txns), source)
            out.append(Outgoing(topic, payout["id"], serde.dumps(record), []))
        return out

    async def publish(self, event: dict[str, Any]) -> str | None:
        """Publish one event and await the broker's ack; the topic, or None when ignored."""
        prepared = self.encode_event(event)
        if prepared is None:
            self.counts["ignored"] += 1
            return None
        if self.down.is_set():
            raise PublishError("no Kafka broker answers")
        loop = asyncio.get_running_loop()
        done: asyncio.Future[Message] = loop.create_future()

        def on_delivery(err: KafkaError | None, msg: Message) -> None:
            if err is not None:
                loop.call_soon_threadsafe(_set_exc, done, PublishError(str(err)))
            else:
                loop.call_soon_threadsafe(_set_result, done, msg)

        self._produce(prepared, on_delivery)
        await done
        self.counts["published"] += 1
        return prepared.topic

    def _produce(self, out: Outgoing, on_delivery: Any) -> None:
        try:
            self._producer.produce(
                out.topic,
                value=out.value,
                key=out.key.encode(),
                headers=out.headers,
                on_delivery=on_delivery,
            )
        except BufferError as exc:
            raise PublishError("producer queue is full") from exc

    def send_all(self, outgoing: list[Outgoing], timeout: float = 330.0) -> None:
        """Produce a batch and return once the broker acknowledged every record (or raise)."""
        for out in outgoing:
            self.enqueue(out)
        self.acknowledge(timeout)

    def enqueue(self, out: Outgoing) -> None:
        """Produce one record (a record Kafka can never take, e.g. too large, raises here)."""
        while True:
            try:
                self._produce(out, self._on_batch_delivery)
                break
            except PublishError:
                self._producer.flush(1.0)  # queue full: let deliveries drain
        self._enqueued += 1

    def _on_batch_delivery(self, err: KafkaError | None, msg: Message) -> None:
        if err is not None:
            with self._lock:
                self._errors.append(str(err))

    def acknowledge(self, timeout: float = 330.0) -> None:
        """Return once every enqueued record was acknowledged; raise if one was not."""
        remaining = self._producer.flush(timeout)
        with self._lock:
            errors = list(self._errors)  # kept: a failed batch fails every later acknowledge
        if remaining or errors:
            raise PublishError(f"{len(errors) or 'some'} record(s) not acknowledged: {errors[:3]}")
        self.counts["published"] += self._enqueued
        self._enqueued = 0

    def answers(self, timeout: float = 2.0) -> bool:
        """One metadata request: does a broker answer now?"""
        try:
            self._producer.list_topics(timeout=timeout)
            return True
        except Exception:  # noqa: BLE001
            return False

    def ready(self, timeout: float = 2.0) -> bool:
        """Can events be stored? Yes once a broker has answered, until every broker is lost and
        the cluster fails a probe (``down``, kept by the watch thread). Readiness follows that
        view rather than a request of its own: a single metadata request that went to a broker
        as it was killed waited its whole timeout although the two others answered (measured in
        a three-broker cluster), and a readiness flap takes the webhook out of rotation."""
        if self.down.is_set():
            return False
        if self._answered.is_set():
            return True
        if self.answers(timeout):
            self._answered.set()
            return True
        return False

    def close(self, timeout: float = 10.0) -> None:
        remaining = self._producer.flush(timeout)
        self._stop.set()
        self._poller.join(timeout=2)
        if remaining:
            log.error("%d record(s) were not acknowledged before shutdown", remaining)


def _set_result(fut: asyncio.Future[Message], msg: Message) -> None:
    if not fut.done():
        fut.set_result(msg)


def _set_exc(fut: asyncio.Future[Message], exc: Exception) -> None:
    if not fut.done():
        fut.set_exception(exc)
