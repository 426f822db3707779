"""Throughput and peak memory of the Stripe history generator.

    .venv/bin/python scripts/generator_bench.py [--customers N] [--months M] [--seed S]

Prints events/second of ``iter_events`` (timed without tracing, which would slow it down), then
the peak traced memory of streaming the same history with ``iter_events`` and of building it
whole with ``generate``: the first must stay small however long the history is.
"""

from __future__ import annotations

import argparse
import time
import tracemalloc
from collections.abc import Callable

from ledgerstream.testing.generator import Scenario, generate, iter_events


def _peak_mib(run: Callable[[], object]) -> float:
    tracemalloc.start()
    try:
        run()
        _, peak = tracemalloc.get_traced_memory()
    finally:
        tracemalloc.stop()
    return peak / 2**20


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--customers", type=int, default=2_400, help="default: 2400 (~100k events)")
    parser.add_argument("--months", type=int, default=6, help="default: 6")
    parser.add_argument("--seed", type=int, default=1, help="default: 1")
    parser.add_argument("--skip-generate", action="store_true", help="do not measure generate()")
    args = parser.parse_args()
    scenario = Scenario(seed=args.seed, customers=args.customers, months=args.months)

    began = time.perf_counter()
    count = sum(1 for _ in iter_events(scenario))
    elapsed = time.perf_counter() - began
    print(f"scenario: {args.customers} customers × {args.months} months, seed {args.seed}")
    print(f"events: {count:,} in {elapsed:.2f} s = {count / elapsed:,.0f} events/s (iter_events)")

    streamed = _peak_mib(lambda: sum(1 for _ in iter_events(scenario)))
    print(f"peak traced memory, iter_events (streamed): {streamed:,.1f} MiB")
    if not args.skip_generate:
        whole = _peak_mib(lambda: generate(scenario))
        print(f"peak traced memory, generate (whole history): {whole:,.1f} MiB")


if __name__ == "__main__":
    main()
