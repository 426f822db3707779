"""Durable poller positions, kept in a compacted Kafka topic (no extra database to run)."""

from __future__ import annotations

import json
from typing import Any

from confluent_kafka import Consumer, Producer, TopicPartition

from ledgerstream import settings, topics
from ledgerstream.kafka_util import end_offset, where


class CursorStore:
    def __init__(self) -> None:
        self.topic = topics.name(topics.CURSORS)
        conf = settings.kafka().client_config()
        self.producer = Producer({**conf, "enable.idempotence": True, "acks": "all"})
        self.conf = conf

    def load(self, name: str) -> dict[str, Any] | None:
        """The last value stored under ``name`` (reads the topic to its end)."""
        consumer = Consumer(
            {**self.conf, "group.id": "ledgerstream-cursor-reader", "enable.auto.commit": False}
        )
        try:
            md = consumer.list_topics(self.topic, timeout=10).topics[self.topic]
            parts = [TopicPartition(self.topic, p, 0) for p in md.partitions]
            ends = {p.partition: end_offset(consumer, self.topic, p.partition) for p in parts}
            consumer.assign(parts)
            position = {p: 0 for p in ends}
            value: dict[str, Any] | None = None
            while any(position[p] < end for p, end in ends.items()):
                msg = consumer.poll(1.0)
                if msg is None or msg.error():
                    continue
                _, partition, offset = where(msg)
                position[partition] = offset + 1
                if msg.key() == name.encode():
                    raw = msg.value()
                    value = None if raw is None else json.loads(raw)
            return value
        finally:
            consumer.close()

    def save(self, name: str, value: dict[str, Any]) -> None:
        """Store and wait for the broker's acknowledgement."""
        self.producer.produce(
            self.topic, key=name.encode(), value=json.dumps(value, sort_keys=True).encode()
        )
        if self.producer.flush(30):
            raise RuntimeError(f"cursor {name} was not acknowledged")
