"""A long history through the whole pipeline: wall time and peak resident memory of each
component at event checkpoints, NetSuite requests and writes per record (prints figures; not a
test).

A generated history (``--events``, 100,000 by default: 2,400 customers over six months, payouts
in USD and JPY) is sent to the webhook as signed requests by ``--senders`` (8) concurrent
clients, in the order Stripe created the events, not paced: as fast as the webhook answers, but
never more than ``--max-backlog`` (5,000) records ahead of the pipeline (the router's and the
processor's consumer lag; 0: no bound). Every component runs as its own process through the real
command line (webhook, router, payout contents, processor worker, NetSuite sink, Stripe metadata
writer, and the NetSuite emulator); the Stripe double serves the history from this process.
The emulator answers every request after ``--latency-ms`` (20) and allows ``--limit`` (20) at
once; the sink's concurrency is the limit.

Every 0.5 s the resident set size (``VmRSS`` from ``/proc``, the process and its children) of
each component is sampled. For each checkpoint k (``--checkpoints``) the figures are:

- accepted: seconds from the first send until the webhook had answered 200 to k events;
- routed: until the router had reported (status topic, ``event|<id>``) every one of the first
  k events sent;
- written: until the sink had reported written (status topic, ``written|<record>``) every
  NetSuite record the reference booking creates from the first k events (a record belongs to
  the checkpoint of the latest source event of its first command); later versions of those
  records are not waited for;
- peak RSS: the largest sample of each component from the first send until accepted.

The last row, "drained", is the moment every stage (router, processor, sink, metadata writer)
had committed the end of its input, so every version was written; its peak RSS is over the
whole run. Requests per record: every request the emulator counted (reads, queries, tokens,
refusals and retries included) ÷ records in NetSuite; writes per record: accepted writes
(PUT/POST/PATCH answered 2xx) ÷ records. At the end the records in NetSuite are compared with
the reference booking (type and external id) and the dead-letter topics are read.

    .venv/bin/python -m benchmarks.scale_bench [--events 100000] [--checkpoints 10000,50000,100000]
        [--senders 8] [--max-backlog 5000] [--latency-ms 20] [--limit 20]
"""

from __future__ import annotations

import argparse
import asyncio
import bisect
import os
import resource
import subprocess
import tempfile
import threading
import time
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import aiohttp
from confluent_kafka import OFFSET_BEGINNING, Consumer, TopicPartition

from ledgerstream import dlq, settings, stack, status, topic_admin, topics
from ledgerstream.accounting.book import book_history
from ledgerstream.commands import Command
from ledgerstream.kafka_util import watermarks
from ledgerstream.stripe_records import route
from ledgerstream.testing.fixtures import signed
from ledgerstream.testing.generator import Scenario, generate
from ledgerstream.testing.pipeline import AppThread, Pipeline
from ledgerstream.testing.reference import expanded_payout_txns, routed
from ledgerstream.testing.stripe_double import StripeDouble
from tests.integration.helpers import ACCOUNTING_ENV, end_offsets

# measured: seed 1, 2,400 customers, six months, payouts in USD and JPY → 100,257 events
EVENTS_PER_CUSTOMER_MONTH = 100_257 / (2_400 * 6)
MIB = 2**20


def scenario_for(events: int, months: int = 6, seed: int = 1) -> Scenario:
    """A history of about ``events`` events (the customer count scales with it)."""
    customers = max(1, round(events / (EVENTS_PER_CUSTOMER_MONTH * months)))
    return Scenario(
        seed=seed, customers=customers, months=months, settlement_currencies=("usd", "jpy")
    )


def parse_checkpoints(text: str, total: int) -> list[int]:
    """``"10000,50000"`` → sorted distinct counts, each at most ``total`` (the last is kept)."""
    wanted = sorted({int(part) for part in text.split(",") if part.strip()})
    if any(k <= 0 for k in wanted):
        raise ValueError(f"checkpoints must be positive: {text}")
    return sorted({min(k, total) for k in wanted})


def reached_at(times: Sequence[float | None], k: int) -> float | None:
    """When all of the first ``k`` items were reached (the latest of their times); None while
    any of them is not."""
    first = times[:k]
    if not first or any(t is None for t in first):
        return None
    return max(t for t in first if t is not None)


