"""The accounting ledger alone, no Kafka: records/s of a generated history, and of one payout
listing many balance transactions (a payout is booked once its list is complete, so the cost
per transaction must not grow with the list).

Tables are in-process; ``--json`` stores rows as JSON text decoded on every read, closer to
what RocksDB costs the worker.

    .venv/bin/python -m benchmarks.ledger_bench [--customers 400] [--payout-sizes 100,1000,5000]
"""

from __future__ import annotations

import argparse
import json
import time
from collections import defaultdict
from collections.abc import Iterator, MutableMapping
from typing import Any

from benchmarks.processor_bench import feed
from ledgerstream.accounting.ledger import Ledger
from tests.unit.test_ledger import CFG, SCENARIOS, history, records


class JsonTable(MutableMapping[str, Any]):
    """Rows kept as JSON text: every read decodes, every write encodes."""

    reads = 0

    def __init__(self) -> None:
        self.rows: dict[str, str] = {}

    def __getitem__(self, key: str) -> Any:
        JsonTable.reads += 1
        return json.loads(self.rows[key])

    def __setitem__(self, key: str, value: Any) -> None:
        self.rows[key] = json.dumps(value)

    def __delitem__(self, key: str) -> None:
        del self.rows[key]

    def __iter__(self) -> Iterator[str]:
        return iter(self.rows)

    def __len__(self) -> int:
        return len(self.rows)


def new_ledger(as_json: bool) -> Ledger:
    tables: dict[str, MutableMapping[str, Any]] = defaultdict(JsonTable if as_json else dict)
    return Ledger(CFG, lambda name: tables[name])


def history_rate(customers: int, as_json: bool) -> None:
    data = feed(customers)
    ledger = new_ledger(as_json)
    JsonTable.reads = 0
    t0 = time.perf_counter()
    commands = sum(len(ledger.apply(topic, rec).commands) for topic, rec in data)
    elapsed = time.perf_counter() - t0
    reads = f", {JsonTable.reads} table reads" if as_json else ""
    print(
        f"history of {customers} customers: {len(data)} records in {elapsed:.2f} s = "
        f"{len(data) / elapsed:.0f} records/s, {commands} commands{reads}"
    )


def payout_rate(size: int, as_json: bool) -> None:
    feed_ = records(history(SCENARIOS[0]))
    txn = next(r for t, r in feed_ if t == "stripe.payout_transactions" and r["type"] == "charge")
    payout = next(
        r
        for t, r in feed_
        if t == "stripe.payout" and r["id"] == txn["payout"] and r["status"] == "paid"
    )
    ledger = new_ledger(as_json)
    ledger.apply("stripe.payout", payout)
    t0 = time.perf_counter()
    for i in range(size):
        ledger.apply(
            "stripe.payout_transactions", dict(txn, id=f"txn_{i:06d}", index=i, count=size)
        )
    elapsed = time.perf_counter() - t0
    print(f"one payout of {size} transactions: {elapsed:.2f} s = {size / elapsed:.0f} records/s")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--customers", type=int, default=400)
    parser.add_argument("--payout-sizes", default="100,1000,5000")
    parser.add_argument("--json", action="store_true", help="rows as JSON text, decoded per read")
    args = parser.parse_args()
    history_rate(args.customers, args.json)
    for size in [int(s) for s in args.payout_sizes.split(",") if s]:
        payout_rate(size, args.json)


if __name__ == "__main__":
    main()
