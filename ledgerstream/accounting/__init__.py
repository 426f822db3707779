"""The accounting core: which NetSuite records Stripe objects become, and deposit math.

Pure functions only (no Kafka, HTTP or clock), so every component reuses them and the tests can
property-check them. ``BEHAVIOR.md`` at the top level explains the decisions.
"""

from ledgerstream.accounting.deposits import (
    DepositPlan,
    Settled,
    default_resolver,
    deposit_commands,
    plan_deposit,
)
from ledgerstream.accounting.mapping import (
    UnmappedError,
    closing_commands,
    credit_note_commands,
    customer_commands,
    global_customer_command,
    invoice_commands,
    out_of_band_commands,
    payment_commands,
    refund_commands,
)

__all__ = [
    "DepositPlan",
    "Settled",
    "UnmappedError",
    "closing_commands",
    "credit_note_commands",
    "customer_commands",
    "default_resolver",
    "deposit_commands",
    "global_customer_command",
    "invoice_commands",
    "out_of_band_commands",
    "payment_commands",
    "plan_deposit",
    "refund_commands",
]
