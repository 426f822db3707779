"""The NetSuite sink's back-reference index: resident memory and lookup time by the number of
NetSuite records, the index on disk (``sinks/index_store.DiskIds``, as the sink runs it)
against a dict (as it ran before). Prints figures; not a test.

Each (kind, count) runs in a process of its own: it fills the index with ``count`` entries
shaped like the sink's ((record type, externalId) → internal id, each key and id a fresh
object as when decoded from a back-reference record), then reads 100,000 of them at random
and reports its resident size against the same process before the index was made, and the
disk the database takes (memtables flushed). No broker needed.

    .venv/bin/python -m benchmarks.sink_index_bench [--counts 0,100000,1000000]
"""

from __future__ import annotations

import argparse
import json
import random
import string
import subprocess
import sys
import tempfile
import time
from collections.abc import Iterator
from pathlib import Path

MIB = 1024 * 1024
TYPES = [
    ("customer", "cus_"),
    ("invoice", "in_"),
    ("customerPayment", "ch_"),
    ("deposit", "po_"),
    ("creditMemo", "cn_"),
]
LOOKUPS = 100_000


def rss_bytes() -> int:
    status = Path("/proc/self/status").read_text()
    return int(status.split("VmRSS:")[1].split()[0]) * 1024


def entries(count: int) -> Iterator[tuple[tuple[str, str], str]]:
    """``count`` index entries, the same ones on every call."""
    rnd = random.Random(1)
    alphabet = string.ascii_letters + string.digits
    for n in range(count):
        record_type, prefix = TYPES[n % len(TYPES)]
        yield (record_type, prefix + "".join(rnd.choices(alphabet, k=24))), str(1_000_000 + n)


def measure(kind: str, count: int, cache_mb: int) -> dict[str, float]:
    """In this process: resident bytes the index added, and microseconds per lookup."""
    from ledgerstream.sinks.index_store import DiskIds

    before = rss_bytes()
    with tempfile.TemporaryDirectory() as directory:
        ids = DiskIds(directory, cache_mb) if kind == "disk" else {}
        for key, internal_id in entries(count):
            ids[key] = internal_id
        filled = rss_bytes()
        # the same keys again (fresh objects, made after the figure above), every step-th one
        step = max(1, count // LOOKUPS)
        keys = [key for n, (key, _) in enumerate(entries(count)) if n % step == 0][:LOOKUPS]
        random.Random(2).shuffle(keys)
        t0 = time.perf_counter()
        found = sum(1 for key in keys if ids.get(key) is not None)
        elapsed = time.perf_counter() - t0
        assert found == len(keys)
        disk = 0
        if isinstance(ids, DiskIds):
            ids.db.flush()  # the memtables to disk, to count them there
            disk = sum(f.stat().st_size for f in ids.path.rglob("*") if f.is_file())
            ids.close()
    return {
        "added_mib": (filled - before) / MIB,
        "us_per_lookup": 1e6 * elapsed / max(1, len(keys)),
        "lookups": len(keys),
        "disk_mib": disk / MIB,
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--counts", default="0,100000,1000000")
    parser.add_argument("--cache-mb", type=int, default=16, help="LEDGER_SINK_INDEX_CACHE_MB")
    parser.add_argument("--child", nargs=2, metavar=("KIND", "COUNT"), help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.child:
        print(json.dumps(measure(args.child[0], int(args.child[1]), args.cache_mb)))
        return
    print(f"back-reference index: resident MiB added, µs per lookup (disk: {args.cache_mb} MiB)")
    print(
        f"{'records':>9} {'dict +RSS':>10} {'disk +RSS':>10} {'dict µs':>8} {'disk µs':>8} "
        f"{'on disk':>10}"
    )
    for count in [int(c) for c in args.counts.split(",") if c]:
        row = {}
        for kind in ("dict", "disk"):
            out = subprocess.run(
                [sys.executable, "-m", "benchmarks.sink_index_bench", "--child", kind, str(count)]
                + ["--cache-mb", str(args.cache_mb)],
                check=True,
                capture_output=True,
                text=True,
            ).stdout
            row[kind] = json.loads(out.strip().splitlines()[-1])
        print(
            f"{count:>9} {row['dict']['added_mib']:>6.1f} MiB {row['disk']['added_mib']:>6.1f} MiB "
            f"{row['dict']['us_per_lookup']:>8.2f} {row['disk']['us_per_lookup']:>8.2f} "
            f"{row['disk']['disk_mib']:>6.1f} MiB",
            flush=True,
        )


if __name__ == "__main__":
    main()
