"""Processor throughput per worker against a pass-through faust agent, and worker memory as the
key count grows (prints figures; not a test).

Both workers read the same typed records (a generated history, produced once per run onto
their own topics) from the local broker; events/s = records ÷ time from start until the
consumer group committed the end of every input topic (start-up and recovery included, the
same for both). Memory: resident size of one worker after it processed histories with growing
numbers of customers (keys in its RocksDB tables).

Memory by key count (``--keys``): feeding histories runs at a few hundred records/s, so a
million keys come another way. A small real history goes through a worker first; its table
changelogs give each table's share of the keys and real rows (keys and values exactly as the
worker wrote them). For each count N, the changelog topics of a fresh app id are pre-filled
with N distinct keys (copies of those rows under new ids, spread over every partition), the
real worker starts and recovers them into RocksDB, then processes a small live history; the
worker's ``/ledger/memory/`` page then gives its resident size and Python-heap figures.

Memory over one long history (``--timeline N``): one worker reads a history of N customers
(10,000 give about 265,000 records), and every ``--every`` seconds the benchmark prints the
records its group committed beside the worker's ``/ledger/memory/`` figures.

Scale-out (``--scale N``): N rounds of one processor worker, then two workers of one consumer
group, on the same records (input topics with ``--scale-partitions``, default 4, so that two
workers can share them evenly); records/s as above, the two-worker / one-worker ratio of each
round, and the CPU seconds of each worker, of the broker and of the whole machine during the
run (from /proc: on a small machine the broker and the workers share the cores).

    .venv/bin/python -m benchmarks.processor_bench [--customers 400] [--memory 2000,8000]
    .venv/bin/python -m benchmarks.processor_bench --rounds 0 --scale 2
    .venv/bin/python -m benchmarks.processor_bench --keys 0,100000,1000000 [--defaults]
    .venv/bin/python -m benchmarks.processor_bench --timeline 10000 [--every 30]
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

import requests
from confluent_kafka import Producer
from confluent_kafka.admin import AdminClient, NewTopic

from ledgerstream import settings, stack
from ledgerstream.testing.generator import Scenario, generate
from ledgerstream.testing.pipeline import Pipeline, free_port
from tests.integration.helpers import (
    ACCOUNTING_ENV,
    committed,
    consume_all,
    end_offsets,
    wait_caught_up,
)
from tests.integration.test_processors import INPUT_TOPICS, produce
from tests.unit.test_ledger import records


def feed(customers: int) -> list:
    return records(
        generate(
            Scenario(
                seed=21,
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
                blocked_rate=0.02,
                second_charge_rate=0.01,
                balance_credit_rate=0.5,
            )
        )
    )


WORKER = [sys.executable, "-m", "ledgerstream.cli", "--log-level", "warning", "processor", "worker"]
MIB = 1024 * 1024


def new_pipeline(label: str, extra_env: dict[str, str] | None = None) -> Pipeline:
    pipeline = Pipeline(
        Path(tempfile.mkdtemp(prefix=f"{label}-")),
        extra_env={**ACCOUNTING_ENV, **(extra_env or {})},
    )
    os.environ["LEDGER_TOPIC_PREFIX"] = pipeline.prefix
    settings.kafka.cache_clear()
    pipeline.cli("topics")
    return pipeline


def start(pipeline: Pipeline, command: list[str], label: str) -> subprocess.Popen[bytes]:
    log = open(pipeline.run_dir / f"{label}.log", "ab")  # noqa: SIM115
    proc = subprocess.Popen(
        command, env=pipeline.env(), stdout=log, stderr=subprocess.STDOUT, start_new_session=True
    )
    pipeline.procs[label] = proc
    return proc


def run_worker(command: list[str], data: list, label: str) -> tuple[float, int, float, Pipeline]:
    """Seconds until caught up, resident KiB and CPU seconds of the worker at that moment."""
    elapsed, procs, pipeline = run_workers([command], data, label)
    rss = int(Path(f"/proc/{procs[0].pid}/status").read_text().split("VmRSS:")[1].split()[0])
    return elapsed, rss, cpu_seconds(procs[0].pid), pipeline


def run_workers(
    commands: list[list[str]], data: list, label: str
) -> tuple[float, list[subprocess.Popen[bytes]], Pipeline]:
    """Start the workers (one consumer group) at once; seconds until the group committed
    the end of every input topic."""
    pipeline = new_pipeline(label)
    produce(data)
    t0 = time.perf_counter()
    procs = [
        start(pipeline, command, label if i == 0 else f"{label}-{i + 1}")
        for i, command in enumerate(commands)
    ]
    wait_caught_up(
        f"{pipeline.name}-processor",
        [pipeline.prefix + t for t in INPUT_TOPICS],
        timeout=1800,
        check=pipeline.check_alive,
    )
    return time.perf_counter() - t0, procs, pipeline


# ------------------------------------------------------------------------- scale-out
TICKS = os.sysconf("SC_CLK_TCK")


def cpu_seconds(pid: int) -> float:
    """User + system CPU seconds of a process so far (Linux /proc)."""
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / TICKS


def machine_seconds() -> tuple[float, float]:
    """CPU seconds of the whole machine so far: busy, and busy + idle (every core)."""
    ticks = [int(v) for v in Path("/proc/stat").read_text().split("\n")[0].split()[1:]]
    idle = ticks[3] + ticks[4]  # idle, iowait
    return (sum(ticks) - idle) / TICKS, sum(ticks) / TICKS


def broker_pid() -> int | None:
    """The local stack's broker (the first ``kafka.Kafka`` JVM), if it runs on this host."""
    for entry in Path("/proc").iterdir():
        if entry.name.isdigit():
            try:
                if b"kafka.Kafka" in (entry / "cmdline").read_bytes():
                    return int(entry.name)
            except OSError:
                continue
    return None


