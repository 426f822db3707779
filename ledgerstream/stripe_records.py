"""Stripe Event → the typed record of its object topic (pure; no I/O).

``route(event)`` says which topic an event type goes to and with which key; ``to_record``
builds the Avro record dict. Unknown event types route to ``None`` and are acknowledged and
counted by the callers, never published.
"""

from __future__ import annotations

import json
from datetime import UTC, datetime
from decimal import Decimal
from typing import Any

from ledgerstream import topics
from ledgerstream.topics import TopicSpec


class BadEvent(ValueError):
    """The payload is not a Stripe Event object we can read."""


def timestamp(seconds: int) -> datetime:
    return datetime.fromtimestamp(int(seconds), UTC)


def _ts(seconds: int | None) -> datetime | None:
    return None if seconds is None else datetime.fromtimestamp(int(seconds), UTC)


def _id(value: Any) -> str | None:
    """An expandable Stripe field: an id string or an expanded object with an id."""
    if value is None:
        return None
    if isinstance(value, dict):
        return value.get("id")
    return str(value)


# the longest matching prefix wins, so sub-objects announced under a parent prefix
# (charge.dispute.*, charge.refund.*) reach their own topics
_PREFIXES: tuple[tuple[str, TopicSpec | None], ...] = (
    ("customer.subscription.", None),
    ("customer.discount.", None),
    ("customer.source.", None),
    ("customer.tax_id.", None),
    ("customer.cash_balance", None),
    ("customer.", topics.STRIPE_CUSTOMER),
    ("invoice.upcoming", None),
    ("invoice.", topics.STRIPE_INVOICE),
    ("charge.refund.", topics.STRIPE_REFUND),
    ("charge.dispute.", topics.STRIPE_DISPUTE),
    ("charge.", topics.STRIPE_CHARGE),
    ("refund.", topics.STRIPE_REFUND),
    ("credit_note.", topics.STRIPE_CREDIT_NOTE),
    ("payout.", topics.STRIPE_PAYOUT),
    ("price.", topics.STRIPE_PRICE),
    ("coupon.", topics.STRIPE_COUPON),
)


def route(event_type: str) -> TopicSpec | None:
    best: tuple[int, TopicSpec | None] = (0, None)
    for prefix, spec in _PREFIXES:
        if event_type.startswith(prefix) and len(prefix) > best[0]:
            best = (len(prefix), spec)
    return best[1]


# the event type a list-endpoint object is published under (routes like a live event)
_BACKFILL_TYPES = {
    "customer": "customer.backfill",
    "invoice": "invoice.backfill",
    "charge": "charge.backfill",
    "refund": "refund.backfill",
    "dispute": "charge.dispute.backfill",
    "credit_note": "credit_note.backfill",
    "payout": "payout.backfill",
    "price": "price.backfill",
    "coupon": "coupon.backfill",
}


def object_event(obj: dict[str, Any], read_at: int | None = None) -> dict[str, Any]:
    """An Event-shaped envelope for an object read from a list endpoint (no event id).

    Its time is when Stripe answered the read (``read_at``), not when the object was created:
    the object is in its state of that moment, later than every event about it before then, so
    a backfill over objects already seen live brings them to their latest state (stamped with
    ``created``, a voided invoice lost to its older live ``invoice.finalized`` and stayed open).
    """
    kind = obj.get("object")
    if kind not in _BACKFILL_TYPES:
        raise BadEvent(f"objects of type {kind!r} are not published")
    created = int(obj.get("created") or 0)
    return {
        "id": None,
        "object": "event",
        "type": _BACKFILL_TYPES[str(kind)],
        "created": max(created, read_at or 0),
        "api_version": None,
        "livemode": bool(obj.get("livemode", False)),
        "data": {"object": obj},
    }


LATEST_TIMESTAMP = 253402300799  # 9999-12-31T23:59:59Z: the last second a datetime can hold


