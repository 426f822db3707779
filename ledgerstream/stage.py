"""One runner for every consume → handle → produce → commit stage (router, payout contents,
NetSuite sink, Stripe metadata writer).

A stage implements only its handling (``Stage``): ``add`` one decoded record, ``flush`` what it
batched, and, for stages whose work finishes later (the NetSuite sink's concurrent writes),
``tick``/``busy``/``revoke``/``close``. The runner owns the rest, the same way for all:

* polling in batches, pausing while the stage says it holds too much (``saturated``);
* **commit only after the side effects are acknowledged**: before each commit it calls the
  stage's ``flush``, then waits until the broker acknowledged every record the runner produced
  (outputs and dead letters) and checks that none failed; per partition it commits up to the
  first record that is not done, so a record still being written holds its partition back;
* **one dead-letter policy**: a record that cannot be decoded (bad bytes, an empty value or a
  tombstone where none belong), or whose handling raises anything but the stage's ``fatal``
  exceptions, goes to ``<topic>.dlq`` with its original key and bytes and provenance headers
  (``dlq.topic``, ``dlq.partition``, ``dlq.offset``, ``dlq.exception.class``,
  ``dlq.exception.message``, ``dlq.stage``, ``dlq.time``), and the next record is handled; a
  ``fatal`` exception (Kafka not acknowledging, credentials refused) stops the component
  without committing past the record, so its replacement reads it again;
* a commit the coordinator cannot take now (coordinator moving or loading, rebalance) is
  retried at the next interval instead of stopping the component;
* graceful shutdown (``stop`` from SIGTERM/SIGINT: the stage closes, done work is committed);
* progress counters and hooks (``on_commit``) for metrics and health.

Guarantee: for every committed input offset, every record the stage produced from it (and its
dead letter, if it was dead-lettered) was acknowledged by the broker (acks=all), and the
stage's own side effects for it (e.g. a NetSuite write) were confirmed by ``flush``/``done``.
A crash at any point re-reads what was not committed (at-least-once; the stages' writes are
idempotent).
"""

from __future__ import annotations

import logging
import signal
import threading
import time
from collections import defaultdict
from collections.abc import Callable
from datetime import UTC, datetime
from typing import Any

from confluent_kafka import Consumer, KafkaError, KafkaException, Message, Producer, TopicPartition

from ledgerstream import logs, metrics, settings
from ledgerstream.avro import Serde
from ledgerstream.kafka_util import dead_letter_headers, where

log = logging.getLogger(__name__)

TP = tuple[str, int]

# commit errors that mean "not now": the coordinator is moving, loading or rebalancing
_COMMIT_LATER = {
    KafkaError._WAIT_COORD,
    KafkaError.NOT_COORDINATOR,
    KafkaError.COORDINATOR_NOT_AVAILABLE,
    KafkaError.COORDINATOR_LOAD_IN_PROGRESS,
    KafkaError.REBALANCE_IN_PROGRESS,
    KafkaError.REQUEST_TIMED_OUT,
    KafkaError._TIMED_OUT,
    KafkaError._TRANSPORT,
    KafkaError._ALL_BROKERS_DOWN,
}
# commit errors after which this member no longer owns the partitions: the offsets are dropped
# (the records are read again by whoever owns them now)
_COMMIT_LOST = {
    KafkaError.ILLEGAL_GENERATION,
    KafkaError.UNKNOWN_MEMBER_ID,
    KafkaError.FENCED_INSTANCE_ID,
    KafkaError._STATE,
}


class ProduceFailed(RuntimeError):
    """The broker did not acknowledge a record: nothing after it may be committed."""


class Stage:
    """A stage's handling. Subclasses set ``name``, ``topic``, ``serde`` and ``group_id``."""

    name: str = "stage"
    topic: str
    serde: Serde | None  # None: values are passed as raw bytes
    group_id: str
    batch_size: int = 200
    tombstones: bool = False  # a None value is valid input (compacted topics)
    deferred: bool = False  # True: the stage calls ``runner.done(msg)`` when a record is done
    fatal: tuple[type[BaseException], ...] = ()  # stop the component instead of dead-lettering
    runner: Runner

    def add(self, record: Any, msg: Message) -> None:
        """Handle one decoded record (raise to dead-letter it, or one of ``fatal`` to stop)."""
        raise NotImplementedError

    def flush(self) -> None:
        """Complete what ``add`` batched; called before every commit."""

    def tick(self, idle: bool) -> None:
        """Called on every loop turn (``idle``: nothing was read, the stage may wait a little)."""

    def busy(self) -> bool:
        """True while work is under way: the runner polls without waiting."""
        return False

    def saturated(self) -> bool:
        """True to pause reading (resumed once False)."""
        return False

    def revoke(self, partitions: set[TP]) -> None:
        """Partitions move to another member: finish or drop their work (not yet done)."""

    def close(self) -> None:
        """Stopping: finish or abandon the work under way (abandoned records are not done)."""


