"""The reference booking of a generated history: what the pipeline must write to NetSuite."""

from __future__ import annotations

from typing import Any

from ledgerstream.accounting.book import Book, book_history
from ledgerstream.settings import AccountingSettings
from ledgerstream.testing.generator import History


def expanded_payout_txns(h: History) -> dict[str, list[dict[str, Any]]]:
    """Each payout's balance transactions as ``GET /v1/balance_transactions?payout=`` lists
    them, with their sources expanded."""
    return {
        po: [
            dict(
                h.balance_transactions[t],
                source=h.objects.get(
                    h.balance_transactions[t]["source"], h.balance_transactions[t]["source"]
                ),
            )
            for t in ids
        ]
        for po, ids in h.payout_transactions.items()
    }


def routed(h: History, event: dict[str, Any]) -> dict[str, Any]:
    """The event as the router completes it: a succeeded charge with its balance transaction,
    a refund or dispute with its charge, an invoice with the lines it does not embed."""
    obj = dict(event["data"]["object"])
    if obj.get("object") == "invoice" and (obj.get("lines") or {}).get("has_more"):
        full = h.invoice_lines[obj["id"]]
        obj["lines"] = {**obj["lines"], "data": full, "has_more": False, "total_count": len(full)}
    if obj.get("object") == "charge" and isinstance(obj.get("balance_transaction"), str):
        obj["balance_transaction"] = h.balance_transactions[obj["balance_transaction"]]
    if obj.get("object") in ("refund", "dispute") and isinstance(obj.get("charge"), str):
        obj["charge"] = h.objects[obj["charge"]]
    return {**event, "data": {**event["data"], "object": obj}}


def reference_booking(h: History, cfg: AccountingSettings) -> Book:
    return book_history([routed(h, e) for e in h.events], expanded_payout_txns(h), cfg)