def kth_time(times: Sequence[float], k: int) -> float | None:
    """The moment the k-th of these (unsorted) moments happened; None if fewer than k."""
    if k <= 0 or len(times) < k:
        return None
    return sorted(times)[k - 1]


def peaks(samples: Sequence[tuple[float, dict[str, int]]], until: float) -> dict[str, int]:
    """The largest value of each name over the samples taken up to ``until`` (inclusive)."""
    out: dict[str, int] = {}
    for at, values in samples:
        if at > until:
            break
        for name, value in values.items():
            out[name] = max(out.get(name, 0), value)
    return out


def rss(pid: int, children: bool = True) -> int:
    """Resident bytes of a process and (``children``) its descendants (0 when gone)."""
    total = 0
    try:
        for line in Path(f"/proc/{pid}/status").read_text().splitlines():
            if line.startswith("VmRSS:"):
                total += int(line.split()[1]) * 1024
        for task in Path(f"/proc/{pid}/task").iterdir() if children else ():
            for child in (task / "children").read_text().split():
                total += rss(int(child))
    except (OSError, ValueError):
        pass
    return total


def first_records(events: list[dict[str, Any]], history: Any) -> tuple[dict[str, int], int]:
    """Record key → the index (in sending order) of the event that made its first command;
    and the reference's record count."""
    index = {e["id"]: i for i, e in enumerate(events)}
    first: dict[str, int] = {}

    def seen(cmd: Command) -> None:
        if cmd.key not in first:
            made = [index[e] for e in cmd.source_event_ids if e in index]
            first[cmd.key] = max(made) if made else len(events) - 1

    book = book_history(
        [routed(history, e) for e in history.events],
        expanded_payout_txns(history),
        settings.AccountingSettings(),
        on_command=seen,
    )
    if book.dead_letters:
        print(f"reference booking: {len(book.dead_letters)} dead letters {book.dead_letters[:5]}")
    return {k: v for k, v in first.items() if k in book.commands}, len(book.commands)


class StatusReader(threading.Thread):
    """Reads the status topic as it grows: when each event was routed and each record first
    reported written (the record's time on the topic)."""

    def __init__(self) -> None:
        super().__init__(daemon=True)
        self.routed: dict[str, float] = {}
        self.written: dict[str, float] = {}
        self.stopping = threading.Event()

    def run(self) -> None:
        consumer = Consumer(
            {
                **settings.kafka().client_config(),
                "group.id": "scale-bench-status-unused",  # assign() only, never committed
                "enable.auto.commit": False,
            }
        )
        name = status.topic()
        parts = consumer.list_topics(name, timeout=10).topics[name].partitions
        consumer.assign([TopicPartition(name, p, OFFSET_BEGINNING) for p in parts])
        try:
            while not self.stopping.is_set():
                for msg in consumer.consume(1000, 0.5):
                    raw = msg.key()
                    if msg.error() or raw is None:
                        continue
                    key = raw.decode().split(status.SEP)
                    at = msg.timestamp()[1] / 1000
                    if len(key) == 3 and key[1] == "event":
                        self.routed.setdefault(key[2], at)
                    elif len(key) == 3 and key[1] == "written" and msg.value() is not None:
                        self.written.setdefault(key[2], at)
        finally:
            consumer.close()


class LagMonitor(threading.Thread):
    """Each stage's consumer lag (end offsets − committed offsets over its inputs), every s."""

    def __init__(self, groups: dict[str, tuple[str, list[str]]]):
        super().__init__(daemon=True)
        self.groups = groups  # stage -> (group id, its input topics)
        self.lag: dict[str, int] = {stage: -1 for stage in groups}
        self.stopping = threading.Event()

    def run(self) -> None:
        consumers = {
            stage: Consumer({**settings.kafka().client_config(), "group.id": group})
            for stage, (group, _) in self.groups.items()
        }
        try:
            while not self.stopping.wait(1.0):
                for stage, (_, names) in self.groups.items():
                    try:
                        self.lag[stage] = self._lag(consumers[stage], names)
                    except Exception:  # noqa: BLE001 - a probe; the next one will tell
                        self.lag[stage] = -1
        finally:
            for consumer in consumers.values():
                consumer.close()

    @staticmethod
    def _lag(consumer: Consumer, names: list[str]) -> int:
        lag = 0
        for name in names:
            parts = consumer.list_topics(name, timeout=10).topics[name].partitions
            got = consumer.committed([TopicPartition(name, p) for p in parts], timeout=10)
            for tp in got:
                _, high = watermarks(consumer, name, tp.partition)
                lag += high - max(tp.offset, 0) if high > 0 else 0
        return lag