def validate_event(event: Any) -> dict[str, Any]:
    if not isinstance(event, dict) or event.get("object") != "event":
        raise BadEvent("payload is not a Stripe Event object (object != 'event')")
    for field in ("id", "type", "created", "data"):
        if field not in event:
            raise BadEvent(f"event has no '{field}'")
    obj = event["data"].get("object") if isinstance(event["data"], dict) else None
    if not isinstance(obj, dict) or not isinstance(obj.get("id"), str):
        raise BadEvent("event.data.object is missing or has no id")
    if not isinstance(event["type"], str) or not isinstance(event["created"], int):
        raise BadEvent("event.type must be a string and event.created an integer")
    if isinstance(event["created"], bool) or not 0 <= event["created"] <= LATEST_TIMESTAMP:
        raise BadEvent(f"event.created {event['created']!r} is not a time Stripe could send")
    if event["id"] is not None and not isinstance(event["id"], str):
        raise BadEvent("event.id must be a string")
    return event


_SELF_KEYED = (
    topics.STRIPE_CUSTOMER,
    topics.STRIPE_PAYOUT,
    topics.STRIPE_PRICE,
    topics.STRIPE_COUPON,
)


def key_for(spec: TopicSpec, obj: dict[str, Any]) -> str:
    """Receivables are keyed by customer id (co-partitioned joins), else by the object's id.

    Refunds and disputes do not name the customer; they are keyed by the customer of their
    charge when the charge is expanded (the producer expands it), else by the charge id.
    """
    if spec in _SELF_KEYED:
        return str(obj["id"])
    if spec in (topics.STRIPE_REFUND, topics.STRIPE_DISPUTE):
        charge = obj.get("charge")
        customer = _id(charge.get("customer")) if isinstance(charge, dict) else None
        return customer or _id(charge) or str(obj["id"])
    return _id(obj.get("customer")) or str(obj["id"])


def _json_or_none(value: Any) -> str | None:
    return None if not value else json.dumps(value, sort_keys=True, separators=(",", ":"))


def _discounts(items: list[dict[str, Any]] | None) -> list[dict[str, Any]]:
    out = []
    for item in items or []:
        discount = item.get("discount")
        coupon = None
        if isinstance(discount, dict):
            coupon = _id(discount.get("coupon"))
        out.append(
            {"amount": int(item["amount"]), "discount": _id(discount) or "", "coupon": coupon}
        )
    return out


def _taxes(items: list[dict[str, Any]] | None) -> list[dict[str, Any]]:
    out = []
    for item in items or []:
        rate = item.get("tax_rate")
        out.append(
            {
                "amount": int(item["amount"]),
                "inclusive": bool(item.get("inclusive")),
                "tax_rate": _id(rate),
                "display_name": rate.get("display_name") if isinstance(rate, dict) else None,
            }
        )
    return out


def _envelope(event: dict[str, Any]) -> dict[str, Any]:
    obj = event["data"]["object"]
    return {
        "event_id": event["id"],
        "event_type": event["type"],
        "event_created": _ts(event["created"]),
        "api_version": event.get("api_version"),
        "livemode": bool(event.get("livemode", False)),
        "account": event.get("account"),
        "metadata": {str(k): str(v) for k, v in (obj.get("metadata") or {}).items()},
        "object_json": json.dumps(obj, sort_keys=True, separators=(",", ":")),
    }


def _customer(obj: dict[str, Any], event_type: str) -> dict[str, Any]:
    return {
        "id": obj["id"],
        "email": obj.get("email"),
        "name": obj.get("name"),
        "description": obj.get("description"),
        "phone": obj.get("phone"),
        "currency": obj.get("currency"),
        "deleted": bool(obj.get("deleted")) or event_type == "customer.deleted",
        "created": _ts(obj.get("created") or 0),
        "address_json": _json_or_none(obj.get("address")),
        "shipping_json": _json_or_none(obj.get("shipping")),
        "individual_name": obj.get("individual_name"),
        "business_name": obj.get("business_name"),
    }


