"""NetSuite sink: ``netsuite.commands`` → SuiteTalk REST upserts → ``netsuite.backrefs``.

Guarantee: every command is written at least once and, because each write is a
``PUT …/eid:<externalId>`` upsert, exactly one NetSuite record exists per externalId however
often a command is retried or replayed (a timeout after NetSuite committed is retried as the
same upsert). A command's offset is committed only after NetSuite accepted the write and its
back-reference was acknowledged by Kafka, or after the command went to the dead-letter topic.

Concurrency: writes run on a pool of ``LEDGER_NETSUITE_CONCURRENCY`` threads behind an adaptive
limiter (``sinks/limiter.py``) that shrinks on 429s and spurious 401s and grows back on
successes. Writes with one order key never overlap and keep their order: an order key has at
most one write in flight, later commands for it queue behind. The order key is the record's own
key, or for the records of one Stripe invoice (invoice, payments, credit memos, customer
refunds) the invoice's: NetSuite refuses a payment or credit memo that applies more than the
invoice's amount remaining, so a credit memo's void must reach NetSuite before the payment that
pays the whole invoice (the processor sends them in that order, under that key, to one partition).

Dependencies: a command waits until every record it references has an internal id, which the
sink knows from the compacted back-reference topic (read at start, then followed) and from its
own writes; it never queries NetSuite for them. The committed offset of a partition never passes
a waiting command, so a restart re-reads it. A command still waiting after
``LEDGER_SINK_DEPENDENCY_TIMEOUT_S`` goes to the dead-letter topic, except a deposit: it is
written with the payment lines of the records still missing on the suspense account, kept on
the compacted ``netsuite.suspended`` topic, and rewritten when they are written (BEHAVIOR.md,
"Deposits always post").

Errors: 429, 5xx, timeouts, dropped connections, non-fatal 401s and "record has been changed"
are retried with jittered exponential backoff, without end (an outage stalls the sink; it does
not flood the dead-letter topic); a 400 goes to ``netsuite.commands.dlq`` with NetSuite's
``o:errorDetails`` in the headers; a run of 401s, or a token endpoint refusing the client
assertion, stops the sink with a clear message (credentials are wrong).
"""

from __future__ import annotations

import json
import logging
import queue
import re
import signal
import threading
import time
from collections import defaultdict, deque
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any

import requests
from confluent_kafka import Consumer, KafkaException, Message, TopicPartition
from tenacity import (
    Retrying,
    retry_if_exception,
    retry_if_result,
    stop_after_delay,
    stop_never,
    wait_random_exponential,
)

from ledgerstream import metrics, settings, status, topics
from ledgerstream.accounting.deposits import on_suspense
from ledgerstream.avro import Serde
from ledgerstream.bootstrap import Bootstrap
from ledgerstream.commands import Command, canonical_json, resolve_refs, sublists
from ledgerstream.kafka_util import end_offset, read_latest, where
from ledgerstream.sinks.index_store import DiskIds
from ledgerstream.sinks.limiter import AdaptiveLimiter
from ledgerstream.sinks.netsuite_batch import Batches, Write
from ledgerstream.sinks.netsuite_client import (
    NetSuiteAuthError,
    NetSuiteResponseError,
)
from ledgerstream.stage import ProduceFailed, Runner, Stage, serve_metrics

log = logging.getLogger(__name__)


# NetSuite's answer to a reference to an internal id it does not hold
INVALID_REFERENCE = re.compile(r"Invalid Field Value (\S+) for the following field")


# the longest the sink holds the start of commands it read while it reads on (a backlog)
READ_AHEAD_MAX_S = 1.0


class FatalSinkError(RuntimeError):
    """The sink cannot go on (e.g. NetSuite rejects the credentials)."""


class CredentialsRefused(Exception):
    """A run of 401s: the credentials are wrong (raised in a writer thread)."""


def _throttled(exc: BaseException) -> bool:
    return isinstance(exc, NetSuiteResponseError) and exc.status in (401, 429)


def _backoff() -> Any:
    """Jittered exponential waits: short after a 429/401 (the limiter already shrank the window;
    long waits would only stall the records that depend on this one), long after failures."""
    throttled = wait_random_exponential(multiplier=0.1, max=2)
    failed = wait_random_exponential(multiplier=0.2, max=30)

    def wait(state: Any) -> float:
        exc = state.outcome.exception() if state.outcome else None
        return float(throttled(state) if exc is not None and _throttled(exc) else failed(state))

    return wait


def _transient(exc: BaseException) -> bool:
    if isinstance(exc, NetSuiteResponseError):
        return exc.status in (401, 408, 429) or exc.status >= 500 or not exc.permanent
    return isinstance(exc, requests.ConnectionError | requests.Timeout)


BAD_CREDENTIALS = (
    "NetSuite rejects the credentials (a run of 401 INVALID_LOGIN with no success between): "
    "check LEDGER_NETSUITE_ACCOUNT_ID and, for token-based auth, the consumer key/secret and "
    "token id/secret; for OAuth 2.0, the client id, certificate id and private key"
)