def scale_round(data: list, workers: int) -> dict[str, Any]:
    """One run of ``workers`` processor workers in one group: records/s and CPU seconds."""
    broker = broker_pid()
    commands = [WORKER + ["--web-port", str(free_port())] for _ in range(workers)]
    b0 = cpu_seconds(broker) if broker else 0.0
    m0 = machine_seconds()
    elapsed, procs, pipeline = run_workers(commands, data, f"scale{workers}")
    m1 = machine_seconds()
    result = {
        "records_per_s": len(data) / elapsed,
        "elapsed": elapsed,
        "workers_cpu": [cpu_seconds(p.pid) for p in procs],
        "broker_cpu": cpu_seconds(broker) - b0 if broker else None,
        "machine_busy": m1[0] - m0[0],
        "machine_total": m1[1] - m0[1],
    }
    finish(pipeline)
    return result


def scale_out(data: list, rounds: int, partitions: int) -> None:
    os.environ["LEDGER_TOPIC_PARTITIONS"] = str(partitions)  # both runs: same topics
    settings.kafka.cache_clear()
    print(
        f"scale-out: {len(data)} records, {partitions} partitions per topic, {os.cpu_count()} CPUs"
    )
    ratios = []
    try:
        for round_no in range(1, rounds + 1):
            results = {n: scale_round(data, n) for n in (1, 2)}
            for n, r in results.items():
                cpu = " + ".join(f"{c:.1f}" for c in r["workers_cpu"])
                broker = f"{r['broker_cpu']:.1f}" if r["broker_cpu"] is not None else "-"
                print(
                    f"round {round_no} {n} worker(s): {r['elapsed']:.1f} s = "
                    f"{r['records_per_s']:.0f} records/s; CPU s: worker(s) {cpu}, broker "
                    f"{broker}, machine busy {r['machine_busy']:.1f} of "
                    f"{r['machine_total']:.1f}",
                    flush=True,
                )
            ratios.append(results[2]["records_per_s"] / results[1]["records_per_s"])
            print(f"round {round_no} two workers / one = {ratios[-1]:.2f}", flush=True)
        print(
            f"two workers / one over {len(ratios)} rounds: median "
            f"{statistics.median(ratios):.2f} (min {min(ratios):.2f}, max {max(ratios):.2f})"
        )
    finally:
        del os.environ["LEDGER_TOPIC_PARTITIONS"]
        settings.kafka.cache_clear()


# ------------------------------------------------------------------------- memory by key count
def app_id(pipeline: Pipeline) -> str:
    return f"{pipeline.name}-processor"  # LEDGER_APP_ID of the pipeline


def admin() -> AdminClient:
    return AdminClient(settings.kafka().client_config())


