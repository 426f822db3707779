"""The faust application: Stripe object topics in, NetSuite commands out.

Guarantee: at-least-once. Offsets are committed by faust after an event was processed, and every
output is a deterministic command keyed by its NetSuite record, so reprocessing after a crash
emits the same commands again (the ``emitted`` table suppresses exact repeats).

Partitioning: the receivables topics are keyed by Stripe customer id and have the same
partition count, so a customer's customer, invoices and charges are in the same partition
number on every topic and the tables below are local lookups (faust has no join API).

Tables (RocksDB, changelog-backed, rebuilt on restart or rebalance):
- ``invoices``: invoice id → the invoice's NetSuite-relevant summary;
- ``pending_payments``: invoice id → charges that arrived before their invoice;
- ``emitted``: command key → command_id of the last command sent for that record.
"""

from __future__ import annotations

import logging
import os
import ssl
from typing import Any

import faust
from faust.serializers import codecs

from ledgerstream import settings, topics
from ledgerstream.accounting import (
    UnmappedError,
    customer_commands,
    invoice_commands,
    payment_commands,
)
from ledgerstream.accounting.model import Charge, Customer, Invoice
from ledgerstream.avro import Serde
from ledgerstream.commands import Command
from ledgerstream.kafka_util import dead_letter_headers

log = logging.getLogger(__name__)


class AvroCodec(codecs.Codec):
    """Confluent wire-format Avro through the schema registry, for one topic's values."""

    def __init__(self, topic: str, schema: str, **kwargs: Any):
        super().__init__(topic=topic, schema=schema, **kwargs)
        self._serde: Serde | None = None

    @property
    def serde(self) -> Serde:
        if self._serde is None:
            self._serde = Serde(self.kwargs["topic"], self.kwargs["schema"])
        return self._serde

    def _dumps(self, obj: Any) -> bytes:
        return self.serde.dumps(obj)

    def _loads(self, s: bytes) -> Any:
        return self.serde.loads(s)


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


def _topic(app: faust.App, spec: topics.TopicSpec) -> faust.TopicT:
    name = topics.name(spec)
    return app.topic(
        name,
        key_type=bytes,
        key_serializer="raw",
        value_serializer=AvroCodec(name, spec.schema or ""),
        partitions=settings.kafka().topic_partitions,
    )


def create_app(web_port: int = 6066) -> faust.App:
    kafka = settings.kafka()
    proc = settings.ProcessorSettings()
    cfg = settings.accounting()
    brokers = ";".join(f"kafka://{h}" for h in kafka.kafka_bootstrap_servers.split(","))
    os.makedirs(proc.processor_data_dir, exist_ok=True)
    app = faust.App(
        proc.app_id,
        broker=brokers,
        broker_credentials=_credentials(kafka),
        store=proc.processor_store,
        datadir=os.path.join(proc.processor_data_dir, proc.app_id),
        topic_partitions=kafka.topic_partitions,
        topic_replication_factor=kafka.topic_replication_factor,
        topic_allow_declare=True,
        consumer_auto_offset_reset="earliest",
        producer_acks=-1,
        web_port=web_port,
        web_host="127.0.0.1",
        table_key_serializer="raw",
        table_value_serializer="json",
    )

    customer_topic = _topic(app, topics.STRIPE_CUSTOMER)
    invoice_topic = _topic(app, topics.STRIPE_INVOICE)
    charge_topic = _topic(app, topics.STRIPE_CHARGE)
    commands_topic = _topic(app, topics.NETSUITE_COMMANDS)

    def table(name: str) -> Any:
        return app.Table(name, default=None, partitions=kafka.topic_partitions, key_type=str)

    customers = table("customers")
    invoices = table("invoices")
    pending_payments = table("pending-payments")
    emitted = table("emitted")

    async def emit(cmd: Command) -> None:
        if emitted.get(cmd.key) == cmd.command_id:
            return  # the same write was already sent: a duplicate delivery or a replay
        await commands_topic.send(key=cmd.key.encode(), value=cmd.to_avro())
        emitted[cmd.key] = cmd.command_id

    async def dead_letter(event: faust.EventT, reason: Exception) -> None:
        msg = event.message
        log.warning("dead letter %s[%d]@%d: %s", msg.topic, msg.partition, msg.offset, reason)
        await app.producer.send_and_wait(
            msg.topic + ".dlq",
            key=msg.key,
            value=msg.value,
            partition=None,
            timestamp=None,
            headers=dead_letter_headers(msg.topic, msg.partition, msg.offset, reason),
        )

    async def emit_all(commands: list[Command]) -> None:
        for cmd in commands:
            await emit(cmd)

    @app.agent(customer_topic)
    async def on_customer(stream: faust.StreamT) -> None:
        async for event in stream.events():
            rec = event.value
            try:
                if rec["deleted"]:
                    continue
                customer = Customer.from_record(rec)
                customers[customer.id] = _storable(rec)
                await emit_all(customer_commands(customer, cfg))
            except UnmappedError as exc:
                await dead_letter(event, exc)

    def customer_of(customer_id: str | None) -> Customer | None:
        rec = customers.get(customer_id) if customer_id else None
        return Customer.from_record(_revive(rec)) if rec else None

    @app.agent(invoice_topic)
    async def on_invoice(stream: faust.StreamT) -> None:
        async for event in stream.events():
            try:
                invoice = Invoice.from_record(event.value)
                commands = invoice_commands(invoice, cfg, customer_of(invoice.customer))
                if not commands:
                    continue
                await emit_all(commands)
                invoices[invoice.id] = {
                    "customer": invoice.customer,
                    "total": invoice.total,
                    "currency": invoice.currency,
                }
                waiting = pending_payments.get(invoice.id) or []
                for charge in waiting:
                    await emit(Command.from_avro(charge))
                if waiting:
                    pending_payments.pop(invoice.id)
            except UnmappedError as exc:
                await dead_letter(event, exc)

    @app.agent(charge_topic)
    async def on_charge(stream: faust.StreamT) -> None:
        async for event in stream.events():
            try:
                charge = Charge.from_record(event.value)
                commands = payment_commands(charge, cfg, customer_of(charge.customer))
                if not commands:
                    continue
                if charge.invoice and invoices.get(charge.invoice) is None:
                    # the invoice has not arrived yet: hold the payment until it does
                    held = [c.to_avro() for c in commands]
                    keys = {c["external_id"] for c in held}
                    waiting = [
                        c
                        for c in (pending_payments.get(charge.invoice) or [])
                        if c["external_id"] not in keys
                    ]
                    pending_payments[charge.invoice] = [*waiting, *held]
                    continue
                await emit_all(commands)
            except UnmappedError as exc:
                await dead_letter(event, exc)

    return app


def run_worker(web_port: int = 6066, loglevel: str = "info") -> None:
    from faust.worker import Worker

    app = create_app(web_port)
    Worker(app, loglevel=loglevel).execute_from_commandline()


def _storable(rec: dict[str, Any]) -> dict[str, Any]:
    """What a table keeps of a record: JSON-safe, without the bulky original object."""
    out = {k: v for k, v in rec.items() if k != "object_json"}
    for key in ("created", "event_created"):
        if hasattr(out.get(key), "timestamp"):
            out[key] = out[key].timestamp()
    return out


def _revive(rec: dict[str, Any]) -> dict[str, Any]:
    """Table values are JSON: turn the timestamps back into datetimes."""
    from datetime import UTC, datetime

    out = dict(rec)
    for key in ("created", "event_created"):
        if isinstance(out.get(key), int | float):
            out[key] = datetime.fromtimestamp(out[key], UTC)
    return out
