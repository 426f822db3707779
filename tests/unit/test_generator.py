"""Properties of the seeded Stripe history generator (ledgerstream.testing.generator)."""

from __future__ import annotations

import json
from collections import Counter, defaultdict
from collections.abc import Iterator
from decimal import Decimal
from fractions import Fraction
from functools import cache
from itertools import islice
from typing import Any

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from ledgerstream.money import check_amount, exponent, round_half_even, step
from ledgerstream.testing.generator import (
    API_VERSION,
    EMBEDDED_LINES,
    History,
    Scenario,
    generate,
    iter_events,
)

Obj = dict[str, Any]

SETTLEMENTS = [("usd",), ("usd", "jpy"), ("eur", "usd"), ("kwd",)]
EVENT_KEYS = {
    "id",
    "object",
    "api_version",
    "created",
    "data",
    "livemode",
    "pending_webhooks",
    "request",
    "type",
}


@cache
def history(
    seed: int = 11,
    settlement: tuple[str, ...] = ("usd",),
    customers: int = 8,
    months: int = 3,
) -> History:
    return generate(
        Scenario(seed=seed, customers=customers, months=months, settlement_currencies=settlement)
    )


@cache
def busy() -> History:
    """Big and eventful enough that every flow shows up (rates raised on purpose)."""
    return generate(
        Scenario(
            seed=5,
            customers=120,
            months=4,
            settlement_currencies=("usd", "jpy"),
            guest_charge_rate=0.2,
            refund_rate=0.15,
            dispute_rate=0.1,
            failure_rate=0.2,
            credit_note_rate=0.2,
            credit_note_void_rate=0.3,
        )
    )


def states(h: History) -> Iterator[Obj]:
    """Every object state the history shows: in events, as latest objects, as transactions."""
    for event in h.events:
        yield event["data"]["object"]
    yield from h.objects.values()
    yield from h.balance_transactions.values()


def by_type(h: History, kind: str) -> list[Obj]:
    return [o for o in h.objects.values() if o["object"] == kind]


seeds = st.integers(min_value=0, max_value=2**32)
settlements = st.sampled_from(SETTLEMENTS)
few = settings(max_examples=8, deadline=None, suppress_health_check=[HealthCheck.too_slow])


# --- determinism and streaming ----------------------------------------------------------------


def test_same_scenario_gives_identical_events() -> None:
    scenario = Scenario(seed=42, customers=6, months=2)
    first = json.dumps(generate(scenario).events, sort_keys=True)
    assert first == json.dumps(generate(scenario).events, sort_keys=True)
    other = json.dumps(generate(Scenario(seed=43, customers=6, months=2)).events, sort_keys=True)
    assert first != other


@pytest.mark.parametrize("settlement", SETTLEMENTS)
def test_iter_events_streams_the_same_events(settlement: tuple[str, ...]) -> None:
    scenario = Scenario(seed=7, customers=10, months=3, settlement_currencies=settlement)
    assert list(iter_events(scenario)) == generate(scenario).events


def test_iter_events_is_lazy() -> None:
    stream = iter_events(Scenario(customers=50_000, months=12))
    first = list(islice(stream, 50))  # a huge scenario, yet the first events come at once
    assert first[0]["type"] == "product.created"


def test_events_are_sorted_and_well_formed() -> None:
    h = history()
    keys = [(e["created"], e["id"]) for e in h.events]
    assert keys == sorted(keys)
    for event in h.events:
        assert set(event) == EVENT_KEYS
        assert event["object"] == "event" and event["api_version"] == API_VERSION
        assert event["id"].startswith("evt_") and event["livemode"] is False
        assert event["pending_webhooks"] == 1
        assert event["request"] == {"id": None, "idempotency_key": None}
        assert set(event["data"]) <= {"object", "previous_attributes"}
        kind = "dispute" if event["type"].startswith("charge.dispute.") else None
        kind = kind or event["type"].split(".")[0]
        assert event["data"]["object"]["object"] == kind


