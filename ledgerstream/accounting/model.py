"""Domain types of the accounting core, built from the typed records of the ``stripe.*`` topics.

Wire types (Avro dicts) stay at the edges: each type has ``from_record``. Money is an integer
number of minor units with its currency; times are timezone-aware UTC.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from datetime import datetime
from decimal import Decimal
from typing import Any

BLOCK = "netsuite_block_integration"
ALLOW = "netsuite_allow_integration"
ALLOW_DUPLICATE = "netsuite_allow_duplicate"
LINKED_CUSTOMER = "netsuite_customer_id"


def _flag(metadata: Mapping[str, str], key: str) -> bool:
    return str(metadata.get(key, "")).strip().lower() in ("true", "1", "yes")


def exchange_rate(value: Any) -> Decimal:
    """A Stripe exchange rate: a positive, finite decimal (anything else is not a rate)."""
    try:
        rate = Decimal(str(value))
    except ArithmeticError as exc:
        raise ValueError(f"exchange rate {value!r} is not a number") from exc
    if not rate.is_finite() or rate <= 0:
        raise ValueError(f"exchange rate {value!r} is not a positive finite number")
    return rate


@dataclass(frozen=True)
class Controls:
    """The control metadata keys of a Stripe object."""

    blocked: bool = False
    allowed: bool = False
    allow_duplicate: bool = False

    @classmethod
    def of(cls, metadata: Mapping[str, str] | None) -> Controls:
        md = metadata or {}
        return cls(_flag(md, BLOCK), _flag(md, ALLOW), _flag(md, ALLOW_DUPLICATE))


@dataclass(frozen=True)
class Customer:
    id: str
    email: str | None
    name: str | None
    description: str | None
    phone: str | None
    currency: str | None
    metadata: Mapping[str, str]
    created: datetime
    address: dict[str, Any] | None = None
    shipping: dict[str, Any] | None = None
    event_id: str | None = None
    individual_name: str | None = None
    business_name: str | None = None

    @classmethod
    def from_record(cls, rec: Mapping[str, Any]) -> Customer:
        import json

        return cls(
            id=rec["id"],
            email=rec.get("email"),
            name=rec.get("name"),
            description=rec.get("description"),
            phone=rec.get("phone"),
            currency=rec.get("currency"),
            metadata=dict(rec.get("metadata") or {}),
            created=rec["created"],
            address=json.loads(rec["address_json"]) if rec.get("address_json") else None,
            shipping=json.loads(rec["shipping_json"]) if rec.get("shipping_json") else None,
            event_id=rec.get("event_id"),
            individual_name=rec.get("individual_name"),
            business_name=rec.get("business_name"),
        )

    @property
    def is_person(self) -> bool:
        """An individual: ``netsuite_customer_type`` metadata says so, or (without it) Stripe
        has an individual name and no business name (API 2025-09-30 on); else a company."""
        kind = str(self.metadata.get("netsuite_customer_type", "")).strip().lower()
        if kind in ("individual", "company"):
            return kind == "individual"
        return bool(self.individual_name) and not self.business_name

    @property
    def display_name(self) -> str:
        """The name NetSuite shows: the individual's or the business's, else Stripe's name,
        description, email or id."""
        own = self.individual_name if self.is_person else self.business_name
        for name in (own, self.name, self.description, self.email):
            if name and name.strip():
                return name.strip()
        return self.id

    def value_of(self, source: str) -> str | None:
        """A Stripe value by name, for link mode: email, name, phone, id, description or
        ``metadata.<key>``."""
        if source.startswith("metadata."):
            return self.metadata.get(source.removeprefix("metadata.")) or None
        value = {
            "email": self.email,
            "name": self.display_name,
            "phone": self.phone,
            "id": self.id,
            "description": self.description,
        }.get(source)
        return value or None


@dataclass(frozen=True)
class Discount:
    amount: int
    discount: str
    coupon: str | None


@dataclass(frozen=True)
class Tax:
    amount: int
    inclusive: bool
    tax_rate: str | None
    display_name: str | None


@dataclass(frozen=True)
class InvoiceLine:
    id: str
    amount: int
    description: str | None
    price_id: str | None
    product_name: str | None
    quantity: int | None
    period_start: datetime
    period_end: datetime  # exclusive, as Stripe defines it
    proration: bool
    discounts: tuple[Discount, ...] = ()
    taxes: tuple[Tax, ...] = ()


def _discounts(items: Any) -> tuple[Discount, ...]:
    return tuple(Discount(int(d["amount"]), d["discount"], d.get("coupon")) for d in items or [])


def _taxes(items: Any) -> tuple[Tax, ...]:
    return tuple(
        Tax(int(t["amount"]), bool(t["inclusive"]), t.get("tax_rate"), t.get("display_name"))
        for t in items or []
    )


@dataclass(frozen=True)
class Invoice:
    id: str
    customer: str | None
    status: str
    currency: str
    total: int
    subtotal: int
    amount_due: int
    amount_paid: int
    number: str | None
    created: datetime
    finalized_at: datetime | None
    lines: tuple[InvoiceLine, ...]
    total_discounts: tuple[Discount, ...] = ()
    total_taxes: tuple[Tax, ...] = ()
    shipping_amount: int | None = None
    due_date: datetime | None = None
    from_invoice: str | None = None
    voided_at: datetime | None = None
    marked_uncollectible_at: datetime | None = None
    paid_at: datetime | None = None
    paid_out_of_band: bool = False
    starting_balance: int | None = None
    ending_balance: int | None = None
    metadata: Mapping[str, str] = field(default_factory=dict)
    event_id: str | None = None

    @classmethod
    def from_record(cls, rec: Mapping[str, Any]) -> Invoice:
        return cls(
            id=rec["id"],
            customer=rec.get("customer"),
            status=rec["status"],
            currency=rec["currency"],
            total=int(rec["total"]),
            subtotal=int(rec["subtotal"]),
            amount_due=int(rec["amount_due"]),
            amount_paid=int(rec["amount_paid"]),
            number=rec.get("number"),
            created=rec["created"],
            finalized_at=rec.get("finalized_at"),
            lines=tuple(
                InvoiceLine(
                    id=ln["id"],
                    amount=int(ln["amount"]),
                    description=ln.get("description"),
                    price_id=ln.get("price_id"),
                    product_name=ln.get("product_name"),
                    quantity=ln.get("quantity"),
                    period_start=ln["period_start"],
                    period_end=ln["period_end"],
                    proration=bool(ln.get("proration")),
                    discounts=_discounts(ln.get("discount_amounts")),
                    taxes=_taxes(ln.get("tax_amounts")),
                )
                for ln in rec.get("lines") or []
            ),
            total_discounts=_discounts(rec.get("total_discount_amounts")),
            total_taxes=_taxes(rec.get("total_tax_amounts")),
            shipping_amount=rec.get("shipping_amount"),
            due_date=rec.get("due_date"),
            from_invoice=rec.get("from_invoice"),
            voided_at=rec.get("voided_at"),
            marked_uncollectible_at=rec.get("marked_uncollectible_at"),
            paid_at=rec.get("paid_at"),
            paid_out_of_band=bool(rec.get("paid_out_of_band")),
            starting_balance=rec.get("starting_balance"),
            ending_balance=rec.get("ending_balance"),
            metadata=dict(rec.get("metadata") or {}),
            event_id=rec.get("event_id"),
        )

    @property
    def tax(self) -> int:
        """Exclusive tax on top of the lines (inclusive tax is already inside line amounts)."""
        return sum(t.amount for t in self.total_taxes if not t.inclusive)

    @property
    def balance_applied(self) -> int:
        """What the customer's credit balance paid of it at finalization (minor units): Stripe
        takes it off ``amount_due`` (``ending_balance - starting_balance`` of a credit)."""
        start, end = self.starting_balance, self.ending_balance
        if start is None or end is None or start >= 0:
            return 0
        return max(0, min(end, 0) - start)

    @property
    def balance_returned(self) -> int:
        """What voiding it gave back to the customer's balance (Stripe, since API version
        2019-12-03): all the balance had paid of it."""
        return self.balance_applied if self.status == "void" else 0

    @property
    def to_balance(self) -> int:
        """The credit a negative invoice adds to the customer's balance."""
        return -self.total if self.total < 0 and self.status != "draft" else 0


