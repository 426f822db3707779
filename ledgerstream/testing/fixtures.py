"""Stripe Event objects for the first end-to-end slice, in the API's own shape.

A customer is created, an invoice for one subscription line is finalized, and the invoice is
paid by a charge. Ids and times derive from ``seed`` so runs are reproducible and tests can use
fresh ids. (Whole histories come from the seeded generator, ``ledgerstream.testing.generator``.)
"""

from __future__ import annotations

import hashlib
import json
import time
from typing import Any

import stripe

API_VERSION = "2024-06-20"


def _id(prefix: str, seed: str, name: str) -> str:
    return prefix + hashlib.sha256(f"{seed}/{name}".encode()).hexdigest()[:14].upper()


def _event(seed: str, n: int, etype: str, created: int, obj: dict[str, Any]) -> dict[str, Any]:
    return {
        "id": _id("evt_", seed, str(n)),
        "object": "event",
        "api_version": API_VERSION,
        "created": created,
        "data": {"object": obj},
        "livemode": False,
        "pending_webhooks": 1,
        "request": {"id": None, "idempotency_key": None},
        "type": etype,
    }


def slice_events(seed: str = "demo", start: int = 1_763_600_000) -> list[dict[str, Any]]:
    cus, inv, ch = _id("cus_", seed, "c"), _id("in_", seed, "i"), _id("ch_", seed, "ch")
    sub, price, line = _id("sub_", seed, "s"), _id("price_", seed, "p"), _id("il_", seed, "l")
    pi, txn = _id("pi_", seed, "pi"), _id("txn_", seed, "t")
    period_end = start + 30 * 86400
    customer: dict[str, Any] = {
        "id": cus,
        "object": "customer",
        "address": None,
        "balance": 0,
        "created": start,
        "currency": None,
        "default_source": None,
        "delinquent": False,
        "description": None,
        "discount": None,
        "email": "ap@acme.example",
        "invoice_prefix": "ACME01",
        "invoice_settings": {
            "custom_fields": None,
            "default_payment_method": None,
            "footer": None,
            "rendering_options": None,
        },
        "livemode": False,
        "metadata": {},
        "name": "Acme Corporation",
        "phone": "+1 555 0100",
        "preferred_locales": [],
        "shipping": None,
        "tax_exempt": "none",
        "test_clock": None,
    }
    line_item = {
        "id": line,
        "object": "line_item",
        "amount": 4900,
        "amount_excluding_tax": 4900,
        "currency": "usd",
        "description": "1 × Pro plan (at $49.00 / month)",
        "discount_amounts": [],
        "discountable": True,
        "discounts": [],
        "invoice": inv,
        "livemode": False,
        "metadata": {},
        "period": {"end": period_end, "start": start},
        "plan": None,
        "price": {
            "id": price,
            "object": "price",
            "currency": "usd",
            "unit_amount": 4900,
            "type": "recurring",
        },
        "proration": False,
        "proration_details": {"credited_items": None},
        "quantity": 1,
        "subscription": sub,
        "tax_amounts": [],
        "tax_rates": [],
        "type": "subscription",
        "unit_amount_excluding_tax": "4900",
    }
    invoice: dict[str, Any] = {
        "id": inv,
        "object": "invoice",
        "account_country": "US",
        "account_name": "Demo Inc.",
        "amount_due": 4900,
        "amount_paid": 0,
        "amount_remaining": 4900,
        "attempt_count": 0,
        "attempted": False,
        "auto_advance": True,
        "billing_reason": "subscription_create",
        "charge": None,
        "collection_method": "charge_automatically",
        "created": start + 10,
        "currency": "usd",
        "customer": cus,
        "customer_email": "ap@acme.example",
        "customer_name": "Acme Corporation",
        "description": None,
        "discount": None,
        "discounts": [],
        "due_date": None,
        "ending_balance": 0,
        "hosted_invoice_url": None,
        "lines": {
            "object": "list",
            "data": [line_item],
            "has_more": False,
            "total_count": 1,
            "url": f"/v1/invoices/{inv}/lines",
        },
        "livemode": False,
        "metadata": {},
        "number": "ACME01-0001",
        "paid": False,
        "payment_intent": pi,
        "period_end": start,
        "period_start": start,
        "starting_balance": 0,
        "status": "open",
        "status_transitions": {
            "finalized_at": start + 20,
            "marked_uncollectible_at": None,
            "paid_at": None,
            "voided_at": None,
        },
        "subscription": sub,
        "subtotal": 4900,
        "subtotal_excluding_tax": 4900,
        "tax": None,
        "total": 4900,
        "total_discount_amounts": [],
        "total_excluding_tax": 4900,
        "total_tax_amounts": [],
    }
    charge = {
        "id": ch,
        "object": "charge",
        "amount": 4900,
        "amount_captured": 4900,
        "amount_refunded": 0,
        "application_fee": None,
        "balance_transaction": txn,
        "billing_details": {
            "address": {
                "city": None,
                "country": "US",
                "line1": None,
                "line2": None,
                "postal_code": "94107",
                "state": None,
            },
            "email": None,
            "name": "Acme Corporation",
            "phone": None,
        },
        "captured": True,
        "created": start + 30,
        "currency": "usd",
        "customer": cus,
        "description": "Subscription creation",
        "disputed": False,
        "failure_code": None,
        "failure_message": None,
        "invoice": inv,
        "livemode": False,
        "metadata": {},
        "outcome": {
            "network_status": "approved_by_network",
            "reason": None,
            "risk_level": "normal",
            "seller_message": "Payment complete.",
            "type": "authorized",
        },
        "paid": True,
        "payment_intent": pi,
        "payment_method": _id("pm_", seed, "pm"),
        "receipt_email": None,
        "refunded": False,
        "refunds": {
            "object": "list",
            "data": [],
            "has_more": False,
            "total_count": 0,
            "url": f"/v1/charges/{ch}/refunds",
        },
        "status": "succeeded",
    }
    # the charge paid the invoice: Stripe marks it paid right after (a charge on an invoice is
    # booked once the invoice is paid, see BEHAVIOR.md, Payments)
    transitions: dict[str, Any] = dict(invoice["status_transitions"])
    paid = {
        **invoice,
        "amount_paid": 4900,
        "amount_remaining": 0,
        "attempt_count": 1,
        "attempted": True,
        "charge": ch,
        "paid": True,
        "status": "paid",
        "status_transitions": {**transitions, "paid_at": start + 31},
    }
    return [
        _event(seed, 1, "customer.created", start, customer),
        _event(seed, 2, "invoice.finalized", start + 20, invoice),
        _event(seed, 3, "charge.succeeded", start + 30, charge),
        _event(seed, 4, "invoice.paid", start + 31, paid),
    ]


def signed(event: dict[str, Any], secret: str, timestamp: int | None = None) -> tuple[bytes, str]:
    """The body and ``Stripe-Signature`` header Stripe would send for ``event``."""
    body = json.dumps(event, indent=2)
    header = stripe.WebhookSignature.generate_signature_header(
        body, secret, timestamp=timestamp if timestamp is not None else int(time.time())
    )
    return body.encode(), header
