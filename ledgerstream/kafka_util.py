"""Small helpers shared by the Kafka loops: message coordinates, dead-letter headers, waiting
for the cluster."""

from __future__ import annotations

import logging
import time

from confluent_kafka import Consumer, KafkaError, KafkaException, Message, TopicPartition
from tenacity import (
    RetryCallState,
    Retrying,
    retry_if_exception_type,
    stop_never,
    wait_exponential,
)

from ledgerstream import settings


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
    return watermarks(consumer, topic, partition, timeout)[1]


def watermarks(
    consumer: Consumer, topic: str, partition: int, timeout: float = 30.0
) -> tuple[int, int]:
    """Low and high watermarks of a partition, waiting out a leader election on a new topic."""
    deadline = time.monotonic() + timeout
    while True:
        try:
            low, high = consumer.get_watermark_offsets(TopicPartition(topic, partition), timeout=10)
            return int(low), int(high)
        except KafkaException as exc:
            err = exc.args[0]
            if time.monotonic() > deadline or not (err.retriable() or err.code() in _SETTLING):
                raise
            time.sleep(0.2)


def read_latest(topic: str) -> dict[bytes, tuple[int, bytes | None]]:
    """The latest value of every key of a (compacted) topic, with its partition (None: a
    tombstone), read up to the end offsets seen at start."""
    consumer = Consumer(
        {
            **settings.kafka().client_config(),
            "group.id": "ledgerstream-compacted-reader-unused",  # assign() only, never committed
            "enable.auto.commit": False,
            "auto.offset.reset": "earliest",
        }
    )
    try:
        md = consumer.list_topics(topic, timeout=10).topics[topic]
        if md.error is not None:
            raise KafkaException(md.error)
        # from the low watermark: records before it are gone (retention), never to be read
        marks = {p: watermarks(consumer, topic, p) for p in md.partitions}
        consumer.assign([TopicPartition(topic, p, low) for p, (low, _) in marks.items()])
        ends = {p: high for p, (_, high) in marks.items()}
        position = {p: low for p, (low, _) in marks.items()}
        latest: dict[bytes, tuple[int, bytes | None]] = {}
        while any(position[p] < end for p, end in ends.items()):
            msg = consumer.poll(1.0)
            if msg is None or msg.error():
                continue
            _, partition, offset = where(msg)
            latest[msg.key() or b""] = (partition, msg.value())
            position[partition] = offset + 1
        return latest
    finally:
        consumer.close()


def wait_for_brokers(log: logging.Logger, report_every_s: float = 30.0) -> None:
    """Return once a broker of the cluster answers; while none does, say so now and then.

    For clients that give up at once when they cannot bootstrap (faust's aiokafka clients: a
    worker started during a broker outage exited at once and, under a supervisor, crash-looped
    through the outage). The librdkafka clients of the other stages wait by themselves.
    """
    from confluent_kafka.admin import AdminClient

    conf = settings.kafka().client_config()
    admin = AdminClient({**conf, "log_level": 0})  # "connection refused" is the expected answer
    last_report = -report_every_s

    def report(state: RetryCallState) -> None:
        nonlocal last_report
        waited = state.seconds_since_start or 0.0
        if waited - last_report >= report_every_s:
            log.warning(
                "no Kafka broker answers at %s (waited %.0f s): waiting for one",
                conf["bootstrap.servers"],
                waited,
            )
            last_report = waited

    for attempt in Retrying(
        retry=retry_if_exception_type(KafkaException),
        wait=wait_exponential(multiplier=0.5, max=5),
        stop=stop_never,
        before_sleep=report,
        reraise=True,
    ):
        with attempt:
            admin.list_topics(timeout=5)
