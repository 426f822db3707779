"""Move a component's consumer group back (or forward) for a replay or a re-sync.

A stage reads on from its group's committed offsets, so moving them is how a period is read
again: after a NetSuite restore, after a fix, for a backfill. Kafka only lets a group's offsets
be changed while the group has no members, so a replay is refused while one of the
component's instances runs (and says which). Replays are safe to repeat: every NetSuite write is
an upsert on the Stripe id, so reading a record twice writes nothing new.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from dataclasses import dataclass
from datetime import datetime

from confluent_kafka import Consumer, ConsumerGroupTopicPartitions, TopicPartition
from confluent_kafka.admin import AdminClient

from ledgerstream import settings, topics
from ledgerstream.kafka_util import read_latest


@dataclass(frozen=True)
class Component:
    group: Callable[[], str]  # its consumer group id (settings are read when asked)
    inputs: tuple[topics.TopicSpec, ...]


COMPONENTS = {
    "router": Component(
        lambda: settings.kafka().topic("ledgerstream-router"), (topics.STRIPE_EVENTS,)
    ),
    "payouts": Component(
        lambda: settings.kafka().topic("ledgerstream-payout-contents"), (topics.STRIPE_PAYOUT,)
    ),
    "processor": Component(lambda: settings.ProcessorSettings().app_id, topics.PROCESSOR_INPUTS),
    "sink": Component(lambda: settings.SinkSettings().sink_group_id, (topics.NETSUITE_COMMANDS,)),
    "metadata": Component(
        lambda: settings.MetadataSettings().metadata_group_id, (topics.NETSUITE_BACKREFS,)
    ),
}


class GroupBusy(RuntimeError):
    """The group has live members: Kafka refuses to move its offsets."""


@dataclass(frozen=True)
class Move:
    topic: str
    partition: int
    current: int | None  # committed offset; None: nothing committed (reads from the start)
    target: int
    low: int
    high: int

    @property
    def reread(self) -> int:
        """Records read again (negative: skipped forward)."""
        return (self.high if self.current is None else self.current) - self.target


def _admin() -> AdminClient:
    return AdminClient(settings.kafka().client_config())


def members(group: str) -> list[str]:
    """The group's live members, as ``client id@host``."""
    admin = _admin()  # kept: its futures complete only while it lives
    [future] = admin.describe_consumer_groups([group], request_timeout=30).values()
    description = future.result(timeout=60)
    return [f"{m.client_id}@{m.host}" for m in description.members]


def plan(
    component: str,
    *,
    to_offset: int | None = None,
    to_time: datetime | None = None,
    topic: str | None = None,
    partition: int | None = None,
) -> tuple[str, list[Move]]:
    """Where each of the component's input partitions is and where it would go: to
    ``to_offset`` (clamped to what the partition holds), to the first record at or after
    ``to_time``, or (neither) to the beginning."""
    spec = COMPONENTS[component]
    group = spec.group()
    names = [topics.name(t) for t in spec.inputs]
    if topic is not None:
        wanted = settings.kafka().topic(topic) if topic not in names else topic
        if wanted not in names:
            raise ValueError(f"{component} does not read {topic}; it reads {', '.join(names)}")
        names = [wanted]
    consumer = Consumer({**settings.kafka().client_config(), "group.id": group})
    try:
        parts = []
        for name in names:
            md = consumer.list_topics(name, timeout=30).topics[name]
            if md.error is not None:
                raise ValueError(f"topic {name}: {md.error}")
            parts += [
                TopicPartition(name, p) for p in sorted(md.partitions) if partition in (None, p)
            ]
        committed = {
            (tp.topic, tp.partition): tp.offset for tp in consumer.committed(parts, timeout=30)
        }
        times = {}
        if to_time is not None:
            ms = int(to_time.timestamp() * 1000)
            found = consumer.offsets_for_times(
                [TopicPartition(tp.topic, tp.partition, ms) for tp in parts], timeout=30
            )
            times = {(tp.topic, tp.partition): tp.offset for tp in found}
        moves = []
        for tp in parts:
            low, high = consumer.get_watermark_offsets(tp, timeout=30)
            key = (tp.topic, tp.partition)
            if to_offset is not None:
                target = min(max(to_offset, low), high)
            elif to_time is not None:
                target = high if times[key] < 0 else times[key]  # -1: nothing that late
            else:
                target = low
            current = committed[key] if committed[key] >= 0 else None
            moves.append(Move(tp.topic, tp.partition, current, target, low, high))
        return group, moves
    finally:
        consumer.close()


