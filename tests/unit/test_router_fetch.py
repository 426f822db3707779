"""The router's fetches of what an event lacks: retried while Stripe fails, None once gone."""

from __future__ import annotations

from typing import Any

import pytest
import stripe
from tenacity import wait_none

from ledgerstream.producers.router import Enricher


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