def _invoice(obj: dict[str, Any], event_type: str) -> dict[str, Any]:
    listed = obj.get("lines") or {}
    if listed.get("has_more"):
        # the router completes the lines (GET /v1/invoices/{id}/lines); still incomplete here,
        # the invoice would not add up: say why instead
        raise ValueError(
            f"invoice {obj.get('id')}: only {len(listed.get('data') or [])} of "
            f"{listed.get('total_count', 'its')} lines embedded (lines.has_more) and the rest "
            "not fetched"
        )
    lines = []
    for line in listed.get("data", []):
        period = line.get("period") or {}
        pricing = (line.get("pricing") or {}).get("price_details") or {}
        price_id = _id(line.get("price")) or pricing.get("price")
        lines.append(
            {
                "id": line["id"],
                "amount": int(line["amount"]),
                "currency": line.get("currency", obj["currency"]),
                "description": line.get("description"),
                "price_id": price_id,
                "quantity": line.get("quantity"),
                "period_start": _ts(period.get("start", obj.get("created", 0))),
                "period_end": _ts(period.get("end", obj.get("created", 0))),
                "proration": bool(line.get("proration")),
                "discount_amounts": _discounts(line.get("discount_amounts")),
                "tax_amounts": _taxes(line.get("tax_amounts")),
                "line_type": line.get("type"),
                "product_name": _product_name(line.get("price")),
            }
        )
    transitions = obj.get("status_transitions") or {}
    return {
        "id": obj["id"],
        "customer": _id(obj.get("customer")),
        "status": obj.get("status") or "draft",
        "currency": obj["currency"],
        "total": int(obj.get("total", 0)),
        "subtotal": int(obj.get("subtotal", 0)),
        "tax": obj.get("tax"),
        "amount_due": int(obj.get("amount_due", 0)),
        "amount_paid": int(obj.get("amount_paid", 0)),
        "number": obj.get("number"),
        "created": _ts(obj.get("created") or 0),
        "finalized_at": _ts(transitions.get("finalized_at")),
        "lines": lines,
        "total_discount_amounts": _discounts(obj.get("total_discount_amounts")),
        "total_tax_amounts": _taxes(obj.get("total_tax_amounts")),
        "shipping_amount": (obj.get("shipping_cost") or {}).get("amount_total"),
        "due_date": _ts(obj.get("due_date")),
        "from_invoice": _id((obj.get("from_invoice") or {}).get("invoice")),
        "voided_at": _ts(transitions.get("voided_at")),
        "marked_uncollectible_at": _ts(transitions.get("marked_uncollectible_at")),
        "paid_at": _ts(transitions.get("paid_at")),
        "billing_reason": obj.get("billing_reason"),
        "charge": _id(obj.get("charge")),
        "paid_out_of_band": bool(obj.get("paid_out_of_band")),
        "starting_balance": obj.get("starting_balance"),
        "ending_balance": obj.get("ending_balance"),
    }


def _product_name(price: Any) -> str | None:
    if isinstance(price, dict) and isinstance(price.get("product"), dict):
        name = price["product"].get("name")
        return str(name) if name else None
    return None


def _charge(obj: dict[str, Any], event_type: str) -> dict[str, Any]:
    return {
        "id": obj["id"],
        "customer": _id(obj.get("customer")),
        "invoice": _id(obj.get("invoice")),
        "amount": int(obj["amount"]),
        "amount_captured": int(obj.get("amount_captured", 0)),
        "amount_refunded": int(obj.get("amount_refunded", 0)),
        "currency": obj["currency"],
        "status": obj.get("status", "pending"),
        "paid": bool(obj.get("paid")),
        "captured": bool(obj.get("captured")),
        "balance_transaction": _id(obj.get("balance_transaction")),
        "payment_intent": _id(obj.get("payment_intent")),
        "description": obj.get("description"),
        "created": _ts(obj.get("created") or 0),
        **_settlement(obj.get("balance_transaction")),
        "failure_code": obj.get("failure_code"),
    }