def apply(group: str, moves: list[Move], echo: Callable[[str], None] = lambda _: None) -> None:
    """Move the group's offsets; refused (``GroupBusy``) while it has live members.

    A stopped instance with a static identity (``LEDGER_KAFKA_GROUP_INSTANCE_ID``) does not
    leave its group: it stays a member until the session timeout, so members are asked again
    until then before the move is refused."""
    deadline = time.monotonic() + settings.kafka().kafka_session_timeout_ms / 1000 + 5
    live = members(group)
    while live and time.monotonic() < deadline:
        echo(f"waiting for {len(live)} member(s) of {group} to leave: {', '.join(live)}")
        time.sleep(1)
        live = members(group)
    if live:
        raise GroupBusy(
            f"consumer group {group} has {len(live)} live member(s): {', '.join(live)}; stop "
            "them first (Kafka moves a group's offsets only while it is empty)"
        )
    request = ConsumerGroupTopicPartitions(
        group, [TopicPartition(m.topic, m.partition, m.target) for m in moves]
    )
    admin = _admin()
    [future] = admin.alter_consumer_group_offsets([request], request_timeout=30).values()
    result = future.result(timeout=60)
    failed = [tp for tp in result.topic_partitions if tp.error is not None]
    if failed:
        raise RuntimeError(f"offsets not moved: {failed}")


def emitted_changelog() -> str:
    """The changelog topic of the processor's ``emitted`` table (faust: ``<app id>-<table>-
    changelog``): command key -> the command id last sent."""
    return f"{settings.ProcessorSettings().app_id}-{topics.PROCESSOR_OWN_TABLES[0]}-changelog"


def forget_emitted() -> int:
    """Make the processor send again every command it would otherwise suppress as sent
    already: a tombstone for every key of its ``emitted`` table, on the partition the key
    lives in. A worker applies them when it starts (it reads its changelogs on from where
    its local store stopped), so the records a replay reads again send their commands
    again. For a re-sync after NetSuite lost records (a restore): the records come back as
    upserts on their externalIds. Only while the processor's group is empty (see ``apply``).
    Returns the number of commands forgotten."""
    from confluent_kafka import Producer

    topic = emitted_changelog()
    latest = read_latest(topic)
    producer = Producer({**settings.kafka().client_config(), "enable.idempotence": True})
    forgotten = 0
    for key, (partition, value) in latest.items():
        if value is None:
            continue
        producer.produce(topic, key=key, value=None, partition=partition)
        forgotten += 1
        producer.poll(0)
    left = producer.flush(60)
    if left:
        raise RuntimeError(f"{left} tombstones on {topic} not acknowledged")
    return forgotten


def held(names: list[str]) -> int:
    """Records the named topics hold now (high less low watermark, over their partitions)."""
    consumer = Consumer({**settings.kafka().client_config(), "group.id": "ledgerstream-sizes"})
    try:
        total = 0
        for name in names:
            md = consumer.list_topics(name, timeout=30).topics[name]
            for p in md.partitions:
                low, high = consumer.get_watermark_offsets(TopicPartition(name, p), timeout=30)
                total += high - low
        return total
    finally:
        consumer.close()


@dataclass(frozen=True)
class Estimate:
    writes: int  # NetSuite writes to expect (an upper bound)
    seconds: float  # at the configured concurrency and the assumed time per write
    basis: str  # how it was reckoned


def estimate(component: str, reread: int, resync: bool, write_s: float) -> Estimate:
    """The NetSuite writes a replay of ``reread`` records of ``component`` brings, and their
    time with ``LEDGER_NETSUITE_CONCURRENCY`` writes at once of ``write_s`` seconds each.

    The sink writes every command it reads again (upserts: nothing changes in NetSuite, but
    each is a request). The processor sends again only the commands that changed, unless
    ``--resync``: then each record read again sends what it sent before, reckoned from this
    pipeline's own history (commands per processor input record, from the topics' sizes).
    The router and the payout reader feed the processor, which suppresses repeats; the
    metadata writer writes to Stripe, not NetSuite."""
    concurrency = settings.NetSuiteSettings().netsuite_concurrency
    if component == "sink":
        writes, basis = reread, "one write per command read again"
    elif component == "processor" and resync:
        commands = held([topics.name(topics.NETSUITE_COMMANDS)])
        inputs = held([topics.name(t) for t in topics.PROCESSOR_INPUTS])
        per_record = commands / inputs if inputs else 0.0
        writes = round(reread * per_record)
        basis = f"re-sync: {per_record:.2f} commands per input record so far ({commands}/{inputs})"
    else:
        writes = 0
        basis = "only commands that changed are sent again (--resync sends them all)"
        if component == "metadata":
            basis = "it writes Stripe metadata, not NetSuite records"
    return Estimate(writes, writes * write_s / max(1, concurrency), basis)
