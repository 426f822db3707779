"""The router's fetches of what an event lacks: retried while Stripe fails, None once gone."""

from __future__ import annotations

from typing import Any

import pytest
import stripe
from tenacity import wait_none

from ledgerstream import topics
from ledgerstream.producers.router import Enricher
from ledgerstream.stripe_records import BadEvent, to_record


class FlakyAPI:
    """Fails ``failures`` times with ``error``, then answers."""

    def __init__(self, failures: int, error: Exception):
        self.failures, self.error, self.calls = failures, error, 0

    def retrieve(self, kind: str, object_id: str) -> dict[str, Any]:
        self.calls += 1
        if self.calls <= self.failures:
            raise self.error
        return {"id": object_id, "object": kind.rstrip("s")}


@pytest.mark.parametrize(
    "error",
    [
        stripe.APIConnectionError("connection reset"),
        stripe.RateLimitError("too many requests", http_status=429),
        stripe.APIError("internal error", http_status=500),
    ],
    ids=["unreachable", "429", "5xx"],
)
def test_a_failing_fetch_is_retried_until_stripe_answers(error: Exception) -> None:
    api = FlakyAPI(failures=4, error=error)
    enricher = Enricher(api, wait=wait_none())  # type: ignore[arg-type]
    assert enricher._fetch("charges", "ch_1") == {"id": "ch_1", "object": "charge"}
    assert api.calls == 5


def test_an_object_stripe_no_longer_has_is_routed_without_it() -> None:
    gone = stripe.InvalidRequestError("No such charge: 'ch_1'", "id", http_status=404)
    api = FlakyAPI(failures=1, error=gone)
    assert Enricher(api, wait=wait_none())._fetch("charges", "ch_1") is None  # type: ignore[arg-type]
    assert api.calls == 1


def test_a_refused_request_is_not_retried() -> None:
    refused = stripe.InvalidRequestError("Invalid expand", "expand", http_status=400)
    api = FlakyAPI(failures=1, error=refused)
    with pytest.raises(stripe.InvalidRequestError):
        Enricher(api, wait=wait_none())._fetch("charges", "ch_1")  # type: ignore[arg-type]
    assert api.calls == 1


# ------------------------------------------------------------ invoices with many lines
def long_invoice(lines: int, status: str = "open", embedded: int = 10) -> dict[str, Any]:
    data = [{"id": f"il_{i}", "amount": 100, "currency": "usd"} for i in range(lines)]
    return {
        "id": "in_1",
        "object": "invoice",
        "currency": "usd",
        "status": status,
        "lines": {
            "object": "list",
            "data": data[:embedded],
            "has_more": lines > embedded,
            "total_count": lines,
            "url": "/v1/invoices/in_1/lines",
        },
    }


class LinesAPI:
    """Answers ``GET /v1/invoices/in_1/lines`` from a full invoice, as pages of 100."""

    def __init__(self, full: dict[str, Any], gone: bool = False):
        self.lines = full["lines"]["data"]
        self.gone = gone
        self.listed: list[str] = []

    def paginate(self, path: str, params: dict[str, Any]) -> Any:
        self.listed.append(path)
        if self.gone:
            raise stripe.InvalidRequestError("No such invoice: 'in_1'", "id", http_status=404)
        yield from self.lines


def event(obj: dict[str, Any]) -> dict[str, Any]:
    return {
        "id": "evt_1",
        "object": "event",
        "type": "invoice.finalized",
        "created": 1,
        "data": {"object": obj},
    }


@pytest.mark.parametrize("count", [25, 250])
def test_an_invoice_s_lines_beyond_the_embedded_ones_are_fetched(count: int) -> None:
    api = LinesAPI(long_invoice(count, embedded=count))
    enriched = Enricher(api, wait=wait_none()).enrich(event(long_invoice(count)))  # type: ignore[arg-type]
    lines = enriched["data"]["object"]["lines"]
    assert [line["id"] for line in lines["data"]] == [f"il_{i}" for i in range(count)]
    assert lines["has_more"] is False and lines["total_count"] == count
    assert api.listed == ["/v1/invoices/in_1/lines"]
    record = to_record(topics.STRIPE_INVOICE, enriched)
    assert len(record["lines"]) == count


def test_a_finalized_invoice_s_lines_are_fetched_once_a_draft_s_at_each_event() -> None:
    api = LinesAPI(long_invoice(25, embedded=25))
    enricher = Enricher(api, wait=wait_none())  # type: ignore[arg-type]
    for _ in range(3):  # finalized, paid, payment_succeeded: one fetch
        enricher.enrich(event(long_invoice(25, status="open")))
    assert len(api.listed) == 1
    enricher.lines.clear()
    for _ in range(2):  # a draft's lines can still change
        enricher.enrich(event(long_invoice(25, status="draft")))
    assert len(api.listed) == 3


def test_an_invoice_embedding_all_its_lines_is_not_fetched() -> None:
    api = LinesAPI(long_invoice(5, embedded=5))
    invoice = long_invoice(5)
    assert Enricher(api, wait=wait_none()).enrich(event(invoice))["data"]["object"] is invoice  # type: ignore[arg-type]
    assert api.listed == []


def test_an_invoice_whose_lines_cannot_be_fetched_is_refused_with_the_reason() -> None:
    api = LinesAPI(long_invoice(25, embedded=25), gone=True)
    enriched = Enricher(api, wait=wait_none()).enrich(event(long_invoice(25)))  # type: ignore[arg-type]
    with pytest.raises(BadEvent, match=r"only 10 of 25 lines embedded \(lines.has_more\)"):
        to_record(topics.STRIPE_INVOICE, enriched)
