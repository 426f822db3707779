"""A Stripe history kept in files, for the Stripe double to serve (``ledgerstream stripe-double
--history DIR``): test the mapping against an export of your own account, not only against
generated histories.

The directory holds Stripe's own shapes, as its API returns them:

- ``events.jsonl``: one Event per line (``GET /v1/events/{id}``), in any order;
- ``objects.jsonl``: one object per line in its latest state, as ``GET /v1/<type>/{id}``
  returns it: customers, invoices, charges, refunds, disputes, credit notes, payouts, and
  balance transactions (``"object": "balance_transaction"``) that no payout lists;
- ``payout_contents/<payout id>.json``: for each paid payout, the answer of
  ``GET /v1/balance_transactions?payout=<payout id>`` with every page's ``data`` in one list
  (``{"object": "list", "data": [...]}``, newest first, the payout's own transaction
  included);
- ``invoice_lines/<invoice id>.json``: for each invoice that embeds only its first lines
  (``lines.has_more`` true), the answer of ``GET /v1/invoices/<invoice id>/lines`` with every
  page's ``data`` in one list (``{"object": "list", "data": [...]}``, in the invoice's order).

``save`` writes a history (e.g. a generated one) in that form, ``load`` reads it back.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

from ledgerstream.testing.generator import History

EVENTS, OBJECTS, CONTENTS = "events.jsonl", "objects.jsonl", "payout_contents"
INVOICE_LINES = "invoice_lines"


def _lines(path: Path) -> list[dict[str, Any]]:
    out = []
    with path.open(encoding="utf-8") as f:
        for number, line in enumerate(f, 1):
            if not line.strip():
                continue
            try:
                item = json.loads(line)
            except ValueError as exc:
                raise ValueError(f"{path}:{number}: not JSON ({exc})") from None
            if not isinstance(item, dict) or "id" not in item or "object" not in item:
                raise ValueError(f"{path}:{number}: not a Stripe object (no id or object)")
            out.append(item)
    return out


def load(directory: Path) -> History:
    """The history kept in ``directory`` (see the module's docstring for the layout)."""
    directory = Path(directory)
    events = _lines(directory / EVENTS)
    if any(e["object"] != "event" for e in events):
        raise ValueError(f"{directory / EVENTS}: every line must be an Event")
    objects: dict[str, Any] = {}
    txns: dict[str, Any] = {}
    if (directory / OBJECTS).exists():
        for obj in _lines(directory / OBJECTS):
            (txns if obj["object"] == "balance_transaction" else objects)[obj["id"]] = obj
    contents: dict[str, list[str]] = {}
    folder = directory / CONTENTS
    for path in sorted(folder.glob("*.json")) if folder.is_dir() else []:
        listing = json.loads(path.read_text(encoding="utf-8"))
        if listing.get("object") != "list" or not isinstance(listing.get("data"), list):
            raise ValueError(f"{path}: not a Stripe list of balance transactions")
        contents[path.stem] = [t["id"] for t in listing["data"]]
        for txn in listing["data"]:
            txns.setdefault(txn["id"], txn)
    invoice_lines: dict[str, list[dict[str, Any]]] = {}
    folder = directory / INVOICE_LINES
    for path in sorted(folder.glob("*.json")) if folder.is_dir() else []:
        listing = json.loads(path.read_text(encoding="utf-8"))
        if listing.get("object") != "list" or not isinstance(listing.get("data"), list):
            raise ValueError(f"{path}: not a Stripe list of invoice line items")
        invoice_lines[path.stem] = listing["data"]
    events.sort(key=lambda e: (int(e["created"]), e["id"]))
    return History(events, objects, txns, contents, invoice_lines)


def save(history: History, directory: Path) -> None:
    """Write ``history`` in the layout ``load`` reads."""
    directory = Path(directory)
    (directory / CONTENTS).mkdir(parents=True, exist_ok=True)
    with (directory / EVENTS).open("w", encoding="utf-8") as f:
        for event in history.events:
            f.write(json.dumps(event, sort_keys=True) + "\n")
    listed = {t for ids in history.payout_transactions.values() for t in ids}
    with (directory / OBJECTS).open("w", encoding="utf-8") as f:
        for obj in history.objects.values():
            f.write(json.dumps(obj, sort_keys=True) + "\n")
        for txn in history.balance_transactions.values():
            if txn["id"] not in listed:
                f.write(json.dumps(txn, sort_keys=True) + "\n")
    for payout, ids in history.payout_transactions.items():
        listing = {
            "object": "list",
            "url": "/v1/balance_transactions",
            "has_more": False,
            "data": [history.balance_transactions[t] for t in ids],
        }
        (directory / CONTENTS / f"{payout}.json").write_text(
            json.dumps(listing, sort_keys=True), encoding="utf-8"
        )
    if history.invoice_lines:
        (directory / INVOICE_LINES).mkdir(exist_ok=True)
    for invoice, lines in history.invoice_lines.items():
        listing = {
            "object": "list",
            "url": f"/v1/invoices/{invoice}/lines",
            "has_more": False,
            "data": lines,
        }
        (directory / INVOICE_LINES / f"{invoice}.json").write_text(
            json.dumps(listing, sort_keys=True), encoding="utf-8"
        )