def table_rows(customers: int) -> dict[str, list[tuple[bytes, bytes]]]:
    """Per table, its live rows (key, value bytes) after a worker processed a real history."""
    elapsed, _, _, pipeline = run_worker(WORKER, feed(customers), "shapes")
    pipeline.stop()
    prefix, suffix = app_id(pipeline) + "-", "-changelog"
    names = [t for t in admin().list_topics(timeout=10).topics if t.startswith(prefix)]
    rows: dict[str, list[tuple[bytes, bytes]]] = {}
    for topic in sorted(t for t in names if t.endswith(suffix)):
        last: dict[bytes, bytes | None] = {}
        for msg in consume_all(topic):
            last[msg.key()] = msg.value()
        live = [(k, v) for k, v in last.items() if v is not None]
        rows[topic[len(prefix) : -len(suffix)]] = live
    delete_topics(pipeline)
    shutil.rmtree(pipeline.run_dir, ignore_errors=True)
    return rows


def prefill(pipeline: Pipeline, rows: dict[str, list[tuple[bytes, bytes]]], keys: int) -> None:
    """``keys`` distinct keys on the changelog topics of the pipeline's tables, as faust
    writes them: each table gets its share (as in the real run) of copies of its real rows,
    the row's own id replaced by a new one wherever it occurs, round-robin over partitions."""
    partitions = settings.kafka().topic_partitions
    total = sum(len(r) for r in rows.values())
    shares = {t: round(keys * len(r) / total) for t, r in rows.items() if r}
    names = {t: f"{app_id(pipeline)}-{t}-changelog" for t in rows}
    client = admin()  # kept until the futures resolve: a destroyed handle fails them
    created = client.create_topics(
        [
            NewTopic(
                name,
                partitions,
                settings.kafka().topic_replication_factor,
                config={"cleanup.policy": "compact"},
            )
            for name in names.values()
        ]
    )
    for future in created.values():
        future.result()
    producer = Producer(
        {
            **settings.kafka().client_config(),
            "linger.ms": 50,
            "batch.size": 1_000_000,
            "queue.buffering.max.messages": 500_000,
        }
    )
    t0 = time.perf_counter()
    sent = 0
    for table, count in shares.items():
        samples = rows[table]
        for i in range(count):
            key, value = samples[i % len(samples)]
            own = key.decode().strip('"')  # the id as it appears in the key (raw or JSON)
            new = f"{own}x{i:08d}"
            while True:
                try:
                    producer.produce(
                        names[table],
                        key=key.replace(own.encode(), new.encode()),
                        value=value.replace(own.encode(), new.encode()),
                        partition=sent % partitions,
                    )
                    break
                except BufferError:
                    producer.poll(0.2)
            sent += 1
    if producer.flush(300) != 0:
        raise RuntimeError("changelog pre-fill not delivered")
    elapsed = time.perf_counter() - t0
    print(
        f"  pre-filled {sent} keys in {elapsed:.0f} s ({sent / max(elapsed, 1e-9):.0f}/s): {shares}"
    )


def memory_page(pipeline: Pipeline, objects: bool = False) -> dict[str, Any]:
    url = f"http://127.0.0.1:{pipeline.worker_port}/ledger/memory/"
    resp = requests.get(url, params={"objects": "1"} if objects else {}, timeout=60)
    resp.raise_for_status()
    return dict(resp.json())


def wait_recovered(pipeline: Pipeline, timeout: float = 1200) -> dict[str, Any]:
    deadline = time.monotonic() + timeout
    while True:
        pipeline.check_alive()
        try:
            page = memory_page(pipeline)
            if page["recovery_completed"] and not page["in_recovery"]:
                return page
        except requests.RequestException:
            pass
        if time.monotonic() > deadline:
            raise TimeoutError(f"worker did not recover; see {pipeline.run_dir}")
        time.sleep(1)


def keys_run(
    rows: dict[str, list[tuple[bytes, bytes]]], keys: int, live: list, env: dict[str, str]
) -> dict[str, Any]:
    pipeline = new_pipeline(f"keys-{keys}", env)
    try:
        prefill(pipeline, rows, keys)
        t0 = time.perf_counter()
        start(pipeline, WORKER, "processor")
        recovered = wait_recovered(pipeline)
        recovery_s = time.perf_counter() - t0
        produce(live)
        t1 = time.perf_counter()
        wait_caught_up(
            app_id(pipeline),
            [pipeline.prefix + t for t in INPUT_TOPICS],
            timeout=600,
            check=pipeline.check_alive,
        )
        live_s = time.perf_counter() - t1
        page = memory_page(pipeline, objects=True)
        pipeline.stop()
        shutil.rmtree(pipeline.run_dir, ignore_errors=True)  # kept when the run failed
        return {
            "keys": keys,
            "recovery_s": recovery_s,
            "recovered_rss": recovered["rss_bytes"],
            "live_s": live_s,
            **page,
        }
    finally:
        pipeline.stop()
        delete_topics(pipeline)