def test_event_objects_are_copies() -> None:
    h = history()
    snapshots = [e["data"]["object"] for e in h.events]
    assert len({id(o) for o in snapshots}) == len(snapshots)
    assert not {id(o) for o in snapshots} & {id(o) for o in h.objects.values()}
    # The same invoice changes state between its events, and each event kept its own state.
    invoice = next(o for o in by_type(h, "invoice") if o["status"] == "paid")
    statuses = [
        e["data"]["object"]["status"]
        for e in h.events
        if e["data"]["object"]["id"] == invoice["id"]
    ]
    assert statuses[0] == "draft" and statuses[1] == "open" and statuses[-1] == "paid"


# --- payouts --------------------------------------------------------------------------------


@few
@given(seed=seeds, settlement=settlements)
def test_payout_is_the_sum_of_its_transactions(seed: int, settlement: tuple[str, ...]) -> None:
    h = generate(Scenario(seed=seed, customers=6, months=2, settlement_currencies=settlement))
    check_payouts(h)


@pytest.mark.parametrize("settlement", SETTLEMENTS)
def test_payouts_of_a_busy_history(settlement: tuple[str, ...]) -> None:
    check_payouts(history(seed=3, settlement=settlement, customers=30, months=3))


def check_payouts(h: History) -> None:
    payouts = by_type(h, "payout")
    assert payouts and set(h.payout_transactions) == {p["id"] for p in payouts}
    paid_out: Counter[str] = Counter()
    for payout in payouts:
        listed = [h.balance_transactions[t] for t in h.payout_transactions[payout["id"]]]
        assert [(t["created"], t["id"]) for t in listed] == sorted(
            ((t["created"], t["id"]) for t in listed), reverse=True
        )
        own = [t for t in listed if t["type"] == "payout"]
        assert [t["id"] for t in own] == [payout["balance_transaction"]]
        assert own[0]["amount"] == -payout["amount"] and own[0]["fee"] == 0
        assert own[0]["source"] == payout["id"]
        others = [t for t in listed if t["type"] != "payout"]
        assert sum(t["net"] for t in others) == payout["amount"] > 0
        assert payout["automatic"] is True and payout["status"] == "paid"
        assert payout["reconciliation_status"] == "completed"
        check_amount(payout["amount"], payout["currency"], payout=True)
        for txn in others:
            assert txn["currency"] == payout["currency"]
            assert txn["available_on"] <= payout["created"]
            assert txn["status"] == "available"
            paid_out[txn["id"]] += 1
    assert all(count == 1 for count in paid_out.values())  # no transaction is paid out twice
    # Whatever is left unpaid adds up to nothing positive (a negative balance is carried).
    left: Counter[str] = Counter()
    for txn in h.balance_transactions.values():
        if txn["type"] != "payout" and txn["id"] not in paid_out:
            left[txn["currency"]] += txn["net"]
    assert all(total <= 0 for total in left.values())


# --- arithmetic -----------------------------------------------------------------------------