def _settlement(txn: Any) -> dict[str, Any]:
    """Settlement facts of a charge whose balance transaction is expanded (else nulls)."""
    if not isinstance(txn, dict):
        return {
            "settlement_amount": None,
            "settlement_currency": None,
            "exchange_rate": None,
            "fee": None,
        }
    rate = txn.get("exchange_rate")
    return {
        "settlement_amount": int(txn["amount"]),
        "settlement_currency": txn["currency"],
        "exchange_rate": None if rate is None else _rate_text(rate),
        "fee": int(txn.get("fee", 0)),
    }


def _rate_text(rate: Any) -> str:
    """Stripe sends rates as JSON numbers; keep them as the decimal text Stripe wrote."""
    return format(Decimal(str(rate)), "f")


def _charge_links(obj: dict[str, Any]) -> dict[str, Any]:
    charge = obj.get("charge")
    if isinstance(charge, dict):
        return {
            "charge": charge["id"],
            "customer": _id(charge.get("customer")),
            "invoice": _id(charge.get("invoice")),
        }
    return {"charge": _id(charge) or "", "customer": None, "invoice": None}


def _refund(obj: dict[str, Any], event_type: str) -> dict[str, Any]:
    return {
        "id": obj["id"],
        **_charge_links(obj),
        "amount": int(obj["amount"]),
        "currency": obj["currency"],
        "status": obj.get("status") or "pending",
        "reason": obj.get("reason"),
        "balance_transaction": _id(obj.get("balance_transaction")),
        "failure_balance_transaction": _id(obj.get("failure_balance_transaction")),
        "failure_reason": obj.get("failure_reason"),
        "created": _ts(obj.get("created") or 0),
    }


def _dispute(obj: dict[str, Any], event_type: str) -> dict[str, Any]:
    txns = obj.get("balance_transactions") or []
    return {
        "id": obj["id"],
        **_charge_links(obj),
        "amount": int(obj["amount"]),
        "currency": obj["currency"],
        "status": obj.get("status") or "needs_response",
        "reason": obj.get("reason"),
        "funds_withdrawn": event_type == "charge.dispute.funds_withdrawn"
        or any(int(t.get("amount", 0)) < 0 for t in txns if isinstance(t, dict)),
        "funds_reinstated": event_type == "charge.dispute.funds_reinstated"
        or any(int(t.get("amount", 0)) > 0 for t in txns if isinstance(t, dict)),
        "created": _ts(obj.get("created") or 0),
    }


def _credit_note(obj: dict[str, Any], event_type: str) -> dict[str, Any]:
    return {
        "id": obj["id"],
        "invoice": _id(obj.get("invoice")) or "",
        "customer": _id(obj.get("customer")),
        "amount": int(obj["amount"]),
        "currency": obj["currency"],
        "status": obj.get("status") or "issued",
        "type": obj.get("type") or "pre_payment",
        "refund": _id(obj.get("refund")),
        "out_of_band_amount": int(obj.get("out_of_band_amount") or 0),
        "lines": [
            {
                "id": line["id"],
                "amount": int(line["amount"]),
                "description": line.get("description"),
                "invoice_line_item": _id(line.get("invoice_line_item")),
                "quantity": line.get("quantity"),
            }
            for line in (obj.get("lines") or {}).get("data", [])
        ],
        "created": _ts(obj.get("created") or 0),
    }


