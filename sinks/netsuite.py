"""NetSuite sink: ``netsuite.commands`` → SuiteTalk REST upserts → ``netsuite.backrefs``.

Guarantee: every command is written at least once and, because each write is a
``PUT …/eid:<externalId>`` upsert, exactly one NetSuite record exists per externalId however
often a command is retried or replayed. A command's offset is committed only after NetSuite
accepted the write and its back-reference was acknowledged by Kafka, or after the command went
to the dead-letter topic.

Dependencies: a command waits ("parks") until every record it references has an internal id,
which the sink knows from the compacted back-reference topic (read at start, then followed) and
from its own writes; it never queries NetSuite for them. Later commands for a parked record wait
behind it, so writes to one record stay in order. The committed offset of a partition never
passes a parked command, so a restart re-reads it.

Errors: 429, 5xx, timeouts and "record has been changed" are retried with jittered exponential
backoff; a 400 goes to ``netsuite.commands.dlq`` with NetSuite's ``o:errorDetails`` in the
headers; repeated 401s stop the sink with a clear message (credentials are wrong).
"""

from __future__ import annotations

import json
import logging
import signal
import time
from collections import defaultdict
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any

import requests
from confluent_kafka import Consumer, Message, Producer, TopicPartition
from tenacity import (
    RetryError,
    Retrying,
    retry_if_exception,
    stop_after_attempt,
    wait_random_exponential,
)

from ledgerstream import settings, topics
from ledgerstream.avro import Serde
from ledgerstream.commands import Command, canonical_json, resolve_refs, sublists
from ledgerstream.kafka_util import dead_letter_headers, end_offset, is_real_error, where
from sinks.netsuite_client import NetSuiteClient, NetSuiteResponseError

log = logging.getLogger(__name__)


class FatalSinkError(RuntimeError):
    """The sink cannot go on (e.g. NetSuite rejects the credentials)."""


def _transient(exc: BaseException) -> bool:
    if isinstance(exc, NetSuiteResponseError):
        return exc.status in (401, 429) or exc.status >= 500 or not exc.permanent
    return isinstance(exc, requests.ConnectionError | requests.Timeout)


class BackrefIndex:
    """(record type, externalId) → NetSuite internal id, from the compacted back-reference topic."""

    def __init__(self) -> None:
        self.ids: dict[tuple[str, str], str] = {}
        self.topic = topics.name(topics.NETSUITE_BACKREFS)
        self.serde = Serde(self.topic, topics.NETSUITE_BACKREFS.schema or "")
        self.consumer = Consumer(
            {
                **settings.kafka().client_config(),
                "group.id": "ledgerstream-backref-index-unused",  # assign() only, never committed
                "enable.auto.commit": False,
                "auto.offset.reset": "earliest",
            }
        )
        md = self.consumer.list_topics(self.topic, timeout=10).topics[self.topic]
        parts = [TopicPartition(self.topic, p, 0) for p in md.partitions]
        self.consumer.assign(parts)
        self._ends = {
            p.partition: end_offset(self.consumer, self.topic, p.partition) for p in parts
        }

    def load(self) -> None:
        """Read the topic up to the end offsets seen at start."""
        position = {p: 0 for p in self._ends}
        while any(position[p] < end for p, end in self._ends.items()):
            msg = self.consumer.poll(1.0)
            if msg is None or msg.error():
                continue
            self._apply(msg)
            _, partition, offset = where(msg)
            position[partition] = offset + 1

    def follow(self) -> None:
        """Pick up back-references written since (by this or another sink instance)."""
        while (msg := self.consumer.poll(0)) is not None:
            if not msg.error():
                self._apply(msg)

    def _apply(self, msg: Message) -> None:
        if msg.value() is None:
            return  # a tombstone
        ref = self.serde.loads(msg.value() or b"")
        self.ids[(ref["record_type"], ref["external_id"])] = ref["internal_id"]

    def close(self) -> None:
        self.consumer.close()


@dataclass
class Pending:
    msg: Message
    cmd: Command
    since: float = field(default_factory=time.monotonic)