def finish(pipeline: Pipeline) -> None:
    """Stop the run's processes; delete its topics and its directory (logs, RocksDB)."""
    pipeline.stop()
    delete_topics(pipeline)
    shutil.rmtree(pipeline.run_dir, ignore_errors=True)


def delete_topics(pipeline: Pipeline) -> None:
    """The run's own topics (its prefix and app id start with its unique name)."""
    client = admin()
    mine = [t for t in client.list_topics(timeout=10).topics if t.startswith(pipeline.name)]
    for future in client.delete_topics(mine).values() if mine else ():
        try:
            future.result()
        except Exception as exc:  # noqa: BLE001 - a leftover topic is not worth failing for
            print(f"  (could not delete a topic: {exc})")


# the worker as it ran before its memory settings: faust's and glibc's defaults
DEFAULTS_ENV = {
    "LEDGER_PROCESSOR_ROCKSDB_BOUNDED": "false",
    "LEDGER_PROCESSOR_MALLOC_MMAP_THRESHOLD_KB": "0",
    "LEDGER_PROCESSOR_MAX_POLL_RECORDS": str(2**31 - 1),  # faust's default: no limit
    "LEDGER_PROCESSOR_RECOVERY_BUFFER_SIZE": "1000",
}


def memory_by_keys(counts: list[int], live_customers: int, defaults: bool) -> None:
    env = DEFAULTS_ENV if defaults else {}
    rows = table_rows(50)
    print("rows per table in a real run (50 customers):", {t: len(r) for t, r in rows.items()})
    sizes = [len(k) + len(v) for r in rows.values() for k, v in r]
    print(f"row size: mean {sum(sizes) / len(sizes):.0f} B, max {max(sizes)} B")
    live = feed(live_customers)
    mode = "faust's and glibc's defaults" if defaults else "memory settings"
    print(f"{mode}; live history after recovery: {len(live)} records")
    header = (
        f"{'keys':>9} {'recover':>8} {'RSS recovered':>14} {'RSS live':>9} {'RSS peak':>9} "
        f"{'malloc used':>12} {'py blocks':>10} {'gc objects':>11} {'rocksdb cache':>14}"
    )
    print(header)
    for count in counts:
        r = keys_run(rows, count, live, env)
        cache = r.get("cache_usage_bytes")
        print(
            f"{r['keys']:>9} {r['recovery_s']:>7.0f}s {r['recovered_rss'] / MIB:>10.0f} MiB "
            f"{r['rss_bytes'] / MIB:>5.0f} MiB {r['rss_peak_bytes'] / MIB:>5.0f} MiB "
            f"{r.get('malloc_in_use_bytes', 0) / MIB:>8.0f} MiB "
            f"{r['python_allocated_blocks']:>10} {r['gc_objects']:>11} "
            + (f"{cache / MIB:>10.0f} MiB" if cache is not None else f"{'-':>14}"),
            flush=True,
        )
        print("  " + json.dumps(r), flush=True)


