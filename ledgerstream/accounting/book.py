"""The reference booking of a whole Stripe history: the ``Ledger`` fed in event order, in one
process, without Kafka.

The stream processors run the same ``Ledger`` over partitioned topics in whatever order events
arrive; tests compare their commands with this, and the demo's reconciliation starts from it.
"""

from __future__ import annotations

from collections import defaultdict
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass, field
from typing import Any

from ledgerstream.accounting.ledger import Ledger, Outcome
from ledgerstream.commands import Command
from ledgerstream.settings import AccountingSettings
from ledgerstream.stripe_records import payout_transaction, route, to_record


@dataclass
class Book:
    commands: dict[str, Command] = field(default_factory=dict)  # key -> last command
    dead_letters: list[tuple[str, str]] = field(default_factory=list)  # (object id, reason)
    waiting: dict[str, str] = field(default_factory=dict)  # object id -> what it waits for
    on_command: Callable[[Command], None] | None = field(default=None, repr=False)

    @property
    def waiting_deposits(self) -> dict[str, str]:
        return {k: v for k, v in self.waiting.items() if k.startswith("po_")}

    def take(self, outcome: Outcome) -> None:
        for cmd in outcome.commands:
            self.commands[cmd.key] = cmd
            if self.on_command is not None:
                self.on_command(cmd)
        for oid in outcome.ready:
            self.waiting.pop(oid, None)
        self.waiting.update(outcome.waiting)
        self.dead_letters += sorted(outcome.unmapped.items())


def book_history(
    events: Iterable[Mapping[str, Any]],
    payout_transactions: Mapping[str, list[dict[str, Any]]],
    cfg: AccountingSettings,
    on_command: Callable[[Command], None] | None = None,
) -> Book:
    """Book a history; ``payout_transactions``: payout id → its balance transactions (sources
    expanded), as ``GET /v1/balance_transactions?payout=`` lists them. ``on_command`` sees
    every command in the order the ledger emits it (the book keeps only the last per key)."""
    tables: dict[str, dict[str, Any]] = defaultdict(dict)
    ledger = Ledger(cfg, lambda name: tables[name])
    book = Book(on_command=on_command)
    payouts: dict[str, dict[str, Any]] = {}
    for event in sorted(events, key=lambda e: (e["created"], e["id"])):
        spec = route(event["type"])
        if spec is None:
            continue
        obj = event["data"]["object"]
        if obj.get("object") == "payout":
            payouts[obj["id"]] = obj
        book.take(ledger.apply(spec.name, to_record(spec, dict(event))))
    for payout_id, raw in sorted(payout_transactions.items()):
        payout = payouts.get(payout_id, {"id": payout_id, "amount": 0, "currency": "usd"})
        for index, txn in enumerate(raw):
            source = txn["source"] if isinstance(txn.get("source"), dict) else None
            rec = payout_transaction(payout, txn, index, len(raw), source)
            book.take(ledger.apply("stripe.payout_transactions", rec))
    return book
