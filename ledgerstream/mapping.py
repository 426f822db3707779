"""Stripe objects → NetSuite commands (pure functions; no Kafka, HTTP or clock).

Inputs are the typed records of the ``stripe.*`` topics (``schemas/stripe_*.avsc``); outputs
are ``Command``s. Accounts, items and other NetSuite set-up come from ``MappingConfig``.

ExternalId scheme: the Stripe object id (``cus_…``, ``in_…``, ``ch_…``) — these consist of
letters, digits and ``_`` only, which REST ``eid:`` accepts.
Memo convention: every transaction memo starts ``Stripe: <id>``.
"""

from __future__ import annotations

from datetime import datetime
from typing import Any

from pydantic import Field

from ledgerstream.commands import Command, ref
from ledgerstream.money import to_decimal
from ledgerstream.settings import _Base


class MappingConfig(_Base):
    """NetSuite set-up the records refer to (internal ids); defaults match the emulator's seed."""

    netsuite_subsidiary_id: str = "1"
    netsuite_undeposited_funds_account_id: str = "101"
    netsuite_payment_method_id: str = "201"
    netsuite_global_item_id: str = Field("301", description="service sale item for every line")
    netsuite_currency_ids: dict[str, str] = Field(
        default_factory=lambda: {
            code: str(11 + i)
            for i, code in enumerate(
                ["USD", "GBP", "CAD", "EUR", "JPY", "KWD", "BHD", "CHF", "AUD", "SEK", "KRW", "ISK"]
            )
        },
        description="ISO code → NetSuite currency internal id (JSON object)",
    )

    def currency(self, code: str) -> dict[str, str]:
        try:
            return {"id": self.netsuite_currency_ids[code.upper()]}
        except KeyError:
            raise UnmappedError(f"currency {code.upper()} has no NetSuite currency id") from None


class UnmappedError(ValueError):
    """The input cannot be mapped with this configuration (goes to the dead-letter topic)."""


def _date(ts: datetime) -> str:
    return ts.date().isoformat()


def customer_command(cust: dict[str, Any], cfg: MappingConfig) -> Command:
    name = cust.get("name") or cust.get("description") or cust.get("email") or cust["id"]
    body: dict[str, Any] = {
        "companyName": name[:83],  # NetSuite's companyName limit
        "isPerson": False,
        "subsidiary": {"id": cfg.netsuite_subsidiary_id},
        "comments": f"Stripe: {cust['id']}",
    }
    if cust.get("email"):
        body["email"] = cust["email"]
    if cust.get("phone"):
        body["phone"] = cust["phone"]
    if cust.get("currency"):
        body["currency"] = cfg.currency(cust["currency"])
    return Command(
        "customer",
        cust["id"],
        body,
        "customer",
        cust["id"],
        "netsuite_customer_id",
        (cust["event_id"],) if cust.get("event_id") else (),
    )


def invoice_command(inv: dict[str, Any], cfg: MappingConfig) -> Command:
    if not inv.get("customer"):
        raise UnmappedError(f"invoice {inv['id']} has no customer")
    currency = inv["currency"]
    lines = [
        {
            "item": {"id": cfg.netsuite_global_item_id},
            "description": (line.get("description") or line["id"])[:4000],
            "quantity": 1,
            "amount": to_decimal(line["amount"], currency),
        }
        for line in inv["lines"]
    ]
    if not lines:
        raise UnmappedError(f"invoice {inv['id']} has no lines")
    body = {
        "entity": ref("customer", inv["customer"]),
        "subsidiary": {"id": cfg.netsuite_subsidiary_id},
        "currency": cfg.currency(currency),
        "tranDate": _date(inv.get("finalized_at") or inv["created"]),
        "memo": f"Stripe: {inv['id']}",
        "otherRefNum": inv.get("number") or inv["id"],
        "item": {"items": lines},
    }
    return Command(
        "invoice",
        inv["id"],
        body,
        "invoice",
        inv["id"],
        "netsuite_invoice_id",
        (inv["event_id"],) if inv.get("event_id") else (),
    )


def payment_command(charge: dict[str, Any], cfg: MappingConfig) -> Command:
    """A succeeded charge → customerPayment, applied to its invoice when it has one."""
    if not charge.get("customer"):
        raise UnmappedError(f"charge {charge['id']} has no customer")
    currency = charge["currency"]
    amount = to_decimal(charge["amount_captured"] or charge["amount"], currency)
    body: dict[str, Any] = {
        "customer": ref("customer", charge["customer"]),
        "subsidiary": {"id": cfg.netsuite_subsidiary_id},
        "currency": cfg.currency(currency),
        "payment": amount,
        "tranDate": _date(charge["created"]),
        "undepFunds": True,
        "account": {"id": cfg.netsuite_undeposited_funds_account_id},
        "paymentMethod": {"id": cfg.netsuite_payment_method_id},
        "memo": f"Stripe: {charge['id']}",
    }
    if charge.get("invoice"):
        body["apply"] = {
            "items": [{"doc": ref("invoice", charge["invoice"]), "apply": True, "amount": amount}]
        }
    else:
        body["memo"] += f" Stripe description: {charge.get('description') or ''}".rstrip()
    return Command(
        "customerPayment",
        charge["id"],
        body,
        "charge",
        charge["id"],
        "netsuite_customer_payment_id",
        (charge["event_id"],) if charge.get("event_id") else (),
    )