@dataclass(frozen=True)
class Charge:
    id: str
    customer: str | None
    invoice: str | None
    amount: int
    amount_captured: int
    amount_refunded: int
    currency: str
    status: str
    captured: bool
    description: str | None
    created: datetime
    balance_transaction: str | None = None
    settlement_amount: int | None = None
    settlement_currency: str | None = None
    exchange_rate: Decimal | None = None
    fee: int | None = None
    metadata: Mapping[str, str] = field(default_factory=dict)
    event_id: str | None = None

    @classmethod
    def from_record(cls, rec: Mapping[str, Any]) -> Charge:
        rate = rec.get("exchange_rate")
        return cls(
            id=rec["id"],
            customer=rec.get("customer"),
            invoice=rec.get("invoice"),
            amount=int(rec["amount"]),
            amount_captured=int(rec.get("amount_captured") or 0),
            amount_refunded=int(rec.get("amount_refunded") or 0),
            currency=rec["currency"],
            status=rec["status"],
            captured=bool(rec.get("captured")),
            description=rec.get("description"),
            created=rec["created"],
            balance_transaction=rec.get("balance_transaction"),
            settlement_amount=rec.get("settlement_amount"),
            settlement_currency=rec.get("settlement_currency"),
            exchange_rate=None if rate is None else exchange_rate(rate),
            fee=rec.get("fee"),
            metadata=dict(rec.get("metadata") or {}),
            event_id=rec.get("event_id"),
        )

    @property
    def succeeded(self) -> bool:
        return self.status == "succeeded" and self.captured

    @property
    def paid(self) -> int:
        """What the charge took from the customer (an authorisation captured in part: that
        part)."""
        return self.amount_captured or self.amount