class RssSampler(threading.Thread):
    def __init__(self, pids: dict[str, int], interval: float = 0.5):
        super().__init__(daemon=True)
        self.pids = pids
        self.interval = interval
        self.samples: list[tuple[float, dict[str, int]]] = []
        self.stopping = threading.Event()

    def run(self) -> None:
        while not self.stopping.is_set():
            now = time.time()
            # this process's children are the components: not counted twice
            self.samples.append((now, {n: rss(p, n != "bench") for n, p in self.pids.items()}))
            self.stopping.wait(self.interval)


async def send_all(
    events: list[dict[str, Any]],
    pipeline: Pipeline,
    senders: int,
    max_backlog: int,
    lags: LagMonitor,
    accepted: list[float],
) -> dict[int, int]:
    """Every event to the webhook, ``senders`` at a time; 503s and connection errors retried
    after 1 s as Stripe would. Returns the count of each final non-200 answer."""
    queue = iter(range(len(events)))
    refused: dict[int, int] = {}

    def backlog() -> int:
        return max(0, lags.lag["router"]) + max(0, lags.lag["processor"])

    async def sender(http: aiohttp.ClientSession) -> None:
        for i in queue:
            while max_backlog and backlog() > max_backlog:
                await asyncio.sleep(0.1)
            while True:
                body, header = signed(events[i], pipeline.webhook_secret)
                try:
                    async with http.post(
                        pipeline.webhook_url,
                        data=body,
                        headers={"Stripe-Signature": header, "Content-Type": "application/json"},
                    ) as resp:
                        await resp.read()
                        code = resp.status
                except aiohttp.ClientError:
                    code = 0
                if code == 200:
                    accepted.append(time.time())
                    break
                if code not in (0, 503):
                    refused[code] = refused.get(code, 0) + 1
                    break
                await asyncio.sleep(1)

    timeout = aiohttp.ClientTimeout(total=60)
    async with aiohttp.ClientSession(timeout=timeout) as http:
        await asyncio.gather(*(sender(http) for _ in range(senders)))
    return refused


def mib(value: int | None) -> str:
    return "-" if value is None else f"{value / MIB:,.0f}"


