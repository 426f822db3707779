"""Webhook throughput and latency into the local broker (prints figures; not a test).

Starts the webhook receiver (the real CLI process) against the running stack, then:
1. open loop: signed webhooks at a fixed rate (default 200/s) for a fixed time, each request
   sent on schedule whatever the earlier ones are doing; latency = send → 200 (which the
   receiver answers only after the broker acknowledged the record);
2. closed loop: as fast as N concurrent clients can go, for the saturation throughput.

    .venv/bin/python -m benchmarks.webhook_bench [--rate 200] [--seconds 30]
"""

from __future__ import annotations

import argparse
import asyncio
import statistics
import tempfile
import time
from pathlib import Path

import aiohttp

from ledgerstream import stack
from ledgerstream.stripe_records import route
from ledgerstream.testing.fixtures import signed
from ledgerstream.testing.generator import Scenario, iter_events
from ledgerstream.testing.pipeline import Pipeline


def bodies(count: int, secret: str) -> list[tuple[bytes, str]]:
    events = []
    for event in iter_events(Scenario(seed=11, customers=400, months=3)):
        if route(event["type"]) is not None:
            events.append(event)
        if len(events) >= count:
            break
    # signatures are made just before the run so they stay within the 300 s tolerance
    return [signed(e, secret) for e in events]


def percentile(values: list[float], p: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, int(round(p / 100 * (len(ordered) - 1))))]


async def open_loop(
    url: str, payloads: list[tuple[bytes, str]], rate: float, seconds: float
) -> tuple[list[float], dict[int, int], float]:
    latencies: list[float] = []
    codes: dict[int, int] = {}
    total = int(rate * seconds)
    connector = aiohttp.TCPConnector(limit=0)
    async with aiohttp.ClientSession(connector=connector) as session:

        async def one(i: int) -> None:
            body, sig = payloads[i % len(payloads)]
            t0 = time.perf_counter()
            async with session.post(url, data=body, headers={"Stripe-Signature": sig}) as r:
                await r.read()
                codes[r.status] = codes.get(r.status, 0) + 1
            latencies.append(time.perf_counter() - t0)

        start = time.perf_counter()
        tasks = []
        for i in range(total):
            due = start + i / rate
            delay = due - time.perf_counter()
            if delay > 0:
                await asyncio.sleep(delay)
            tasks.append(asyncio.create_task(one(i)))
        await asyncio.gather(*tasks)
        elapsed = time.perf_counter() - start
    return latencies, codes, elapsed


async def closed_loop(
    url: str, payloads: list[tuple[bytes, str]], clients: int, seconds: float
) -> tuple[int, float]:
    done = 0
    stop_at = time.perf_counter() + seconds
    async with aiohttp.ClientSession() as session:

        async def worker(k: int) -> None:
            nonlocal done
            i = k
            while time.perf_counter() < stop_at:
                body, sig = payloads[i % len(payloads)]
                async with session.post(url, data=body, headers={"Stripe-Signature": sig}) as r:
                    await r.read()
                    if r.status == 200:
                        done += 1
                i += clients

        start = time.perf_counter()
        await asyncio.gather(*(worker(k) for k in range(clients)))
        return done, time.perf_counter() - start


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--rate", type=float, default=200.0)
    parser.add_argument("--seconds", type=float, default=30.0)
    parser.add_argument("--clients", type=int, default=32)
    args = parser.parse_args()
    started = stack.up(echo=lambda line: None)
    pipeline = Pipeline(Path(tempfile.mkdtemp(prefix="webhook-bench-")))
    try:
        pipeline.cli("topics")
        pipeline.start("webhook", "producer", "webhook")
        pipeline.wait_http(f"http://127.0.0.1:{pipeline.webhook_port}/readyz", "webhook")
        payloads = bodies(2000, pipeline.webhook_secret)
        asyncio.run(open_loop(pipeline.webhook_url, payloads, 50, 2))  # warm-up
        lat, codes, elapsed = asyncio.run(
            open_loop(pipeline.webhook_url, payloads, args.rate, args.seconds)
        )
        ms = [x * 1000 for x in lat]
        print(
            f"open loop: {len(ms)} webhooks at {args.rate:.0f}/s target, "
            f"achieved {len(ms) / elapsed:.1f}/s; status {codes}"
        )
        print(
            f"latency ms: p50 {percentile(ms, 50):.1f}  p95 {percentile(ms, 95):.1f}  "
            f"p99 {percentile(ms, 99):.1f}  max {max(ms):.1f}  mean {statistics.mean(ms):.1f}"
        )
        ok, took = asyncio.run(closed_loop(pipeline.webhook_url, payloads, args.clients, 15))
        print(
            f"closed loop ({args.clients} clients, 15 s): {ok / took:.0f} webhooks/s acknowledged"
        )
    finally:
        pipeline.stop()
        if started:
            stack.down(only=started, echo=lambda line: None)


if __name__ == "__main__":
    main()
