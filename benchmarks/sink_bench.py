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

Phases, from the time of each write (the sink's ``written`` status, produced right after
NetSuite's answer): the ramp-up (sink start → first write, and the first 5 % of the writes),
the steady state (the middle 90 %: the fill of the ceiling is measured here) and the tail (the
last 5 %: chains of records that wait for each other, deposits last), each with its rate, so
that a short run hides neither.

The command stream is what the ledger computes for the history in order, every intermediate
version included (``--stream book``, the default: the hardest backlog, e.g. a replay of the
commands topic after re-syncs), or what the processor sends of it (``--stream processor``: its
``emitted`` table drops a command identical to the last one sent for the record).

    .venv/bin/python -m benchmarks.sink_bench [--customers 40] [--latency-ms 200] [--limit 10]
        [--latency-sigma 0.5] [--errors 429=0.05] [--stream book|processor]
"""

from __future__ import annotations

import argparse
import math
import os
import tempfile
import time
from pathlib import Path

from ledgerstream import settings, stack, status, topics
from ledgerstream.accounting.book import book_history
from ledgerstream.commands import Command
from ledgerstream.testing.generator import Scenario, generate
from ledgerstream.testing.pipeline import Pipeline
from tests.integration.helpers import ACCOUNTING_ENV, consume_all, wait_caught_up
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


def as_emitted(stream: list[Command]) -> list[Command]:
    """What the processor sends of ``stream``: its ``emitted`` table drops a command identical
    to the last one sent for the same record (processors/app.py)."""
    last: dict[str, str] = {}
    out = []
    for cmd in stream:
        if last.get(cmd.key) != cmd.command_id:
            last[cmd.key] = cmd.command_id
            out.append(cmd)
    return out


def write_times(status_topic: str) -> list[float]:
    """When each write was acknowledged: the timestamps of the sink's ``written`` statuses."""
    return sorted(
        msg.timestamp()[1] / 1000
        for msg in consume_all(status_topic, timeout=120)
        if f"{status.SEP}written{status.SEP}".encode() in (msg.key() or b"")
        and msg.value() is not None
    )


def phases(times: list[float], started: float, ceiling: float) -> list[str]:
    """Ramp-up (first 5 % of the writes), steady state (middle 90 %), tail (last 5 %)."""
    n = len(times)
    a, b = int(n * 0.05), int(n * 0.95)
    lines = [f"sink start -> first write {times[0] - started:.2f} s"]
    for name, lo, hi in (("ramp-up", 0, a), ("steady", a, b), ("tail", b, n - 1)):
        span = times[hi] - times[lo]
        rate = (hi - lo) / span if span > 0 else float("nan")
        lines.append(
            f"{name:8} writes {lo + 1}..{hi + 1}: {span:6.2f} s, {rate:5.1f} writes/s = "
            f"{100 * rate / ceiling:5.1f} % of the ceiling"
        )
    return lines


def run(args: argparse.Namespace, mode: str, book: list[Command]) -> dict[str, float]:
    """One sink run on a fresh set of topics and a fresh emulator; prints its figures."""
    emitted = as_emitted(book)
    stream = book if args.stream == "book" else emitted
    pipeline = Pipeline(Path(tempfile.mkdtemp(prefix="sink-bench-")), extra_env=ACCOUNTING_ENV)
    try:
        os.environ["LEDGER_TOPIC_PREFIX"] = pipeline.prefix
        settings.kafka.cache_clear()
        pipeline.cli("topics")
        publish(stream)
        pipeline.start(
            "emulator",
            "emulator",
            "netsuite",
            env={
                "LEDGER_EMULATOR_LATENCY_MS": str(args.latency_ms),
                "LEDGER_EMULATOR_LATENCY_SIGMA": str(args.latency_sigma),
                "LEDGER_EMULATOR_CONCURRENCY_LIMIT": str(args.limit),
                "LEDGER_EMULATOR_ERRORS": args.errors,
                "LEDGER_EMULATOR_SEED": str(args.seed),
                "LEDGER_EMULATOR_ASYNC_PROCESSORS": str(args.async_processors),
                "LEDGER_EMULATOR_ASYNC_ITEM_MS": str(args.async_item_ms or args.latency_ms),
            },
        )
        pipeline.wait_http(f"{pipeline.emulator_url}/_emulator/records", "emulator")
        sink_started = time.time()
        pipeline.start(
            "sink",
            "sink",
            "netsuite",
            env={
                "LEDGER_SINK_REPORT_INTERVAL_S": "5",
                "LEDGER_NETSUITE_CONCURRENCY": str(args.sink_concurrency or args.limit),
                "LEDGER_NETSUITE_AUTH": args.auth,
                "LEDGER_NETSUITE_WRITE_MODE": mode,
                "LEDGER_NETSUITE_BATCH_JOBS": str(args.async_processors),
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
        all_requests = sum(requests.values())
        times = write_times(status.topic())
        writes = len(times)
        elapsed = times[-1] - times[0]
        rate = (writes - 1) / elapsed
        # the mean of a log-normal latency is its median times exp(sigma^2 / 2)
        mean_latency = args.latency_ms / 1000 * math.exp(args.latency_sigma**2 / 2)
        ceiling = args.limit / mean_latency
        print(f"--- write mode {mode}")
        print(
            f"commands {len(stream)} ({records} records; --stream {args.stream}); the ledger "
            f"computes {len(book) / records:.2f} commands per record, the processor sends "
            f"{len(emitted) / records:.3f} (it drops exact repeats)"
        )
        print(
            f"latency {args.latency_ms:.0f} ms (sigma {args.latency_sigma}, mean "
            f"{1000 * mean_latency:.0f} ms), limit {args.limit}, sink concurrency "
            f"{args.sink_concurrency or args.limit}, errors {args.errors or 'none'}: ceiling "
            f"{ceiling:.1f} writes/s (limit / mean latency)"
        )
        if mode != "single":
            print(
                f"async processors {args.async_processors}, "
                f"{args.async_item_ms or args.latency_ms:.0f} ms per item: "
                f"{stats.get('async', {})}"
            )
        print(
            f"writes {writes} in {elapsed:.1f} s (first to last write) = {rate:.1f} records/s "
            f"= {100 * rate / ceiling:.1f} % of the single-write ceiling"
        )
        print(
            f"{writes / records:.3f} writes per NetSuite record ({writes} writes, {records} "
            f"records, {len(stream)} commands: {len(stream) / records:.2f} per record)"
        )
        print(
            f"requests {all_requests} ({dict(sorted(requests.items()))}) = "
            f"{all_requests / records:.3f} per record; emulator max in flight "
            f"{stats['max_in_flight']}; sink start to last write "
            f"{times[-1] - sink_started:.1f} s"
        )
        for line in phases(times, sink_started, ceiling):
            print(line)
        print(f"sink log: {pipeline.run_dir / 'sink.log'}")
        return {"rate": rate, "requests_per_record": all_requests / records}
    finally:
        pipeline.stop()


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
    parser.add_argument(
        "--errors", default="", help="injected NetSuite errors and their rates, e.g. 429=0.05"
    )
    parser.add_argument("--stream", choices=["book", "processor"], default="book")
    parser.add_argument("--seed", type=int, default=14, help="the emulator's latency and faults")
    parser.add_argument(
        "--modes",
        default="single",
        help="write modes to run one after the other on the same backlog, e.g. single,batch",
    )
    parser.add_argument("--async-processors", type=int, default=2)
    parser.add_argument(
        "--async-item-ms", type=float, help="time of one batch item [default: --latency-ms]"
    )
    args = parser.parse_args()
    started = stack.up(echo=lambda line: None)
    try:
        book = commands(args.customers)
        figures = {mode: run(args, mode, book) for mode in args.modes.split(",")}
        if "single" in figures and len(figures) > 1:
            base = figures["single"]
            for mode, got in figures.items():
                if mode != "single":
                    print(
                        f"{mode} / single: records/s x{got['rate'] / base['rate']:.2f}, "
                        f"requests per record {got['requests_per_record']:.3f} vs "
                        f"{base['requests_per_record']:.3f} "
                        f"(x{base['requests_per_record'] / got['requests_per_record']:.1f} fewer)"
                    )
    finally:
        if started:
            stack.down(only=started, echo=lambda line: None)


if __name__ == "__main__":
    main()
