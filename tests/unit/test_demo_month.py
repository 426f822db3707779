"""The demo's merchant month has every case it promises, and its reconciliation is right."""

from __future__ import annotations

import re
from collections import Counter
from pathlib import Path

from ledgerstream import settings
from ledgerstream.demo_month import CASES, MONTH, Summary, cases, reconcile, write_report
from ledgerstream.testing.generator import generate
from ledgerstream.testing.reference import reference_booking

HISTORY = generate(MONTH)


def test_the_month_has_every_case_the_demo_promises() -> None:
    found = cases(HISTORY)
    assert found["customers"] >= 50
    assert {c for c in CASES if found[c] == 0} == set()


def test_reconciliation_balances_the_reference_deposits_and_catches_a_wrong_one() -> None:
    book = reference_booking(HISTORY, settings.AccountingSettings())
    deposits = [
        {"type": "deposit", "externalId": c.external_id, **c.body}
        for c in book.commands.values()
        if c.record_type == "deposit"
    ]
    rows = reconcile(HISTORY, deposits)
    assert len(rows) == sum(1 for o in HISTORY.objects.values() if o["object"] == "payout")
    assert all(r.balanced for r in rows), [r.id for r in rows if not r.balanced]
    assert any(r.converted for r in rows)  # JPY and KWD payments settle in USD
    # one cent more on one line, and that payout (only) is caught
    wrong = next(d for d in deposits if d.get("cashback"))
    item = wrong["cashback"]["items"][0]
    item["amount"] = item["amount"] + item["amount"].__class__("0.01")
    rows = reconcile(HISTORY, deposits)
    assert [r.id for r in rows if not r.balanced] == [wrong["externalId"].split("-")[0]]
    # a payout NetSuite has no deposit for is not balanced
    rows = reconcile(HISTORY, [d for d in deposits if d is not wrong])
    missing = next(r for r in rows if r.id == wrong["externalId"].split("-")[0])
    assert not missing.parts and not missing.balanced


def test_the_report_has_a_chart_per_currency_and_escapes(tmp_path: Path) -> None:
    book = reference_booking(HISTORY, settings.AccountingSettings())
    records = [
        {"type": c.record_type, "externalId": c.external_id, **c.body}
        for c in book.commands.values()
    ]
    rows = reconcile(HISTORY, records)
    summary = Summary(
        rows=rows,
        records=Counter(str(r["type"]) for r in records),
        expected=Counter(c.record_type for c in book.commands.values()),
        dead=Counter(),
        requests=Counter({"PUT 204": len(records)}),
        cases=cases(HISTORY),
        events=len(HISTORY.events),
        seconds=1.0,
    )
    assert summary.ok
    text = "\n".join(summary.text())
    assert f"{len(rows)} of {len(rows)} payouts balanced" in text
    assert "1.00 writes per record" in text
    page = write_report(tmp_path / "report.html", summary).read_text()
    currencies = {r.currency for r in rows}
    assert page.count("<svg") == len(currencies) == 2
    assert page.count("<span class=ok>✔</span>") == len(rows)
    # the charts are inline SVG: the page loads nothing from elsewhere (no network needed)
    assert not re.search(r"(src|href)=[\"']?(https?:)?//", page)