def check_invoice(invoice: Obj, every_line: list[Obj] | None = None) -> None:
    """``every_line``: all the lines of an invoice that embeds only its first ones."""
    lines = invoice["lines"]["data"] if every_line is None else every_line
    assert invoice["lines"]["total_count"] == len(lines)
    assert invoice["lines"]["has_more"] is (len(lines) > EMBEDDED_LINES)
    assert invoice["lines"]["data"] == lines[:EMBEDDED_LINES]
    assert invoice["lines"]["url"] == f"/v1/invoices/{invoice['id']}/lines"
    assert invoice["subtotal"] == sum(line["amount"] for line in lines)
    assert invoice["subtotal_excluding_tax"] == invoice["subtotal"]
    discount = sum(d["amount"] for d in invoice["total_discount_amounts"])
    assert discount == sum(d["amount"] for line in lines for d in line["discount_amounts"])
    tax = invoice["tax"] or 0
    assert tax == sum(t["amount"] for line in lines for t in line["tax_amounts"])
    assert tax == sum(t["amount"] for t in invoice["total_tax_amounts"])
    assert (invoice["tax"] is None) == (not invoice["total_tax_amounts"])
    shipping = invoice["amount_shipping"]
    if invoice["shipping_cost"]:
        assert shipping == invoice["shipping_cost"]["amount_total"] > 0
    else:
        assert shipping == 0
    assert invoice["total"] == invoice["subtotal"] - discount + tax + shipping
    assert invoice["total_excluding_tax"] == invoice["total"] - tax
    assert invoice["amount_due"] == invoice["total"] - invoice["pre_payment_credit_notes_amount"]
    assert invoice["amount_remaining"] == invoice["amount_due"] - invoice["amount_paid"]
    assert invoice["total"] >= 0
    for line in lines:
        assert line["object"] == "line_item" and line["invoice"] == invoice["id"]
        assert line["period"]["start"] <= line["period"]["end"]
        for entry in line["tax_amounts"]:
            taxable = line["amount"] - sum(d["amount"] for d in line["discount_amounts"])
            assert entry["taxable_amount"] == taxable and entry["inclusive"] is False
            assert entry["tax_rate"].startswith("txr_")
        if not line["proration"]:
            assert line["amount"] == line["price"]["unit_amount"] * line["quantity"]
    if invoice["discount"]:
        assert invoice["discounts"] == [invoice["discount"]["id"]]
    status = invoice["status"]
    if status == "draft":
        assert invoice["number"] is None and invoice["status_transitions"]["finalized_at"] is None
    else:
        assert invoice["number"] and invoice["status_transitions"]["finalized_at"]
    if status == "paid":
        assert invoice["paid"] and invoice["amount_remaining"] == 0
        assert invoice["amount_paid"] == invoice["amount_due"]


@few
@given(seed=seeds, settlement=settlements)
def test_invoice_arithmetic(seed: int, settlement: tuple[str, ...]) -> None:
    h = generate(Scenario(seed=seed, customers=6, months=3, settlement_currencies=settlement))
    for state in states(h):
        if state["object"] == "invoice":
            check_invoice(state)


def test_invoice_arithmetic_with_every_feature() -> None:
    h = busy()
    invoices = [s for s in states(h) if s["object"] == "invoice"]
    for invoice in invoices:
        check_invoice(invoice)
    lines = [line for i in invoices for line in i["lines"]["data"]]
    assert any(line["proration"] and line["amount"] < 0 for line in lines)
    assert any(line["proration"] and line["amount"] > 0 for line in lines)
    assert any(i["total_discount_amounts"] for i in invoices)
    assert any(i["discount"] and i["discount"]["coupon"]["amount_off"] for i in invoices)
    assert any(i["discount"] and i["discount"]["coupon"]["percent_off"] for i in invoices)
    assert any(i["total_tax_amounts"] for i in invoices)
    assert any(i["shipping_cost"] for i in invoices)
    assert any(i["pre_payment_credit_notes_amount"] for i in invoices)
    assert any(i["post_payment_credit_notes_amount"] for i in invoices)
    assert {i["currency"] for i in invoices} == {"usd", "eur", "gbp", "jpy", "kwd"}