class BackrefIndex:
    """(record type, externalId) → NetSuite internal id, from the compacted back-reference topic."""

    def __init__(self, cfg: settings.SinkSettings) -> None:
        # on disk, within a fixed memory budget: as a dict it grew by about 240 B per record
        self.ids = DiskIds(cfg.sink_data_dir, cfg.sink_index_cache_mb)
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

    def follow(self) -> list[tuple[str, str]]:
        """Pick up back-references written since (by this or another sink instance)."""
        new: list[tuple[str, str]] = []
        while (msg := self.consumer.poll(0)) is not None:
            if not msg.error():
                ref = self._apply(msg)
                if ref is not None:
                    new.append(ref)
        return new

    def _apply(self, msg: Message) -> tuple[str, str] | None:
        if msg.value() is None:
            return None  # a tombstone
        try:
            ref = self.serde.loads(msg.value() or b"")
        except Exception as exc:  # noqa: BLE001 - the metadata writer dead-letters it
            log.warning("back-reference at %s unreadable, ignored: %s", where(msg), exc)
            return None
        key = (ref["record_type"], ref["external_id"])
        added = self.ids.add(key, ref["internal_id"])  # one lookup: a read then a write
        return key if added else None

    def close(self) -> None:
        self.consumer.close()
        self.ids.close()


def read_compacted(topic: str, serde: Serde) -> dict[bytes, Any]:
    """The latest value of every key of a compacted topic, decoded (None: a tombstone)."""
    return {
        key: None if value is None else serde.loads(value)
        for key, (_, value) in read_latest(topic).items()
    }


@dataclass
class Pending:
    msg: Message | None  # None: a rewrite of a deposit already written (no offset of its own)
    cmd: Command
    since: float = field(default_factory=time.monotonic)
    # older versions of the same record this write supersedes (conflation): done with it
    covers: list[Message] = field(default_factory=list)

    @property
    def tp(self) -> tuple[str, int] | None:
        return where(self.msg)[:2] if self.msg is not None else None

    @property
    def rewrite(self) -> bool:
        return self.msg is None


@dataclass
class Outcome:
    item: Pending
    internal_id: str | None = None
    error: BaseException | None = None
    # the records a deposit was written without (their payment lines on suspense)
    suspended: tuple[tuple[str, str], ...] = ()
    # references NetSuite refused because it no longer holds them under the internal id the
    # sink knew: what it holds them under now (None: nothing, deleted or lost in a restore)
    stale: dict[tuple[str, str], str | None] | None = None


