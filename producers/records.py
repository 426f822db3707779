"""Stripe Event → the typed record of its object topic (pure; no I/O).

``route(event)`` says which topic an event type goes to and with which key; ``to_record``
builds the Avro record dict. Unknown event types route to ``None`` and are acknowledged and
counted by the callers, never published.
"""

from __future__ import annotations

import json
from datetime import UTC, datetime
from typing import Any

from ledgerstream import topics
from ledgerstream.topics import TopicSpec


class BadEvent(ValueError):
    """The payload is not a Stripe Event object we can read."""


def _ts(seconds: int | None) -> datetime | None:
    return None if seconds is None else datetime.fromtimestamp(int(seconds), UTC)


def _id(value: Any) -> str | None:
    """An expandable Stripe field: an id string or an expanded object with an id."""
    if value is None:
        return None
    if isinstance(value, dict):
        return value.get("id")
    return str(value)


_PREFIXES: tuple[tuple[str, TopicSpec], ...] = (
    ("customer.", topics.STRIPE_CUSTOMER),
    ("invoice.", topics.STRIPE_INVOICE),
    ("charge.", topics.STRIPE_CHARGE),
)
# sub-objects announced under a parent prefix belong to their own topics (added with their flows)
_EXCLUDED = (
    "customer.subscription.",
    "customer.discount.",
    "customer.source.",
    "customer.tax_id.",
    "customer.cash_balance",
    "charge.refund.",
    "charge.dispute.",
    "invoice.upcoming",
    "invoiceitem.",
)


def route(event_type: str) -> TopicSpec | None:
    if event_type.startswith(_EXCLUDED):
        return None
    for prefix, spec in _PREFIXES:
        if event_type.startswith(prefix):
            return spec
    return None


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
    return event


def key_for(spec: TopicSpec, obj: dict[str, Any]) -> str:
    """Receivables are keyed by customer id (co-partitioned joins), else by the object's id."""
    if spec is topics.STRIPE_CUSTOMER:
        return obj["id"]
    return _id(obj.get("customer")) or obj["id"]


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
    }


def _invoice(obj: dict[str, Any], event_type: str) -> dict[str, Any]:
    lines = []
    for line in (obj.get("lines") or {}).get("data", []):
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
    }


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
    }


_BUILDERS = {
    topics.STRIPE_CUSTOMER.name: _customer,
    topics.STRIPE_INVOICE.name: _invoice,
    topics.STRIPE_CHARGE.name: _charge,
}


def to_record(spec: TopicSpec, event: dict[str, Any]) -> dict[str, Any]:
    obj = event["data"]["object"]
    try:
        return {**_envelope(event), **_BUILDERS[spec.name](obj, event["type"])}
    except (KeyError, TypeError, ValueError) as exc:
        raise BadEvent(
            f"{event['type']} object cannot be read: {type(exc).__name__}: {exc}"
        ) from exc
