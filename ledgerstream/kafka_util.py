"""Small helpers shared by the Kafka loops: message coordinates and dead-letter headers."""

from __future__ import annotations

from confluent_kafka import KafkaError, Message


def where(msg: Message) -> tuple[str, int, int]:
    """topic, partition, offset of a consumed message."""
    topic, partition, offset = msg.topic(), msg.partition(), msg.offset()
    assert topic is not None and partition is not None and offset is not None
    return topic, partition, offset


def is_real_error(msg: Message) -> bool:
    """True for a consumer error worth logging (end-of-partition notices are not)."""
    err = msg.error()
    return err is not None and err.code() != KafkaError._PARTITION_EOF


def dead_letter_headers(
    topic: str, partition: int, offset: int, exc: BaseException
) -> list[tuple[str, bytes]]:
    """Kafka Connect-style headers naming where a dead letter came from and why."""
    return [
        ("dlq.topic", topic.encode()),
        ("dlq.partition", str(partition).encode()),
        ("dlq.offset", str(offset).encode()),
        ("dlq.exception.class", type(exc).__name__.encode()),
        ("dlq.exception.message", str(exc).encode()),
    ]
