"""A recorded Stripe history (files in Stripe's own shapes) served by the Stripe double."""

from __future__ import annotations

import asyncio
import json
from pathlib import Path
from typing import Any

import pytest
from aiohttp.test_utils import TestClient, TestServer

from ledgerstream.testing import recorded
from ledgerstream.testing.generator import History, Scenario, generate
from ledgerstream.testing.stripe_double import StripeDouble

SCENARIO = Scenario(seed=11, customers=4, months=2)
# invoices of 25 and 250 lines, which embed their first ten only
LONG = Scenario(seed=11, customers=4, months=2, long_invoice_rate=0.5)


def answers(history: History, paths: list[str]) -> list[Any]:
    async def go() -> list[Any]:
        async with TestClient(TestServer(StripeDouble(history).app())) as client:
            out = []
            for path in paths:
                resp = await client.get(path, headers={"Authorization": "Bearer sk_test_x"})
                out.append((resp.status, await resp.json()))
            return out

    return asyncio.run(go())


@pytest.mark.parametrize("scenario", [SCENARIO, LONG], ids=["plain", "long invoices"])
def test_a_history_saved_to_files_is_served_exactly_as_the_original(
    tmp_path: Path, scenario: Scenario
) -> None:
    history = generate(scenario)
    recorded.save(history, tmp_path)
    loaded = recorded.load(tmp_path)
    assert loaded.events == history.events
    assert loaded.objects == history.objects
    assert loaded.balance_transactions == history.balance_transactions
    assert loaded.payout_transactions == history.payout_transactions
    assert loaded.invoice_lines == history.invoice_lines
    assert (tmp_path / "invoice_lines").is_dir() == bool(history.invoice_lines)
    if scenario is LONG:
        assert {len(lines) for lines in history.invoice_lines.values()} == {25, 250}

    payout = next(iter(history.payout_transactions))
    some = [o for o in history.objects.values() if o["object"] in ("charge", "invoice")][:4]
    invoices = [o for o in history.objects.values() if o["object"] == "invoice"]
    paths = [
        "/v1/events?limit=100",
        f"/v1/balance_transactions?payout={payout}&limit=100",
        "/v1/customers?limit=100",
        *[f"/v1/{o['object']}s/{o['id']}" for o in some],
        # every invoice's lines, and those after the embedded ones of a long invoice
        *[f"/v1/invoices/{i['id']}/lines?limit=100" for i in invoices],
        *[
            f"/v1/invoices/{i['id']}/lines?limit=100&starting_after={i['lines']['data'][-1]['id']}"
            for i in invoices
            if i["lines"]["has_more"]
        ],
    ]
    assert answers(loaded, paths) == answers(history, paths)


def test_events_in_any_order_are_served_newest_first(tmp_path: Path) -> None:
    history = generate(SCENARIO)
    recorded.save(history, tmp_path)
    lines = (tmp_path / "events.jsonl").read_text().splitlines()
    (tmp_path / "events.jsonl").write_text("\n".join(reversed(lines)) + "\n")
    assert recorded.load(tmp_path).events == history.events


def test_a_line_that_is_not_a_stripe_object_is_named(tmp_path: Path) -> None:
    recorded.save(generate(SCENARIO), tmp_path)
    with (tmp_path / "objects.jsonl").open("a") as f:
        f.write(json.dumps({"amount": 5}) + "\n")
    count = len((tmp_path / "objects.jsonl").read_text().splitlines())
    with pytest.raises(ValueError, match=rf"objects.jsonl:{count}: not a Stripe object"):
        recorded.load(tmp_path)


def test_a_lines_file_that_is_not_a_list_is_named(tmp_path: Path) -> None:
    recorded.save(generate(LONG), tmp_path)
    bad = next((tmp_path / "invoice_lines").glob("*.json"))
    bad.write_text(json.dumps({"object": "invoice"}))
    with pytest.raises(ValueError, match=rf"{bad.name}: not a Stripe list of invoice line items"):
        recorded.load(tmp_path)
