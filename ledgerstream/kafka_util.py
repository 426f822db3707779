"""Small helpers shared by the Kafka loops: message coordinates and dead-letter headers."""

from __future__ import annotations

import time

from confluent_kafka import Consumer, KafkaError, KafkaException, Message, TopicPartition


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
    topic: str, partition: int, offset: int, exc: BaseException, error_class: str | None = None
) -> list[tuple[str, bytes]]:
    """Kafka Connect-style headers naming where a dead letter came from and why."""
    return [
        ("dlq.topic", topic.encode()),
        ("dlq.partition", str(partition).encode()),
        ("dlq.offset", str(offset).encode()),
        ("dlq.exception.class", (error_class or type(exc).__name__).encode()),
        ("dlq.exception.message", str(exc).encode()),
    ]


# what a partition answers while a new topic's leadership settles
_SETTLING = {
    KafkaError.NOT_LEADER_FOR_PARTITION,
    KafkaError.LEADER_NOT_AVAILABLE,
    KafkaError.UNKNOWN_TOPIC_OR_PART,
    KafkaError._TIMED_OUT,
    KafkaError.NOT_COORDINATOR,
    KafkaError.COORDINATOR_LOAD_IN_PROGRESS,
    KafkaError.COORDINATOR_NOT_AVAILABLE,
}


def end_offset(consumer: Consumer, topic: str, partition: int, timeout: float = 30.0) -> int:
    """High watermark of a partition, waiting out a leader election on a new topic."""
    deadline = time.monotonic() + timeout
    while True:
        try:
            return int(
                consumer.get_watermark_offsets(TopicPartition(topic, partition), timeout=10)[1]
            )
        except KafkaException as exc:
            err = exc.args[0]
            if time.monotonic() > deadline or not (err.retriable() or err.code() in _SETTLING):
                raise
            time.sleep(0.2)
