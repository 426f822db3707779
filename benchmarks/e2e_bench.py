"""End-to-end latency: webhook received → NetSuite write acknowledged, at a steady event rate
(prints figures; not a test).

A generated history's events go to the webhook as signed requests at a steady ``--rate``
(50 events/s), in the order Stripe created them, paced on an absolute schedule (a slow answer
does not shift the next send). The whole pipeline runs as CLI processes on the local stack; the
Stripe double serves the history; the NetSuite emulator answers every request after
``--latency-ms`` (200 ms). One sample per NetSuite record: from the moment the webhook
answered the last event that shaped the record's final version (the command's
``source_event_ids``) to the moment the sink reported that version written (the ``written``
entry of the status topic, produced right after NetSuite's answer). Prints p50, p90, p99 and the
maximum, overall and per record type, and how far the pipeline lagged behind the sender.

    .venv/bin/python -m benchmarks.e2e_bench [--rate 50] [--latency-ms 200] [--customers 60]
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import tempfile
import time
from collections import defaultdict
from datetime import datetime
from pathlib import Path

import requests

from ledgerstream import settings, stack, status, topic_admin
from ledgerstream.kafka_util import read_latest
from ledgerstream.stripe_records import route
from ledgerstream.testing.fixtures import signed
from ledgerstream.testing.generator import Scenario, generate
from ledgerstream.testing.pipeline import AppThread, Pipeline
from ledgerstream.testing.reference import reference_booking
from ledgerstream.testing.stripe_double import StripeDouble
from tests.integration.helpers import ACCOUNTING_ENV


def quantile(values: list[float], q: float) -> float:
    return statistics.quantiles(values, n=100, method="inclusive")[round(q * 100) - 1]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--rate", type=float, default=50.0, help="events per second sent")
    parser.add_argument("--latency-ms", type=float, default=200.0)
    parser.add_argument("--limit", type=int, default=10, help="NetSuite's concurrency limit")
    parser.add_argument("--customers", type=int, default=60)
    parser.add_argument("--months", type=int, default=2)
    args = parser.parse_args()
    os.environ.setdefault("LEDGER_PROFILE", "local")
    os.environ.update(ACCOUNTING_ENV)
    history = generate(
        Scenario(
            seed=5,
            customers=args.customers,
            months=args.months,
            settlement_currencies=("usd", "jpy"),
        )
    )
    book = reference_booking(history, settings.AccountingSettings())
    events = [e for e in history.events if route(e["type"]) is not None]
    started = stack.up(echo=lambda line: None)
    double = StripeDouble(history)
    stripe = AppThread(double.app())
    pipeline = Pipeline(
        Path(tempfile.mkdtemp(prefix="e2e-bench-")),
        extra_env={
            **ACCOUNTING_ENV,
            "LEDGER_STRIPE_API_BASE": stripe.url,
            "LEDGER_STRIPE_MAX_REQUESTS_PER_S": "1000",
            "LEDGER_EMULATOR_LATENCY_MS": str(args.latency_ms),
            "LEDGER_EMULATOR_CONCURRENCY_LIMIT": str(args.limit),
            "LEDGER_NETSUITE_CONCURRENCY": str(args.limit),
        },
    )
    sent: dict[str, float] = {}
    try:
        pipeline.start_all()
        pipeline.wait_consumers_ready(120)  # before the clock starts
        behind = 0.0
        with requests.Session() as http:
            t0 = time.time()
            for i, event in enumerate(events):
                due = t0 + i / args.rate
                pause = due - time.time()
                if pause > 0:
                    time.sleep(pause)  # pacing: the next send is due then
                behind = max(behind, -pause)
                body, header = signed(event, pipeline.webhook_secret)
                resp = http.post(
                    pipeline.webhook_url,
                    data=body,
                    headers={"Stripe-Signature": header, "Content-Type": "application/json"},
                    timeout=30,
                )
                resp.raise_for_status()
                sent[event["id"]] = time.time()
        send_s = time.time() - t0
        want = set(book.commands)
        os.environ["LEDGER_TOPIC_PREFIX"] = pipeline.prefix
        settings.kafka.cache_clear()
        deadline = time.monotonic() + 600
        written: dict[str, float] = {}
        # until every record's final version is reported written; a full read of the status
        # topic each time, so not too often
        while not want <= set(written) and time.monotonic() < deadline:
            pipeline.check_alive()
            time.sleep(2)
            written = {}
            for raw, (_, value) in read_latest(status.topic()).items():
                parts = raw.decode().split(status.SEP)
                if len(parts) == 3 and parts[1] == "written" and value is not None:
                    at = json.loads(value)["at"]
                    written[parts[2]] = datetime.fromisoformat(at).timestamp()
        samples: dict[str, list[float]] = defaultdict(list)
        for key, cmd in book.commands.items():
            times = [sent[e] for e in cmd.source_event_ids if e in sent]
            if key in written and times:
                samples[cmd.record_type].append(written[key] - max(times))
        every = [s for values in samples.values() for s in values]
        print(
            f"{len(events)} events sent at {args.rate:.0f}/s in {send_s:.1f} s (at most "
            f"{behind * 1000:.0f} ms behind schedule); emulator {args.latency_ms:.0f} ms, "
            f"limit {args.limit}; {len(every)} of {len(want)} records with a sample"
        )
        print("latency webhook → NetSuite write acknowledged (s): p50 / p90 / p99 / max")
        for name, values in [("all", every), *sorted(samples.items())]:
            if len(values) >= 2:
                print(
                    f"  {name:16} n={len(values):5}  {quantile(values, 0.5):6.2f} "
                    f"{quantile(values, 0.9):6.2f} {quantile(values, 0.99):6.2f} "
                    f"{max(values):6.2f}"
                )
        print(f"logs: {pipeline.run_dir}")
    finally:
        pipeline.stop()
        stripe.close()
        topic_admin.delete_run(pipeline.prefix, pipeline.env()["LEDGER_APP_ID"])
        if started:
            stack.down(only=started, echo=lambda line: None)


if __name__ == "__main__":
    main()
