"""Processor throughput per worker against a pass-through faust agent, and worker memory as the
key count grows (prints figures; not a test).

Both workers read the same typed records (a generated history, produced once per run onto
their own topics) from the local broker; events/s = records ÷ time from start until the
consumer group committed the end of every input topic (start-up and recovery included, the
same for both). Memory: resident size of one worker after it processed histories with growing
numbers of customers (keys in its RocksDB tables).

    .venv/bin/python -m benchmarks.processor_bench [--customers 400] [--memory 2000,8000]
"""

from __future__ import annotations

import argparse
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path

from ledgerstream import settings, stack
from ledgerstream.generator import Scenario, generate
from ledgerstream.pipeline import Pipeline
from tests.integration.helpers import wait_caught_up
from tests.integration.test_processors import INPUT_TOPICS, produce
from tests.unit.test_ledger import records


def feed(customers: int) -> list:
    return records(
        generate(
            Scenario(seed=21, customers=customers, months=3, settlement_currencies=("usd", "jpy"))
        )
    )


def run_worker(command: list[str], data: list, label: str) -> tuple[float, int, Pipeline]:
    pipeline = Pipeline(
        Path(tempfile.mkdtemp(prefix=f"{label}-")),
        extra_env={"LEDGER_NETSUITE_BANK_ACCOUNT_IDS": '{"USD": "102", "JPY": "107"}'},
    )
    os.environ["LEDGER_TOPIC_PREFIX"] = pipeline.prefix
    settings.kafka.cache_clear()
    pipeline.cli("topics")
    produce(data)
    t0 = time.perf_counter()
    log = open(pipeline.run_dir / f"{label}.log", "ab")  # noqa: SIM115
    proc = subprocess.Popen(
        command, env=pipeline.env(), stdout=log, stderr=subprocess.STDOUT, start_new_session=True
    )
    pipeline.procs[label] = proc
    wait_caught_up(
        f"{pipeline.name}-processor",
        [pipeline.prefix + t for t in INPUT_TOPICS],
        timeout=1800,
        check=pipeline.check_alive,
    )
    elapsed = time.perf_counter() - t0
    rss = int(Path(f"/proc/{proc.pid}/status").read_text().split("VmRSS:")[1].split()[0])
    return elapsed, rss, pipeline


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--customers", type=int, default=400)
    parser.add_argument("--memory", default="", help="comma-separated customer counts")
    args = parser.parse_args()
    started = stack.up(echo=lambda line: None)
    try:
        data = feed(args.customers)
        worker = [
            sys.executable,
            "-m",
            "ledgerstream.cli",
            "--log-level",
            "warning",
            "processor",
            "worker",
        ]
        passthrough = [sys.executable, "-m", "benchmarks.passthrough_app"]
        results = {}
        for label, command in (("passthrough", passthrough), ("processor", worker)):
            elapsed, rss, pipeline = run_worker(command, data, label)
            pipeline.stop()
            results[label] = len(data) / elapsed
            print(
                f"{label:12} {len(data)} records in {elapsed:.1f} s = "
                f"{results[label]:.0f} records/s, RSS {rss / 1024:.0f} MiB"
            )
        print(f"processor / pass-through = {results['processor'] / results['passthrough']:.2f}")
        for count in [int(c) for c in args.memory.split(",") if c]:
            data = feed(count)
            elapsed, rss, pipeline = run_worker(worker, data, f"memory-{count}")
            pipeline.stop()
            print(
                f"memory: {count} customers, {len(data)} records ({len(data) / elapsed:.0f}/s)"
                f": worker RSS {rss / 1024:.0f} MiB"
            )
    finally:
        if started:
            stack.down(only=started, echo=lambda line: None)


if __name__ == "__main__":
    main()
