"""When Stripe answered: the time a backfilled object is stamped with."""

from __future__ import annotations

import time
from typing import Any

from ledgerstream.producers.stripe_api import StripeAPI, answered_at


def test_stripe_s_date_header_is_the_time_of_the_answer() -> None:
    assert answered_at({"Date": "Wed, 02 Dec 2026 19:10:00 GMT"}) == 1796238600
    assert answered_at({"date": "Wed, 02 Dec 2026 19:10:00 GMT"}) == 1796238600
    assert answered_at({"Date": "Wed, 02 Dec 2026 19:10:00 -0000"}) == 1796238600


def test_without_a_readable_date_this_machine_s_clock_is_used() -> None:
    for headers in (None, {}, {"Date": "not a date"}):
        before = int(time.time())
        assert before <= answered_at(headers) <= int(time.time())


def test_a_read_is_stamped_with_when_the_request_was_sent() -> None:
    """Stripe read the data between the request and its answer: the stamp is the answer's
    Date less the time the answer took, so a change made meanwhile keeps its later event."""

    class Answer:
        data = {"object": "list", "data": []}
        headers = {"Date": "Wed, 02 Dec 2026 19:10:00 GMT"}

    class Client:
        def raw_request(self, method: str, path: str, **params: Any) -> Answer:
            time.sleep(1.2)
            return Answer()

    api = StripeAPI(client=Client())  # type: ignore[arg-type]
    page, stamp = api.read("/v1/invoices")
    assert page == Answer.data
    assert stamp == 1796238600 - 2  # 1.2 s, rounded up to whole seconds