def test_credit_notes_add_up() -> None:
    notes = by_type(busy(), "credit_note")
    assert {n["type"] for n in notes} == {"pre_payment", "post_payment"}
    for note in notes:
        tax = sum(t["amount"] for t in note["tax_amounts"])
        assert note["subtotal"] == sum(line["amount"] for line in note["lines"]["data"])
        assert note["amount"] == note["total"] == note["subtotal"] - note["discount_amount"] + tax
        assert note["total_excluding_tax"] == note["total"] - tax
        assert (note["refund"] is not None) == (note["type"] == "post_payment")
        if note["refund"]:
            assert busy().objects[note["refund"]]["amount"] == note["amount"]
        # only a pre-payment credit note is voided, and only while its invoice is open
        assert (note["status"] == "void") == (note["voided_at"] is not None)
        if note["status"] == "void":
            assert note["type"] == "pre_payment" and note["voided_at"] >= note["created"]
    voided = [n for n in notes if n["status"] == "void"]
    assert voided and len(voided) < len([n for n in notes if n["type"] == "pre_payment"])
    # the invoice owes a voided note's amount again
    for invoice in by_type(busy(), "invoice"):
        kept = sum(
            n["amount"]
            for n in notes
            if n["invoice"] == invoice["id"]
            and n["type"] == "pre_payment"
            and n["status"] == "issued"
        )
        assert invoice["pre_payment_credit_notes_amount"] == kept, invoice["id"]


# --- long invoices (lines beyond the embedded ones) -----------------------------------------

LONG = Scenario(
    seed=5,
    customers=25,
    months=2,
    settlement_currencies=("usd", "jpy"),
    credit_note_rate=0.3,
    long_invoice_rate=0.3,
)


@cache
def long_history() -> History:
    return generate(LONG)


def test_long_invoices_embed_their_first_lines_and_add_up_over_all() -> None:
    h = long_history()
    assert h.invoice_lines
    invoices = [s for s in states(h) if s["object"] == "invoice"]
    for invoice in invoices:
        every_line = h.invoice_lines.get(invoice["id"])
        if every_line is not None:
            assert len(invoice["lines"]["data"]) == EMBEDDED_LINES
            assert invoice["lines"]["has_more"] is True
            assert len(every_line) in LONG.long_invoice_lines
        check_invoice(invoice, every_line)
    # every invoice that embeds a part only is in invoice_lines, and nothing else is
    truncated = {i["id"] for i in invoices if i["lines"]["has_more"]}
    assert truncated == set(h.invoice_lines)
    assert {len(lines) for lines in h.invoice_lines.values()} == set(LONG.long_invoice_lines)
    longs = [h.objects[i] for i in h.invoice_lines]
    assert {"subscription_create", "subscription_cycle", "manual"} == {
        i["billing_reason"] for i in longs
    }
    assert any(i["discount"] and i["discount"]["coupon"]["amount_off"] for i in longs)
    assert any(i["discount"] and i["discount"]["coupon"]["percent_off"] for i in longs)
    assert any(i["total_tax_amounts"] for i in longs)
    # a subscription's own lines come after the pending items, beyond the embedded ones
    for invoice in longs:
        if invoice["subscription"]:
            kinds = [line["type"] for line in h.invoice_lines[invoice["id"]]]
            assert kinds[-1] == "subscription" and "subscription" not in kinds[:EMBEDDED_LINES]


def test_long_invoice_lines_are_valid_amounts_with_unique_ids() -> None:
    h = long_history()
    found: list[tuple[int, str, bool]] = []
    walk_amounts(list(h.invoice_lines.values()), None, found)
    assert found
    for amount, currency, _ in found:
        check_amount(amount, currency)
    ids = [line["id"] for lines in h.invoice_lines.values() for line in lines]
    items = [line["invoice_item"] for lines in h.invoice_lines.values() for line in lines]
    assert len(set(ids)) == len(ids) and all(i.startswith("il_") for i in ids)
    items = [i for i in items if i is not None]
    assert len(set(items)) == len(items)


def test_credit_notes_on_long_invoices_pick_from_every_line() -> None:
    h = long_history()
    positions = []
    for note in by_type(h, "credit_note"):
        every_line = h.invoice_lines.get(note["invoice"])
        if every_line is None:
            continue
        credited = note["lines"]["data"][0]
        line = next(x for x in every_line if x["id"] == credited["invoice_line_item"])
        assert credited["description"] == line["description"]
        assert credited["quantity"] <= line["quantity"]
        positions.append(every_line.index(line))
    assert any(p >= EMBEDDED_LINES for p in positions), positions