@dataclass(frozen=True)
class Refund:
    """A refund, or a dispute treated as one (``kind`` says which)."""

    id: str
    charge: str
    customer: str | None
    invoice: str | None
    amount: int
    currency: str
    status: str
    created: datetime
    kind: str = "refund"  # "refund" | "dispute"
    failure_balance_transaction: str | None = None
    failure_reason: str | None = None
    failed_at: datetime | None = None  # when Stripe said it failed (its event's time)
    metadata: Mapping[str, str] = field(default_factory=dict)
    event_id: str | None = None

    @property
    def money_moved(self) -> bool:
        """The refund took money from the balance: it succeeded, or it failed after that and
        a ``refund_failure`` balance transaction brought the money back."""
        return self.status == "succeeded" or (
            self.status == "failed" and self.failure_balance_transaction is not None
        )

    @classmethod
    def from_record(cls, rec: Mapping[str, Any], kind: str = "refund") -> Refund:
        return cls(
            id=rec["id"],
            charge=rec["charge"],
            customer=rec.get("customer"),
            invoice=rec.get("invoice"),
            amount=int(rec["amount"]),
            currency=rec["currency"],
            status=rec["status"],
            created=rec["created"],
            kind=kind,
            failure_balance_transaction=rec.get("failure_balance_transaction"),
            failure_reason=rec.get("failure_reason"),
            failed_at=rec.get("event_created") if rec["status"] == "failed" else None,
            metadata=dict(rec.get("metadata") or {}),
            event_id=rec.get("event_id"),
        )


@dataclass(frozen=True)
class CreditNoteLine:
    id: str
    amount: int
    description: str | None
    invoice_line_item: str | None


@dataclass(frozen=True)
class CreditNote:
    id: str
    invoice: str
    customer: str | None
    amount: int
    currency: str
    status: str
    type: str
    refund: str | None
    lines: tuple[CreditNoteLine, ...]
    created: datetime
    metadata: Mapping[str, str] = field(default_factory=dict)
    event_id: str | None = None
    out_of_band_amount: int = 0

    @property
    def to_balance(self) -> int:
        """What an issued post-payment credit note credits to the customer's balance: what
        it neither refunded nor settled outside Stripe (Stripe's credit_amount)."""
        if self.type != "post_payment" or self.status != "issued" or self.refund:
            return 0
        return max(0, self.amount - self.out_of_band_amount)

    @classmethod
    def from_record(cls, rec: Mapping[str, Any]) -> CreditNote:
        return cls(
            id=rec["id"],
            invoice=rec["invoice"],
            customer=rec.get("customer"),
            amount=int(rec["amount"]),
            currency=rec["currency"],
            status=rec["status"],
            type=rec["type"],
            refund=rec.get("refund"),
            lines=tuple(
                CreditNoteLine(
                    ln["id"], int(ln["amount"]), ln.get("description"), ln.get("invoice_line_item")
                )
                for ln in rec.get("lines") or []
            ),
            created=rec["created"],
            metadata=dict(rec.get("metadata") or {}),
            event_id=rec.get("event_id"),
            out_of_band_amount=int(rec.get("out_of_band_amount") or 0),
        )


@dataclass(frozen=True)
class FeeDetail:
    amount: int
    currency: str
    type: str
    description: str | None = None


@dataclass(frozen=True)
class BalanceTransaction:
    id: str
    amount: int
    currency: str
    fee: int
    fee_details: tuple[FeeDetail, ...]
    net: int
    reporting_category: str
    type: str
    source: str | None
    created: datetime
    exchange_rate: Decimal | None = None
    source_amount: int | None = None
    source_currency: str | None = None

    @classmethod
    def from_record(cls, rec: Mapping[str, Any]) -> BalanceTransaction:
        rate = rec.get("exchange_rate")
        return cls(
            id=rec["id"],
            amount=int(rec["amount"]),
            currency=rec["currency"],
            fee=int(rec["fee"]),
            fee_details=tuple(
                FeeDetail(int(f["amount"]), f["currency"], f["type"], f.get("description"))
                for f in rec.get("fee_details") or []
            ),
            net=int(rec["net"]),
            reporting_category=rec["reporting_category"],
            type=rec["type"],
            source=rec.get("source"),
            created=rec["created"],
            exchange_rate=None if rate is None else exchange_rate(rate),
            source_amount=rec.get("source_amount"),
            source_currency=rec.get("source_currency"),
        )


@dataclass(frozen=True)
class Payout:
    id: str
    amount: int
    currency: str
    status: str
    automatic: bool
    arrival_date: datetime
    created: datetime
    balance_transaction: str | None = None
    failure_code: str | None = None
    metadata: Mapping[str, str] = field(default_factory=dict)
    event_id: str | None = None

    @classmethod
    def from_record(cls, rec: Mapping[str, Any]) -> Payout:
        return cls(
            id=rec["id"],
            amount=int(rec["amount"]),
            currency=rec["currency"],
            status=rec["status"],
            automatic=bool(rec.get("automatic")),
            arrival_date=rec["arrival_date"],
            created=rec["created"],
            balance_transaction=rec.get("balance_transaction"),
            failure_code=rec.get("failure_code"),
            metadata=dict(rec.get("metadata") or {}),
            event_id=rec.get("event_id"),
        )
