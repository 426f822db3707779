"""Topic names, their schemas and keys, and idempotent creation.

Receivables topics (customer, invoice, charge, …) are keyed by the Stripe **customer id** so that
a customer's invoices, charges, refunds and disputes share a partition and the processors can
join them by local table lookups; an object with no customer is keyed by its own id.
Commands are keyed ``<record_type>/<external_id>`` so writes to one NetSuite record stay in
order. The back-reference topic is compacted on the same key.
"""

from __future__ import annotations

from dataclasses import dataclass

from confluent_kafka.admin import AdminClient, NewTopic

from ledgerstream import settings


@dataclass(frozen=True)
class TopicSpec:
    name: str
    schema: str | None  # schemas/<schema>.avsc; None for JSON values (internal state)
    compacted: bool = False
    dead_letters: bool = True


# every Stripe event as it arrived (key: object id); the router types and enriches them
STRIPE_EVENTS = TopicSpec("stripe.events", "stripe_event")
STRIPE_CUSTOMER = TopicSpec("stripe.customer", "stripe_customer")
STRIPE_INVOICE = TopicSpec("stripe.invoice", "stripe_invoice")
STRIPE_CHARGE = TopicSpec("stripe.charge", "stripe_charge")
STRIPE_REFUND = TopicSpec("stripe.refund", "stripe_refund")
STRIPE_DISPUTE = TopicSpec("stripe.dispute", "stripe_dispute")
STRIPE_CREDIT_NOTE = TopicSpec("stripe.credit_note", "stripe_credit_note")
STRIPE_PAYOUT = TopicSpec("stripe.payout", "stripe_payout")
STRIPE_PAYOUT_TRANSACTIONS = TopicSpec("stripe.payout_transactions", "stripe_payout_transaction")
STRIPE_PRICE = TopicSpec("stripe.price", "stripe_price", compacted=True)
STRIPE_COUPON = TopicSpec("stripe.coupon", "stripe_coupon", compacted=True)
NETSUITE_COMMANDS = TopicSpec("netsuite.commands", "netsuite_command")
NETSUITE_BACKREFS = TopicSpec("netsuite.backrefs", "netsuite_backref", compacted=True)
# durable positions of the pollers (last Stripe event seen), one key per poller
CURSORS = TopicSpec("ledgerstream.cursors", None, compacted=True, dead_letters=False)

# the topics a Stripe event is published to (see ledgerstream.stripe_records.route)
STRIPE_TOPICS = (
    STRIPE_CUSTOMER,
    STRIPE_INVOICE,
    STRIPE_CHARGE,
    STRIPE_REFUND,
    STRIPE_DISPUTE,
    STRIPE_CREDIT_NOTE,
    STRIPE_PAYOUT,
    STRIPE_PRICE,
    STRIPE_COUPON,
)
ALL = (
    STRIPE_EVENTS,
    *STRIPE_TOPICS,
    STRIPE_PAYOUT_TRANSACTIONS,
    NETSUITE_COMMANDS,
    NETSUITE_BACKREFS,
    CURSORS,
)


def name(spec: TopicSpec) -> str:
    return settings.kafka().topic(spec.name)


def dlq_name(spec: TopicSpec) -> str:
    return name(spec) + ".dlq"


def admin() -> AdminClient:
    return AdminClient(settings.kafka().client_config())


# tables of the processor besides the ledger's (see processors/app.py)
PROCESSOR_OWN_TABLES = ("emitted", "waiting")


def processor_changelogs() -> list[str]:
    """The changelog topics of the processor's tables (faust names them ``<app id>-<table>-
    changelog``). Created with the others, before any worker starts: a worker that had to
    create them itself while a broker is down (replication factor 3, two brokers up) would
    run without them."""
    from ledgerstream.accounting.ledger import table_names

    app_id = settings.ProcessorSettings().app_id
    return [f"{app_id}-{t}-changelog" for t in [*table_names(), *PROCESSOR_OWN_TABLES]]


def ensure_all(specs: tuple[TopicSpec, ...] = ALL, changelogs: bool = True) -> list[str]:
    """Create missing topics (and their dead-letter topics, and the processor's changelog
    topics); return one line per topic."""
    cfg = settings.kafka()
    client = admin()
    existing = set(client.list_topics(timeout=10).topics)
    compact = {"cleanup.policy": "compact"}
    candidates: list[tuple[str, dict[str, str]]] = []
    if changelogs:
        candidates += [(topic, compact) for topic in processor_changelogs()]
    for spec in specs:
        candidates.append((name(spec), compact if spec.compacted else {}))
        if spec.dead_letters:
            candidates.append((dlq_name(spec), {}))
    wanted = [
        NewTopic(
            topic,
            num_partitions=cfg.topic_partitions,
            replication_factor=cfg.topic_replication_factor,
            config=conf,
        )
        for topic, conf in candidates
        if topic not in existing
    ]
    lines = []
    if wanted:
        for topic, future in client.create_topics(wanted, operation_timeout=30).items():
            try:
                future.result()
                lines.append(f"created {topic}")
            except Exception as exc:  # already exists (a concurrent creator) is fine
                if "TOPIC_ALREADY_EXISTS" not in str(exc):
                    raise
                lines.append(f"exists  {topic}")
    created = {t.topic for t in wanted}
    _wait_for_leaders(client, created)
    for spec in specs:
        for topic in (name(spec), *([dlq_name(spec)] if spec.dead_letters else [])):
            if topic not in created:
                lines.append(f"exists  {topic}")
    return lines


def _wait_for_leaders(client: AdminClient, names: set[str], timeout: float = 30.0) -> None:
    """New topics are usable once every partition has a leader."""
    import time

    deadline = time.monotonic() + timeout
    while names and time.monotonic() < deadline:
        md = client.list_topics(timeout=10).topics
        if all(
            n in md
            and md[n].error is None
            and md[n].partitions
            and all(p.leader >= 0 for p in md[n].partitions.values())
            for n in names
        ):
            return
        time.sleep(0.2)