def test_long_invoices_stream_like_the_rest() -> None:
    scenario = Scenario(seed=3, customers=6, months=2, long_invoice_rate=0.5)
    assert list(iter_events(scenario)) == generate(scenario).events
    check_order(generate(scenario))


def test_without_long_invoices_the_line_counts_do_not_matter() -> None:
    # at rate 0 nothing is drawn for long invoices: the history is the default one
    plain = generate(Scenario(seed=8, customers=6, months=2))
    assert plain.invoice_lines == {}
    other = generate(Scenario(seed=8, customers=6, months=2, long_invoice_lines=(11, 99)))
    assert json.dumps(other.events) == json.dumps(plain.events)
    assert not any(s["lines"]["has_more"] for s in states(plain) if s["object"] == "invoice")


AMOUNT_KEYS = {
    "amount",
    "amount_captured",
    "amount_due",
    "amount_excluding_tax",
    "amount_off",
    "amount_paid",
    "amount_refunded",
    "amount_remaining",
    "amount_shipping",
    "amount_subtotal",
    "amount_tax",
    "amount_total",
    "application_fee_amount",
    "discount_amount",
    "fee",
    "net",
    "post_payment_credit_notes_amount",
    "pre_payment_credit_notes_amount",
    "subtotal",
    "subtotal_excluding_tax",
    "tax",
    "taxable_amount",
    "total",
    "total_excluding_tax",
    "unit_amount",
    "amount_authorized",
    "maximum_amount_capturable",
}


def walk_amounts(value: Any, currency: str | None, found: list[tuple[int, str, bool]]) -> None:
    """Collect (amount, currency, is settlement side) from any nested Stripe object."""
    if isinstance(value, list):
        for item in value:
            walk_amounts(item, currency, found)
        return
    if not isinstance(value, dict):
        return
    currency = value.get("currency") or currency
    settlement = value.get("object") in {"balance_transaction", "payout"}
    for key, item in value.items():
        if key in AMOUNT_KEYS and item is not None:
            assert isinstance(item, int) and not isinstance(item, bool), (key, item)
            assert currency is not None, key
            found.append((item, currency, settlement))
        else:
            walk_amounts(item, currency, found)


@few
@given(seed=seeds, settlement=settlements)
def test_every_amount_is_valid_for_its_currency(seed: int, settlement: tuple[str, ...]) -> None:
    h = generate(Scenario(seed=seed, customers=6, months=2, settlement_currencies=settlement))
    found: list[tuple[int, str, bool]] = []
    for state in states(h):
        walk_amounts(state, None, found)
    assert found
    for amount, currency, settlement_side in found:
        check_amount(amount, currency, payout=settlement_side)


def test_kwd_amounts_are_multiples_of_ten() -> None:
    found: list[tuple[int, str, bool]] = []
    for state in states(busy()):
        walk_amounts(state, None, found)
    kwd = [amount for amount, currency, _ in found if currency == "kwd"]
    assert kwd and all(amount % 10 == 0 for amount in kwd)


# --- balance transactions and currencies ----------------------------------------------------


def converted(amount: int, source: str, target: str, rate: float) -> int:
    exact = Fraction(Decimal(str(rate)))
    numerator = amount * exact.numerator * 10 ** exponent(target)
    unit = step(target, payout=True)
    return round_half_even(numerator, exact.denominator * 10 ** exponent(source) * unit) * unit