def secs(value: float | None) -> str:
    return "not reached" if value is None else f"{value:,.1f}"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--events", type=int, default=100_000, help="about this many events")
    parser.add_argument("--checkpoints", default="10000,50000,100000")
    parser.add_argument("--senders", type=int, default=8, help="concurrent webhook clients")
    parser.add_argument(
        "--max-backlog", type=int, default=5_000, help="router + processor lag bound; 0: none"
    )
    parser.add_argument("--latency-ms", type=float, default=20.0)
    parser.add_argument("--limit", type=int, default=20, help="NetSuite's concurrency limit")
    parser.add_argument("--drain-timeout", type=float, default=1800.0)
    args = parser.parse_args()
    os.environ.setdefault("LEDGER_PROFILE", "local")
    os.environ.update(ACCOUNTING_ENV)
    load_start = os.getloadavg()

    scenario = scenario_for(args.events)
    began = time.perf_counter()
    history = generate(scenario)
    generated_s = time.perf_counter() - began
    events = [e for e in history.events if route(e["type"]) is not None]
    began = time.perf_counter()
    first, expected = first_records(events, history)
    booked_s = time.perf_counter() - began
    checkpoints = parse_checkpoints(args.checkpoints, len(events))
    print(
        f"history: {scenario.customers} customers × {scenario.months} months, seed "
        f"{scenario.seed}: {len(history.events):,} events ({len(events):,} routed, sent), "
        f"generated in {generated_s:.1f} s; reference booking {expected:,} records in "
        f"{booked_s:.1f} s"
    )

    started = stack.up(echo=lambda line: None)
    if started:
        print(f"started {started} (left running)")
    stripe = AppThread(StripeDouble(history).app())
    pipeline = Pipeline(
        Path(tempfile.mkdtemp(prefix="scale-bench-")),
        extra_env={
            **ACCOUNTING_ENV,
            "LEDGER_STRIPE_API_BASE": stripe.url,
            "LEDGER_STRIPE_MAX_REQUESTS_PER_S": "1000",
            "LEDGER_EMULATOR_LATENCY_MS": str(args.latency_ms),
            "LEDGER_EMULATOR_CONCURRENCY_LIMIT": str(args.limit),
            "LEDGER_NETSUITE_CONCURRENCY": str(args.limit),
        },
    )
    os.environ["LEDGER_TOPIC_PREFIX"] = pipeline.prefix
    settings.kafka.cache_clear()
    reader = StatusReader()
    lags = LagMonitor(
        {
            "router": (
                settings.kafka().topic("ledgerstream-router"),
                [topics.name(topics.STRIPE_EVENTS)],
            ),
            "processor": (
                f"{pipeline.name}-processor",
                [topics.name(s) for s in topics.PROCESSOR_INPUTS],
            ),
            "sink": (f"{pipeline.name}-netsuite-sink", [topics.name(topics.NETSUITE_COMMANDS)]),
            "metadata": (
                f"{pipeline.name}-stripe-metadata",
                [topics.name(topics.NETSUITE_BACKREFS)],
            ),
        }
    )
    sampler: RssSampler | None = None
    try:
        pipeline.start_all()
        pipeline.wait_consumers_ready(180)
        order = ("webhook", "router", "payouts", "processor", "sink", "metadata", "emulator")
        pids = {name: pipeline.procs[name].pid for name in order}
        pids["bench"] = os.getpid()  # senders, Stripe double, the history (not a component)
        sampler = RssSampler(pids)
        reader.start()
        lags.start()
        sampler.start()
        print(
            f"emulator: latency {args.latency_ms:.0f} ms, concurrency limit {args.limit}; sink "
            f"concurrency {args.limit}; {args.senders} senders, backlog bound "
            f"{args.max_backlog or 'none'}; load average at start {load_start[0]:.2f} "
            f"{load_start[1]:.2f} {load_start[2]:.2f}"
        )
        accepted: list[float] = []
        t0 = time.time()
        stop_progress = threading.Event()

        def progress() -> None:
            while not stop_progress.wait(30):
                last = sampler.samples[-1][1] if sampler and sampler.samples else {}
                print(
                    f"  {time.time() - t0:6.0f} s: accepted {len(accepted):,}, routed "
                    f"{len(reader.routed):,}, records written {len(reader.written):,}; lag "
                    f"{lags.lag}; RSS MiB " + " ".join(f"{n}={mib(v)}" for n, v in last.items()),
                    flush=True,
                )

        threading.Thread(target=progress, daemon=True).start()
        refused = asyncio.run(
            send_all(events, pipeline, args.senders, args.max_backlog, lags, accepted)
        )
        sent_s = time.time() - t0
        print(
            f"sent {len(events):,} events in {sent_s:.1f} s: {len(accepted):,} accepted "
            f"({len(accepted) / sent_s:.0f}/s), refused {refused or 'none'}",
            flush=True,
        )
        # drained: every stage committed the end of its input, twice in a row 3 s apart
        deadline = time.monotonic() + args.drain_timeout
        clean = 0
        drained: float | None = None
        while time.monotonic() < deadline:
            pipeline.check_alive()
            time.sleep(3)
            if all(v == 0 for v in lags.lag.values()) and reader.routed:
                drained = drained or time.time()
                clean += 1
                if clean >= 2 and not first.keys() - reader.written.keys():
                    break
                if clean >= 10:  # quiet for 30 s with records missing: they will not come
                    break
            else:
                clean, drained = 0, None
        else:
            print(f"not drained after {args.drain_timeout:.0f} s: lag {lags.lag}")
        end = time.time()
        drained = drained or end
        stop_progress.set()
        sampler.stopping.set()
        sampler.join()
        reader.stopping.set()
        lags.stopping.set()

        index = {e["id"]: i for i, e in enumerate(events)}
        routed_at: list[float | None] = [None] * len(events)
        for eid, at in list(reader.routed.items()):
            if eid in index:
                routed_at[index[eid]] = at
        by_checkpoint: dict[int, list[str]] = {k: [] for k in checkpoints}
        for key, i in first.items():
            k = checkpoints[bisect.bisect_right(checkpoints, i)] if i < checkpoints[-1] else None
            if k is not None:
                by_checkpoint[k].append(key)
        written = dict(reader.written)
        names = list(pids)
        print(
            "checkpoint (events) | accepted s | routed s | written s | peak RSS MiB: "
            + " ".join(names)
        )
        samples = sampler.samples
        print(
            f"{'at ready':>19} | {'':>10} | {'':>8} | {'':>9} | "
            + " ".join(mib(samples[0][1].get(n)) for n in names)
        )
        cumulative: list[str] = []
        for k in checkpoints:
            cumulative += by_checkpoint[k]
            t_acc = kth_time(accepted, k)
            t_routed = reached_at(routed_at, k)
            missing = [key for key in cumulative if key not in written]
            t_written = None if missing else max((written[x] for x in cumulative), default=t0)
            peak = peaks(samples, t_acc if t_acc is not None else end)
            rel = [None if t is None else t - t0 for t in (t_acc, t_routed, t_written)]
            note = f" ({len(missing)} of {len(cumulative)} records not written)" if missing else ""
            print(
                f"{k:>19,} | {secs(rel[0]):>10} | {secs(rel[1]):>8} | {secs(rel[2]):>9} | "
                + " ".join(mib(peak.get(n)) for n in names)
                + note
            )
        peak = peaks(samples, end)
        print(
            f"{'drained':>19} | {'':>10} | {'':>8} | {drained - t0:>9,.1f} | "
            + " ".join(mib(peak.get(n)) for n in names)
        )
        print(
            f"{'at the end':>19} | {'':>10} | {'':>8} | {'':>9} | "
            + " ".join(mib(samples[-1][1].get(n)) for n in names)
        )

        stats = pipeline.emulator_stats()
        records = pipeline.records()
        counts = stats["requests"]
        total = sum(counts.values())
        writes = sum(
            n
            for k, n in counts.items()
            if k.split()[0] in ("PUT", "POST", "PATCH") and k.split()[-1].startswith("2")
        )
        print(
            f"NetSuite: {len(records):,} records; {total:,} requests = "
            f"{total / max(1, len(records)):.3f} per record; {writes:,} writes = "
            f"{writes / max(1, len(records)):.3f} per record; max in flight "
            f"{stats['max_in_flight']}; requests {dict(sorted(counts.items()))}"
        )
        # the processor's side: the commands it sent (every record version the sink was given;
        # the processor drops exact repeats) per record
        sent = sum(end_offsets(topics.name(topics.NETSUITE_COMMANDS)).values())
        print(
            f"processor: {sent:,} commands sent = {sent / max(1, len(records)):.3f} per record "
            "(the sink conflates the versions it finds queued together)"
        )
        have = {f"{r['type']}/{r['externalId']}" for r in records}
        want = set(first)
        letters = dlq.read()
        print(
            f"correctness: {len(have):,} records in NetSuite, reference {expected:,}: "
            + ("equal" if have == want and len(records) == expected else "DIFFERENT")
            + f"; dead letters {len(letters)}"
        )
        for label, keys in (("missing", want - have), ("unexpected", have - want)):
            if keys:
                print(f"  {label} {len(keys)}: {sorted(keys)[:10]}")
        for letter in letters[:10]:
            print(f"  dead letter {letter.ref}: {letter.error_class}: {letter.reason[:200]}")
        load_end = os.getloadavg()
        print(
            f"load average at end {load_end[0]:.2f} {load_end[1]:.2f} {load_end[2]:.2f}; "
            f"bench max RSS {resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024:,.0f} "
            f"MiB; logs: {pipeline.run_dir}"
        )
        print(subprocess.run(["uptime"], capture_output=True, text=True).stdout.strip())
    finally:
        if sampler is not None:
            sampler.stopping.set()
        reader.stopping.set()
        lags.stopping.set()
        pipeline.stop()
        stripe.close()
        topic_admin.delete_run(pipeline.prefix, pipeline.env()["LEDGER_APP_ID"])


if __name__ == "__main__":
    main()