class NetSuiteSink(Stage):
    """A stage of ``ledgerstream.stage.Runner`` whose records are done when NetSuite answers."""

    name = "netsuite-sink"
    deferred = True  # a command is done when its write (and back-reference) or dead letter is
    fatal = (FatalSinkError, ProduceFailed)

    def __init__(self, boot: Bootstrap | None = None, cfg: settings.SinkSettings | None = None):
        boot = boot or Bootstrap()
        self.cfg = cfg or settings.SinkSettings()
        ns = boot.netsuite
        self.client = boot.netsuite_client()
        self.commands_topic = self.topic = topics.name(topics.NETSUITE_COMMANDS)
        self.backrefs_topic = topics.name(topics.NETSUITE_BACKREFS)
        self.commands = self.serde = Serde(
            self.commands_topic, topics.NETSUITE_COMMANDS.schema or ""
        )
        self.backrefs = Serde(self.backrefs_topic, topics.NETSUITE_BACKREFS.schema or "")
        self.suspended_topic = topics.name(topics.NETSUITE_SUSPENDED)
        self.status_topic = status.topic()
        self.suspended_serde = Serde(self.suspended_topic, topics.NETSUITE_SUSPENDED.schema or "")
        self.group_id = self.cfg.sink_group_id
        self.batch_size = 500
        self.index = BackrefIndex(self.cfg)
        self.limiter = AdaptiveLimiter(
            ns.netsuite_concurrency, auth_failures=self.cfg.sink_auth_failures
        )
        # two writer threads per request slot: a write waiting out its backoff (after a 429, a
        # failure) holds a thread and must not leave a slot idle; the limiter bounds the
        # requests open, and once the credentials are judged wrong no thread sends another
        self.pool = ThreadPoolExecutor(2 * ns.netsuite_concurrency, thread_name_prefix="netsuite")
        self.singles_open = 0  # single writes submitted to the pool and not finished
        self._singles_lock = threading.Lock()
        self.batches = Batches(self, ns.netsuite_write_mode, ns.netsuite_batch_jobs)
        self.results: queue.SimpleQueue[Outcome] = queue.SimpleQueue()
        self.stopping = threading.Event()
        self.queues: dict[str, deque[Pending]] = {}  # order key -> its commands, in order
        self.in_flight: dict[str, Pending] = {}  # command key -> the write under way
        self.waiting_on: dict[tuple[str, str], set[str]] = defaultdict(set)  # dep -> keys
        self.blocked: set[str] = set()  # keys whose head waits for a dependency
        self.arrived: dict[str, None] = {}  # order keys with commands added since the last tick
        self.reading_ahead_since: float | None = None  # when their start was first held
        # deposits written with records on suspense: their command, the records missing, and
        # for each such record the deposits to rewrite once it is written (kept on the
        # compacted netsuite.suspended topic too, for a restarted sink)
        self.suspended: dict[str, tuple[Command, frozenset[tuple[str, str]]]] = {}
        self.rewrite_on: dict[tuple[str, str], set[str]] = defaultdict(set)
        self.pending = 0  # commands read and not yet done
        self.written = 0
        self.superseded = 0  # commands not written: a newer version of the record was
        self.requests = 0  # NetSuite requests sent (retries included)
        self._requests_lock = threading.Lock()
        self._verify_lock = threading.Lock()
        self._verified, self._verified_at = False, -1e9
        # why the credentials were judged wrong (the sink is stopping), None while they are not
        self._refusal: str | None = None
        self.last_sweep = self.last_follow = self.last_report = time.monotonic()
        self.last_gauges = 0.0
        self._waiting_kinds: set[str] = set()  # record types reported waiting once
        self.runner = Runner(self, commit_interval_s=0.5)

    @property
    def dead_lettered(self) -> int:
        return self.runner.counts["dead_lettered"]

    # ----------------------------------------------------------------- stage hooks
    def run(self) -> None:
        self.index.load()
        self._restore_suspended()
        log.info(
            "netsuite sink started: %d back-references known, %d deposits on suspense, "
            "concurrency %d",
            len(self.index.ids),
            len(self.suspended),
            self.limiter.ceiling,
        )
        self.runner.run()

    def _restore_suspended(self) -> None:
        """The deposits an earlier run wrote with records on suspense: rewritten at once if
        those records were written since, else when they are."""
        for value in read_compacted(self.suspended_topic, self.suspended_serde).values():
            if value is None:
                continue
            cmd = Command.from_avro(value)
            missing = frozenset(d for d in cmd.depends_on if d not in self.index.ids)
            self.suspended[cmd.key] = (cmd, missing)
            if not missing:
                self._rewrite(cmd)
            for dep in missing:
                self.rewrite_on[dep].add(cmd.key)

    def stop(self, *_: Any) -> None:
        self.runner.stop()

    def busy(self) -> bool:
        return bool(self.in_flight)

    def saturated(self) -> bool:
        # pause reading at the limit, resume at half of it; but never while every command
        # held waits for a record not read yet (nothing in flight, every order key blocked):
        # only reading further can bring it (a customer's command in another partition, behind
        # the 2,000 payments of a 25,000-payment backfill that wait for it)
        if not self.in_flight and self.queues and len(self.blocked) >= len(self.queues):
            return False
        high = self.cfg.sink_max_pending
        return self.pending >= (high // 2 if self.runner.paused else high)

    def tick(self, idle: bool) -> None:
        if idle or not self._reading_ahead():
            self.reading_ahead_since = None
            arrived, self.arrived = self.arrived, {}
            for key in arrived:  # in the order they arrived; a new command may pass waiting ones
                if key not in self.in_flight:
                    self._advance(key)
        if self.batches.groups:
            self.batches.flush()
        self._collect(timeout=0.01 if idle and self.in_flight else 0)
        now = time.monotonic()
        if idle and now - self.last_sweep > 1.0:
            self.last_sweep = now
            self._sweep_blocked()
        if now - self.last_follow > 0.5:
            self.last_follow = now
            # back-references of other sink instances (this one's are known already)
            for dep in self.index.follow():
                self._wake(dep)
        if now - self.last_report > self.cfg.sink_report_interval_s:
            self.last_report = now
            self._report()
        if now - self.last_gauges >= 1.0:
            self.last_gauges = now
            self._gauges(now)

    def _reading_ahead(self) -> bool:
        """On a backlog, read before writing: while the partitions hold records not read yet
        (the high watermark of the last fetch is past the position; no request to the broker)
        and there is room for them (fewer than ``LEDGER_SINK_MAX_PENDING`` held), the commands
        just read wait to be started, because any record read next may be a newer version of
        theirs (``_conflate``). Writes under way go on, and a command's wait ends when the
        sink has caught up, or holds as much as it may (then the runner pauses reading and the
        next tick is idle). Without a backlog nothing waits: the last fetch reached the end.
        Nor does anything wait longer than ``READ_AHEAD_MAX_S`` (records arriving as fast as
        they are read would otherwise hold the writes until the limit)."""
        if not self.arrived or self.pending >= self.cfg.sink_max_pending:
            return False
        now = time.monotonic()
        if self.reading_ahead_since is None:
            self.reading_ahead_since = now
        elif now - self.reading_ahead_since > READ_AHEAD_MAX_S:
            return False
        consumer = self.runner.consumer
        try:
            for tp in consumer.position(consumer.assignment()):
                if tp.offset < 0:
                    continue  # nothing read from it yet
                _, high = consumer.get_watermark_offsets(tp, cached=True)
                if high > tp.offset:
                    return True
        except KafkaException:
            return False
        return False

    def _gauges(self, now: float) -> None:
        metrics.NETSUITE_LIMIT.set(self.limiter.limit)
        metrics.NETSUITE_IN_FLIGHT.set(len(self.in_flight))
        metrics.DEPOSITS_ON_SUSPENSE.set(len(self.suspended))
        oldest: dict[str, float] = {}
        for key in self.blocked:  # the order keys whose commands wait for references
            for item in self.queues.get(key, ()):
                kind = item.cmd.record_type
                oldest[kind] = max(oldest.get(kind, 0.0), now - item.since)
        for kind in {*oldest, *self._waiting_kinds}:
            metrics.OLDEST_WAITING.labels("sink", kind).set(oldest.get(kind, 0.0))
        self._waiting_kinds |= set(oldest)

    def _report(self) -> None:
        log.info(
            "progress: %d written, %d superseded, %d dead-lettered, %d requests; %d in flight, "
            "%d waiting for references, %d read and not done; limiter %.1f of %d, %d throttled "
            "answers (window cut %d times), round trip %.0f ms",
            self.written,
            self.superseded,
            self.dead_lettered,
            self.requests,
            len(self.in_flight),
            len(self.blocked),
            self.pending,
            self.limiter.limit,
            self.limiter.ceiling,
            self.limiter.throttled,
            self.limiter.decreases,
            1000 * (self.limiter.rtt or 0.0),
        )
        if self.batches.mode != "single":
            b = self.batches
            log.info(
                "batches (%s): %d jobs submitted, %d records written by them, %d written one by "
                "one after a refusal, %d writes waiting for a job",
                b.mode,
                b.submitted,
                b.items,
                b.fallbacks,
                b.held,
            )

    def add(self, record: Any, msg: Message) -> None:
        cmd = Command.from_avro(record)  # a record that is not a command raises: dead letter
        if not isinstance(cmd.body, dict) or not cmd.record_type or not cmd.external_id:
            raise ValueError("not a NetSuite record: the body must be a JSON object, with a type")
        self.pending += 1
        line = self.queues.setdefault(cmd.order_key, deque())
        # a newer version of a deposit supersedes a rewrite of the older one still queued
        for stale in [p for p in line if p.rewrite and p.cmd.key == cmd.key]:
            line.remove(stale)
        line.append(Pending(msg, cmd))
        # started after the whole batch is queued (tick), so that a backlog's newer versions
        # of a record are there to supersede its older ones (_conflate)
        self.arrived[cmd.order_key] = None

    def _advance(self, key: str) -> None:
        """Start the next write of order key ``key`` if none is in flight: the first queued
        command whose references are all written, unless an earlier command of the same
        record still waits. Commands that wait for a record not written yet are passed over
        (an invoice's credit memo may be sent before the invoice itself: it waits for it, and
        the invoice behind it must not wait for the memo); every command that applies to an
        invoice refers to it, so none of those passes another while the invoice is missing.
        A command waiting longer than the dependency timeout is dead-lettered, except a
        deposit: it is written with the payment lines of the missing records on suspense
        (``on_suspense``), and rewritten when they are written. A rewrite does not wait."""
        line = self.queues.get(key)
        if self.stopping.is_set():
            return
        while line and key not in self.in_flight:
            held: set[str] = set()  # records with an earlier command still waiting
            now = time.monotonic()
            chosen: Pending | None = None
            expired: tuple[Pending, list[tuple[str, str]]] | None = None
            for item in line:
                if item.cmd.key in held:
                    continue
                # the first reference not written yet (a deposit refers to thousands: it is
                # woken by that one, then looks for the next)
                first = next((d for d in item.cmd.depends_on if d not in self.index.ids), None)
                if first is None:
                    chosen = item
                    break
                if item.rewrite or now - item.since > self.cfg.sink_dependency_timeout_s:
                    missing = [d for d in item.cmd.depends_on if d not in self.index.ids]
                    expired = (item, missing)
                    break
                held.add(item.cmd.key)
                self.waiting_on[first].add(key)
            if expired is not None:
                item, missing = expired
                line.remove(item)
                body = self._on_suspense(item, missing)
                if body is not None:
                    self._start(key, item, body, tuple(missing))
                    return
                if item.msg is None:  # a rewrite: the deposit stays as it was written
                    log.error("cannot rewrite %s: %s not written", item.cmd.key, missing)
                    continue
                self.pending -= 1
                self._dead_letter(
                    item.msg,
                    LookupError(
                        f"referenced records not written within "
                        f"{self.cfg.sink_dependency_timeout_s:.0f}s: {missing}"
                    ),
                    details=None,
                    cmd=item.cmd,
                )
                continue
            if chosen is None:
                self.blocked.add(key)
                return
            self.blocked.discard(key)
            line.remove(chosen)
            chosen = self._conflate(line, chosen)
            self._start(key, chosen, chosen.cmd.body)
            return
        if line is not None and not line and key not in self.in_flight:
            del self.queues[key]
            self.blocked.discard(key)

    def _conflate(self, line: deque[Pending], chosen: Pending) -> Pending:
        """On a backlog (a replay, a backfill, a burst of updates) write each record once: when
        newer versions of the chosen command's record are queued behind it, the newest one
        whose references are all written is written instead, and the older ones are done when
        it is (its write covers their offsets, its back-reference and status are theirs).

        Versions of one record stay in order (only a newer one replaces an older one). Other
        records of the order key keep their places, but the newer version must not pass a
        record NetSuite already holds: what that one applies to the invoice may only change
        later in the line (a credit memo voided there frees the amount the newer version
        applies), so the search stops at the first such command. Records not in NetSuite yet
        apply nothing until they are written, after this one, in their final version too.
        Deposit rewrites (no offset of their own) are never conflated."""
        if chosen.rewrite:
            return chosen
        candidates: list[Pending] = []
        for item in line:
            if item.cmd.key == chosen.cmd.key:
                if not item.rewrite:
                    candidates.append(item)
            elif (item.cmd.record_type, item.cmd.external_id) in self.index.ids:
                break  # NetSuite holds this record: the newer version must not pass it
        while candidates and any(d not in self.index.ids for d in candidates[-1].cmd.depends_on):
            candidates.pop()  # a newer version waiting for a reference: not this time
        if not candidates:
            return chosen
        newest = candidates[-1]
        for item in candidates:
            line.remove(item)
        newest.covers = [
            *chosen.covers,
            *([chosen.msg] if chosen.msg is not None else []),
            *(m for item in candidates[:-1] for m in (*item.covers, item.msg) if m is not None),
            *newest.covers,
        ]
        metrics.NETSUITE_SUPERSEDED.labels(chosen.cmd.record_type).inc(len(candidates))
        self.superseded += len(candidates)
        return newest

    def _start(
        self,
        key: str,
        item: Pending,
        body: dict[str, Any],
        suspended: tuple[tuple[str, str], ...] = (),
    ) -> None:
        self.blocked.discard(key)
        resolved = resolve_refs(body, self.index.ids)
        ids = self.index.ids
        refs = {d: i for d in item.cmd.depends_on if (i := ids.get(d)) is not None}
        self.in_flight[key] = item
        write = Write(item, canonical_json(resolved), sublists(resolved), suspended, refs)
        if self.batches.takes(write, self.singles_open):
            self.batches.add(write)
        else:
            self.submit_single(write)

    def submit_single(self, write: Write) -> None:
        """A write in one request of its own (on the pool of writer threads)."""
        with self._singles_lock:
            self.singles_open += 1
        self.pool.submit(self._single, write)

    def _single(self, write: Write) -> None:
        try:
            self._write_task(
                write.item, write.body_json, write.replace, write.suspended, write.refs
            )
        finally:
            with self._singles_lock:
                self.singles_open -= 1

    def _on_suspense(self, item: Pending, missing: list[tuple[str, str]]) -> dict[str, Any] | None:
        """The body of a deposit whose wait ended, its missing records' lines on suspense."""
        cmd = item.cmd
        if cmd.record_type != "deposit" or not cmd.suspense_account:
            return None
        body = on_suspense(cmd.body, missing, cmd.suspense_account)
        if body is not None and missing:
            log.warning(
                "%s %s: %d record(s) still not written after %.0fs, their lines go to suspense "
                "account %s until they are: %s",
                cmd.record_type,
                cmd.external_id,
                len(missing),
                self.cfg.sink_dependency_timeout_s,
                cmd.suspense_account,
                ", ".join(f"{t}/{e}" for t, e in missing[:10]),
            )
        return body

    def _wake(self, dep: tuple[str, str]) -> None:
        for key in self.waiting_on.pop(dep, ()):
            self._advance(key)
        for record in self.rewrite_on.pop(dep, ()):
            entry = self.suspended.get(record)
            if entry is None or dep not in entry[1]:
                continue  # written since without it missing
            log.info("%s now written: rewriting %s", dep[1], entry[0].key)
            self._rewrite(entry[0])

    def _rewrite(self, cmd: Command) -> None:
        """Write a deposit written with records on suspense again (it does not wait)."""
        line = self.queues.setdefault(cmd.order_key, deque())
        if any(p.cmd.key == cmd.key for p in line):
            return  # a version of it is queued already, and will be written
        line.append(Pending(None, cmd))
        if cmd.order_key not in self.in_flight:
            self._advance(cmd.order_key)

    def _sweep_blocked(self) -> None:
        """Dead-letter heads that waited too long for their references."""
        limit = self.cfg.sink_dependency_timeout_s
        now = time.monotonic()
        for key in list(self.blocked):
            line = self.queues.get(key)
            if line and any(now - item.since > limit for item in line):
                self._advance(key)

    # ----------------------------------------------------------------- writer threads
    def _write_task(
        self,
        item: Pending,
        body_json: str,
        replace: list[str],
        suspended: tuple[tuple[str, str], ...] = (),
        refs: dict[tuple[str, str], str] | None = None,
    ) -> None:
        cmd = item.cmd
        try:
            internal_id = self.retrying(
                lambda: self._request(cmd, body_json, replace), cmd.record_type, cmd.external_id
            )
            self.results.put(Outcome(item, internal_id=internal_id, suspended=suspended))
        except NetSuiteResponseError as exc:
            try:
                stale = self._stale_refs(exc, refs or {})
            except BaseException as lookup:  # noqa: BLE001 - handed to the main thread
                exc, stale = lookup, None  # type: ignore[assignment]
            self.results.put(Outcome(item, error=exc, stale=stale))
        except BaseException as exc:  # noqa: BLE001 - handed to the main thread
            self.results.put(Outcome(item, error=exc))

    def retrying(self, action: Any, record_type: str, what: str) -> Any:
        """``action()`` again after each transient failure, with jittered backoff and without
        end (an outage stalls, it does not dead-letter); InterruptedError once stopping."""
        for attempt in Retrying(
            retry=retry_if_exception(_transient),
            wait=_backoff(),
            stop=stop_never,
            reraise=True,
            before_sleep=self._log_retry(record_type, what),
        ):
            with attempt:
                if self.stopping.is_set():
                    raise InterruptedError("sink stopping")
                return action()
        raise AssertionError("unreachable: stop_never")  # pragma: no cover

    def retrying_call(self, request: Any, record_type: str, what: str) -> Any:
        """One NetSuite request (``call``) with those retries (batch requests)."""
        return self.retrying(lambda: self.call(request, record_type), record_type, what)

    def succeed(
        self, item: Pending, internal_id: str, suspended: tuple[tuple[str, str], ...]
    ) -> None:
        """A batch wrote ``item`` (called from a batch thread)."""
        self.results.put(Outcome(item, internal_id=internal_id, suspended=suspended))

    def fail(self, item: Pending, exc: BaseException) -> None:
        """A batch could not write ``item`` (called from a batch thread)."""
        self.results.put(Outcome(item, error=exc))

    def _stale_refs(
        self, exc: NetSuiteResponseError, refs: dict[tuple[str, str], str]
    ) -> dict[tuple[str, str], str | None] | None:
        """A write refused for a reference ("Invalid Field Value <id> for the following field:
        …") whose internal id came from the back-reference index: is that id stale? NetSuite
        is asked for the referenced record by its externalId. After a restore (or a record
        deleted by hand) it holds it under a new id, or not at all: the answer, per stale
        reference. None when nothing the sink knew was stale: a true refusal."""
        if exc.status != 400:
            return None
        invalid = {
            m.group(1).rstrip(".")
            for d in exc.details
            if (m := INVALID_REFERENCE.search(str(d.get("detail", ""))))
        }
        stale: dict[tuple[str, str], str | None] = {}
        for dep, known in refs.items():
            if known not in invalid:
                continue
            now = self.call(lambda dep=dep: self.client.internal_id(*dep), dep[0])
            if now != known:
                stale[dep] = now
        return stale or None

    def _request(self, cmd: Command, body_json: str, replace: list[str]) -> str:
        if cmd.operation == "link":
            return self._link(cmd)
        return self.call(
            lambda: self.client.upsert(
                cmd.record_type, cmd.external_id, body_json, replace=replace
            ),
            cmd.record_type,
        )

    def _link(self, cmd: Command) -> str:
        """Link mode: the record matching ``body.match`` if NetSuite has one, else a new one
        from ``body.create`` (an upsert on the externalId, so a retry cannot create two)."""
        match, create = cmd.body["match"], cmd.body["create"]
        found = self.call(
            lambda: self.client.find_id(cmd.record_type, match["field"], str(match["value"])),
            cmd.record_type,
        )
        if found is not None:
            log.info("linked %s %s to existing %s", cmd.record_type, cmd.external_id, found)
            return found
        body = resolve_refs(create, self.index.ids)
        return self.call(
            lambda: self.client.upsert(
                cmd.record_type, cmd.external_id, canonical_json(body), replace=sublists(body)
            ),
            cmd.record_type,
        )

    def call(self, request: Any, record_type: str) -> Any:
        """One NetSuite request inside a limiter slot, feeding the limiter what it answered."""
        with self.limiter.slot(self.stopping):
            if self._refusal is not None:  # judged wrong: no thread sends another with them
                raise CredentialsRefused(self._refusal)
            with self._requests_lock:
                self.requests += 1
            started = time.monotonic()
            outcome = "error"
            try:
                result = request()
                outcome = "ok"
            except NetSuiteAuthError as exc:  # the token endpoint refused the client assertion
                self._refusal = str(exc)
                raise
            except NetSuiteResponseError as exc:
                outcome = str(exc.status)
                if exc.status == 429:
                    metrics.NETSUITE_THROTTLED.inc()
                    self.limiter.throttle()
                elif exc.status == 401 and self.limiter.unauthorized():
                    if not self._credentials_work():
                        raise CredentialsRefused(BAD_CREDENTIALS) from exc
                raise
            finally:
                metrics.NETSUITE_REQUESTS.labels(record_type, outcome).observe(
                    time.monotonic() - started
                )
            # still holding the slot: it counts as open
            self.limiter.succeeded(time.monotonic() - started)
        return result

    def _credentials_work(self) -> bool:
        """After a run of 401s: a burst (NetSuite under load), or credentials that do not work?

        Asks NetSuite with a cheap authenticated read, again with backoff for up to
        ``LEDGER_SINK_AUTH_VERIFY_S``: one success means the credentials work (the run was a
        burst; writes go on); 401 throughout means they do not. One writer thread asks, the
        others wait for its verdict.
        """
        with self._verify_lock:
            if time.monotonic() - self._verified_at < 1.0:
                return self._verified  # another thread just asked
            verdict = bool(
                Retrying(
                    stop=stop_after_delay(self.cfg.sink_auth_verify_s),
                    wait=wait_random_exponential(multiplier=0.5, max=4),
                    retry=retry_if_result(lambda ok: not ok),
                    retry_error_callback=lambda state: False,
                )(self._check_credentials)
            )
            if verdict:
                self.limiter.succeeded()
                log.warning("a run of 401s from NetSuite, but the credentials work: a burst")
            self._verified, self._verified_at = verdict, time.monotonic()
            if not verdict:
                self._refusal = BAD_CREDENTIALS
            return verdict

    def _check_credentials(self) -> bool:
        try:
            self.client.verify()
            return True
        except NetSuiteResponseError as exc:
            if exc.status != 401:  # throttled or failing: no verdict from this answer
                log.info("credentials check answered %s; asking again", exc.status)
            return False
        except (requests.ConnectionError, requests.Timeout) as exc:
            log.info("credentials check failed (%s); asking again", exc)
            return False

    def _log_retry(self, record_type: str, what: str) -> Any:
        max_attempts = self.cfg.sink_max_attempts

        def before_sleep(state: Any) -> None:
            metrics.NETSUITE_RETRIES.labels(record_type).inc()
            level = logging.WARNING if state.attempt_number >= max_attempts else logging.DEBUG
            log.log(
                level,
                "%s %s: attempt %d failed (%s); retrying",
                record_type,
                what,
                state.attempt_number,
                state.outcome.exception() if state.outcome else "",
            )

        return before_sleep

    # ----------------------------------------------------------------- results
    def _collect(self, timeout: float) -> None:
        """Handle finished writes (waiting up to ``timeout`` for the first)."""
        try:
            outcome = self.results.get(timeout=timeout) if timeout else self.results.get_nowait()
        except queue.Empty:
            return
        while True:
            self._finish(outcome)
            try:
                outcome = self.results.get_nowait()
            except queue.Empty:
                return

    def _finish(self, outcome: Outcome) -> None:
        item, exc = outcome.item, outcome.error
        key = item.cmd.order_key
        del self.in_flight[key]
        if isinstance(exc, InterruptedError):
            return  # stopping: stays unwritten and uncommitted
        if isinstance(exc, CredentialsRefused | NetSuiteAuthError):
            raise FatalSinkError(str(exc)) from exc
        if outcome.stale:
            self._forget_stale(item, outcome.stale)
            return
        if item.msg is not None:
            self.pending -= 1 + len(item.covers)
        if exc is None:
            assert outcome.internal_id is not None
            self._note_suspended(item.cmd, outcome.suspended)
            self._backref(item.cmd, outcome.internal_id)
            self._status_written(item.cmd, outcome.internal_id)
            if item.msg is not None:
                self._done(item.msg)
            for older in item.covers:  # superseded by this write
                self._done(older)
            self.written += 1
        elif item.msg is None:
            # a rewrite NetSuite refused: the deposit stays as written, on suspense
            log.error("rewriting %s %s failed: %s", item.cmd.record_type, item.cmd.key, exc)
        else:
            details = exc.details if isinstance(exc, NetSuiteResponseError) else None
            self._dead_letter(item.msg, exc, details=details, cmd=item.cmd)
            for older in item.covers:  # superseded: a redrive of the newest writes the record
                self._done(older)
        self._advance(key)
        if exc is None:
            self._wake((item.cmd.record_type, item.cmd.external_id))

    def _forget_stale(self, item: Pending, stale: dict[tuple[str, str], str | None]) -> None:
        """Learn where NetSuite holds the stale references now, and queue the command again
        at the head of its order key: it is written at once with the new ids, or waits for
        the records NetSuite lost until they are written again (a re-sync after a restore
        sends them: ``ledgerstream replay --resync``), and its wait starts over."""
        for dep, now in stale.items():
            log.warning(
                "%s %s: NetSuite no longer holds %s %s under internal id %s (deleted, or lost "
                "in a restore): %s",
                item.cmd.record_type,
                item.cmd.external_id,
                dep[0],
                dep[1],
                self.index.ids.get(dep),
                f"it holds it under {now} now" if now else "waiting until it is written again",
            )
            if now is None:
                self.index.ids.pop(dep, None)
            else:
                self.index.ids[dep] = now
        item.since = time.monotonic()
        self.queues.setdefault(item.cmd.order_key, deque()).appendleft(item)
        self._advance(item.cmd.order_key)

    def _note_suspended(self, cmd: Command, suspended: tuple[tuple[str, str], ...]) -> None:
        """Remember a deposit written with records on suspense, to rewrite it when they are
        written; one written whole is forgotten (a newer version supersedes the older)."""
        key = cmd.key.encode()
        if not suspended:
            if self.suspended.pop(cmd.key, None) is not None:
                self.runner.produce(self.suspended_topic, key=key, value=None)  # tombstone
            return
        self.suspended[cmd.key] = (cmd, frozenset(suspended))
        value = self.suspended_serde.dumps(cmd.to_avro())
        self.runner.produce(self.suspended_topic, key=key, value=value)
        for dep in suspended:
            self.rewrite_on[dep].add(cmd.key)
        # written in between (the deposit's write was under way): rewrite at once
        for dep in suspended:
            if dep in self.index.ids:
                self._wake(dep)
                break

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
        self.runner.produce(self.backrefs_topic, key=cmd.key.encode(), value=value)
        log.info(
            "wrote %s %s -> internal id %s",
            cmd.record_type,
            cmd.external_id,
            internal_id,
            extra={
                "stripe_id": cmd.stripe_id,
                "netsuite_record": f"{cmd.record_type}/{internal_id}",
            },
        )

    def _dead_letter(
        self, msg: Message, exc: BaseException, details: Any, cmd: Command | None = None
    ) -> None:
        extra: list[tuple[str, str | bytes | None]] = []
        if details is not None:
            extra.append(("netsuite.errorDetails", json.dumps(details).encode()))
        self.runner.dead_letter(msg, exc, extra)
        if cmd is not None:
            self.runner.produce(
                self.status_topic,
                key=status.key(cmd.stripe_id, "failed", cmd.key),
                value=status.value(
                    record_type=cmd.record_type,
                    external_id=cmd.external_id,
                    reason=str(exc),
                    dlq=self.commands_topic + ".dlq",
                ),
            )

    def _status_written(self, cmd: Command, internal_id: str) -> None:
        """Written: so reported, and an earlier failure of the same command is gone."""
        self.runner.produce(
            self.status_topic,
            key=status.key(cmd.stripe_id, "written", cmd.key),
            value=status.value(
                record_type=cmd.record_type, external_id=cmd.external_id, internal_id=internal_id
            ),
        )
        self.runner.produce(
            self.status_topic, key=status.key(cmd.stripe_id, "failed", cmd.key), value=None
        )

    def _done(self, msg: Message) -> None:
        self.runner.done(msg)

    def revoke(self, partitions: set[tuple[str, int]]) -> None:
        """Finish the writes under way for the revoked partitions, forget the rest."""
        revoked = partitions
        for write in self.batches.drop(revoked):  # not submitted: their new owner writes them
            self.in_flight.pop(write.item.cmd.order_key, None)
            self.pending -= 1 + len(write.item.covers)
        for key in list(self.queues):
            line = self.queues[key]
            kept = deque(
                p
                for p in line
                if p.tp is None or p.tp not in revoked or self.in_flight.get(key) is p
            )
            self.pending -= len(line) - len(kept)
            self.queues[key] = kept
        while not self.stopping.is_set() and any(
            p.tp is not None and p.tp in revoked for p in self.in_flight.values()
        ):
            self._collect(timeout=0.1)
        for key in list(self.queues):
            if not self.queues[key]:
                del self.queues[key]
                self.blocked.discard(key)

    def close(self) -> None:
        self.stopping.set()
        # writes under way end at their next attempt; queued ones are cancelled (not written,
        # not committed: a restart reads them again); batch jobs end at their next poll
        self.batches.close()
        self.pool.shutdown(wait=True, cancel_futures=True)
        try:
            while True:
                try:
                    self._finish(self.results.get_nowait())
                except queue.Empty:
                    break
                except FatalSinkError:
                    continue
            self.in_flight.clear()
        finally:
            self.index.close()
            log.info(
                "netsuite sink stopped: %d written, %d dead-lettered, %d requests, "
                "limiter max %d in use, %d throttled answers",
                self.written,
                self.dead_lettered,
                self.requests,
                self.limiter.max_in_use,
                self.limiter.throttled,
            )


def run(boot: Bootstrap | None = None) -> None:
    sink = NetSuiteSink(boot)
    signal.signal(signal.SIGTERM, sink.stop)
    signal.signal(signal.SIGINT, sink.stop)
    serve_metrics(sink.runner)
    try:
        sink.run()
    except FatalSinkError as exc:
        raise SystemExit(f"netsuite sink stopped: {exc}") from exc