def _payout(obj: dict[str, Any], event_type: str) -> dict[str, Any]:
    return {
        "id": obj["id"],
        "amount": int(obj["amount"]),
        "currency": obj["currency"],
        "status": obj.get("status") or "pending",
        "automatic": bool(obj.get("automatic")),
        "reconciliation_status": obj.get("reconciliation_status"),
        "arrival_date": _ts(obj.get("arrival_date") or obj.get("created") or 0),
        "balance_transaction": _id(obj.get("balance_transaction")),
        "failure_balance_transaction": _id(obj.get("failure_balance_transaction")),
        "failure_code": obj.get("failure_code"),
        "created": _ts(obj.get("created") or 0),
    }


def _price(obj: dict[str, Any], event_type: str) -> dict[str, Any]:
    product = obj.get("product")
    return {
        "id": obj["id"],
        "product": _id(product),
        "product_name": product.get("name") if isinstance(product, dict) else None,
        "nickname": obj.get("nickname"),
        "currency": obj["currency"],
        "unit_amount": obj.get("unit_amount"),
        "active": bool(obj.get("active", True)),
        "created": _ts(obj.get("created") or 0),
    }


def _coupon(obj: dict[str, Any], event_type: str) -> dict[str, Any]:
    percent = obj.get("percent_off")
    return {
        "id": obj["id"],
        "name": obj.get("name"),
        "percent_off": None if percent is None else _rate_text(percent),
        "amount_off": obj.get("amount_off"),
        "currency": obj.get("currency"),
        "created": _ts(obj.get("created") or 0),
    }


def payout_transaction(
    payout: dict[str, Any],
    txn: dict[str, Any],
    index: int,
    count: int,
    source: dict[str, Any] | None = None,
) -> dict[str, Any]:
    """The record of one balance transaction listed for a payout (stripe.payout_transactions)."""
    rate = txn.get("exchange_rate")
    return {
        "payout": payout["id"],
        "payout_amount": int(payout["amount"]),
        "payout_currency": payout["currency"],
        "count": count,
        "index": index,
        "id": txn["id"],
        "amount": int(txn["amount"]),
        "currency": txn["currency"],
        "fee": int(txn.get("fee", 0)),
        "fee_details": [
            {
                "amount": int(fd["amount"]),
                "currency": fd["currency"],
                "type": fd["type"],
                "description": fd.get("description"),
            }
            for fd in txn.get("fee_details") or []
        ],
        "net": int(txn["net"]),
        "exchange_rate": None if rate is None else _rate_text(rate),
        "reporting_category": txn.get("reporting_category") or txn.get("type") or "unknown",
        "type": txn.get("type") or "unknown",
        "source": _id(txn.get("source")),
        "source_amount": None if source is None else source.get("amount"),
        "source_currency": None if source is None else source.get("currency"),
        "source_metadata": {
            str(k): str(v) for k, v in ((source or {}).get("metadata") or {}).items()
        },
        "created": _ts(txn.get("created") or 0),
        "available_on": _ts(txn.get("available_on") or txn.get("created") or 0),
        "object_json": json.dumps(txn, sort_keys=True, separators=(",", ":")),
    }


_BUILDERS = {
    topics.STRIPE_CUSTOMER.name: _customer,
    topics.STRIPE_INVOICE.name: _invoice,
    topics.STRIPE_CHARGE.name: _charge,
    topics.STRIPE_REFUND.name: _refund,
    topics.STRIPE_DISPUTE.name: _dispute,
    topics.STRIPE_CREDIT_NOTE.name: _credit_note,
    topics.STRIPE_PAYOUT.name: _payout,
    topics.STRIPE_PRICE.name: _price,
    topics.STRIPE_COUPON.name: _coupon,
}


def to_record(spec: TopicSpec, event: dict[str, Any]) -> dict[str, Any]:
    obj = event["data"]["object"]
    try:
        return {**_envelope(event), **_BUILDERS[spec.name](obj, event["type"])}
    except (KeyError, TypeError, ValueError) as exc:
        raise BadEvent(
            f"{event['type']} object cannot be read: {type(exc).__name__}: {exc}"
        ) from exc