class Runner:
    """Runs one ``Stage`` as a member of its consumer group (see the module's docstring)."""

    def __init__(
        self,
        stage: Stage,
        commit_interval_s: float = 1.0,
        producer_config: dict[str, Any] | None = None,
    ) -> None:
        kafka = settings.kafka()
        self.stage = stage
        stage.runner = self
        self.commit_interval_s = commit_interval_s
        self.consumer = self._new_consumer()
        self._failed_consumer: KafkaException | None = None
        self.producer = Producer(
            {
                **kafka.client_config(),
                "enable.idempotence": True,
                "acks": "all",
                "linger.ms": 5,
                **(producer_config or {}),
            }
        )
        self._failures: list[str] = []  # delivery errors since the start: never cleared
        self._lock = threading.Lock()
        self.outstanding: dict[TP, set[int]] = defaultdict(set)  # read, not done
        self.next_offset: dict[TP, int] = {}  # one past the last offset read
        self.committed: dict[TP, int] = {}
        self.running = True
        self.paused = False
        self.counts: dict[str, int] = defaultdict(int)
        self.last_progress = time.monotonic()
        self.on_commit: list[Callable[[dict[TP, int]], None]] = []
        self._last_log: dict[str, float] = {}
        self.last_poll = time.monotonic()

    def _new_consumer(self) -> Consumer:
        kafka = settings.kafka()
        group: dict[str, Any] = {
            "group.id": self.stage.group_id,
            "session.timeout.ms": kafka.kafka_session_timeout_ms,
            "heartbeat.interval.ms": max(500, kafka.kafka_session_timeout_ms // 4),
        }
        if kafka.kafka_group_instance_id:  # static membership (see KafkaSettings)
            group["group.instance.id"] = f"{kafka.kafka_group_instance_id}-{self.stage.name}"
        return Consumer(
            {
                **kafka.client_config(),
                **group,
                "enable.auto.commit": False,
                "auto.offset.reset": "earliest",
            }
        )

    def _subscribe(self) -> None:
        self.consumer.subscribe(
            [self.stage.topic], on_assign=self._on_assign, on_revoke=self._on_revoke
        )

    def _replace_consumer(self, exc: BaseException) -> None:
        """The consumer hit a fatal error (e.g. fenced: after a broker outage outlasted its
        session, the group gave its static identity a new member): give the stage's work up as
        if every partition were revoked, and join again with a new consumer. Nothing committed
        is lost; what was not committed is read again."""
        log.warning("%s: consumer failed for good (%s); joining again", self.stage.name, exc)
        try:
            self.stage.revoke(set(self.next_offset))
        finally:
            self.outstanding.clear()
            self.next_offset.clear()
            self.committed.clear()
            self.paused = False
            try:
                self.consumer.close()
            except Exception as close_exc:  # noqa: BLE001 - a fatal consumer may refuse
                log.info("closing the failed consumer: %s", close_exc)
            self.consumer = self._new_consumer()
            self._subscribe()
            self.counts["consumer_replaced"] += 1

    # ------------------------------------------------------------------ outputs
    def produce(
        self,
        topic: str,
        key: bytes | None,
        value: bytes | None,
        headers: list[tuple[str, str | bytes | None]] | None = None,
    ) -> None:
        """Produce a record; it is covered by the next commit only once acknowledged."""
        while True:
            try:
                self.producer.produce(
                    topic, key=key, value=value, headers=headers, on_delivery=self._delivered
                )
                break
            except BufferError:  # the local queue is full: let deliveries drain
                self.producer.poll(0.5)
        self.producer.poll(0)

    def _delivered(self, err: KafkaError | None, msg: Message) -> None:
        if err is not None:
            with self._lock:
                self._failures.append(f"{msg.topic()}: {err}")
        else:
            metrics.RECORDS_OUT.labels(self.stage.name, msg.topic() or "").inc()

    def dead_letter(
        self,
        msg: Message,
        exc: BaseException,
        headers: list[tuple[str, str | bytes | None]] | None = None,
    ) -> None:
        """Send the record as it was read to ``<topic>.dlq``, with why, and mark it done."""
        topic, partition, offset = where(msg)
        log.error(
            "dead letter %s[%d]@%d: %s: %s",
            topic,
            partition,
            offset,
            _cls(exc),
            exc,
            extra={"topic": topic, "partition": partition, "offset": offset},
        )
        provenance: list[tuple[str, str | bytes | None]] = [
            *dead_letter_headers(topic, partition, offset, exc),
            ("dlq.stage", self.stage.name.encode()),
            ("dlq.time", datetime.now(UTC).isoformat().encode()),
        ]
        self.produce(topic + ".dlq", msg.key(), msg.value(), provenance + (headers or []))
        self.counts["dead_lettered"] += 1
        metrics.DEAD_LETTERS.labels(self.stage.name, topic, _cls(exc)).inc()
        self.done(msg)

    def done(self, msg: Message) -> None:
        """The record's side effects are complete (its outputs produced)."""
        topic, partition, offset = where(msg)
        pending = self.outstanding[(topic, partition)]
        if offset in pending:
            pending.discard(offset)
            self.counts["done"] += 1
            self.last_progress = time.monotonic()

    # ------------------------------------------------------------------ the loop
    def run(self) -> None:
        """Consume until ``stop`` (a signal, or another thread)."""
        stage = self.stage
        self._subscribe()
        last_commit = time.monotonic()
        try:
            while self.running:
                self.last_poll = time.monotonic()
                try:
                    msgs = self.consumer.consume(
                        stage.batch_size, timeout=0 if stage.busy() else 0.2
                    )
                except KafkaException as exc:
                    if not _fatal(exc):
                        raise
                    self._failed_consumer = exc
                    msgs = []
                if self._failed_consumer is not None:
                    failed, self._failed_consumer = self._failed_consumer, None
                    self._replace_consumer(failed)
                    continue
                read = 0
                for msg in msgs:
                    err = msg.error()
                    if err is not None:
                        self._consumer_error(err)
                        continue
                    read += 1
                    self._handle(msg)
                stage.tick(idle=not read)
                self._flow_control()
                now = time.monotonic()
                if read and not stage.deferred or now - last_commit >= self.commit_interval_s:
                    last_commit = now
                    self.commit()
        finally:
            self.close()

    def _handle(self, msg: Message) -> None:
        stage = self.stage
        topic, partition, offset = where(msg)
        tp = (topic, partition)
        self.outstanding[tp].add(offset)
        self.next_offset[tp] = offset + 1
        self.counts["read"] += 1
        metrics.RECORDS_IN.labels(stage.name, topic).inc()
        started = time.perf_counter()
        try:
            record = self._decode(msg)
        except Exception as exc:  # noqa: BLE001 - undecodable: poison
            self.dead_letter(msg, exc)
            return
        try:
            stage.add(record, msg)
        except stage.fatal:
            raise
        except Exception as exc:  # noqa: BLE001 - a record this stage cannot handle: poison
            self.dead_letter(msg, exc)
            return
        finally:
            metrics.PROCESSING.labels(stage.name).observe(time.perf_counter() - started)
        if not stage.deferred:
            self.done(msg)

    def _decode(self, msg: Message) -> Any:
        value = msg.value()
        if value is None:
            if self.stage.tombstones:
                return None
            raise ValueError("a tombstone (no value) where records are expected")
        if not value:
            raise ValueError("an empty value")
        return self.stage.serde.loads(value) if self.stage.serde is not None else value

    def _holding(self) -> bool:
        return any(self.outstanding.values())

    def _flow_control(self) -> None:
        if not self.paused and self.stage.saturated():
            self.consumer.pause(self.consumer.assignment())
            self.paused = True
        elif self.paused and not self.stage.saturated():
            self.consumer.resume(self.consumer.assignment())
            self.paused = False

    # ------------------------------------------------------------------ commits
    def commit(self, only: set[TP] | None = None) -> None:
        """Commit what is done, after the stage's flush and the broker's acknowledgements."""
        self.stage.flush()
        offsets: dict[TP, int] = {}
        for tp, ahead in self.next_offset.items():
            if only is not None and tp not in only:
                continue
            pending = self.outstanding.get(tp)
            to = min(pending) if pending else ahead
            if to != self.committed.get(tp):
                offsets[tp] = to
        self.wait_acknowledged()
        if not offsets:
            return
        try:
            self.consumer.commit(
                offsets=[TopicPartition(t, p, o) for (t, p), o in offsets.items()],
                asynchronous=False,
            )
        except KafkaException as exc:
            err = exc.args[0]
            if _fatal(exc) or err.code() == KafkaError.FENCED_INSTANCE_ID:
                # replaced by the loop (this may run inside a rebalance callback); a fenced
                # static member is fatal to librdkafka, whichever error says so first
                self._failed_consumer = exc
                return
            if err.code() in _COMMIT_LATER:
                self.log_limited("commit", "commit postponed: %s", err)
                return
            if err.code() in _COMMIT_LOST:
                log.warning("commit dropped (partitions no longer ours): %s", err)
                return
            raise
        self.committed.update(offsets)
        self.counts["commits"] += 1
        self._note_lag()
        for hook in self.on_commit:
            hook(offsets)

    def _note_lag(self) -> None:
        """Consumer lag per partition: the high watermark the last fetch saw, less the
        committed offset (no request to the broker)."""
        for (topic, partition), committed in self.committed.items():
            try:
                _, high = self.consumer.get_watermark_offsets(
                    TopicPartition(topic, partition), cached=True
                )
            except KafkaException:
                continue
            if high >= 0:
                metrics.LAG.labels(self.stage.name, topic, str(partition)).set(
                    max(0, high - committed)
                )

    def ready(self) -> bool:
        """Working: its loop polled Kafka within the last 30 s and its consumer is sound."""
        return (
            self.running
            and self._failed_consumer is None
            and time.monotonic() - self.last_poll < 30
        )

    def wait_acknowledged(self, timeout: float = 330.0) -> None:
        """Return once the broker acknowledged everything produced so far; raise if it did not.

        A broker outage is waited out up to the producer's delivery timeout (librdkafka's
        default, 5 minutes): the records are delivered when it is back."""
        remaining = self.producer.flush(timeout)
        with self._lock:
            failures = list(self._failures)
        if remaining or failures:
            raise ProduceFailed(
                f"{remaining} record(s) unacknowledged after {timeout:.0f}s, "
                f"{len(failures)} refused ({failures[:3]}): not committing"
            )

    def _on_assign(self, consumer: Consumer, partitions: list[TopicPartition]) -> None:
        self.counts["assignments"] += 1
        log.info(
            "%s: partitions assigned: %s",
            self.stage.name,
            sorted(p.partition for p in partitions) or "none",
        )

    def _on_revoke(self, consumer: Consumer, partitions: list[TopicPartition]) -> None:
        revoked = {(p.topic, p.partition) for p in partitions}
        try:
            self.stage.revoke(revoked)
            self.commit(only=revoked)
        finally:
            for tp in revoked:
                self.outstanding.pop(tp, None)
                self.next_offset.pop(tp, None)
                self.committed.pop(tp, None)
                try:  # another member reports it now
                    metrics.LAG.remove(self.stage.name, tp[0], str(tp[1]))
                except KeyError:
                    pass

    # ------------------------------------------------------------------ errors, stopping
    def _consumer_error(self, err: KafkaError) -> None:
        if err.code() == KafkaError._PARTITION_EOF:
            return
        failed = KafkaException(err)
        if _fatal(failed):  # librdkafka reports a fenced consumer as code _FATAL, flag unset
            self._failed_consumer = failed
            return
        self.log_limited("consumer", "consumer error: %s", err)

    def log_limited(self, what: str, fmt: str, *args: Any, every_s: float = 10.0) -> None:
        """Log at most once per ``every_s`` per kind (an outage must not flood the log)."""
        now = time.monotonic()
        if now - self._last_log.get(what, -every_s) >= every_s:
            self._last_log[what] = now
            log.warning(fmt, *args)
        else:
            self.counts[f"suppressed_{what}_logs"] += 1

    def stop(self, *_: Any) -> None:
        self.running = False

    def close(self) -> None:
        try:
            self.stage.close()
            self.commit()
        except Exception as exc:  # noqa: BLE001 - nothing more is committed; reported
            log.error("%s: final commit skipped: %s", self.stage.name, exc)
        finally:
            self.consumer.close()
            self.producer.flush(10)

    def install_signal_handlers(self) -> None:
        signal.signal(signal.SIGTERM, self.stop)
        signal.signal(signal.SIGINT, self.stop)


def _fatal(exc: KafkaException) -> bool:
    err = exc.args[0] if exc.args else None
    return isinstance(err, KafkaError) and (err.fatal() or err.code() == KafkaError._FATAL)


def _cls(exc: BaseException) -> str:
    return type(exc).__name__


def serve_metrics(runner: Runner) -> metrics.Health | None:
    """The stage's /metrics, /healthz and /readyz on ``LEDGER_METRICS_PORT`` (0: none), for
    the process that runs it."""
    logs.COMPONENT["name"] = runner.stage.name  # in every structured log line
    cfg = settings.ObservabilitySettings()
    if not cfg.metrics_port:
        return None
    health = metrics.Health(ready=runner.ready)
    health.serve(cfg.metrics_host, cfg.metrics_port)
    return health
