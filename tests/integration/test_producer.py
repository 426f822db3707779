"""The producer's non-webhook paths against the real broker and registry.

Data comes from the stateful Stripe double serving a generated history; every Stripe request
the producer made is then replayed against stripe-mock, which must accept it (proof that each
is a valid Stripe API call).
"""

from __future__ import annotations

import collections
import functools
import json
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest
import stripe
from prometheus_client import REGISTRY

from ledgerstream import settings, topics
from ledgerstream.avro import Serde
from ledgerstream.bootstrap import Bootstrap
from ledgerstream.producers.backfill import backfill, windows
from ledgerstream.producers.cursor import CursorStore
from ledgerstream.producers.payouts import PayoutContents
from ledgerstream.producers.poller import CatchUpPoller
from ledgerstream.producers.router import Router
from ledgerstream.producers.stripe_api import StripeAPI
from ledgerstream.stack import url_of_stripe_mock
from ledgerstream.testing.generator import History, Scenario, generate
from ledgerstream.testing.stripe_double import StripeDouble
from tests.integration.helpers import consume_all, drain

pytestmark = [pytest.mark.integration, pytest.mark.usefixtures("local_stack")]

SCENARIO = Scenario(seed=7, customers=6, months=2, settlement_currencies=("usd", "jpy"))


@pytest.fixture(scope="module")
def history() -> History:
    return generate(SCENARIO)


def published(spec: topics.TopicSpec) -> list[dict[str, Any]]:
    name = topics.name(spec)
    serde = Serde(name, spec.schema or "")
    return [serde.loads(m.value()) for m in consume_all(name)]


def route_all(boot: Bootstrap) -> Router:
    """Run the router until it has nothing left to do."""
    router = Router(boot)
    drain(router)
    assert router.dead_lettered == 0
    return router


def recorded(api: StripeAPI) -> list[tuple[str, dict[str, Any]]]:
    """Every request ``api`` makes from now on (path, params), to replay against stripe-mock."""
    calls: list[tuple[str, dict[str, Any]]] = []
    send = api.client.raw_request

    def record(method: str, path: str, **params: Any) -> Any:
        calls.append((path, dict(params)))
        return send(method, path, **params)

    api.client.raw_request = record  # type: ignore[method-assign]
    return calls


def assert_stripe_mock_accepts(calls: list[tuple[str, dict[str, Any]]]) -> None:
    mock = stripe.StripeClient(
        "sk_test_123",
        base_addresses={"api": url_of_stripe_mock()},
        stripe_version=settings.stripe().stripe_api_version,
    )
    assert calls
    for path, params in calls:
        mock.raw_request("get", path, **params)  # raises on any 4xx/5xx


