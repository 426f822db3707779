"""Backfill speed against the stateful Stripe double with Stripe's rate limit (prints figures).

The double serves a generated history and answers 429 beyond ``--limit`` requests/s, as Stripe
does (25/s in test mode by default); the client is configured for the same rate. Reports the
request rate achieved as a share of the allowed rate, objects per second and pages of 100.

    .venv/bin/python -m benchmarks.backfill_bench [--limit 25] [--customers 150]
"""

from __future__ import annotations

import argparse
import os
import secrets
import time

from ledgerstream import settings, stack, topic_admin
from ledgerstream.producers.backfill import backfill
from ledgerstream.producers.publisher import EventPublisher
from ledgerstream.producers.stripe_api import StripeAPI
from ledgerstream.testing.generator import Scenario, generate
from ledgerstream.testing.pipeline import AppThread
from ledgerstream.testing.stripe_double import StripeDouble


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--limit", type=float, default=25.0, help="allowed requests/s")
    parser.add_argument("--customers", type=int, default=150)
    parser.add_argument("--months", type=int, default=3)
    args = parser.parse_args()
    history = generate(Scenario(seed=5, customers=args.customers, months=args.months))
    double = StripeDouble(history, rate_limit=args.limit)
    server = AppThread(double.app())
    started = stack.up(echo=lambda line: None)
    os.environ.update(
        {
            "LEDGER_STRIPE_API_BASE": server.url,
            "LEDGER_STRIPE_MAX_REQUESTS_PER_S": str(args.limit),
            "LEDGER_TOPIC_PREFIX": f"bench{secrets.token_hex(3)}.",
        }
    )
    settings.stripe.cache_clear()
    settings.kafka.cache_clear()
    try:
        topic_admin.ensure_all()
        api, publisher = StripeAPI(), EventPublisher()
        end = history.events[-1]["created"] + 1
        t0 = time.perf_counter()
        counts = backfill(
            api,
            publisher,
            history.events[0]["created"] - 86400,
            end,
            window_s=30 * 86400,
            progress=False,
        )
        elapsed = time.perf_counter() - t0
        publisher.close()
        objects = sum(v for k, v in counts.items())
        rate = api.requests / elapsed
        print(
            f"history: {len(history.objects)} objects, "
            f"{sum(len(v) for v in history.payout_transactions.values())} payout transactions"
        )
        print(
            f"backfill: {objects} records in {elapsed:.1f} s ({objects / elapsed:.0f}/s), "
            f"{api.requests} requests ({rate:.2f}/s of {args.limit:.0f}/s allowed = "
            f"{100 * rate / args.limit:.1f} %), 429s answered: {double.stats.get('429', 0)}"
        )
        print("by type: " + " ".join(f"{k}={v}" for k, v in sorted(counts.items())))
    finally:
        server.close()
        if started:
            stack.down(only=started, echo=lambda line: None)


if __name__ == "__main__":
    main()
