"""Dead letters: list them, show one, send them back (redrive).

Every stage sends what it cannot handle to ``<topic>.dlq`` with the record as it was read and
Kafka Connect-style headers (``dlq.topic``/``partition``/``offset`` where it came from,
``dlq.exception.class`` and ``.message`` why; the sink adds NetSuite's ``o:errorDetails``). A
redrive produces the record again, unchanged, to the topic it came from, so the stage that
refused it reads it again (after the fix: a NetSuite set-up corrected, a mapping fixed, a
record that was missing written since). Every write downstream is an upsert on the Stripe id,
so a record redriven twice writes nothing twice; still, each redriven dead letter is marked
on the compacted ``ledgerstream.redriven`` topic (after the redriven record was acknowledged)
and a later redrive passes it over.
"""

from __future__ import annotations

import functools
import json
import re
from collections import defaultdict
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any

from confluent_kafka import Consumer, Producer, TopicPartition

from ledgerstream import redact, settings, topics
from ledgerstream.avro import Serde
from ledgerstream.kafka_util import read_latest, watermarks, where

REF = re.compile(r"^(?P<topic>.+\.dlq):(?P<partition>\d+):(?P<offset>\d+)$")
REDRIVEN_FROM = "ledgerstream.redriven-from"


@dataclass
class DeadLetter:
    dlq_topic: str
    partition: int
    offset: int
    timestamp_ms: int
    key: bytes | None
    value: bytes | None
    headers: dict[str, str] = field(default_factory=dict)

    @property
    def ref(self) -> str:
        """How ``dlq show`` and the redrive marks name it: ``<dlq topic>:<partition>:<offset>``."""
        return f"{self.dlq_topic}:{self.partition}:{self.offset}"

    @property
    def source(self) -> str:
        return self.headers.get("dlq.topic") or self.dlq_topic.removesuffix(".dlq")

    @property
    def error_class(self) -> str:
        return self.headers.get("dlq.exception.class", "unknown")

    @property
    def reason(self) -> str:
        return self.headers.get("dlq.exception.message", "")

    @property
    def time(self) -> datetime:
        return datetime.fromtimestamp(self.timestamp_ms / 1000, UTC)

    @property
    def redrivable(self) -> bool:
        """A dead letter without a value (a processor's "waited too long" report names the
        object; the object itself waits in the processor's tables) has nothing to send."""
        return self.value is not None

    def payload(self) -> Any:
        """The value decoded with its source topic's schema (JSON for the internal topics);
        the raw bytes' text when it does not decode (that may be why it is here)."""
        if self.value is None:
            return None
        spec = _spec_of(self.source)
        try:
            if spec is not None and spec.schema:
                return Serde(self.source, spec.schema).loads(self.value)
            return json.loads(self.value)
        except Exception:  # noqa: BLE001 - undecodable is a possible reason for being here
            return self.value.decode("utf-8", errors="replace")

    def stripe_ids(self) -> set[str]:
        """The Stripe ids it concerns: its key, the object a timeout names, and the ids in
        its payload (a Stripe object's ``id``, a command's ``stripe_id``)."""
        ids = {self.headers.get("dlq.object", "")}
        if self.key:
            ids.add(self.key.decode("utf-8", errors="replace").split("/")[-1])
        value = self.payload()
        if isinstance(value, dict):
            ids |= {str(value.get(k) or "") for k in ("id", "stripe_id", "external_id")}
        return {i for i in ids if i}


def _headers(raw: Any) -> dict[str, str]:
    out = {}
    for name, value in raw or []:
        out[name] = value.decode("utf-8", "replace") if isinstance(value, bytes) else value or ""
    return out


def _spec_of(topic: str) -> topics.TopicSpec | None:
    return next((s for s in topics.ALL if topics.name(s) == topic), None)


def dlq_topics() -> list[str]:
    return [topics.dlq_name(s) for s in topics.ALL if s.dead_letters]


def read(names: Iterable[str] | None = None) -> list[DeadLetter]:
    """Every dead letter of the named ``.dlq`` topics (all of them by default), oldest first
    per partition, up to the end offsets seen at start."""
    consumer = Consumer(
        {
            **settings.kafka().client_config(),
            "group.id": "ledgerstream-dlq-reader-unused",  # assign() only, never committed
            "enable.auto.commit": False,
            "auto.offset.reset": "earliest",
        }
    )
    letters: list[DeadLetter] = []
    try:
        marks: dict[tuple[str, int], tuple[int, int]] = {}
        for name in names or dlq_topics():
            md = consumer.list_topics(name, timeout=10).topics.get(name)
            if md is None or md.error is not None:
                continue  # not created (yet): nothing was dead-lettered there
            for p in md.partitions:
                marks[(name, p)] = watermarks(consumer, name, p)
        # from the low watermark (what retention removed is gone) to the end seen now
        position = {tp: low for tp, (low, _) in marks.items()}
        ends = {tp: high for tp, (_, high) in marks.items()}
        consumer.assign(
            [TopicPartition(t, p, low) for (t, p), (low, high) in marks.items() if high > low]
        )
        while any(position[tp] < end for tp, end in ends.items()):
            msg = consumer.poll(1.0)
            if msg is None or msg.error():
                continue
            topic, partition, offset = where(msg)
            position[(topic, partition)] = offset + 1
            letters.append(
                DeadLetter(
                    topic,
                    partition,
                    offset,
                    msg.timestamp()[1],
                    msg.key(),
                    msg.value(),
                    _headers(msg.headers()),
                )
            )
        return letters
    finally:
        consumer.close()


