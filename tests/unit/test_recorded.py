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


def answers(history: History, paths: list[str]) -> list[Any]:
    async def go() -> list[Any]:
        async with TestClient(TestServer(StripeDouble(history).app())) as client:
            out = []
            for path in paths:
                resp = await client.get(path, headers={"Authorization": "Bearer sk_test_x"})
                out.append((resp.status, await resp.json()))
            return out

    return asyncio.run(go())


def test_a_history_saved_to_files_is_served_exactly_as_the_original(tmp_path: Path) -> None:
    history = generate(SCENARIO)
    recorded.save(history, tmp_path)
    loaded = recorded.load(tmp_path)
    assert loaded.events == history.events
    assert loaded.objects == history.objects
    assert loaded.balance_transactions == history.balance_transactions
    assert loaded.payout_transactions == history.payout_transactions

    payout = next(iter(history.payout_transactions))
    some = [o for o in history.objects.values() if o["object"] in ("charge", "invoice")][:4]
    paths = [
        "/v1/events?limit=100",
        f"/v1/balance_transactions?payout={payout}&limit=100",
        "/v1/customers?limit=100",
        *[f"/v1/{o['object']}s/{o['id']}" for o in some],
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
