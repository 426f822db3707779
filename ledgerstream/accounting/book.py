"""The reference booking of a whole Stripe history, in one process, in event order.

This is the accounting core applied to a complete history without Kafka: every object's latest
state is mapped, every paid payout becomes a deposit. The stream processors must arrive at the
same set of commands whatever the order and duplication of their input; tests compare them
with this, and the demo's reconciliation report starts from it.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from typing import Any

from ledgerstream import topics
from ledgerstream.accounting.deposits import deposit_commands, plan_deposit
from ledgerstream.accounting.mapping import (
    UnmappedError,
    credit_note_commands,
    customer_commands,
    invoice_commands,
    payment_commands,
    refund_commands,
)
from ledgerstream.accounting.model import (
    BalanceTransaction,
    Charge,
    CreditNote,
    Customer,
    Invoice,
    Payout,
    Refund,
)
from ledgerstream.commands import Command
from ledgerstream.settings import AccountingSettings
from ledgerstream.stripe_records import payout_transaction, route, to_record


@dataclass
class Book:
    commands: dict[str, Command] = field(default_factory=dict)  # key -> last command
    dead_letters: list[tuple[str, str]] = field(default_factory=list)  # (object id, reason)
    waiting_deposits: dict[str, tuple[str, ...]] = field(default_factory=dict)

    def add(self, commands: Iterable[Command]) -> None:
        for cmd in commands:
            self.commands[cmd.key] = cmd


def book_history(
    events: Iterable[Mapping[str, Any]],
    payout_transactions: Mapping[str, list[dict[str, Any]]],
    cfg: AccountingSettings,
) -> Book:
    """Book the latest state of every object; ``payout_transactions``: payout id → its
    balance transactions (sources expanded), as ``GET /v1/balance_transactions?payout=``."""
    latest: dict[str, dict[str, Any]] = {}
    kinds: dict[str, str] = {}
    for event in sorted(events, key=lambda e: (e["created"], e["id"])):
        spec = route(event["type"])
        if spec is None:
            continue
        record = to_record(spec, dict(event))
        if spec is topics.STRIPE_DISPUTE:
            # withdrawal/reinstatement are facts of events, not only of the last state
            old = latest.get(record["id"])
            if old:
                record["funds_withdrawn"] |= old["funds_withdrawn"]
                record["funds_reinstated"] |= old["funds_reinstated"]
        latest[record["id"]] = record
        kinds[record["id"]] = spec.name

    def of(kind: str) -> list[dict[str, Any]]:
        return [r for oid, r in latest.items() if kinds[oid] == kind]

    book = Book()
    customers = {r["id"]: Customer.from_record(r) for r in of("stripe.customer")}
    invoices = {r["id"]: Invoice.from_record(r) for r in of("stripe.invoice")}
    charges = {r["id"]: Charge.from_record(r) for r in of("stripe.charge")}
    currencies: dict[str, set[str]] = {}
    for obj in [*invoices.values(), *charges.values()]:
        if isinstance(obj, Invoice | Charge) and obj.customer:
            currencies.setdefault(obj.customer, set()).add(obj.currency)

    def guarded(oid: str, make: Any) -> None:
        try:
            book.add(make())
        except UnmappedError as exc:
            book.dead_letters.append((oid, str(exc)))

    for cid, cust in sorted(customers.items()):
        guarded(cid, lambda c=cust: customer_commands(c, cfg, currencies.get(c.id, ())))
    for iid, inv in sorted(invoices.items()):
        guarded(iid, lambda i=inv: invoice_commands(i, cfg, customers.get(i.customer or "")))
    applied: dict[str, int] = {}
    for ch in sorted(charges.values(), key=lambda c: (c.created, c.id)):
        target = invoices.get(ch.invoice or "")
        cmds = payment_commands(
            ch, cfg, customers.get(ch.customer or ""), target, applied.get(ch.invoice or "", 0)
        )
        if ch.invoice and any(c.body.get("apply") for c in cmds):
            applied[ch.invoice] = applied.get(ch.invoice, 0) + (ch.amount_captured or ch.amount)
        book.add(cmds)
    for rec in of("stripe.refund"):
        refund = Refund.from_record(rec)
        refunded = charges.get(refund.charge)
        guarded(
            refund.id,
            lambda r=refund, c=refunded: refund_commands(
                r,
                cfg,
                c,
                invoices.get((c.invoice if c else None) or r.invoice or ""),
                customers.get((c.customer if c else None) or ""),
            ),
        )
    for rec in of("stripe.dispute"):
        if not rec["funds_withdrawn"]:
            continue
        dispute = Refund.from_record({**rec, "status": "succeeded"}, kind="dispute")
        disputed = charges.get(dispute.charge)
        guarded(
            dispute.id,
            lambda d=dispute, c=disputed: refund_commands(
                d,
                cfg,
                c,
                invoices.get((c.invoice if c else None) or ""),
                customers.get((c.customer if c else None) or ""),
            ),
        )
    for rec in of("stripe.credit_note"):
        note = CreditNote.from_record(rec)
        guarded(note.id, lambda n=note: credit_note_commands(n, cfg, invoices.get(n.invoice)))
    for rec in of("stripe.payout"):
        payout = Payout.from_record(rec)
        if not (payout.automatic and payout.status == "paid"):
            continue
        raw = payout_transactions.get(payout.id, [])
        payout_json = {"id": payout.id, "amount": payout.amount, "currency": payout.currency}
        txns = [
            BalanceTransaction.from_record(
                payout_transaction(
                    payout_json,
                    t,
                    i,
                    len(raw),
                    t["source"] if isinstance(t.get("source"), dict) else None,
                )
            )
            for i, t in enumerate(raw)
        ]
        own = 1 if any(t.type == "payout" and t.source == payout.id for t in txns) else 0

        def deposit(
            p: Payout = payout, t: list[BalanceTransaction] = txns, n: int = len(raw) - own
        ) -> list[Command]:
            plan = plan_deposit(p, t, cfg, expected=n)
            if not plan.complete:
                book.waiting_deposits[p.id] = plan.problems
            return deposit_commands(plan, cfg)

        guarded(payout.id, deposit)
    return book