@pytest.mark.parametrize("settlement", SETTLEMENTS)
def test_balance_transactions(settlement: tuple[str, ...]) -> None:
    h = history(seed=21, settlement=settlement, customers=25, months=3)
    for txn in h.balance_transactions.values():
        assert txn["net"] == txn["amount"] - txn["fee"]
        assert txn["fee"] == sum(d["amount"] for d in txn["fee_details"])
        assert txn["currency"] in settlement
        assert all(d["currency"] == txn["currency"] for d in txn["fee_details"])
        assert txn["available_on"] % 86_400 == 0 and txn["available_on"] >= txn["created"]
        source = h.objects[txn["source"]]
        kind = (txn["type"], txn["reporting_category"])
        if kind == ("charge", "charge"):
            assert source["balance_transaction"] == txn["id"] and source["status"] == "succeeded"
            stripe_fee = sum(d["amount"] for d in txn["fee_details"] if d["type"] == "stripe_fee")
            assert 0 < stripe_fee < txn["amount"] * 0.1
            if source["currency"] in settlement:
                assert txn["currency"] == source["currency"] and txn["exchange_rate"] is None
                assert txn["amount"] == source["amount"]
            else:
                assert txn["currency"] == settlement[0]
                assert isinstance(txn["exchange_rate"], float)
                assert txn["amount"] == converted(
                    source["amount"], source["currency"], txn["currency"], txn["exchange_rate"]
                )
        elif kind == ("refund", "refund"):
            assert source["balance_transaction"] == txn["id"]
            assert txn["amount"] <= 0 and txn["fee"] == 0
        elif kind == ("adjustment", "dispute"):
            assert txn["amount"] < 0 and txn["fee"] > 0
            assert txn["fee_details"][0]["description"] == "Dispute fee"
        elif kind == ("adjustment", "dispute_reversal"):
            assert txn["amount"] > 0 and txn["fee"] < 0
        else:
            assert kind == ("payout", "payout"), kind


def test_fully_refunded_charges_net_to_zero_in_settlement_currency() -> None:
    h = busy()
    refunds = defaultdict(list)
    for refund in by_type(h, "refund"):
        refunds[refund["charge"]].append(h.balance_transactions[refund["balance_transaction"]])
    full = [c for c in by_type(h, "charge") if c["refunded"]]
    assert full
    for charge in full:
        settled = h.balance_transactions[charge["balance_transaction"]]["amount"]
        assert sum(t["amount"] for t in refunds[charge["id"]]) == -settled
    partial = [c for c in by_type(h, "charge") if 0 < c["amount_refunded"] < c["amount"]]
    assert partial


def test_fee_details_and_settlement_variety() -> None:
    h = busy()
    types = Counter(d["type"] for t in h.balance_transactions.values() for d in t["fee_details"])
    assert {"stripe_fee", "tax", "application_fee"} <= set(types)
    charges = [t for t in h.balance_transactions.values() if t["type"] == "charge"]
    assert {t["currency"] for t in charges} == {"usd", "jpy"}
    assert any(t["exchange_rate"] is None for t in charges)
    assert any(t["exchange_rate"] is not None for t in charges)
    assert not any(t["currency"] == "jpy" and t["exchange_rate"] for t in charges)
    assert {p["currency"] for p in by_type(h, "payout")} == {"usd", "jpy"}


def test_disputes_won_and_lost() -> None:
    h = busy()
    disputes = by_type(h, "dispute")
    assert {d["status"] for d in disputes} == {"won", "lost"}
    for dispute in disputes:
        charge = h.objects[dispute["charge"]]
        assert charge["disputed"] and dispute["amount"] <= charge["amount"]
        withdrawal = dispute["balance_transactions"][0]
        assert withdrawal["reporting_category"] == "dispute"
        assert h.balance_transactions[withdrawal["id"]] == withdrawal
        assert withdrawal["fee"] == {"usd": 1500, "jpy": 2240}[withdrawal["currency"]]
        if dispute["status"] == "won":
            reversal = dispute["balance_transactions"][1]
            assert reversal["reporting_category"] == "dispute_reversal"
            assert reversal["fee"] == -withdrawal["fee"]
        else:
            assert len(dispute["balance_transactions"]) == 1


# --- order, ids and references --------------------------------------------------------------

