"""The faust application: Stripe object topics in, NetSuite commands out.

Every record goes through ``Ledger`` (``ledgerstream.accounting.ledger``): its latest state is
kept in a RocksDB table with a changelog topic, and the commands of the object and of what
depends on it are recomputed and sent to ``netsuite.commands`` when they changed.

Guarantee: for every committed input offset, every command, dead letter and table change
derived from it was acknowledged by the broker (acks=all) before the commit was sent
(``.delivery``: faust's own flush gave up after 0.1 s without progress and ignored
failed deliveries, so a kill -9 could lose table changes for good). A write that fails forbids
every later commit and stops the worker. At-least-once: a crash replays the uncommitted
records, tables are rebuilt from their changelogs, and since every command is a pure function of
the latest states (keyed by its NetSuite record), the replay sends nothing new or the same
commands again (the ``emitted`` table drops exact repeats).

Partitioning: the receivables topics (customer, invoice, charge, refund, dispute, credit note)
are keyed by Stripe customer id and have the same partition count, so one worker holds every
state of a customer and the joins (invoice ⋈ charge, refund/dispute ⋈ charge ⋈ invoice, credit
note ⋈ invoice) are local table lookups (faust has no join API). Charges with no customer are
keyed by their own id, and their refunds by the charge id (the router adds the charge to them),
so they meet too. Payouts and their balance transactions are keyed by payout id. Scale out by
starting more workers with the same ``LEDGER_APP_ID``: faust assigns the same partition number
of every co-partitioned topic to the same worker.

Out of order: a record whose partner has not arrived (payment before its invoice, refund before
its charge, deposit before all its transactions) waits in the tables and is booked when the
partner arrives. After ``LEDGER_PROCESSOR_WAIT_S`` a waiting record is reported on its topic's
dead-letter topic (reason: what it waits for) — it stays booked-on-arrival — an incomplete
deposit is posted with a labelled variance line when ``deposit_variance_policy=post``, and an
invoice paid from a customer-balance credit never seen gets that credit as a ``cm_balpay_``
credit memo (BEHAVIOR.md, Customer balance).

Poison: a record that cannot be decoded, or that the ledger cannot read or book (any
exception, checked before anything is stored), goes to ``<topic>.dlq`` with
topic/partition/offset and the reason; the worker carries on. (faust acks and commits a record
whose agent raised, so nothing may escape the agent: it would be dropped silently.)

Memory: the tables live in RocksDB within one budget per worker (``ledgerstream.processors.store``,
``LEDGER_PROCESSOR_ROCKSDB_*``); nothing in the Python heap grows with the number of keys.
``GET /ledger/memory/`` on the worker's web port reports resident size, Python heap and RocksDB
cache figures (``?objects=1`` also counts the objects the garbage collector tracks — that one
walks the heap).
"""

from __future__ import annotations

import logging
import os
import ssl
import time
from datetime import UTC, datetime
from typing import Any, cast

import faust
from faust.exceptions import ConsumerNotStarted

from ledgerstream import logs, metrics, settings, status, topics
from ledgerstream.accounting.deposits import composition
from ledgerstream.accounting.ledger import Ledger, Outcome
from ledgerstream.avro import Serde
from ledgerstream.commands import Command
from ledgerstream.kafka_util import dead_letter_headers, wait_for_brokers
from ledgerstream.processors import store
from ledgerstream.processors.delivery import AckedProducer, LedgerApp

log = logging.getLogger(__name__)

INPUTS = topics.PROCESSOR_INPUTS
OVERDUE_PER_TICK = 1000  # overdue waits reported per timer tick
PRODUCER_LINGER_S = 0.01  # see Processor._app
PRODUCER_BATCH_BYTES = 256 * 1024  # below faust's max request size (1 MiB)


def _credentials(cfg: settings.KafkaSettings) -> Any:
    if cfg.kafka_security_protocol == "PLAINTEXT":
        return None
    context = ssl.create_default_context(cafile=cfg.kafka_ssl_ca_location)
    if cfg.kafka_security_protocol.startswith("SASL"):
        password = cfg.kafka_sasl_password.get_secret_value() if cfg.kafka_sasl_password else ""
        return faust.SASLCredentials(
            username=cfg.kafka_sasl_username or "",
            password=password,
            mechanism=cfg.kafka_sasl_mechanism or "PLAIN",
            ssl_context=context if cfg.kafka_security_protocol == "SASL_SSL" else None,
        )
    return faust.SSLCredentials(context)