# ------------------------------------------------------------------------- memory over a run
def memory_timeline(customers: int, every_s: float) -> None:
    """One worker through one long history: every ``every_s`` seconds, the records its group
    has committed and its memory page (resident size and peak, glibc heap, Python heap blocks,
    RocksDB cache and write buffers). Shows whether the resident size levels off as the keys
    grow, which a run through the whole pipeline (scale_bench) is too short to show."""
    data = feed(customers)
    pipeline = new_pipeline("timeline")
    try:
        produce(data)
        inputs = [pipeline.prefix + t for t in INPUT_TOPICS]
        total = sum(sum(end_offsets(topic).values()) for topic in inputs)
        print(f"timeline: {customers} customers, {total} input records, every {every_s:.0f} s")
        print(
            f"{'s':>6} {'records':>8} {'RSS':>8} {'peak':>8} {'malloc used':>12} "
            f"{'malloc free':>12} {'py blocks':>10} {'cache':>8} {'memtables':>10}",
            flush=True,
        )
        t0 = time.perf_counter()
        start(pipeline, WORKER, "processor")
        done = 0
        while done < total:
            time.sleep(every_s)
            pipeline.check_alive()
            done = sum(
                max(0, offset)
                for topic in inputs
                for offset in committed(app_id(pipeline), topic).values()
            )
            try:
                page = memory_page(pipeline)
            except requests.RequestException:  # not serving yet (start-up)
                continue
            print(
                f"{time.perf_counter() - t0:>6.0f} {done:>8} "
                f"{page['rss_bytes'] / MIB:>4.0f} MiB {page['rss_peak_bytes'] / MIB:>4.0f} MiB "
                f"{page.get('malloc_in_use_bytes', 0) / MIB:>8.0f} MiB "
                f"{page.get('malloc_free_kept_bytes', 0) / MIB:>8.0f} MiB "
                f"{page['python_allocated_blocks']:>10} "
                f"{page.get('cache_usage_bytes', 0) / MIB:>4.0f} MiB "
                f"{page.get('write_buffer_usage_bytes', 0) / MIB:>6.0f} MiB",
                flush=True,
            )
    finally:
        finish(pipeline)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--customers", type=int, default=400)
    parser.add_argument("--rounds", type=int, default=3, help="pass-through/processor pairs")
    parser.add_argument("--memory", default="", help="comma-separated customer counts")
    parser.add_argument(
        "--keys", default="", help="comma-separated key counts: only the memory-by-keys runs"
    )
    parser.add_argument(
        "--timeline",
        type=int,
        default=0,
        help="customers of one long history: only the memory-over-a-run sampling",
    )
    parser.add_argument("--every", type=float, default=30, help="--timeline's sampling, s")
    parser.add_argument("--live-customers", type=int, default=20, help="history after recovery")
    parser.add_argument(
        "--scale", type=int, default=0, help="rounds of one vs two processor workers in a group"
    )
    parser.add_argument("--scale-partitions", type=int, default=4, help="partitions for --scale")
    parser.add_argument(
        "--defaults",
        action="store_true",
        help="--keys with faust's and glibc's defaults instead of the worker's memory settings",
    )
    args = parser.parse_args()
    started = stack.up(echo=lambda line: None)
    try:
        if args.timeline:
            memory_timeline(args.timeline, args.every)
            return
        if args.keys:
            counts = [int(c) for c in args.keys.split(",") if c]
            memory_by_keys(counts, args.live_customers, args.defaults)
            return
        data = feed(args.customers)
        worker = WORKER
        passthrough = [sys.executable, "-m", "benchmarks.passthrough_app"]
        # rounds alternate the two, so that a slow spell of the machine hits both alike
        # records/s counts start-up (the same for both) and the commit timer (faust's 2.8 s):
        # worker CPU seconds per record, beside it, are what each one costs per record
        ratios, cpu_ratios = [], []
        for round_no in range(1, args.rounds + 1):
            results, cpu = {}, {}
            for label, command in (("passthrough", passthrough), ("processor", worker)):
                elapsed, rss, cpu[label], pipeline = run_worker(command, data, label)
                finish(pipeline)
                results[label] = len(data) / elapsed
                print(
                    f"round {round_no} {label:12} {len(data)} records in {elapsed:.1f} s = "
                    f"{results[label]:.0f} records/s, RSS {rss / 1024:.0f} MiB, worker CPU "
                    f"{cpu[label]:.1f} s ({1000 * cpu[label] / len(data):.2f} ms per record)"
                )
            ratios.append(results["processor"] / results["passthrough"])
            cpu_ratios.append(cpu["passthrough"] / cpu["processor"])
            print(
                f"round {round_no} processor / pass-through = {ratios[-1]:.2f} in records/s, "
                f"{cpu_ratios[-1]:.2f} in CPU per record (pass-through's / processor's)",
                flush=True,
            )
        if ratios:
            print(
                f"processor / pass-through over {len(ratios)} rounds: median "
                f"{statistics.median(ratios):.2f} (min {min(ratios):.2f}, max {max(ratios):.2f})"
                f" in records/s; {statistics.median(cpu_ratios):.2f} in CPU per record"
            )
        if args.scale:
            scale_out(data, args.scale, args.scale_partitions)
        for count in [int(c) for c in args.memory.split(",") if c]:
            data = feed(count)
            elapsed, rss, _, pipeline = run_worker(worker, data, f"memory-{count}")
            finish(pipeline)
            print(
                f"memory: {count} customers, {len(data)} records ({len(data) / elapsed:.0f}/s)"
                f": worker RSS {rss / 1024:.0f} MiB"
            )
    finally:
        if started:
            stack.down(only=started, echo=lambda line: None)


if __name__ == "__main__":
    main()
