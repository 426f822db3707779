"""The stateful side of the accounting core: latest object states in, commands out.

``Ledger`` keeps the latest state of every Stripe object in dict-like tables (faust tables in
the stream processor, plain dicts in tests and in the reference booking) and, whenever an object
changes, recomputes the commands of that object and of everything that depends on it. Because
each command is a pure function of the latest states, any order of arrival (and any number of
duplicates) ends with the same command for every record — the property the tests check.

"Latest" does not trust arrival order: a state replaces the stored one only if it is newer
(event time, then how far the object has progressed), so a late, stale event changes nothing.

Joins wait for their partner: a record whose customer has not arrived (its control metadata
decides whether the record is synced), a payment for an invoice not seen yet, a refund or
dispute whose charge (or invoice) is missing, a credit note before its invoice, and a deposit
whose payout list is incomplete are reported as ``waiting`` with a reason, and booked as soon as
the partner arrives. What to do when it never comes (dead letter, variance policy) is the caller's.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator, MutableMapping
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any, cast

from cachetools import LRUCache

from ledgerstream.accounting import ids
from ledgerstream.accounting.balance import Allocation, allocate
from ledgerstream.accounting.deposits import (
    Settled,
    default_resolver,
    deposit_commands,
    plan_deposit,
)
from ledgerstream.accounting.mapping import (
    UnmappedError,
    balance_payment_commands,
    credit_note_commands,
    customer_commands,
    invoice_commands,
    out_of_band_commands,
    payment_commands,
    refund_commands,
    synced,
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

Table = MutableMapping[str, Any]

_RANK = {
    "invoice": {"draft": 0, "open": 1, "paid": 2, "uncollectible": 2, "void": 3},
    "charge": {"pending": 0, "failed": 1, "succeeded": 2},
    "refund": {"pending": 0, "requires_action": 0, "succeeded": 1, "failed": 2, "canceled": 2},
    "dispute": {
        "warning_needs_response": 0,
        "warning_under_review": 1,
        "warning_closed": 2,
        "needs_response": 1,
        "under_review": 2,
        "won": 3,
        "lost": 3,
    },
    "credit_note": {"issued": 0, "void": 1},
    "payout": {"pending": 0, "in_transit": 1, "paid": 2, "failed": 3, "canceled": 3},
}


def freeze(value: Any) -> Any:
    """A JSON-safe copy of a record (datetimes as ``{"$ts": epoch ms}``), for tables."""
    if isinstance(value, datetime):
        return {"$ts": int(value.timestamp() * 1000)}
    if isinstance(value, dict):
        return {k: freeze(v) for k, v in value.items() if k != "object_json"}
    if isinstance(value, list | tuple):
        return [freeze(v) for v in value]
    return value


def thaw(value: Any) -> Any:
    if isinstance(value, dict):
        if set(value) == {"$ts"}:
            return datetime.fromtimestamp(value["$ts"] / 1000, UTC)
        return {k: thaw(v) for k, v in value.items()}
    if isinstance(value, list):
        return [thaw(v) for v in value]
    return value


def _progress(kind: str, rec: dict[str, Any]) -> tuple[Any, ...]:
    created = rec.get("event_created")
    when = created["$ts"] if isinstance(created, dict) else 0
    rank = _RANK.get(kind, {}).get(str(rec.get("status")), 0)
    extra = (
        rec.get("amount_paid", 0),
        rec.get("amount_refunded", 0),
        bool(rec.get("funds_withdrawn")),
        bool(rec.get("funds_reinstated")),
    )
    return when, rank, extra


def merge(kind: str, old: dict[str, Any] | None, new: dict[str, Any]) -> dict[str, Any]:
    """The state to keep: the newer one; dispute fund movements are facts that stay true."""
    if old is None:
        return new
    keep = new if _progress(kind, new) > _progress(kind, old) else old
    if kind == "dispute":
        keep = {
            **keep,
            "funds_withdrawn": bool(old.get("funds_withdrawn") or new.get("funds_withdrawn")),
            "funds_reinstated": bool(old.get("funds_reinstated") or new.get("funds_reinstated")),
        }
    return keep


@dataclass
class Outcome:
    commands: list[Command] = field(default_factory=list)
    waiting: dict[str, str] = field(default_factory=dict)  # object id -> what it waits for
    ready: set[str] = field(default_factory=set)  # object ids no longer waiting
    unmapped: dict[str, str] = field(default_factory=dict)  # object id -> reason

    def extend(self, other: Outcome) -> None:
        self.commands += other.commands
        self.waiting.update(other.waiting)
        self.ready |= other.ready
        self.unmapped.update(other.unmapped)


IDS_PER_ROW = 1000  # transaction ids per row of a payout's list


class _Reads(MutableMapping[str, Any]):
    """A table seen through what the current record has already read or written from it.

    Booking one record reads the same rows several times (an invoice, its customer, its
    charges, each of them again for the next dependent); with RocksDB every read is a lookup
    and a JSON decode. The ledger empties these before and after each record, so nothing is
    kept between records (a rebalance may change the table in between). Rows are never None.
    """

    def __init__(self, table: Table):
        self.table = table
        self.seen: dict[str, Any] = {}

    def get(self, key: str, default: Any = None) -> Any:  # type: ignore[override]
        try:
            value = self.seen[key]
        except KeyError:
            value = self.seen[key] = self.table.get(key)
        return default if value is None else value

    def __contains__(self, key: object) -> bool:
        return isinstance(key, str) and self.get(key) is not None

    def __getitem__(self, key: str) -> Any:
        value = self.get(key)
        if value is None:
            raise KeyError(key)
        return value

    def __setitem__(self, key: str, value: Any) -> None:
        self.table[key] = value
        self.seen[key] = value

    def __delitem__(self, key: str) -> None:
        del self.table[key]
        self.seen[key] = None

    def __iter__(self) -> Iterator[str]:
        return iter(self.table)

    def __len__(self) -> int:
        return len(self.table)


REBOOKED_PAYOUTS = 10_000  # payouts remembered as booked again in this process


def _ms(when: datetime) -> int:
    return int(when.timestamp() * 1000)


def _index_add(table: Table, key: str, value: str) -> None:
    current = list(table.get(key) or [])
    if value not in current:
        table[key] = sorted([*current, value])


class Ledger:
    """Receivables (customer-keyed) and payouts (payout-keyed) state with its commands."""

    def __init__(self, cfg: AccountingSettings, tables: Callable[[str], Table]):
        self.cfg = cfg
        self._reads: dict[str, _Reads] = {}

        def table(name: str) -> Table:
            reads = self._reads[name] = _Reads(tables(name))
            return reads

        self.customers = table("customers")
        self.invoices = table("invoices")
        self.charges = table("charges")
        self.refunds = table("refunds")  # refunds and disputes
        self.credit_notes = table("credit-notes")
        self.currencies = table("customer-currencies")
        self.by_invoice = table("by-invoice")  # invoice id -> charge and credit note ids
        self.by_charge = table("by-charge")  # charge id -> refund and dispute ids
        # customer id -> its invoice ids and its charge ids without invoice: what its control
        # metadata decides for, booked again when the customer's record arrives
        self.by_customer = table("by-customer")
        # customer id -> its Stripe credit balance as NetSuite records: "credits" (memo external
        # id -> [epoch ms, amount, kind, source id]: a negative invoice's cm_bal_, a post-payment
        # credit note's cm_cn_, a voided invoice's cm_close_ for the balance it gave back, an
        # invoice's cm_balpay_ for a credit found missing after the wait) and "uses" (invoice id
        # -> [epoch ms, amount the balance paid of it, starting balance]); accounting/balance.py
        self.balances = table("customer-balance")
        self.payouts = table("payouts")
        # a payout's balance transactions: one row each ("<payout id>/<txn id>" -> record) and
        # their ids by list position in rows of at most IDS_PER_ROW: the first with the counts
        # ("<payout id>" -> {"count", "listed", "ids"}), the others "<payout id>/<n>". A payout
        # of n transactions costs about 2n writes, none of which grows beyond IDS_PER_ROW ids
        self.payout_txns = table("payout-transactions")
        self.payout_txn_ids = table("payout-transaction-ids")
        self.payout_listed = table("payout-listed")
        # payouts whose deposit was booked again for a transaction read again (bounded: an
        # evicted payout is booked once more, to the same commands, which are not sent again)
        self._rebooked: LRUCache[str, bool] = LRUCache(maxsize=REBOOKED_PAYOUTS)

    # ------------------------------------------------------------------ state
    def _store(self, table: Table, kind: str, rec: dict[str, Any]) -> bool:
        frozen = freeze(rec)
        old = table.get(rec["id"])
        new = merge(kind, old, frozen)
        if new == old:
            return False
        table[rec["id"]] = new
        return True

    def _customer(self, customer_id: str | None) -> Customer | None:
        rec = self.customers.get(customer_id) if customer_id else None
        return Customer.from_record(thaw(rec)) if rec else None

    def _invoice(self, invoice_id: str | None) -> Invoice | None:
        rec = self.invoices.get(invoice_id) if invoice_id else None
        return Invoice.from_record(thaw(rec)) if rec else None

    def _charge(self, charge_id: str | None) -> Charge | None:
        rec = self.charges.get(charge_id) if charge_id else None
        return Charge.from_record(thaw(rec)) if rec else None

    def _note_currency(self, customer_id: str | None, currency: str, out: Outcome) -> None:
        if not customer_id:
            return
        current = list(self.currencies.get(customer_id) or [])
        if currency not in current:
            self.currencies[customer_id] = sorted([*current, currency])
        # booked even when the currency was listed: its first listing may have been kept by a
        # worker killed before the customer's command was sent (see on_customer)
        if customer_id in self.customers:
            out.extend(self._book_customer(customer_id))

    # ------------------------------------------------------------------ events
    # A record whose state is already stored is booked again all the same, and its indexes are
    # written again where missing: the tables' writes of one record reach Kafka one by one, so
    # a worker killed while handling it may have kept its state and lost its index entries and
    # commands; its replacement reads the record again and must finish what was left (taken
    # for done, a charge kept without its invoice index left a dispute waiting for ever). The
    # processor's ``emitted`` table keeps commands already sent from being sent twice.
    def on_customer(self, rec: dict[str, Any]) -> Outcome:
        self._store(self.customers, "customer", rec)
        out = self._book_customer(rec["id"])
        # what belongs to it, which waited for it or whose sync its metadata may have changed
        # (blocks cascade: mapping.synced)
        for dependent in self.by_customer.get(rec["id"]) or []:
            if dependent in self.invoices:
                out.extend(self._book_invoice(dependent))
            elif dependent in self.charges:
                out.extend(self._book_charge(dependent))
        return out

    def _without_customer(self, customer_id: str | None) -> bool:
        """The record names a customer whose record has not arrived: it waits for it, since
        the customer's control metadata decides whether it is synced (an invoice booked
        before its blocked customer arrived was sent all the same, in that order only)."""
        return bool(customer_id) and customer_id not in self.customers

    def on_invoice(self, rec: dict[str, Any]) -> Outcome:
        self._store(self.invoices, "invoice", rec)
        if rec.get("customer"):
            _index_add(self.by_customer, rec["customer"], rec["id"])
        out = Outcome()
        self._note_currency(rec.get("customer"), rec["currency"], out)
        out.extend(self._book_invoice(rec["id"]))
        return out

    def on_charge(self, rec: dict[str, Any]) -> Outcome:
        self._store(self.charges, "charge", rec)
        out = Outcome()
        if rec.get("invoice"):
            _index_add(self.by_invoice, rec["invoice"], rec["id"])
        elif rec.get("customer"):
            _index_add(self.by_customer, rec["customer"], rec["id"])
        if rec.get("status") == "succeeded":
            self._note_currency(rec.get("customer"), rec["currency"], out)
        out.extend(self._book_charge(rec["id"]))
        return out

    def on_refund(self, rec: dict[str, Any], kind: str = "refund") -> Outcome:
        stored = {**rec, "kind": kind}
        self._store(self.refunds, kind, stored)
        _index_add(self.by_charge, rec["charge"], rec["id"])
        return self._book_refund(rec["id"])

    def on_credit_note(self, rec: dict[str, Any]) -> Outcome:
        self._store(self.credit_notes, "credit_note", rec)
        _index_add(self.by_invoice, rec["invoice"], rec["id"])
        return self._book_credit_note(rec["id"])

    def on_payout(self, rec: dict[str, Any]) -> Outcome:
        self._store(self.payouts, "payout", rec)
        return self._book_deposit(rec["id"])

    def on_payout_transaction(self, rec: dict[str, Any]) -> Outcome:
        payout_id = rec["payout"]
        key = f"{payout_id}/{rec['id']}"
        frozen = freeze(rec)
        known = self.payout_txns.get(key) == frozen
        if not known:
            self.payout_txns[key] = frozen
        count = int(rec["count"])
        row = int(rec["index"]) // IDS_PER_ROW
        head = self.payout_listed.get(payout_id) or {"count": count, "listed": 0, "ids": []}
        ids = head["ids"] if row == 0 else self.payout_txn_ids.get(f"{payout_id}/{row}") or []
        changed: dict[str, Any] = {"count": count} if head["count"] != count else {}
        if rec["id"] not in ids:
            ids = sorted([*ids, rec["id"]])
            if row:
                self.payout_txn_ids[f"{payout_id}/{row}"] = ids
            else:
                changed["ids"] = ids
            changed["listed"] = head["listed"] + 1
        if changed:
            head = {**head, **changed}
            self.payout_listed[payout_id] = head
        # short of Stripe's count (the payout's own transaction may be left out of the list):
        # nothing to book yet, the payout's record already says what it waits for
        if head["listed"] < count - 1 and payout_id in self.payouts:
            return Outcome()
        if known and not changed:
            # a transaction read again, with the payout's lists already holding it: its deposit
            # is booked again once per process (a worker killed after the last transaction was
            # stored may have lost the deposit's command), not once for each of its thousands
            # of transactions read again after a restart
            if payout_id in self._rebooked:
                return Outcome()
            self._rebooked[payout_id] = True
        return self._book_deposit(payout_id)

    def _payout_txn_ids(self, payout_id: str) -> list[str]:
        head = self.payout_listed.get(payout_id)
        if not head:
            return []
        found = set(head["ids"])
        for row in range(1, -(-int(head["count"]) // IDS_PER_ROW)):
            found.update(self.payout_txn_ids.get(f"{payout_id}/{row}") or [])
        return sorted(found)

    # ------------------------------------------------------------------ booking
    def _guard(self, oid: str, make: Callable[[], list[Command]]) -> Outcome:
        try:
            return Outcome(commands=make(), ready={oid})
        except UnmappedError as exc:
            return Outcome(unmapped={oid: str(exc)}, ready={oid})

    def _book_customer(self, customer_id: str) -> Outcome:
        customer = self._customer(customer_id)
        assert customer is not None
        currencies = self.currencies.get(customer_id) or []
        if not currencies:
            # created at the first transaction, as the hosted connector does: customers who
            # never buy stay out of NetSuite, and the first write already lists the currency
            return Outcome(ready={customer_id})
        return self._guard(customer_id, lambda: customer_commands(customer, self.cfg, currencies))

    def _book_invoice(self, invoice_id: str, rebalance: bool = True) -> Outcome:
        """The invoice and what hangs on it; ``rebalance``: and, when the customer's balance is
        involved, every other record of that balance (their credit applications may move)."""
        invoice = self._invoice(invoice_id)
        assert invoice is not None
        if self._without_customer(invoice.customer):
            return Outcome(waiting={invoice_id: f"customer {invoice.customer}"})
        customer = self._customer(invoice.customer)
        involved = self._note_invoice_balance(invoice, customer)
        balance = self._allocation(invoice.customer) if involved else None
        awaiting = self._awaiting_void(invoice)
        out = self._guard(
            invoice_id,
            lambda: invoice_commands(
                invoice, self.cfg, customer, close=not awaiting, balance=balance
            ),
        )
        if awaiting and invoice.status != "paid":
            out.waiting[invoice_id] = "the void of a credit note, to close it"
        own = ((self.balances.get(invoice.customer or "") or {}).get("credits") or {}).get(
            ids.balance_payment_memo(invoice_id)
        )
        if own and balance is not None:
            out.extend(
                self._guard(
                    invoice_id,
                    lambda: balance_payment_commands(
                        invoice,
                        self.cfg,
                        int(own[1]),
                        customer,
                        balance.of(ids.balance_payment_memo(invoice_id)),
                    ),
                )
            )
        short = balance.uncovered.get(invoice_id) if balance else None
        if short:
            out.waiting[invoice_id] = (
                f"a credit of {short} on the customer's balance, which paid that much of it"
            )
        # its credit notes before its charges: a credit note's void reaches NetSuite before the
        # payment that pays the whole invoice (the sink keeps an invoice's records in order)
        dependents = self.by_invoice.get(invoice_id) or []
        for dependent in dependents:
            if dependent in self.credit_notes:
                out.extend(
                    self._book_credit_note(dependent, with_invoice=False, rebalance=rebalance)
                )
        for dependent in dependents:
            if dependent in self.charges:
                out.extend(self._book_charge(dependent))
        if invoice.paid_out_of_band and invoice.status == "paid" and not awaiting:
            # what no charge of the invoice paid (a charge may have paid a part first)
            charged = sum(
                charge.paid
                for dependent in dependents
                if (charge := self._charge(dependent)) is not None
                and charge.succeeded
                and self._applies(dependent, invoice)
            )
            amount = invoice.amount_due - charged
            out.extend(
                self._guard(
                    invoice_id,
                    lambda: out_of_band_commands(
                        invoice, self.cfg, amount, self._customer(invoice.customer)
                    ),
                )
            )
        if involved and rebalance and invoice.customer:
            out.extend(self._rebalance(invoice.customer, skip=invoice_id))
        return out

    # ------------------------------------------------------------------ customer balance
    def _note_balance(self, customer_id: str, side: str, key: str, entry: list[Any] | None) -> bool:
        """Set (or, with None, remove) one entry of the customer's balance row; whether the
        record is part of that balance, before or now."""
        row = self.balances.get(customer_id) or {"credits": {}, "uses": {}}
        current = row[side].get(key)
        if current != entry:
            entries = {k: v for k, v in row[side].items() if k != key}
            if entry is not None:
                entries[key] = entry
            self.balances[customer_id] = {**row, side: entries}
        return current is not None or entry is not None

    def _note_invoice_balance(self, invoice: Invoice, customer: Customer | None) -> bool:
        """Record what the invoice adds to or takes from its customer's balance."""
        if not invoice.customer:
            return False
        live = invoice.status != "draft" and synced(
            invoice.metadata, self.cfg, customer.metadata if customer else None
        )
        when = _ms(invoice.finalized_at or invoice.created)
        credit = invoice.to_balance if live else 0
        returned = invoice.balance_returned if live else 0
        used = invoice.balance_applied if live else 0
        voided = _ms(invoice.voided_at or invoice.created)
        involved = self._note_balance(
            invoice.customer,
            "credits",
            ids.balance_memo(invoice.id),
            [when, credit, "invoice", invoice.id] if credit else None,
        )
        involved |= self._note_balance(
            invoice.customer,
            "credits",
            ids.closing_memo(invoice.id),
            [voided, returned, "invoice", invoice.id] if returned else None,
        )
        involved |= self._note_balance(
            invoice.customer,
            "uses",
            invoice.id,
            [when, used, invoice.starting_balance] if used else None,
        )
        row = self.balances.get(invoice.customer) or {}
        return involved or ids.balance_payment_memo(invoice.id) in (row.get("credits") or {})

    def _allocation(self, customer_id: str | None) -> Allocation:
        row = self.balances.get(customer_id) if customer_id else None
        if not row:
            return Allocation()
        credits = {k: (int(v[0]), int(v[1])) for k, v in row["credits"].items()}
        uses = {k: (int(v[0]), int(v[1]), int(v[2])) for k, v in row["uses"].items()}
        return allocate(credits, uses)

    def _rebalance(self, customer_id: str, skip: str) -> Outcome:
        """Every record of the customer's balance booked again (not ``skip``, being booked):
        a credit or use that became known may move which memo pays which invoice. Always, not
        only on a change: a worker killed in between may have sent none of them."""
        out = Outcome()
        row = self.balances.get(customer_id) or {}
        sources = {str(v[3]): str(v[2]) for v in (row.get("credits") or {}).values()}
        sources.update({k: "invoice" for k in row.get("uses") or {}})
        for source, kind in sorted(sources.items()):
            if source == skip:
                continue
            if kind in ("invoice", "balpay") and source in self.invoices:
                out.extend(self._book_invoice(source, rebalance=False))
            elif kind == "credit_note" and source in self.credit_notes:
                out.extend(self._book_credit_note(source, with_invoice=False, rebalance=False))
        return out

    def post_balance_payment(self, invoice_id: str) -> Outcome:
        """After the bounded wait: the credit missing before an invoice the balance paid (no
        record booked here explains it) is booked as a credit memo ``cm_balpay_…`` dated at
        the invoice, and applied like any other credit (the seed rule's memo)."""
        invoice = self._invoice(invoice_id)
        if invoice is None or not invoice.customer or self._without_customer(invoice.customer):
            return Outcome()
        missing = self._allocation(invoice.customer).missing.get(invoice_id, 0)
        if missing <= 0:
            return Outcome()  # a use, not a credit, is missing: nothing to book for it
        when = _ms(invoice.finalized_at or invoice.created)
        memo = ids.balance_payment_memo(invoice_id)
        self._note_balance(invoice.customer, "credits", memo, [when, missing, "balpay", invoice_id])
        return self._book_invoice(invoice_id)

    def _awaiting_void(self, invoice: Invoice) -> bool:
        """The invoice is settled (paid, void, uncollectible) and its own amounts show that a
        pre-payment credit note known here as issued was voided since: its void has not
        arrived yet. Until it does, nothing more is applied to the invoice: the note's credit
        memo still applies to it, and with the payment or closing memo the settled state
        calls for, the two would apply more than the invoice's total (NetSuite refuses the
        second; applied in the wrong order, the books depended on arrival order)."""
        if invoice.status not in ("paid", "void", "uncollectible"):
            return False
        credited = 0
        for dependent in self.by_invoice.get(invoice.id) or []:
            rec = self.credit_notes.get(dependent)
            if rec is not None and rec["type"] == "pre_payment" and rec["status"] == "issued":
                credited += int(rec["amount"])
        # Stripe's amount due is the total less the issued pre-payment credit notes and the
        # customer balance applied
        return credited > invoice.total - invoice.amount_due - invoice.balance_applied

    def _book_charge(self, charge_id: str) -> Outcome:
        charge = self._charge(charge_id)
        assert charge is not None
        out = Outcome()
        invoice = self._invoice(charge.invoice)
        if self._without_customer(charge.customer):
            return Outcome(waiting={charge_id: f"customer {charge.customer}"})
        if charge.succeeded and charge.invoice and invoice is None:
            out.waiting[charge_id] = f"invoice {charge.invoice}"
        elif charge.succeeded and invoice is not None and invoice.status != "paid":
            # which charge paid the invoice is known once it is paid (Stripe names it): until
            # then a charge is not applied, so that a second charge gives the same books
            # whichever arrives first (applied before the invoice was paid, it stayed applied)
            out.waiting[charge_id] = f"invoice {charge.invoice} to be paid"
        elif (
            charge.succeeded
            and invoice is not None
            and self._applies(charge_id, invoice)
            and self._awaiting_void(invoice)
        ):
            out.waiting[charge_id] = f"the void of a credit note on invoice {invoice.id}"
        else:
            elsewhere = 0
            if invoice is not None and not self._applies(charge_id, invoice):
                elsewhere = invoice.total
            out.extend(
                self._guard(
                    charge_id,
                    lambda: payment_commands(
                        charge, self.cfg, self._customer(charge.customer), invoice, elsewhere
                    ),
                )
            )
        for dependent in self.by_charge.get(charge_id) or []:
            out.extend(self._book_refund(dependent))
        return out

    def _applies(self, charge_id: str, invoice: Invoice) -> bool:
        """The charge is the one that paid the invoice (Stripe names it), not a second one."""
        paid_by = (self.invoices.get(invoice.id) or {}).get("charge")
        return not paid_by or paid_by == charge_id

    def _book_refund(self, refund_id: str) -> Outcome:
        rec = thaw(self.refunds[refund_id])
        kind = rec.get("kind", "refund")
        charge = self._charge(rec["charge"])
        if charge is None:
            return Outcome(waiting={refund_id: f"charge {rec['charge']}"})
        if self._without_customer(charge.customer):
            return Outcome(waiting={refund_id: f"customer {charge.customer}"})
        invoice_id = charge.invoice or rec.get("invoice")
        invoice = self._invoice(invoice_id)
        if invoice_id and invoice is None:
            return Outcome(waiting={refund_id: f"invoice {invoice_id}"})
        if kind == "dispute":
            if not rec.get("funds_withdrawn"):
                return Outcome(ready={refund_id})
            rec = {**rec, "status": "succeeded"}
        refund = Refund.from_record(rec, kind=kind)
        return self._guard(
            refund_id,
            lambda: refund_commands(
                refund, self.cfg, charge, invoice, self._customer(charge.customer)
            ),
        )

    def _book_credit_note(
        self, note_id: str, with_invoice: bool = True, rebalance: bool = True
    ) -> Outcome:
        """The credit note's memo; then (``with_invoice``) its invoice and what hangs on it
        again, since a payment or the invoice's closing may wait for this note's void; and
        (``rebalance``) the customer's balance, when the note credits it."""
        note = CreditNote.from_record(thaw(self.credit_notes[note_id]))
        invoice = self._invoice(note.invoice)
        if invoice is None:
            return Outcome(waiting={note_id: f"invoice {note.invoice}"})
        if self._without_customer(note.customer or invoice.customer):
            return Outcome(waiting={note_id: f"customer {note.customer or invoice.customer}"})
        if note.type == "pre_payment" and note.status == "issued" and self._awaiting_void(invoice):
            # the invoice was settled without it: its void is on the way
            out = Outcome(
                waiting={note_id: f"its void (invoice {invoice.id} was settled without it)"}
            )
        else:
            customer_id = note.customer or invoice.customer
            customer = self._customer(customer_id)
            involved = False
            if customer_id:
                live = synced(
                    note.metadata,
                    self.cfg,
                    invoice.metadata,
                    customer.metadata if customer else None,
                )
                credit = note.to_balance if live else 0
                involved = self._note_balance(
                    customer_id,
                    "credits",
                    ids.credit_memo(note.id),
                    [_ms(note.created), credit, "credit_note", note.id] if credit else None,
                )
            applied = self._allocation(customer_id).of(ids.credit_memo(note.id)) if involved else []
            out = self._guard(
                note_id,
                lambda: credit_note_commands(
                    note, self.cfg, invoice, customer, balance_applied=applied
                ),
            )
            if involved and rebalance and customer_id:
                out.extend(self._rebalance(customer_id, skip=note_id))
        if with_invoice:
            out.extend(self._book_invoice(invoice.id))
        return out

    def _book_deposit(self, payout_id: str, post_incomplete: bool = False) -> Outcome:
        """The payout's deposit once its transactions are complete; an incomplete one waits
        (``post_incomplete``: posted with a variance line, after the bounded wait)."""
        rec = self.payouts.get(payout_id)
        if rec is None:
            return (
                Outcome(waiting={payout_id: "payout record"})
                if self.payout_listed.get(payout_id)
                else Outcome()
            )
        payout = Payout.from_record(thaw(rec))
        # a failed payout's deposit moves its money to the payout-failure account (deposits)
        if not (payout.automatic and payout.status in ("paid", "failed")):
            return Outcome(ready={payout_id})
        raw = [
            thaw(self.payout_txns[f"{payout_id}/{txn_id}"])
            for txn_id in self._payout_txn_ids(payout_id)
        ]
        if not raw:
            return Outcome(waiting={payout_id: "its balance transactions"})
        # the payout's own transaction is in Stripe's list but not in the deposit
        expected = int(raw[0]["count"]) - (1 if payout.balance_transaction else 0)
        txns = [BalanceTransaction.from_record(t) for t in raw]
        blocked = {t["id"] for t in raw if not synced(t.get("source_metadata") or {}, self.cfg)}

        def resolve(t: BalanceTransaction) -> Settled | None:
            return None if t.id in blocked else default_resolver(t)

        try:
            plan = plan_deposit(payout, txns, self.cfg, resolve=resolve, expected=expected)
        except UnmappedError as exc:
            return Outcome(unmapped={payout_id: str(exc)}, ready={payout_id})
        if not plan.complete and not post_incomplete:
            return Outcome(waiting={payout_id: "; ".join(plan.problems)})
        return self._guard(payout_id, lambda: deposit_commands(plan, self.cfg))

    def apply(self, topic: str, rec: dict[str, Any]) -> Outcome:
        """Route a typed record of one of the ``stripe.*`` topics (unprefixed name)."""
        handler = {
            "stripe.customer": self.on_customer,
            "stripe.invoice": self.on_invoice,
            "stripe.charge": self.on_charge,
            "stripe.refund": self.on_refund,
            "stripe.dispute": lambda r: self.on_refund(r, "dispute"),
            "stripe.credit_note": self.on_credit_note,
            "stripe.payout": self.on_payout,
            "stripe.payout_transactions": self.on_payout_transaction,
        }.get(topic)
        if handler is None:
            return Outcome()
        readable(topic, rec)  # before anything is stored: a bad record fails alone
        self._forget_reads()
        try:
            return handler(rec)
        finally:
            self._forget_reads()

    def _forget_reads(self) -> None:
        for reads in self._reads.values():
            reads.seen.clear()

    def forget_rebooked(self) -> None:
        """After a rebalance: another worker may have held a payout in between, and lost its
        deposit's command when killed, so each payout may be booked again once more."""
        self._rebooked.clear()

    def post_with_variance(self, payout_id: str) -> Outcome:
        """After the bounded wait: post an incomplete deposit with its variance line."""
        cfg = self.cfg.model_copy(update={"deposit_variance_policy": "post"})
        ledger = Ledger(cfg, lambda name: self._reads[name].table)
        return ledger._book_deposit(payout_id, post_incomplete=True)