RANK = {
    "customer.created": 0,
    "customer.updated": 1,
    "invoice.created": 0,
    "invoice.finalized": 1,
    "invoice.payment_failed": 2,
    "invoice.paid": 3,
    "invoice.payment_succeeded": 3,
    "invoice.marked_uncollectible": 3,
    "invoice.voided": 3,
    "charge.succeeded": 0,
    "charge.failed": 0,
    "charge.refunded": 1,
    "refund.created": 0,
    "charge.dispute.created": 0,
    "charge.dispute.funds_withdrawn": 1,
    "charge.dispute.updated": 2,
    "charge.dispute.closed": 3,
    "charge.dispute.funds_reinstated": 4,
    "credit_note.created": 0,
    "credit_note.voided": 1,
    "payout.created": 0,
    "payout.paid": 1,
    "payout.reconciliation_completed": 2,
    "product.created": 0,
    "price.created": 0,
}


def check_order(h: History) -> None:
    position: dict[tuple[str, str], int] = {}
    ranks: dict[str, list[int]] = defaultdict(list)
    for index, event in enumerate(h.events):
        obj = event["data"]["object"]
        position.setdefault((event["type"], obj["id"]), index)
        if event["type"] == "invoice.updated":
            assert ranks[obj["id"]][-1] >= 1  # only finalized invoices are edited
            continue
        ranks[obj["id"]].append(RANK[event["type"]])
    for object_id, seen in ranks.items():
        assert seen[0] == 0, object_id  # every object is first announced by its creation
        assert seen == sorted(seen), (object_id, seen)

    def before(first: tuple[str, str], then: tuple[str, str]) -> None:
        assert position[first] < position[then], (first, then)

    for event in h.events:
        obj, kind = event["data"]["object"], event["type"]
        here = (kind, obj["id"])
        if kind in {"charge.succeeded", "charge.failed"}:
            if obj["invoice"]:
                before(("invoice.finalized", obj["invoice"]), here)
            if obj["customer"]:
                before(("customer.created", obj["customer"]), here)
        elif kind == "refund.created":
            before(("charge.succeeded", obj["charge"]), here)
        elif kind == "charge.dispute.created":
            before(("charge.succeeded", obj["charge"]), here)
        elif kind == "credit_note.created":
            before(("invoice.finalized", obj["invoice"]), here)
            if obj["refund"]:
                before(("refund.created", obj["refund"]), here)
        elif kind == "invoice.created":
            before(("customer.created", obj["customer"]), here)
    for payout in by_type(h, "payout"):
        for txn_id in h.payout_transactions[payout["id"]]:
            assert h.balance_transactions[txn_id]["created"] <= payout["created"]


def test_causal_order_per_object() -> None:
    check_order(history())
    check_order(busy())


@few
@given(seed=seeds, settlement=settlements)
def test_causal_order_for_any_seed(seed: int, settlement: tuple[str, ...]) -> None:
    check_order(
        generate(Scenario(seed=seed, customers=5, months=3, settlement_currencies=settlement))
    )


def test_ids_are_unique_and_prefixed() -> None:
    h = busy()
    event_ids = [e["id"] for e in h.events]
    assert len(set(event_ids)) == len(event_ids)
    kinds: dict[str, set[str]] = defaultdict(set)
    for state in states(h):
        kinds[state["id"]].add(state["object"])
        for line in state.get("lines", {}).get("data", []) if state["object"] != "event" else []:
            kinds[line["id"]].add(f"{line['object']}:{state['id']}")
    assert all(len(objects) == 1 for objects in kinds.values())
    assert not set(h.objects) & set(h.balance_transactions)
    prefixes = {
        "customer": "cus_",
        "invoice": "in_",
        "charge": "ch_",
        "refund": "re_",
        "dispute": "dp_",
        "credit_note": "cn_",
        "payout": "po_",
        "price": "price_",
        "product": "prod_",
        "tax_rate": "txr_",
        "balance_transaction": "txn_",
    }
    for object_id, objects in kinds.items():
        kind = next(iter(objects)).split(":")[0]
        if kind in prefixes:
            assert object_id.startswith(prefixes[kind]), object_id
        elif kind == "line_item":
            assert object_id.startswith("il_")


