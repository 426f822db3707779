"""NetSuite commands: one idempotent write each, deterministic, naming what it depends on.

A command's body refers to records that this pipeline writes as ``{"$ref": {"type": …,
"externalId": …}}``; the sink resolves those to ``{"id": <internal id>}`` once the referenced
record exists. ``command_id`` is a hash of everything that decides the write, so the same input
always gives the same command and duplicates can be recognised anywhere downstream.
"""

from __future__ import annotations

import hashlib
from collections.abc import Mapping
from dataclasses import dataclass, field
from functools import cached_property
from typing import Any

import simplejson


def canonical_json(value: Any) -> str:
    """Sorted keys, no spaces, Decimals written exactly."""
    return simplejson.dumps(value, use_decimal=True, sort_keys=True, separators=(",", ":"))


def ref(record_type: str, external_id: str) -> dict[str, Any]:
    return {"$ref": {"type": record_type, "externalId": external_id}}


def _target(node: dict[str, Any]) -> tuple[str, str] | None:
    target = node.get("$ref")
    if isinstance(target, dict):
        return str(target["type"]), str(target["externalId"])
    return None


def find_refs(body: Any) -> list[tuple[str, str]]:
    """Every ``$ref`` in a body, in document order, without repeats.

    A ``$ref`` stands either alone (``{"$ref": …}`` becomes ``{"id": …}``) or beside other
    fields of a sublist line (``{"$ref": …, "paymentAmount": 1}``: the line gets ``"id"``).
    """
    found: list[tuple[str, str]] = []

    def walk(node: Any) -> None:
        if isinstance(node, dict):
            pair = _target(node)
            if pair is not None and pair not in found:
                found.append(pair)
            for key in sorted(node):
                if key != "$ref":
                    walk(node[key])
        elif isinstance(node, list):
            for item in node:
                walk(item)

    walk(body)
    return found


def resolve_refs(body: Any, internal_ids: Mapping[tuple[str, str], str]) -> Any:
    """Replace each ``$ref`` by ``"id": …``; KeyError names the first unresolved one."""
    if isinstance(body, dict):
        pair = _target(body)
        out = {k: resolve_refs(v, internal_ids) for k, v in body.items() if k != "$ref"}
        if pair is not None:
            out["id"] = internal_ids[pair]
        return out
    if isinstance(body, list):
        return [resolve_refs(v, internal_ids) for v in body]
    return body


def sublists(body: dict[str, Any]) -> list[str]:
    """Sublist fields of a body (``{"items": [...]}``); an upsert replaces them, never appends."""
    return sorted(k for k, v in body.items() if isinstance(v, dict) and "items" in v)


@dataclass(frozen=True)
class Command:
    record_type: str
    external_id: str
    body: dict[str, Any]
    stripe_object: str
    stripe_id: str
    metadata_key: str | None
    source_event_ids: tuple[str, ...] = field(default=(), compare=False)
    operation: str = "upsert"
    # the records that must be written one at a time, in the order they were emitted: those of
    # one Stripe invoice (the invoice, its payments, credit memos and customer refunds) share
    # ``invoice/<id>``, because what one applies to the invoice limits what the next may
    # (NetSuite refuses a payment beyond the invoice's amount remaining); None: the record alone
    order: str | None = field(default=None, compare=False)
    # deposits: where a payment line goes when the record it deposits is never written (the
    # sink posts the deposit with it there after its dependency timeout; see ``on_suspense``)
    suspense_account: str | None = field(default=None, compare=False)
    # deposits, for the status they report (not sent: the sink has no use for them): the
    # payout's currency, and on the first part what the deposit must add up to (minor units):
    # the payout's amount, or 0 for a payout the bank returned (deposit_commands)
    payout_currency: str | None = field(default=None, compare=False)
    payout_amount: int | None = field(default=None, compare=False)

    @property
    def key(self) -> str:
        return f"{self.record_type}/{self.external_id}"

    @property
    def order_key(self) -> str:
        """The Kafka message key: commands with one order key share a partition, and the sink
        writes them one at a time, in order."""
        return self.order or self.key

    # computed once per command (a command's body is never changed after it is made)
    @cached_property
    def depends_on(self) -> list[tuple[str, str]]:
        return find_refs(self.body)

    @cached_property
    def body_json(self) -> str:
        return canonical_json(self.body)

    @cached_property
    def command_id(self) -> str:
        content = canonical_json(
            [
                self.operation,
                self.record_type,
                self.external_id,
                self.body,
                self.stripe_object,
                self.stripe_id,
                self.metadata_key,
            ]
        )
        return hashlib.sha256(content.encode()).hexdigest()

    def to_avro(self) -> dict[str, Any]:
        return {
            "command_id": self.command_id,
            "record_type": self.record_type,
            "external_id": self.external_id,
            "operation": self.operation,
            "body_json": self.body_json,
            "depends_on": [{"record_type": t, "external_id": e} for t, e in self.depends_on],
            "stripe_object": self.stripe_object,
            "stripe_id": self.stripe_id,
            "metadata_key": self.metadata_key,
            "source_event_ids": list(self.source_event_ids),
            "order_key": self.order,
            "suspense_account_id": self.suspense_account,
        }

    @classmethod
    def from_avro(cls, rec: dict[str, Any]) -> Command:
        import json
        from decimal import Decimal

        return cls(
            record_type=rec["record_type"],
            external_id=rec["external_id"],
            body=json.loads(rec["body_json"], parse_float=Decimal),
            stripe_object=rec["stripe_object"],
            stripe_id=rec["stripe_id"],
            metadata_key=rec.get("metadata_key"),
            source_event_ids=tuple(rec.get("source_event_ids") or ()),
            operation=rec.get("operation", "upsert"),
            order=rec.get("order_key"),
            suspense_account=rec.get("suspense_account_id"),
        )