def redriven() -> dict[str, dict[str, Any]]:
    """The dead letters redriven so far: ref -> {"at", "to"}."""
    return {
        key.decode(): json.loads(value)
        for key, (_, value) in read_latest(topics.name(topics.REDRIVEN)).items()
        if value is not None
    }


@dataclass(frozen=True)
class Selection:
    """Which dead letters a redrive takes (all conditions given must hold)."""

    topic: str | None = None  # the source topic or its .dlq, with or without the prefix
    error_class: str | None = None
    stripe_id: str | None = None
    since: datetime | None = None
    until: datetime | None = None

    def __call__(self, letter: DeadLetter) -> bool:
        if self.topic is not None:
            bare = self.topic.removesuffix(".dlq")
            if letter.source not in (bare, settings.kafka().topic(bare)):
                return False
        if self.error_class is not None and letter.error_class != self.error_class:
            return False
        if self.stripe_id is not None and self.stripe_id not in letter.stripe_ids():
            return False
        if self.since is not None and letter.time < self.since:
            return False
        return self.until is None or letter.time < self.until


def summary(letters: list[DeadLetter], done: dict[str, Any]) -> list[dict[str, Any]]:
    """Per source topic and error class: how many, how many redriven, oldest and newest."""
    groups: dict[tuple[str, str], list[DeadLetter]] = defaultdict(list)
    for letter in letters:
        groups[(letter.source, letter.error_class)].append(letter)
    return [
        {
            "topic": topic,
            "error_class": cls,
            "count": len(group),
            "redriven": sum(1 for x in group if x.ref in done),
            "oldest": min(x.time for x in group),
            "newest": max(x.time for x in group),
            "example": group[-1].reason,
        }
        for (topic, cls), group in sorted(groups.items())
    ]


def describe(letter: DeadLetter, done: dict[str, Any]) -> str:
    """One dead letter for a person: where it came from, why, its headers and payload;
    configured secrets masked."""
    redact.add(redact.configured_secrets())
    lines = [
        f"{letter.ref}  (dead-lettered {letter.time.isoformat()})",
        f"  from      {letter.source}[{letter.headers.get('dlq.partition', '?')}]"
        f"@{letter.headers.get('dlq.offset', '?')}",
        f"  error     {letter.error_class}: {letter.reason}",
        f"  key       {(letter.key or b'').decode('utf-8', 'replace')}",
    ]
    for name, value in sorted(letter.headers.items()):
        if name.startswith("dlq.exception") or name in ("dlq.topic", "dlq.partition", "dlq.offset"):
            continue
        if name == "netsuite.errorDetails":
            try:
                value = json.dumps(json.loads(value), indent=2)
            except ValueError:
                pass
        lines.append(f"  {name:9} {value}")
    if letter.ref in done:
        lines.append(f"  redriven  {done[letter.ref]['at']} to {done[letter.ref]['to']}")
    elif letter.redrivable:
        lines.append(f"  redrive   ledgerstream dlq redrive --ref {letter.ref}")
    else:
        lines.append("  redrive   nothing to send: the object waits in the processor's tables")
    payload = letter.payload()
    text = json.dumps(payload, indent=2, sort_keys=True, default=str)
    lines.append("  payload")
    lines += ["    " + line for line in text.splitlines()]
    return redact.scrub("\n".join(lines))


@dataclass
class Redrive:
    sent: list[DeadLetter] = field(default_factory=list)
    already: list[DeadLetter] = field(default_factory=list)  # redriven before: passed over
    empty: list[DeadLetter] = field(default_factory=list)  # no value: nothing to send


def redrive(
    letters: list[DeadLetter],
    echo: Callable[[str], None] = lambda _: None,
    dry_run: bool = False,
) -> Redrive:
    """Send each dead letter back to its source topic and partition (its key, value and the
    header ``ledgerstream.redriven-from: <ref>``), then mark it redriven; passes over those redriven
    before and those with nothing to send."""
    done = redriven()
    out = Redrive()
    for letter in letters:
        if letter.ref in done:
            out.already.append(letter)
        elif not letter.redrivable:
            out.empty.append(letter)
        else:
            out.sent.append(letter)
    if dry_run or not out.sent:
        return out
    producer = Producer(
        {**settings.kafka().client_config(), "enable.idempotence": True, "acks": "all"}
    )
    failed: list[str] = []

    def acked(err: Any, _msg: Any, *, ref: str) -> None:
        if err is not None:
            failed.append(f"{ref}: {err}")

    for letter in out.sent:
        send: dict[str, Any] = {
            "key": letter.key,
            "value": letter.value,
            "headers": [(REDRIVEN_FROM, letter.ref.encode())],
            "on_delivery": functools.partial(acked, ref=letter.ref),
        }
        # back to the partition it was read from: the one its key's other records are in (the
        # processor's client partitions by another hash than this one's default, so the key
        # alone could put it elsewhere, out of order with its record's other commands)
        partition = letter.headers.get("dlq.partition", "")
        if partition.isdigit():
            send["partition"] = int(partition)
        producer.produce(letter.source, **send)
        producer.poll(0)
    if producer.flush(60) or failed:
        raise RuntimeError(f"redrive not acknowledged by Kafka (nothing marked): {failed}")
    # marked only once the records are back on their topics: a crash in between sends them
    # again next time, which the upserts downstream make harmless
    at = datetime.now(UTC).isoformat()
    marks = topics.name(topics.REDRIVEN)
    for letter in out.sent:
        value = json.dumps({"at": at, "to": letter.source}).encode()
        producer.produce(marks, key=letter.ref.encode(), value=value)
        echo(f"redriven {letter.ref} -> {letter.source} ({letter.error_class})")
    if producer.flush(60):
        raise RuntimeError("redrive marks not acknowledged by Kafka")
    return out
