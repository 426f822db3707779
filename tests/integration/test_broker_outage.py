"""A broker that is down when a webhook arrives: 503 (Stripe retries), nothing is lost.

Runs its own single-node Kafka (same jars as the stack, its own ports and data) so that it can
be stopped and restarted without disturbing the other tests.
"""

from __future__ import annotations

import os
import time
from pathlib import Path

import pytest
import requests

from ledgerstream import settings, topics
from ledgerstream.avro import Serde
from ledgerstream.stack import Kafka
from ledgerstream.testing.fixtures import signed, slice_events
from ledgerstream.testing.pipeline import Pipeline, free_broker_ports
from tests.integration.helpers import consume_all

pytestmark = [pytest.mark.integration, pytest.mark.usefixtures("local_stack")]


def post(pipeline: Pipeline, event: dict) -> int:
    body, signature = signed(event, pipeline.webhook_secret)
    return requests.post(
        pipeline.webhook_url, data=body, timeout=60, headers={"Stripe-Signature": signature}
    ).status_code


def own_broker(tmp_path: Path, **env: str) -> tuple[Kafka, Pipeline]:
    """A single-node Kafka of the test's own (not started yet) and a pipeline pointed at it."""
    if os.environ.get("KAFKA_BOOTSTRAP_SERVERS"):
        pytest.fail("this test runs its own broker; unset KAFKA_BOOTSTRAP_SERVERS")
    cfg = settings.StackSettings(
        stack_state_dir=tmp_path / "stack",
        kafka_port=(base := free_broker_ports()),
        kafka_controller_port=base + 1,
    )
    broker = Kafka(cfg)
    extra = {"LEDGER_KAFKA_BOOTSTRAP_SERVERS": cfg.kafka_bootstrap(), **env}
    return broker, Pipeline(tmp_path / "run", extra_env=extra)


def test_webhook_answers_503_while_the_broker_is_down_and_loses_nothing(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    # long: while no broker answers the 503 must come at once, not after this
    broker, pipeline = own_broker(tmp_path, LEDGER_PUBLISH_TIMEOUT_MS="30000")
    bootstrap = broker.cfg.kafka_bootstrap()
    try:
        assert broker.start()
        broker.wait_ready()
        pipeline.cli("topics")
        pipeline.start("webhook", "producer", "webhook")
        pipeline.wait_http(f"http://127.0.0.1:{pipeline.webhook_port}/readyz", "webhook")
        first, second = slice_events(seed=pipeline.name)[:2]
        assert post(pipeline, first) == 200

        broker.stop()
        held = []
        for _ in range(3):  # Stripe will retry it
            started = time.monotonic()
            assert post(pipeline, second) == 503
            held.append(time.monotonic() - started)
        # at most the first waits for the delivery timeout; once the webhook knows that no
        # broker answers, each 503 comes at once
        assert max(held[1:]) < 5, held
        health = requests.get(f"http://127.0.0.1:{pipeline.webhook_port}/healthz", timeout=5)
        assert health.status_code == 200  # the server is still up
        ready = requests.get(f"http://127.0.0.1:{pipeline.webhook_port}/readyz", timeout=10)
        assert ready.status_code == 503

        assert broker.start()  # same data directory: the first event is still there
        broker.wait_ready()
        deadline = time.monotonic() + 60
        status = 0
        while time.monotonic() < deadline and status != 200:  # Stripe's retries
            status = post(pipeline, second)
            time.sleep(1)
        assert status == 200
    finally:
        pipeline.stop()
    monkeypatch.setenv("LEDGER_KAFKA_BOOTSTRAP_SERVERS", bootstrap)
    monkeypatch.setenv("LEDGER_TOPIC_PREFIX", pipeline.prefix)
    settings.kafka.cache_clear()
    try:
        name = topics.name(topics.STRIPE_EVENTS)
        serde = Serde(name, "stripe_event")
        ids = [serde.loads(m.value())["event_id"] for m in consume_all(name)]
        assert ids.count(first["id"]) == 1
        assert ids.count(second["id"]) >= 1  # at least once; downstream effects are upserts
        assert set(ids) == {first["id"], second["id"]}
    finally:
        settings.kafka.cache_clear()
        broker.stop()


def wait_for_log(pipeline: Pipeline, name: str, mark: str, timeout: float) -> None:
    deadline = time.monotonic() + timeout
    while mark not in pipeline.log(name):
        proc = pipeline.procs[name]
        assert proc.poll() is None, f"{name} exited ({proc.returncode}):\n{pipeline.log(name)}"
        assert time.monotonic() < deadline, f"no {mark!r} in {name}'s log after {timeout:.0f}s"
        time.sleep(0.2)


def test_a_processor_worker_started_during_an_outage_waits_for_the_broker(
    tmp_path: Path,
) -> None:
    """A worker (re)started while no broker answers waits for one and then starts: it does not
    exit (faust's clients gave up at once, and a supervisor would restart it in a loop)."""
    broker, pipeline = own_broker(tmp_path)
    try:
        assert broker.start()
        broker.wait_ready()
        pipeline.cli("topics")
        assert broker.stop()

        pipeline.start("processor", "processor", "worker")
        wait_for_log(pipeline, "processor", "no Kafka broker answers", timeout=60)
        assert broker.start()
        broker.wait_ready()
        wait_for_log(pipeline, "processor", "Worker]: Ready", timeout=180)
    finally:
        pipeline.stop()
        broker.stop()