def test_references_exist() -> None:
    h = busy()
    objects, txns = h.objects, h.balance_transactions

    def exists(object_id: str | None, kind: str, nullable: bool = False) -> None:
        if object_id is None:
            assert nullable
            return
        assert objects[object_id]["object"] == kind, object_id

    guests = 0
    for state in states(h):
        kind = state["object"]
        if kind == "charge":
            exists(state["invoice"], "invoice", nullable=True)
            exists(state["customer"], "customer", nullable=True)
            guests += state["customer"] is None
            if state["status"] == "succeeded":
                assert state["balance_transaction"] in txns
            else:
                assert state["balance_transaction"] is None
        elif kind == "invoice":
            exists(state["customer"], "customer")
            exists(state["charge"], "charge", nullable=True)
            for line in state["lines"]["data"]:
                exists(line["price"]["id"], "price")
                for entry in line["tax_amounts"]:
                    exists(entry["tax_rate"], "tax_rate")
        elif kind == "refund":
            exists(state["charge"], "charge")
            assert state["balance_transaction"] in txns and state["status"] == "succeeded"
        elif kind == "dispute":
            exists(state["charge"], "charge")
        elif kind == "credit_note":
            exists(state["invoice"], "invoice")
            exists(state["customer"], "customer")
            exists(state["refund"], "refund", nullable=True)
        elif kind == "payout":
            assert state["balance_transaction"] in txns
        elif kind == "balance_transaction":
            assert state["source"] in objects, state["source"]
        elif kind == "price":
            exists(state["product"], "product")
    assert guests


def test_every_flow_appears() -> None:
    h = busy()
    kinds = Counter(e["type"] for e in h.events)
    expected = set(RANK) | {"invoice.updated"}
    assert expected <= set(kinds), expected - set(kinds)
    customers = by_type(h, "customer")
    assert any(c["name"] is None for c in customers)
    assert any(c["shipping"] and c["phone"] for c in customers)
    charges = by_type(h, "charge")
    bare = [c for c in charges if c["invoice"] is None]
    assert any(c["customer"] is None for c in bare) and any(c["customer"] for c in bare)
    assert all(c["description"] for c in bare)
    failed = [i for i in by_type(h, "invoice") if i["attempt_count"] > 1 and i["status"] == "paid"]
    assert failed  # some invoices recover on a retry
    # The simulation runs every invoice to its end, so "open" shows only in the events.
    assert {"paid", "void", "uncollectible"} <= {i["status"] for i in by_type(h, "invoice")}
    assert any(
        e["type"] == "invoice.payment_failed" and e["data"]["object"]["status"] == "open"
        for e in h.events
    )


def test_customer_updates_carry_previous_attributes() -> None:
    updates = [e for e in busy().events if e["type"] == "customer.updated"]
    assert updates
    for event in updates:
        previous = event["data"]["previous_attributes"]
        assert previous and set(previous) <= set(event["data"]["object"])


# --- scenario and scale ---------------------------------------------------------------------


@pytest.mark.parametrize(
    "bad",
    [
        {"currencies": ("xxx",)},
        {"currencies": ("USD",)},
        {"settlement_currencies": ()},
        {"customers": 0},
        {"refund_rate": 1.5},
        {"long_invoice_rate": -0.1},
        {"long_invoice_lines": ()},
        {"long_invoice_lines": (25, EMBEDDED_LINES)},
        {"long_invoice_lines": (251,)},
    ],
)
def test_scenario_rejects_nonsense(bad: dict[str, Any]) -> None:
    with pytest.raises(ValueError):
        Scenario(**bad)


def test_scale_smoke() -> None:
    count = sum(1 for _ in iter_events(Scenario(customers=300, months=2)))
    # about five events per customer and month for billing, plus extras and payouts
    assert 300 * 2 * 5 < count < 300 * 2 * 20