class Processor:
    """The worker's parts: its app and tables, its output, one agent per input, the timer."""

    def __init__(self, web_port: int = 6066) -> None:
        self.kafka = settings.kafka()
        self.proc = settings.ProcessorSettings()
        self.cfg = settings.accounting()
        self.app = self._app(web_port)
        self.budget = store.Budget(self.proc) if self.proc.processor_rocksdb_bounded else None
        self.ledger = Ledger(self.cfg, self.table)
        emitted, waiting = topics.PROCESSOR_OWN_TABLES
        self.emitted = self.table(emitted)  # command key -> command_id last sent
        self.waiting = self.table(waiting)  # object id -> {"reason", "since", "topic"}
        # waits already reported (per process: a restart reports again); pruned to what waits
        self.notified: set[str] = set()
        # command key -> command_id being sent by an agent right now (see ``take``)
        self.sending: dict[str, str] = {}
        commands_name = self.commands_name = topics.name(topics.NETSUITE_COMMANDS)
        self.status_topic = status.topic()
        self.commands_serde = Serde(commands_name, topics.NETSUITE_COMMANDS.schema or "")
        self.commands_topic = self._raw_topic(commands_name)
        for spec in INPUTS:
            self._agent_for(spec)
        processor = self

        async def memory(web: Any, request: Any) -> Any:  # faust binds a page to its View
            return await processor.memory(web, request)

        self.app.page("/ledger/memory/")(memory)
        self.tick_s = max(1.0, min(30.0, self.proc.processor_wait_s / 4))
        for kind in {*WAITING_KINDS.values(), "other"}:  # every series there from the start
            metrics.OLDEST_WAITING.labels("processor", kind).set(0)
        self.last_tick = time.monotonic()
        self.inputs = {topics.name(spec) for spec in INPUTS}
        self.lag_series: set[tuple[str, int]] = set()  # input partitions with a lag series

        async def metrics_page(web: Any, request: Any) -> Any:
            processor.note_lag()  # at scrape time: as fresh as the consumer's last fetch
            body, content_type = metrics.exposition(request.headers.get("Accept", ""))
            return web.bytes(body, headers={"Content-Type": content_type})

        async def healthz(web: Any, request: Any) -> Any:
            return web.text("ok\n")

        async def readyz(web: Any, request: Any) -> Any:
            # ready: not rebalancing, and the timer ran lately (the event loop is not stuck)
            ready = not processor.app.rebalancing and (
                time.monotonic() - processor.last_tick < 3 * processor.tick_s + 10
            )
            return web.text("ready\n" if ready else "not ready\n", status=200 if ready else 503)

        self.app.page("/metrics")(metrics_page)
        self.app.page("/healthz")(healthz)
        self.app.page("/readyz")(readyz)

        async def assigned(app: Any, /, *args: Any, signal: Any, **kwargs: Any) -> None:
            processor.ledger.forget_rebooked()

        self.app.on_partitions_assigned.connect(assigned)
        self.app.timer(interval=self.tick_s)(self.overdue)

    def _app(self, web_port: int) -> faust.App:
        kafka, proc = self.kafka, self.proc
        brokers = ";".join(f"kafka://{h}" for h in kafka.kafka_bootstrap_servers.split(","))
        datadir = os.path.join(proc.processor_data_dir, proc.app_id, str(web_port))
        os.makedirs(datadir, exist_ok=True)
        return LedgerApp(
            proc.app_id,
            broker=brokers,
            broker_credentials=_credentials(kafka),
            # the app id names this worker's connections in the broker's metrics, logs and quotas
            broker_client_id=proc.app_id,
            # a killed worker's partitions move after this (see KafkaSettings)
            broker_session_timeout=kafka.kafka_session_timeout_ms / 1000,
            broker_heartbeat_interval=max(0.5, kafka.kafka_session_timeout_ms / 4000),
            # static membership: restarted, this worker takes its partitions back at once
            consumer_group_instance_id=(
                f"{kafka.kafka_group_instance_id}-processor"
                if kafka.kafka_group_instance_id
                else None
            ),
            store=proc.processor_store,
            # one RocksDB directory per worker: workers on one host differ by their web port
            datadir=datadir,
            topic_partitions=kafka.topic_partitions,
            topic_replication_factor=kafka.topic_replication_factor,
            topic_allow_declare=True,
            consumer_auto_offset_reset="earliest",
            producer_acks=-1,
            # each input record gives about 4 writes (commands, status records, table
            # changes) and aiokafka keeps one produce request in flight per broker: with
            # faust's defaults (no linger, 16 KiB batches) a partition's batch filled while
            # the previous request was out, and the agent waited; bigger batches gathered
            # over up to 10 ms took about 15% less worker CPU in processor_bench (6.1 -> 5.1 s),
            # and less broker CPU (same messages, partitions and order per partition; the
            # commit still waits for every ack)
            producer_linger=PRODUCER_LINGER_S,
            producer_max_batch_size=PRODUCER_BATCH_BYTES,
            web_port=web_port,
            web_host="127.0.0.1",
            web_bind=proc.processor_web_bind,  # faust's default is every interface
            table_key_serializer="raw",
            table_value_serializer="json",
            Table=store.Table,
            # records handed over per poll: unbounded, recovery would hand over whole fetches of
            # every changelog partition at once and the Python heap would keep that peak
            broker_max_poll_records=proc.processor_max_poll_records,
        )

    def table(self, name: str) -> Any:
        created = cast(
            store.Table,
            self.app.Table(
                name,
                default=None,
                partitions=self.kafka.topic_partitions,
                key_type=str,
                recovery_buffer_size=self.proc.processor_recovery_buffer_size,
            ),
        )
        created.budget = self.budget  # read when faust opens the store, at start-up
        return created

    def _raw_topic(self, name: str) -> Any:
        return self.app.topic(
            name,
            key_type=bytes,
            value_type=bytes,
            key_serializer="raw",
            value_serializer="raw",
            partitions=self.kafka.topic_partitions,
        )

    async def send(self, cmd: Command) -> None:
        await self.commands_topic.send(
            key=cmd.order_key.encode(), value=self.commands_serde.dumps(cmd.to_avro())
        )
        metrics.RECORDS_OUT.labels("processor", self.commands_name).inc()

    async def dead_letter(self, message: Any, exc: BaseException, kind: str) -> None:
        log.warning(
            "dead letter %s[%d]@%d: %s", message.topic, message.partition, message.offset, exc
        )
        metrics.DEAD_LETTERS.labels("processor", message.topic, kind).inc()
        await self.app.producer.send_and_wait(
            message.topic + ".dlq",
            key=message.key,
            value=message.value,
            partition=None,
            timestamp=None,
            headers=dead_letter_headers(
                message.topic, message.partition, message.offset, exc, error_class=kind
            ),
        )

    async def take(
        self, outcome: Outcome, event: faust.EventT, topic: str, own: str | None = None
    ) -> None:
        """Send what changed, note what waits and dead-letter what cannot be mapped."""
        emitted, waiting, sending = self.emitted, self.waiting, self.sending
        for cmd in outcome.commands:
            if cmd.command_id in (emitted.get(cmd.key), sending.get(cmd.key)):
                continue
            # noted before the send is awaited: the agents of the other input topics run
            # between, and one of them may book the same record (a customer's arrival books
            # its invoices); without it both sent the same command (seen: an invoice written
            # twice in the slice test). Not the table: a command is marked sent there only
            # once sent, or a worker killed in between would skip it when it reads it again
            sending[cmd.key] = cmd.command_id
            try:
                await self.send(cmd)
                emitted[cmd.key] = cmd.command_id
            finally:
                if sending.get(cmd.key) == cmd.command_id:
                    del sending[cmd.key]
            await self._status(
                cmd.stripe_id,
                "sent",
                cmd.key,
                record_type=cmd.record_type,
                external_id=cmd.external_id,
                command_id=cmd.command_id,
                **(_deposit_status(cmd) if cmd.record_type == "deposit" else {}),
            )
        # "booked" is reported for the record read, and for what stopped waiting; not again for
        # each object this record booked anew (a customer's invoices and charges, a payout's
        # deposit): their status already says booked, from their own arrival or their end of
        # waiting. Those repeats were a third of the processor's messages to the status topic
        # (processor_bench, 100 customers: 7,548 status records for 3,268 input records, now
        # about 5,000), each one a write acknowledged before the commit.
        booked = {own} if own else set()
        for oid in outcome.ready:
            if waiting.get(oid) is not None:
                waiting.pop(oid)
                booked.add(oid)
        for oid in booked - set(outcome.waiting):
            await self._status(oid, "processed", state="booked")
        for oid, reason in outcome.waiting.items():
            current = waiting.get(oid)
            if current is None or current.get("reason") != reason:
                since = time.time()
                waiting[oid] = {"reason": reason, "since": since, "topic": topic}
                await self._status(
                    oid,
                    "processed",
                    state="waiting",
                    reason=reason,
                    since=datetime.fromtimestamp(since, UTC).isoformat(),
                )
        for oid, reason in outcome.unmapped.items():
            await self.dead_letter(event.message, RuntimeError(f"{oid}: {reason}"), "UnmappedError")

    async def _status(self, stripe_id: str, stage: str, detail: str = "", **fields: Any) -> None:
        """Report where an object is (``ledgerstream.status``), acknowledged before the commit
        like every other write."""
        await self.app.producer.send(
            self.status_topic,
            key=status.key(stripe_id, stage, detail),
            value=status.value(**fields),
            partition=None,
            timestamp=None,
            headers=None,
        )

    async def handle(self, spec: topics.TopicSpec, serde: Serde, event: faust.EventT) -> None:
        """One input record: decode, book, send; poison goes to ``<topic>.dlq``."""
        metrics.RECORDS_IN.labels("processor", event.message.topic).inc()
        with metrics.PROCESSING.labels("processor").time():
            await self._handle(spec, serde, event)

    async def _handle(self, spec: topics.TopicSpec, serde: Serde, event: faust.EventT) -> None:
        try:
            record = serde.loads(event.value)
        except Exception as exc:  # noqa: BLE001 - anything undecodable is poison
            await self.dead_letter(event.message, RuntimeError(f"cannot decode: {exc}"), _kind(exc))
            return
        try:
            outcome = self.ledger.apply(spec.name, record)
        except Exception as exc:  # noqa: BLE001 - a record the ledger cannot book is poison
            # (impossible content: a rate of 'abc', an empty id…). faust acks a record whose
            # agent raised and commits past it, so raising here would drop it silently.
            await self.dead_letter(event.message, RuntimeError(f"cannot map: {exc!r}"), _kind(exc))
            return
        own = record.get("id") if isinstance(record, dict) else None
        await self.take(outcome, event, event.message.topic, own if isinstance(own, str) else None)

    def _agent_for(self, spec: topics.TopicSpec) -> None:
        name = topics.name(spec)
        serde = Serde(name, spec.schema or "")
        producer = cast(AckedProducer, self.app.producer)

        async def process(stream: faust.StreamT) -> None:
            async for event in stream.events():
                try:
                    await self.handle(spec, serde, event)
                except BaseException as exc:
                    # a write failed (or the worker is stopping mid-record): faust acks the
                    # record anyway, so forbid every later commit; the worker stops and its
                    # replacement reads the record again
                    producer.fail(exc)
                    raise

        process.__name__ = f"on_{spec.name.replace('.', '_')}"
        self.app.agent(self._raw_topic(name), name=f"ledgerstream.{spec.name}")(process)

    async def overdue(self) -> None:
        """Report what waited too long; post incomplete deposits when the policy says so."""
        proc, waiting, notified = self.proc, self.waiting, self.notified
        now = time.time()
        self.last_tick = time.monotonic()
        due: list[tuple[str, dict[str, Any]]] = []
        still: set[str] = set()
        oldest: dict[str, float] = dict.fromkeys([*WAITING_KINDS.values(), "other"], 0.0)
        # one pass over RocksDB without awaiting (a rebalance may close its databases), keeping
        # only what is due; at most OVERDUE_PER_TICK reports per tick, the rest on the next
        for oid, state in waiting.items():
            if state is None:
                continue
            kind = _waiting_kind(oid)
            oldest[kind] = max(oldest[kind], now - state["since"])
            if oid in notified:
                still.add(oid)
            elif now - state["since"] >= proc.processor_wait_s:
                due.append((oid, state))
                if len(due) >= OVERDUE_PER_TICK:
                    break
        else:
            notified.intersection_update(still)  # forget what no longer waits
        for kind, age in oldest.items():
            metrics.OLDEST_WAITING.labels("processor", kind).set(age)
        for oid, state in due:
            notified.add(oid)
            reason = f"{oid} waited {proc.processor_wait_s:.0f}s for {state['reason']}"
            if oid.startswith("po_") and self.cfg.deposit_variance_policy == "post":
                for cmd in self.ledger.post_with_variance(oid).commands:
                    await self.send(cmd)
                log.warning("%s: posted with a variance line", reason)
                continue
            if oid.startswith("in_"):
                # paid from a balance credit never seen: booked as a cm_balpay_ credit memo
                booked = self.ledger.post_balance_payment(oid).commands
                for cmd in booked:
                    await self.send(cmd)
                if booked:
                    log.warning(
                        "%s: the missing balance credit booked as cm_balpay_%s", reason, oid
                    )
                    continue
            log.warning(reason)
            metrics.DEAD_LETTERS.labels("processor", state["topic"], "PartnerTimeout").inc()
            await self.app.producer.send_and_wait(
                state["topic"] + ".dlq",
                key=oid.encode(),
                value=None,
                partition=None,
                timestamp=None,
                headers=[
                    ("dlq.exception.class", b"PartnerTimeout"),
                    ("dlq.exception.message", reason.encode()),
                    ("dlq.object", oid.encode()),
                ],
            )

    def note_lag(self) -> None:
        """Consumer lag per input partition, as the stages report theirs: the high watermark
        the consumer's last fetch saw, less the offset this worker last committed (faust's own
        record of it; nothing committed yet counts from 0). No request to the broker. Table
        changelogs are left out; a partition this worker no longer holds loses its series (the
        worker that holds it now reports it)."""
        consumer = self.app.consumer
        try:
            held = {(tp.topic, tp.partition): tp for tp in consumer.assignment()}
        except ConsumerNotStarted:
            held = {}
        committed = getattr(consumer, "_committed_offset", {})
        reported: set[tuple[str, int]] = set()
        for (topic, partition), tp in held.items():
            if topic not in self.inputs:
                continue
            try:
                high = consumer.highwater(tp)
            except (AssertionError, ConsumerNotStarted):  # revoked or stopped since
                continue
            if high is None:  # no fetch of it yet
                continue
            done = committed.get(tp) or 0  # faust keeps a commit of offset 0 as None
            metrics.LAG.labels("processor", topic, str(partition)).set(max(0, high - done))
            reported.add((topic, partition))
        for topic, partition in self.lag_series - held.keys():
            metrics.LAG.remove("processor", topic, str(partition))
        self.lag_series = (self.lag_series & held.keys()) | reported

    async def memory(self, web: Any, request: Any) -> Any:
        """Resident size, Python heap and RocksDB figures of this worker (see the docstring)."""
        objects = request.query.get("objects") in ("1", "true")
        return web.json(store.memory_report(self.app, self.budget, objects=objects))


