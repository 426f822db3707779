"""Topic names, their schemas and keys, and idempotent creation.

Receivables topics (customer, invoice, charge, …) are keyed by the Stripe **customer id** so that
a customer's invoices, charges, refunds and disputes share a partition and the processors can
join them by local table lookups; an object with no customer is keyed by its own id.
Commands are keyed ``<record_type>/<external_id>`` so writes to one NetSuite record stay in
order. The back-reference topic is compacted on the same key.
"""

from __future__ import annotations

from dataclasses import dataclass

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
# deposits the sink wrote with records on suspense, by command key (a tombstone once written
# whole): a restarted sink still rewrites them when those records are written
NETSUITE_SUSPENDED = TopicSpec(
    "netsuite.suspended", "netsuite_command", compacted=True, dead_letters=False
)
# durable positions of the pollers (last Stripe event seen), one key per poller
CURSORS = TopicSpec("ledgerstream.cursors", None, compacted=True, dead_letters=False)
# the dead letters sent back to their topics (key: <dlq topic>:<partition>:<offset>), so that
# a second redrive passes them over (see ledgerstream.dlq)
REDRIVEN = TopicSpec("ledgerstream.redriven", None, compacted=True, dead_letters=False)
# where each Stripe object is in the pipeline, as the components report it (key: <stripe id>|
# <stage>[|<detail>]; see ledgerstream.status)
STATUS = TopicSpec("ledgerstream.status", None, compacted=True, dead_letters=False)

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
# what the stream processor reads (its consumer group: LEDGER_APP_ID)
PROCESSOR_INPUTS = (
    STRIPE_CUSTOMER,
    STRIPE_INVOICE,
    STRIPE_CHARGE,
    STRIPE_REFUND,
    STRIPE_DISPUTE,
    STRIPE_CREDIT_NOTE,
    STRIPE_PAYOUT,
    STRIPE_PAYOUT_TRANSACTIONS,
)
ALL = (
    STRIPE_EVENTS,
    *STRIPE_TOPICS,
    STRIPE_PAYOUT_TRANSACTIONS,
    NETSUITE_COMMANDS,
    NETSUITE_BACKREFS,
    NETSUITE_SUSPENDED,
    CURSORS,
    REDRIVEN,
    STATUS,
)


def name(spec: TopicSpec) -> str:
    return settings.kafka().topic(spec.name)


def dlq_name(spec: TopicSpec) -> str:
    return name(spec) + ".dlq"


# tables of the processor besides the ledger's (see processors/app.py)
PROCESSOR_OWN_TABLES = ("emitted", "waiting")
