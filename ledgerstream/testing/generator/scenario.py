"""What to simulate (:class:`Scenario`), what comes out (:class:`History`), and the two ways
to run it: :func:`generate` keeps everything, :func:`iter_events` streams the events."""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass, field

from ledgerstream.testing.generator.common import (
    _USD_VALUE,
    EMBEDDED_LINES,
    MAX_INVOICE_ITEMS,
    Obj,
    _copy,
)
from ledgerstream.testing.generator.simulation import _Simulation


@dataclass(frozen=True)
class Scenario:
    """What to simulate. Rates are probabilities per invoice/charge (see the package docs)."""

    seed: int = 1
    customers: int = 5
    months: int = 3
    start: int = 1_735_689_600  # unix seconds, 2025-01-01T00:00:00Z
    currencies: tuple[str, ...] = ("usd", "eur", "gbp", "jpy", "kwd")  # presentment currencies
    settlement_currencies: tuple[str, ...] = ("usd",)  # the first is the default one
    guest_charge_rate: float = 0.05  # share of one-off charges with no customer
    refund_rate: float = 0.08
    dispute_rate: float = 0.03
    failure_rate: float = 0.06
    credit_note_rate: float = 0.04
    # share of pre-payment credit notes the merchant voids while the invoice is still open
    # (0: no random draw for it, so histories without voids stay as they were)
    credit_note_void_rate: float = 0.0
    # share of invoices that also collect many pending invoice items: they embed only their
    # first lines (History.invoice_lines has them all); drawn from a stream of their own, and
    # not at all at 0, so histories without long invoices stay as they were
    long_invoice_rate: float = 0.0
    long_invoice_lines: tuple[int, ...] = (25, 250)  # a long invoice's line count, one of these
    # share of customers named after a person who are marked individuals for NetSuite (the
    # netsuite_customer_type=individual metadata: first and last name instead of a company
    # name); drawn from a stream of their own, and not at all at 0
    individual_rate: float = 0.0
    # share of invoices sent for payment (collection by email) that the merchant marks paid
    # outside Stripe instead (paid_out_of_band: a cheque, a wire): no charge; drawn from a
    # stream of their own, and not at all at 0
    out_of_band_rate: float = 0.0
    # share of succeeded one-off charges that are only authorised (capture_method=manual) and
    # captured hours or days later (charge.captured); own stream, not drawn at 0
    uncaptured_rate: float = 0.0
    # share of refunds that fail days later (the card was closed): refund_failure balance
    # transaction, the money back in the balance; own stream, not drawn at 0
    refund_failure_rate: float = 0.0
    # share of paid payouts the bank returns days later (payout.failed, a payout_failure
    # balance transaction paid out again later); own stream, not drawn at 0
    payout_failure_rate: float = 0.0
    # share of customers the merchant keeps out of NetSuite (netsuite_block_integration
    # metadata): nothing of theirs is booked, their payments reach deposits on suspense; own
    # stream, not drawn at 0
    blocked_rate: float = 0.0
    # share of invoices paid by charge that the customer pays a second time (another
    # succeeded charge on the paid invoice, which Stripe keeps and pays out); own stream for
    # the draw, not drawn at 0 (the second charge itself draws from the main stream)
    second_charge_rate: float = 0.0
    # share of post-payment credit notes credited to the customer's balance instead of
    # refunded: the next invoices finalized for the customer take it off their amount due
    # (starting_balance/ending_balance; one the balance pays in full is paid without a charge),
    # and voiding such an invoice gives it back; own stream, not drawn at 0
    balance_credit_rate: float = 0.0

    def __post_init__(self) -> None:
        if self.customers < 1 or self.months < 1:
            raise ValueError("a scenario needs at least one customer and one month")
        if not self.currencies or not self.settlement_currencies:
            raise ValueError("currencies and settlement_currencies must not be empty")
        for currency in (*self.currencies, *self.settlement_currencies):
            if currency != currency.lower():
                raise ValueError(f"Stripe currency codes are lower case, got {currency!r}")
            if currency not in _USD_VALUE:
                raise ValueError(f"no reference exchange rate for {currency!r}")
        rates = (
            self.guest_charge_rate,
            self.refund_rate,
            self.dispute_rate,
            self.failure_rate,
            self.credit_note_rate,
            self.credit_note_void_rate,
            self.long_invoice_rate,
            self.individual_rate,
            self.out_of_band_rate,
            self.uncaptured_rate,
            self.refund_failure_rate,
            self.payout_failure_rate,
            self.blocked_rate,
            self.second_charge_rate,
            self.balance_credit_rate,
        )
        if not all(0.0 <= rate <= 1.0 for rate in rates):
            raise ValueError("rates must lie between 0 and 1")
        if self.refund_rate + self.dispute_rate > 1.0:
            raise ValueError("refund_rate + dispute_rate must not exceed 1")
        if not self.long_invoice_lines or not all(
            EMBEDDED_LINES < count <= MAX_INVOICE_ITEMS for count in self.long_invoice_lines
        ):
            raise ValueError(
                f"long_invoice_lines: line counts between {EMBEDDED_LINES + 1} (more than an "
                f"invoice embeds) and {MAX_INVOICE_ITEMS} (Stripe's limit)"
            )


@dataclass
class History:
    """A whole generated history, as the Events API and the retrieve/list endpoints give it."""

    events: list[Obj]  # every Event, sorted by (created, id)
    objects: dict[str, Obj]  # id -> latest state, as GET /v1/<type>/<id> returns it
    balance_transactions: dict[str, Obj]  # txn id -> balance transaction
    payout_transactions: dict[str, list[str]]  # po id -> txn ids, newest first, its own included
    # in_ id -> every line, in order, of each invoice that embeds only its first ones
    # (lines.has_more), as GET /v1/invoices/{id}/lines gives them page after page
    invoice_lines: dict[str, list[Obj]] = field(default_factory=dict)


def generate(scenario: Scenario) -> History:
    """Simulate ``scenario`` and keep everything: events, latest objects, payout contents."""
    sim = _Simulation(scenario, collect=True)
    events = list(sim.run())
    # GET returns a transaction's status as of now; "now" is the end of the history.
    now = events[-1]["created"] if events else scenario.start
    for txn in sim.balance_transactions.values():
        if txn["available_on"] <= now:
            txn["status"] = "available"
    for obj in sim.objects.values():
        if obj["object"] == "dispute":  # its own copies, not the dicts of balance_transactions
            obj["balance_transactions"] = _copy(obj["balance_transactions"])
    return History(
        events, sim.objects, sim.balance_transactions, sim.payout_transactions, sim.invoice_lines
    )


def iter_events(scenario: Scenario) -> Iterator[Obj]:
    """The events of ``generate(scenario)``, streamed in (created, id) order in bounded memory."""
    return _Simulation(scenario, collect=False).run()
