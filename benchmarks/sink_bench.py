"""NetSuite sink throughput against the emulator at a fixed latency and concurrency limit
(prints figures; not a test).

Writes per NetSuite record: the history's commands are all on the topic before the sink starts
(a backlog, as after a replay or a backfill), so the sink writes each record's newest version
once (conflation) where nothing between its versions forbids it; 1.0 is one write per record.

The emulator answers every request after ``--latency-ms`` (200 ms) and refuses with 429 any
request beyond ``--limit`` (10) concurrent ones, so the ceiling is limit ÷ latency (50 writes/s).
A generated history's commands (customers, invoices, payments, credit notes, refunds, deposits,
with their dependencies) are put on the commands topic first; then the sink (the real CLI
process, concurrency = the limit) writes them. Writes/s is measured by the emulator from its
first to its last accepted write; requests per command counts every request the emulator saw,
429s and retries included (1.0 means no request was wasted).

    .venv/bin/python -m benchmarks.sink_bench [--customers 40] [--latency-ms 200] [--limit 10]
"""

from __future__ import annotations

import argparse
import os
import tempfile
import time
from pathlib import Path

from ledgerstream import settings, stack, topics
from ledgerstream.accounting.book import book_history
from ledgerstream.commands import Command
from ledgerstream.testing.generator import Scenario, generate
from ledgerstream.testing.pipeline import Pipeline
from tests.integration.helpers import ACCOUNTING_ENV, wait_caught_up
from tests.integration.test_sink import publish
from tests.unit.test_ledger import CFG, expanded_payout_txns, routed


def commands(customers: int) -> list[Command]:
    history = generate(
        Scenario(
            seed=31,
            customers=customers,
            months=3,
            settlement_currencies=("usd", "jpy"),
            # the hard cases of real accounts, as their share in a merchant's history
            long_invoice_rate=0.02,
            individual_rate=0.3,
            out_of_band_rate=0.05,
            uncaptured_rate=0.1,
            refund_failure_rate=0.02,
            payout_failure_rate=0.02,
        )
    )
    stream: list[Command] = []
    book_history(
        [routed(history, e) for e in history.events],
        expanded_payout_txns(history),
        CFG,
        on_command=stream.append,
    )
    return stream


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--customers", type=int, default=40)
    parser.add_argument("--latency-ms", type=float, default=200.0)
    parser.add_argument("--latency-sigma", type=float, default=0.0)
    parser.add_argument("--limit", type=int, default=10)
    parser.add_argument(
        "--sink-concurrency", type=int, help="default: the limit; more shows the adaptation"
    )
    parser.add_argument("--auth", choices=["tba", "m2m"], default="tba")
    args = parser.parse_args()
    started = stack.up(echo=lambda line: None)
    pipeline = Pipeline(Path(tempfile.mkdtemp(prefix="sink-bench-")), extra_env=ACCOUNTING_ENV)
    try:
        os.environ["LEDGER_TOPIC_PREFIX"] = pipeline.prefix
        settings.kafka.cache_clear()
        pipeline.cli("topics")
        stream = commands(args.customers)
        publish(stream)
        pipeline.start(
            "emulator",
            "emulator",
            "netsuite",
            env={
                "LEDGER_EMULATOR_LATENCY_MS": str(args.latency_ms),
                "LEDGER_EMULATOR_LATENCY_SIGMA": str(args.latency_sigma),
                "LEDGER_EMULATOR_CONCURRENCY_LIMIT": str(args.limit),
            },
        )
        pipeline.wait_http(f"{pipeline.emulator_url}/_emulator/records", "emulator")
        t0 = time.time()
        pipeline.start(
            "sink",
            "sink",
            "netsuite",
            env={
                "LEDGER_SINK_REPORT_INTERVAL_S": "5",
                "LEDGER_NETSUITE_CONCURRENCY": str(args.sink_concurrency or args.limit),
                "LEDGER_NETSUITE_AUTH": args.auth,
            },
        )
        wait_caught_up(
            f"{pipeline.name}-netsuite-sink",
            [topics.name(topics.NETSUITE_COMMANDS)],
            timeout=3600,
            check=pipeline.check_alive,
        )
        stats = pipeline.emulator_stats()
        records = len(pipeline.records())
        requests = stats["requests"]
        writes = sum(n for k, n in requests.items() if k.startswith("PUT 2"))
        all_requests = sum(n for k, n in requests.items() if k.split()[0] in ("PUT", "POST"))
        elapsed = stats["last_write"] - stats["first_write"]
        rate = (writes - 1) / elapsed
        ceiling = args.limit / (args.latency_ms / 1000)
        print(
            f"commands {len(stream)} ({records} records); latency {args.latency_ms:.0f} ms, "
            f"limit {args.limit}, sink concurrency {args.sink_concurrency or args.limit}: "
            f"ceiling {ceiling:.1f} writes/s"
        )
        print(
            f"writes {writes} in {elapsed:.1f} s (first to last write) = {rate:.1f} writes/s "
            f"= {100 * rate / ceiling:.1f} % of the ceiling"
        )
        print(
            f"{writes / records:.3f} writes per NetSuite record ({writes} writes, {records} "
            f"records, {len(stream)} commands: {len(stream) / records:.2f} per record)"
        )
        print(
            f"requests {all_requests} ({requests}) = {all_requests / len(stream):.3f} per command;"
            f" emulator max in flight {stats['max_in_flight']}; sink start to last write "
            f"{stats['last_write'] - t0:.1f} s"
        )
        print(f"sink log: {pipeline.run_dir / 'sink.log'}")
    finally:
        pipeline.stop()
        if started:
            stack.down(only=started, echo=lambda line: None)


if __name__ == "__main__":
    main()