_READERS: dict[str, Callable[[dict[str, Any]], Any]] = {
    "stripe.customer": Customer.from_record,
    "stripe.invoice": Invoice.from_record,
    "stripe.charge": Charge.from_record,
    "stripe.refund": lambda r: Refund.from_record(r, kind="refund"),
    "stripe.dispute": lambda r: Refund.from_record(r, kind="dispute"),
    "stripe.credit_note": CreditNote.from_record,
    "stripe.payout": Payout.from_record,
    "stripe.payout_transactions": BalanceTransaction.from_record,
}


def readable(topic: str, rec: dict[str, Any]) -> None:
    """Raise ``ValueError`` unless the record reads as its model (ids, amounts, rates…).

    Checked before the record is stored: a record the model cannot read would otherwise sit in
    the tables and fail every later record that joins with it (a charge with an exchange rate of
    'abc' would stop its invoice from ever being booked); this way it is dead-lettered alone.
    """
    oid = rec.get("id")
    if not isinstance(oid, str) or not oid:
        raise ValueError(f"{topic} record has no id ({oid!r})")
    if topic == "stripe.payout_transactions":
        payout, count, index = rec.get("payout"), rec.get("count"), rec.get("index")
        if not isinstance(payout, str) or not payout:
            raise ValueError(f"balance transaction {oid} names no payout")
        if not isinstance(count, int) or not isinstance(index, int) or not 0 <= index < count:
            raise ValueError(f"balance transaction {oid}: index {index!r} of {count!r}")
    if topic in ("stripe.refund", "stripe.dispute", "stripe.credit_note"):
        parent = rec.get("charge" if topic != "stripe.credit_note" else "invoice")
        if not isinstance(parent, str) or not parent:
            raise ValueError(f"{topic} record {oid} names no parent ({parent!r})")
    try:
        _READERS[topic](rec)
    except (KeyError, TypeError, ValueError, ArithmeticError, AssertionError) as exc:
        raise ValueError(
            f"{topic} record {oid} cannot be read: {type(exc).__name__}: {exc}"
        ) from exc


def table_names() -> list[str]:
    """The tables a ``Ledger`` keeps (the processor creates their changelog topics up front)."""
    names: list[str] = []

    def record(name: str) -> Table:
        names.append(name)
        return {}

    Ledger(cast(AccountingSettings, None), record)  # __init__ only names its tables
    return names