def test_catch_up_poller_publishes_each_event_once_across_an_outage(
    isolated: str, double: StripeDouble, history: History, boot: Bootstrap
) -> None:
    handled = [e for e in history.events if _handled(e)]
    middle = history.events[len(history.events) // 2]["created"]
    double.horizon = middle  # Stripe has only sent this much when the first pass runs
    api, publisher = boot.stripe_api(), boot.publisher()
    calls = recorded(api)
    poller = CatchUpPoller(api, publisher, CursorStore())
    counted = polled_counts()
    try:
        first = poller.poll_once(since=SCENARIO.start)
        assert first.published == sum(1 for e in handled if e["created"] <= middle)
        double.horizon = None  # ... the outage ends, more events exist
        second = poller.poll_once()
        assert first.published + second.published == len(handled)
        assert poller.poll_once().events == 0  # nothing new: nothing re-published
    finally:
        publisher.close()
    # what its /metrics shows: each event read once, by what became of it
    now = polled_counts()
    assert now["published"] - counted["published"] == len(handled)
    assert now["ignored"] - counted["ignored"] == len(history.events) - len(handled)
    assert now["rejected"] == counted["rejected"]
    assert len(published(topics.STRIPE_EVENTS)) == len(handled)
    router = route_all(boot)
    assert router.routed == len(handled)
    ids = collections.Counter(
        rec["event_id"] for spec in topics.STRIPE_TOPICS for rec in published(spec)
    )
    assert set(ids) == {e["id"] for e in handled}
    assert max(ids.values()) == 1
    assert CursorStore().load("stripe-events")["last_event_id"] == history.events[-1]["id"]
    assert_stripe_mock_accepts(calls)


def polled_counts() -> dict[str, float]:
    """This process's ``ledgerstream_polled_events_total`` by outcome."""
    return {
        outcome: REGISTRY.get_sample_value("ledgerstream_polled_events_total", {"outcome": outcome})
        or 0.0
        for outcome in ("published", "ignored", "rejected")
    }


def _handled(event: dict[str, Any]) -> bool:
    from ledgerstream.stripe_records import route

    return route(event["type"]) is not None


def test_backfill_publishes_every_object_and_payout_contents(
    isolated: str, history: History, boot: Bootstrap
) -> None:
    api, publisher = boot.stripe_api(), boot.publisher()
    calls = recorded(api)
    end = history.events[-1]["created"] + 1
    try:
        counts = backfill(
            api, publisher, SCENARIO.start - 86400, end, window_s=10 * 86400, progress=False
        )
    finally:
        publisher.close()
    route_all(boot)
    kinds = collections.Counter(o["object"] for o in history.objects.values())
    assert counts["customers"] == kinds["customer"]
    assert counts["invoices"] == kinds["invoice"]
    assert counts["charges"] == kinds["charge"]
    assert counts["refunds"] == kinds["refund"]
    assert counts["disputes"] == kinds["dispute"]
    assert counts["payouts"] == kinds["payout"]
    charges = published(topics.STRIPE_CHARGE)
    assert {c["id"] for c in charges} == {
        o["id"] for o in history.objects.values() if o["object"] == "charge"
    }
    assert all(c["event_id"] is None and c["event_type"] == "charge.backfill" for c in charges)
    settled = [c for c in charges if c["balance_transaction"]]
    assert settled and all(c["settlement_currency"] for c in settled)  # expanded for the FX
    txns = published(topics.STRIPE_PAYOUT_TRANSACTIONS)
    assert (
        counts["payout_transactions"]
        == len(txns)
        == sum(len(v) for v in history.payout_transactions.values())
    )
    by_payout = collections.defaultdict(list)
    for t in txns:
        by_payout[t["payout"]].append(t)
    for items in by_payout.values():
        assert sorted(t["index"] for t in items) == list(range(items[0]["count"]))
        own = [t for t in items if t["type"] == "payout"]
        assert sum(t["net"] for t in items if t not in own) == items[0]["payout_amount"]
    assert_stripe_mock_accepts(calls)


def test_payout_contents_follow_paid_payouts(
    isolated: str, history: History, boot: Bootstrap
) -> None:
    payout_events = [e for e in history.events if e["type"].startswith("payout.")]
    publisher = boot.publisher()
    try:
        publisher.send_all([publisher.encode_event(e) for e in payout_events])  # type: ignore[misc]
    finally:
        publisher.close()
    calls = recorded(boot.stripe_api())
    route_all(boot)
    drain(PayoutContents(boot))
    txns = published(topics.STRIPE_PAYOUT_TRANSACTIONS)
    paid = {e["data"]["object"]["id"] for e in payout_events if e["type"] == "payout.paid"}
    assert {t["payout"] for t in txns} == paid
    assert len(txns) == sum(len(history.payout_transactions[p]) for p in paid)
    assert_stripe_mock_accepts(calls)


def test_replay_file_through_the_cli(isolated: str, history: History, tmp_path: Path) -> None:
    path = tmp_path / "events.jsonl"
    lines = [json.dumps(e) for e in history.events]
    lines.insert(3, "{not json")
    lines.insert(7, json.dumps({"object": "charge", "id": "ch_x"}))
    path.write_text("\n".join(lines) + "\n")
    out = subprocess.run(
        [sys.executable, "-m", "ledgerstream.cli", "producer", "replay", str(path)],
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert out.returncode == 1  # some lines were rejected
    assert "line 4:" in out.stderr and "line 8:" in out.stderr
    handled = [e for e in history.events if _handled(e)]
    assert f"published={len(handled)}" in out.stdout
    assert "rejected=2" in out.stdout
    raw = published(topics.STRIPE_EVENTS)
    assert len(raw) == len(handled)
    assert {r["source"] for r in raw} == {"replay"}


def test_a_backfill_that_stopped_resumes_after_its_last_completed_window(
    isolated: str, history: History, boot: Bootstrap, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A backfill that crashed goes on where it was when started again: the windows whose
    objects Kafka acknowledged are not read again, and nothing is missing. Once complete, the
    same backfill starts over."""
    api, publisher, cursors = boot.stripe_api(), boot.publisher(), CursorStore()
    start, end, window = SCENARIO.start - 86400, history.events[-1]["created"] + 1, 10 * 86400
    spans = list(windows(start, end, window))
    assert len(spans) >= 4
    pages = api.pages
    read: list[tuple[str, int]] = []

    class Crash(Exception):
        pass

    def reading(path: str, params: dict[str, Any], crash_at: int | None = None) -> Any:
        if crash_at is not None and len(read) == crash_at:
            raise Crash("the process died here")
        read.append((path, params["created"]["gte"]))
        return pages(path, params)

    kinds = ["customers", "charges"]
    run = functools.partial(
        backfill, api, publisher, start, end, kinds, window_s=window, progress=False
    )
    try:
        monkeypatch.setattr(api, "pages", functools.partial(reading, crash_at=len(spans) + 2))
        with pytest.raises(Crash):
            run(cursors=cursors)
        first = list(read)  # every customer window and two charge windows
        read.clear()
        monkeypatch.setattr(api, "pages", reading)
        again = run(cursors=cursors)
        assert read == [("/v1/charges", a) for a, _ in spans[2:]]  # from the third on
        read.clear()
        over = run(cursors=cursors)  # complete: a new run reads everything again
        assert len(read) == 2 * len(spans)
    finally:
        publisher.close()
    assert first[: len(spans)] == [("/v1/customers", a) for a, _ in spans]
    route_all(boot)
    charges = {c["id"] for c in published(topics.STRIPE_CHARGE)}
    assert charges == {o["id"] for o in history.objects.values() if o["object"] == "charge"}
    assert again["customers"] == 0 and over["charges"] == len(charges)