# what waits, by Stripe id prefix (the label of ledgerstream_oldest_waiting_seconds)
WAITING_KINDS = {
    "po_": "payout",
    "in_": "invoice",
    "ch_": "charge",
    "py_": "charge",
    "re_": "refund",
    "pyr_": "refund",
    "dp_": "dispute",
    "du_": "dispute",
    "cn_": "credit_note",
    "cus_": "customer",
}


def _waiting_kind(oid: str) -> str:
    return next((k for p, k in WAITING_KINDS.items() if oid.startswith(p)), "other")


def _kind(exc: BaseException) -> str:
    return type(exc).__name__


def create_app(web_port: int = 6066) -> faust.App:
    return Processor(web_port).app


def run_worker(web_port: int = 6066, loglevel: str = "info") -> None:
    from faust.worker import Worker

    store.fix_mmap_threshold(settings.ProcessorSettings().processor_malloc_mmap_threshold_kb)
    # faust's clients give up when no broker answers at start: wait for one instead (a broker
    # lost during the few seconds of start-up still stops the worker; its restart waits here)
    settings.accounting()  # stops here, naming every NetSuite set-up id that is not set
    wait_for_brokers(log)
    app = create_app(web_port)
    logs.COMPONENT["name"] = "processor"
    json_logs = settings.ObservabilitySettings().log_format == "json"
    worker = Worker(
        app, loglevel=loglevel, logging_config=logs.dict_config(loglevel) if json_logs else None
    )
    # faust's terminal spinner: at --log-level warning or above it sets the root logger to
    # DEBUG (its handler spins on every record), so every debug line of aiokafka (several per
    # produce request, with the request's repr) was built, passed through ledgerstream.redact's
    # record factory and dropped by the real handler: 17% of a worker's CPU under load. Without
    # it the root logger stays at the level asked for and the same lines are logged (the
    # spinner's own marks go: it draws on a terminal, elsewhere prints " OK ^" once ready).
    worker.spinner = None
    worker.execute_from_commandline()


def _deposit_status(cmd: Command) -> dict[str, Any]:
    """What the status page shows of a deposit: its currency, lines by kind, total, and (on
    the first part) the payout's amount."""
    currency = cmd.payout_currency or ""
    lines = composition(cmd.body, currency) if currency else {}
    return {
        "currency": currency,
        "lines": lines,
        "total": sum(lines.values()),
        "payout_amount": cmd.payout_amount,
    }
