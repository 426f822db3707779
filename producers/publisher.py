"""Publishing Stripe events to the object topics, awaiting the broker's acknowledgement.

Guarantee: ``publish`` returns only after the broker acknowledged the record (acks=all,
idempotent producer), so a webhook answered 2xx is durably in Kafka. A failure raises, and the
caller answers 5xx so that Stripe retries.
"""

from __future__ import annotations

import asyncio
import logging
import threading
from typing import Any

from confluent_kafka import KafkaError, Message, Producer

from ledgerstream import settings, topics
from ledgerstream.avro import Serde
from producers import records

log = logging.getLogger(__name__)


class PublishError(RuntimeError):
    pass


class EventPublisher:
    """Routes Stripe events to their topics; one idempotent Kafka producer for all of them."""

    def __init__(self, delivery_timeout_ms: int = 15000):
        conf = {
            **settings.kafka().client_config(),
            "enable.idempotence": True,
            "acks": "all",
            "linger.ms": 2,
            "delivery.timeout.ms": delivery_timeout_ms,
            "client.id": "ledgerstream-producer",
        }
        self._producer = Producer(conf)
        self._serdes = {
            spec.name: Serde(topics.name(spec), spec.schema or "") for spec in topics.STRIPE_TOPICS
        }
        self._stop = threading.Event()
        self._poller = threading.Thread(target=self._poll, name="kafka-poll", daemon=True)
        self._poller.start()
        self.counts: dict[str, int] = {"published": 0, "ignored": 0, "rejected": 0}

    def _poll(self) -> None:
        while not self._stop.is_set():
            self._producer.poll(0.1)

    def prepare(self, event: dict[str, Any]) -> tuple[str, str, bytes] | None:
        """Validate and encode; None for an event type we do not handle."""
        records.validate_event(event)
        spec = records.route(event["type"])
        if spec is None:
            return None
        record = records.to_record(spec, event)
        key = records.key_for(spec, event["data"]["object"])
        return topics.name(spec), key, self._serdes[spec.name].dumps(record)

    async def publish(self, event: dict[str, Any]) -> str | None:
        """Publish one event; return the topic, or None when its type is ignored."""
        prepared = self.prepare(event)
        if prepared is None:
            self.counts["ignored"] += 1
            return None
        topic, key, value = prepared
        loop = asyncio.get_running_loop()
        done: asyncio.Future[Message] = loop.create_future()

        def on_delivery(err: KafkaError | None, msg: Message) -> None:
            if err is not None:
                loop.call_soon_threadsafe(_set_exc, done, PublishError(str(err)))
            else:
                loop.call_soon_threadsafe(_set_result, done, msg)

        headers = [
            ("stripe-event-id", event["id"].encode()),
            ("stripe-event-type", event["type"].encode()),
        ]
        try:
            self._producer.produce(
                topic, value=value, key=key.encode(), headers=headers, on_delivery=on_delivery
            )
        except BufferError as exc:
            raise PublishError("producer queue is full") from exc
        await done
        self.counts["published"] += 1
        return topic

    def publish_sync(self, event: dict[str, Any]) -> str | None:
        return asyncio.run(self.publish(event))

    def ready(self, timeout: float = 2.0) -> bool:
        try:
            self._producer.list_topics(timeout=timeout)
            return True
        except Exception:  # noqa: BLE001
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
