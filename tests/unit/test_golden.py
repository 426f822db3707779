"""Golden test: a multi-currency merchant's history, booked end to end by the accounting core.

The input (``tests/golden/multicurrency_merchant.input.json``) is a frozen history in Stripe's
full API shapes: EUR and GBP charges paid out in USD, a JPY balance paid out in JPY, KWD
invoices, full and partial refunds, a won and a lost dispute. The expected commands were
reviewed by hand when frozen; ``LEDGER_REGENERATE_GOLDEN=1`` rewrites them after an intended
change (review the diff). Beyond the exact comparison, the accounting facts are asserted
directly, so a wrong regeneration cannot pass silently.
"""

from __future__ import annotations

import json
import os
from decimal import Decimal
from pathlib import Path
from typing import Any

import pytest

from ledgerstream.accounting.book import Book, book_history
from ledgerstream.money import to_minor
from ledgerstream.settings import AccountingSettings

GOLDEN = Path(__file__).parent.parent / "golden"
CFG = AccountingSettings(netsuite_bank_account_ids={"USD": "102", "JPY": "107"})
CURRENCY_OF_ID = {v: k for k, v in CFG.netsuite_currency_ids.items()}


@pytest.fixture(scope="module")
def history() -> dict[str, Any]:
    return json.loads((GOLDEN / "multicurrency_merchant.input.json").read_text())


@pytest.fixture(scope="module")
def book(history: dict[str, Any]) -> Book:
    return book_history(history["events"], history["payout_transactions"], CFG)


def rendered(book: Book) -> dict[str, Any]:
    return {
        key: {
            "command_id": c.command_id,
            "metadata_key": c.metadata_key,
            "depends_on": [list(d) for d in c.depends_on],
            "body": json.loads(c.body_json),
        }
        for key, c in sorted(book.commands.items())
    }


def test_commands_match_the_reviewed_golden_file(book: Book) -> None:
    path = GOLDEN / "multicurrency_merchant.expected.json"
    got = rendered(book)
    if os.environ.get("LEDGER_REGENERATE_GOLDEN") == "1":
        path.write_text(json.dumps(got, indent=1, sort_keys=True) + "\n")
    expected = json.loads(path.read_text())
    assert sorted(got) == sorted(expected)
    for key in expected:
        assert got[key] == expected[key], key
    assert book.dead_letters == [] and book.waiting_deposits == {}


def minor(value: Any, currency: str) -> int:
    return to_minor(Decimal(str(value)), currency)


def latest(history: dict[str, Any]) -> dict[str, dict[str, Any]]:
    out: dict[str, dict[str, Any]] = {}
    for e in history["events"]:
        out[e["data"]["object"]["id"]] = e["data"]["object"]
    return out


def test_every_deposit_equals_its_payout(history: dict[str, Any], book: Book) -> None:
    objects = latest(history)
    deposits = [c for c in book.commands.values() if c.record_type == "deposit"]
    assert {d.external_id for d in deposits} == {
        o["id"] for o in objects.values() if o["object"] == "payout" and o["status"] == "paid"
    }
    currencies = set()
    for d in deposits:
        payout = objects[d.external_id]
        cur = payout["currency"]
        currencies.add(cur)
        body = json.loads(d.body_json, parse_float=Decimal)
        assert CURRENCY_OF_ID[body["currency"]["id"]] == cur.upper()
        total = (
            sum(minor(x["paymentAmount"], cur) for x in body.get("payment", {}).get("items", []))
            + sum(minor(x["amount"], cur) for x in body.get("other", {}).get("items", []))
            - sum(minor(x["amount"], cur) for x in body.get("cashback", {}).get("items", []))
        )
        assert total == payout["amount"], d.external_id
    assert currencies == {"usd", "jpy"}


def test_foreign_charges_settle_in_usd_deposits(history: dict[str, Any], book: Book) -> None:
    objects = latest(history)
    eur = [
        o
        for o in objects.values()
        if o["object"] == "charge" and o["currency"] == "eur" and o["status"] == "succeeded"
    ]
    assert eur
    deposit_lines = {
        item["$ref"]["externalId"]: (d, item)
        for d in book.commands.values()
        if d.record_type == "deposit"
        for item in d.body.get("payment", {}).get("items", [])
    }
    txns = {t["id"]: t for ts in history["payout_transactions"].values() for t in ts}
    for charge in eur:
        payment = book.commands[f"customerPayment/{charge['id']}"]
        assert CURRENCY_OF_ID[payment.body["currency"]["id"]] == "EUR"
        assert payment.body["payment"] == Decimal(charge["amount"]).scaleb(-2)
        if charge["id"] in deposit_lines:  # paid out within the history
            deposit, item = deposit_lines[charge["id"]]
            assert deposit.body["currency"] == {"id": CFG.netsuite_currency_ids["USD"]}
            txn = txns[charge["balance_transaction"]]
            assert txn["exchange_rate"] is not None
            assert minor(item["paymentAmount"], "usd") == txn["amount"]


def test_three_and_zero_decimal_amounts(book: Book) -> None:
    kwd = [
        c
        for c in book.commands.values()
        if c.record_type == "invoice"
        and c.body["currency"]["id"] == CFG.netsuite_currency_ids["KWD"]
    ]
    assert kwd
    for c in kwd:
        for item in c.body["item"]["items"]:
            assert str(item["amount"]).split(".")[1].__len__() == 3
    jpy = [
        c
        for c in book.commands.values()
        if c.body.get("currency", {}).get("id") == CFG.netsuite_currency_ids["JPY"]
    ]
    assert jpy
    assert all("." not in str(x) for c in jpy for x in _amounts(c.body))


def _amounts(node: Any) -> list[Any]:
    """Every scalar amount in a body (line amounts, payment amounts)."""
    if isinstance(node, dict):
        own = [
            v
            for k, v in node.items()
            if k in ("amount", "paymentAmount", "payment") and not isinstance(v, dict | list)
        ]
        return own + [x for v in node.values() for x in _amounts(v)]
    if isinstance(node, list):
        return [x for v in node for x in _amounts(v)]
    return []


def test_refunds_and_disputes(history: dict[str, Any], book: Book) -> None:
    objects = latest(history)
    refunds = [o for o in objects.values() if o["object"] == "refund"]
    partial = [r for r in refunds if r["amount"] < objects[r["charge"]]["amount"]]
    assert partial
    for r in partial:
        if objects[r["charge"]].get("invoice"):
            memo = book.commands[f"creditMemo/cm_{r['id']}"]
            [line] = memo.body["item"]["items"]
            assert line["item"] == {"id": CFG.netsuite_partial_refund_item_id}
        refund = book.commands[f"customerRefund/{r['id']}"]
        assert refund.body["apply"]["items"][0]["amount"] == Decimal(r["amount"]).scaleb(
            -{"jpy": 0, "kwd": 3}.get(r["currency"], 2)
        )
    disputes = {o["id"]: o for o in objects.values() if o["object"] == "dispute"}
    assert {d["status"] for d in disputes.values()} >= {"won", "lost"}
    reversal_memos = [
        item["memo"]
        for c in book.commands.values()
        if c.record_type == "deposit"
        for item in c.body.get("other", {}).get("items", [])
        if item["memo"].startswith("Stripe dispute reversal")
    ]
    for dp in disputes.values():
        assert f"customerRefund/{dp['id']}" in book.commands  # booked when funds withdrawn
        reinstated = any(dp["id"] in memo for memo in reversal_memos)
        assert reinstated == (dp["status"] == "won"), dp["id"]
