"""The Stripe API calls the producer makes, through the stripe SDK.

One client: pinned ``Stripe-Version``, a client-side request-rate limit (Stripe allows about 25
requests/s in test mode and 100 in live mode), and jittered exponential backoff on 429 (the SDK
retries connection errors, 409 and 5xx itself, but not 429).
"""

from __future__ import annotations

import email.utils
import math
import threading
import time
from collections.abc import Iterator, Mapping
from datetime import UTC
from typing import Any

import stripe
from tenacity import Retrying, retry_if_exception_type, stop_after_attempt, wait_random_exponential

from ledgerstream import metrics, settings

# list endpoints used by backfill, with what each needs expanded for the pipeline
LIST_ENDPOINTS: dict[str, tuple[str, ...]] = {
    "customers": (),
    "invoices": (),
    "charges": ("data.balance_transaction",),
    "refunds": ("data.charge",),
    "disputes": ("data.charge",),
    "credit_notes": (),
    "payouts": (),
}
PAGE = 100


class Throttle:
    """At most ``rate`` calls per second, spread evenly (thread-safe).

    Hand-written on purpose: this paces calls (each waits its slot, no bursts), which is what
    keeps Stripe's per-second limit. The rate-limit libraries looked at (pyrate-limiter,
    limits) are buckets and windows that answer "allowed now?" and allow a burst up to the
    bucket size; pacing with them would need a sleep loop around them of about this size.
    """

    def __init__(self, rate: float):
        self.interval = 1.0 / rate if rate > 0 else 0.0
        self.next = time.monotonic()
        self.lock = threading.Lock()

    def wait(self) -> None:
        if not self.interval:
            return
        with self.lock:
            now = time.monotonic()
            at = max(now, self.next)
            self.next = at + self.interval
        if at > now:
            time.sleep(at - now)


def answered_at(headers: Mapping[str, str] | None) -> int:
    """An HTTP ``Date`` header as Unix seconds; this machine's clock without a readable one."""
    value = (headers or {}).get("Date") or (headers or {}).get("date")
    if value:
        try:
            when = email.utils.parsedate_to_datetime(value)
        except (TypeError, ValueError):
            pass
        else:  # HTTP dates are GMT; "-0000" parses without a zone
            return int(when.replace(tzinfo=when.tzinfo or UTC).timestamp())
    return int(time.time())


class StripeAPI:
    def __init__(
        self, cfg: settings.StripeSettings | None = None, client: stripe.StripeClient | None = None
    ):
        cfg = cfg or settings.stripe()
        self.client = client or stripe.StripeClient(
            cfg.api_key(),
            base_addresses={"api": cfg.stripe_api_base},
            stripe_version=cfg.stripe_api_version,
            max_network_retries=3,
        )
        self.throttle = Throttle(cfg.stripe_max_requests_per_s)
        self.requests = 0

    def get(self, path: str, params: dict[str, Any] | None = None) -> dict[str, Any]:
        """``GET path`` as a plain dict, throttled, 429s retried with backoff."""
        return self.read(path, params)[0]

    def read(self, path: str, params: dict[str, Any] | None = None) -> tuple[dict[str, Any], int]:
        """``GET path`` and, in Stripe's time, when the request was sent: its ``Date`` header
        (this machine's clock if the header is missing or unreadable) less the time the answer
        took. Stripe read the data in between; an object that changed meanwhile keeps its
        live event, which is then later than the stamp."""
        for attempt in Retrying(
            retry=retry_if_exception_type(stripe.RateLimitError),
            wait=wait_random_exponential(multiplier=0.5, max=20),
            stop=stop_after_attempt(10),
            reraise=True,
        ):
            with attempt:
                self.throttle.wait()
                self.requests += 1
                sent = time.monotonic()
                try:
                    response = self.client.raw_request("get", path, **(params or {}))
                except Exception as exc:
                    metrics.STRIPE_CALLS.labels("read", metrics.stripe_outcome(exc)).inc()
                    raise
                metrics.STRIPE_CALLS.labels("read", "ok").inc()
                took = math.ceil(time.monotonic() - sent)
                return dict(response.data), answered_at(response.headers) - took
        raise AssertionError("unreachable")

    def paginate(self, path: str, params: dict[str, Any]) -> Iterator[dict[str, Any]]:
        """Every item of a list endpoint, following ``starting_after`` (newest first)."""
        for data, _ in self.pages(path, params):
            yield from data

    def pages(
        self, path: str, params: dict[str, Any]
    ) -> Iterator[tuple[list[dict[str, Any]], int]]:
        """The pages of a list endpoint (newest first), each with when Stripe answered."""
        params = {**params, "limit": PAGE}
        while True:
            page, answered = self.read(path, params)
            data = page.get("data") or []
            yield data, answered
            if not page.get("has_more") or not data:
                return
            params["starting_after"] = data[-1]["id"]

    def events_after(
        self, last_event_id: str | None, created_gte: int | None
    ) -> Iterator[list[dict[str, Any]]]:
        """Pages of events newer than ``last_event_id`` (or since ``created_gte``), oldest first.

        The Events API lists newest first; ``ending_before`` walks towards newer events, so each
        page is reversed and the cursor moves to the newest event of the page.
        """
        if last_event_id is None:
            # first run: everything since created_gte, collected newest-first then replayed
            params: dict[str, Any] = {}
            if created_gte is not None:
                params["created"] = {"gte": created_gte}
            backlog = list(self.paginate("/v1/events", params))
            backlog.reverse()
            for i in range(0, len(backlog), PAGE):
                yield backlog[i : i + PAGE]
            return
        cursor = last_event_id
        while True:
            page = self.get("/v1/events", {"limit": PAGE, "ending_before": cursor})
            data = page.get("data") or []
            if not data:
                return
            yield list(reversed(data))
            cursor = data[0]["id"]
            if not page.get("has_more"):
                return

    def payout_transactions(self, payout_id: str) -> list[dict[str, Any]]:
        """What ``GET /v1/balance_transactions?payout=`` lists, with each source expanded."""
        return list(
            self.paginate(
                "/v1/balance_transactions", {"payout": payout_id, "expand": ["data.source"]}
            )
        )

    def retrieve(self, kind: str, object_id: str, expand: tuple[str, ...] = ()) -> dict[str, Any]:
        params = {"expand": list(expand)} if expand else None
        return self.get(f"/v1/{kind}/{object_id}", params)