class NetSuiteSink:
    def __init__(
        self, client: NetSuiteClient | None = None, cfg: settings.SinkSettings | None = None
    ):
        self.cfg = cfg or settings.SinkSettings()
        self.client = client or NetSuiteClient()
        kafka = settings.kafka()
        self.commands_topic = topics.name(topics.NETSUITE_COMMANDS)
        self.backrefs_topic = topics.name(topics.NETSUITE_BACKREFS)
        self.dlq_topic = topics.dlq_name(topics.NETSUITE_COMMANDS)
        self.commands = Serde(self.commands_topic, topics.NETSUITE_COMMANDS.schema or "")
        self.backrefs = Serde(self.backrefs_topic, topics.NETSUITE_BACKREFS.schema or "")
        self.consumer = Consumer(
            {
                **kafka.client_config(),
                "group.id": self.cfg.sink_group_id,
                "enable.auto.commit": False,
                "auto.offset.reset": "earliest",
            }
        )
        self.producer = Producer(
            {**kafka.client_config(), "enable.idempotence": True, "acks": "all", "linger.ms": 5}
        )
        self.index = BackrefIndex()
        self.parked: dict[str, list[Pending]] = defaultdict(list)  # record key -> queue
        self.outstanding: dict[tuple[str, int], set[int]] = defaultdict(set)
        self.next_commit: dict[tuple[str, int], int] = {}
        self.running = True
        self.written = 0
        self.dead_lettered = 0

    # ----------------------------------------------------------------- main loop
    def run(self, idle_exit_s: float | None = None) -> None:
        self.index.load()
        self.consumer.subscribe([self.commands_topic], on_revoke=self._on_revoke)
        log.info("netsuite sink started: %d back-references known", len(self.index.ids))
        idle_since = time.monotonic()
        while self.running:
            msg = self.consumer.poll(0.5)
            self.index.follow()
            if msg is None:
                self._retry_parked()
                self._commit()
                if idle_exit_s is not None and time.monotonic() - idle_since > idle_exit_s:
                    break
                continue
            idle_since = time.monotonic()
            if msg.error():
                if is_real_error(msg):
                    log.error("consumer error: %s", msg.error())
                continue
            self.handle(msg)
            self._commit()
        self.close()

    def handle(self, msg: Message) -> None:
        topic, partition, offset = where(msg)
        self.outstanding[(topic, partition)].add(offset)
        self.next_commit.setdefault((topic, partition), offset)
        try:
            cmd = Command.from_avro(self.commands.loads(msg.value() or b""))
        except Exception as exc:  # noqa: BLE001 - undecodable: poison
            self._dead_letter(msg, exc, details=None)
            return
        if self.parked.get(cmd.key):
            self.parked[cmd.key].append(Pending(msg, cmd))  # keep writes to one record in order
            return
        self._attempt(Pending(msg, cmd))

    def _attempt(self, item: Pending) -> bool:
        """Write if every dependency is known; park otherwise. True when the item is done."""
        cmd = item.cmd
        missing = [d for d in cmd.depends_on if d not in self.index.ids]
        if missing:
            if time.monotonic() - item.since > self.cfg.sink_dependency_timeout_s:
                self._dead_letter(
                    item.msg,
                    LookupError(
                        f"referenced records not written within "
                        f"{self.cfg.sink_dependency_timeout_s:.0f}s: {missing}"
                    ),
                    details=None,
                )
                return True
            if item not in self.parked[cmd.key]:
                self.parked[cmd.key].insert(0, item)
            return False
        try:
            internal_id = self._write(cmd)
        except NetSuiteResponseError as exc:
            if exc.status == 401:
                raise FatalSinkError(
                    "NetSuite rejects the credentials (401 INVALID_LOGIN after retries): check "
                    "LEDGER_NETSUITE_ACCOUNT_ID, consumer key/secret and token id/secret"
                ) from exc
            self._dead_letter(item.msg, exc, details=exc.details)
            return True
        self._backref(cmd, internal_id)
        self._done(item.msg)
        self.written += 1
        return True

    def _write(self, cmd: Command) -> str:
        body = resolve_refs(cmd.body, self.index.ids)

        retrying = Retrying(
            retry=retry_if_exception(_transient),
            wait=wait_random_exponential(multiplier=0.2, max=30),
            stop=stop_after_attempt(self.cfg.sink_max_attempts),
            reraise=True,
        )
        try:
            for attempt in retrying:
                with attempt:
                    return self.client.upsert(
                        cmd.record_type,
                        cmd.external_id,
                        canonical_json(body),
                        replace=sublists(body),
                    )
        except RetryError as exc:  # pragma: no cover - reraise=True re-raises the cause
            raise exc.last_attempt.exception() from exc  # type: ignore[misc]
        raise AssertionError("unreachable")

    def _retry_parked(self) -> None:
        progress = True
        while progress:
            progress = False
            for key in list(self.parked):
                queue = self.parked[key]
                while queue and self._attempt_head(queue):
                    progress = True
                if not queue:
                    del self.parked[key]

    def _attempt_head(self, queue: list[Pending]) -> bool:
        head = queue.pop(0)
        if self._attempt(head):
            return True
        # _attempt re-inserted it at the head
        return False

    # ----------------------------------------------------------------- outputs
    def _backref(self, cmd: Command, internal_id: str) -> None:
        self.index.ids[(cmd.record_type, cmd.external_id)] = internal_id
        value = self.backrefs.dumps(
            {
                "record_type": cmd.record_type,
                "external_id": cmd.external_id,
                "internal_id": internal_id,
                "stripe_object": cmd.stripe_object,
                "stripe_id": cmd.stripe_id,
                "metadata_key": cmd.metadata_key,
                "command_id": cmd.command_id,
                "written_at": datetime.now(UTC),
            }
        )
        self.producer.produce(self.backrefs_topic, key=cmd.key.encode(), value=value)
        log.info("wrote %s %s -> internal id %s", cmd.record_type, cmd.external_id, internal_id)

    def _dead_letter(self, msg: Message, exc: Exception, details: Any) -> None:
        topic, partition, offset = where(msg)
        log.error("dead letter %s[%d]@%d: %s", topic, partition, offset, exc)
        headers: list[tuple[str, str | bytes | None]] = [
            *dead_letter_headers(topic, partition, offset, exc)
        ]
        if details is not None:
            headers.append(("netsuite.errorDetails", json.dumps(details).encode()))
        self.producer.produce(self.dlq_topic, key=msg.key(), value=msg.value(), headers=headers)
        self.dead_lettered += 1
        self._done(msg)

    def _done(self, msg: Message) -> None:
        topic, partition, offset = where(msg)
        self.outstanding[(topic, partition)].discard(offset)

    def _commit(self) -> None:
        """Commit, per partition, up to the first command not yet done."""
        if self.producer.flush(30) != 0:
            raise FatalSinkError("back-references were not acknowledged by Kafka")
        offsets = []
        for tp, pending in self.outstanding.items():
            commit_to = min(pending) if pending else self._position(tp)
            if commit_to is not None and commit_to != self.next_commit.get(tp):
                offsets.append(TopicPartition(tp[0], tp[1], commit_to))
                self.next_commit[tp] = commit_to
        if offsets:
            self.consumer.commit(offsets=offsets, asynchronous=False)

    def _position(self, tp: tuple[str, int]) -> int | None:
        pos = self.consumer.position([TopicPartition(tp[0], tp[1])])[0].offset
        return pos if pos >= 0 else None

    def _on_revoke(self, consumer: Consumer, partitions: list[TopicPartition]) -> None:
        self._commit()
        revoked = {(p.topic, p.partition) for p in partitions}
        for key in list(self.parked):
            self.parked[key] = [p for p in self.parked[key] if where(p.msg)[:2] not in revoked]
            if not self.parked[key]:
                del self.parked[key]
        for tp in revoked:
            self.outstanding.pop(tp, None)
            self.next_commit.pop(tp, None)

    def stop(self, *_: Any) -> None:
        self.running = False

    def close(self) -> None:
        try:
            self._commit()
        finally:
            self.consumer.close()
            self.index.close()
            self.producer.flush(10)


def run() -> None:
    sink = NetSuiteSink()
    signal.signal(signal.SIGTERM, sink.stop)
    signal.signal(signal.SIGINT, sink.stop)
    try:
        sink.run()
    except FatalSinkError as exc:
        raise SystemExit(f"netsuite sink stopped: {exc}") from exc
