"""When Stripe answered: the time a backfilled object is stamped with."""

from __future__ import annotations

import time

from ledgerstream.producers.stripe_api import answered_at


def test_stripe_s_date_header_is_the_time_of_the_answer() -> None:
    assert answered_at({"Date": "Wed, 02 Dec 2026 19:10:00 GMT"}) == 1796238600
    assert answered_at({"date": "Wed, 02 Dec 2026 19:10:00 GMT"}) == 1796238600


def test_without_a_readable_date_this_machine_s_clock_is_used() -> None:
    for headers in (None, {}, {"Date": "not a date"}):
        before = int(time.time())
        assert before <= answered_at(headers) <= int(time.time())
