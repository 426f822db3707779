"""The embedded stack: real servers, a real registry round trip, and a clean `stack down`."""

from __future__ import annotations

import os
import subprocess
import sys
import time
from datetime import UTC, datetime
from pathlib import Path

import pytest
import requests
from confluent_kafka import Consumer, Producer

from ledgerstream import settings
from ledgerstream.avro import Serde
from ledgerstream.testing.pipeline import free_broker_ports, free_port

pytestmark = [pytest.mark.integration, pytest.mark.usefixtures("local_stack")]


def cli(*args: str, env: dict[str, str] | None = None) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "ledgerstream.cli", *args],
        env=env,
        capture_output=True,
        text=True,
        timeout=300,
    )


def test_status_reports_kafka_4_registry_and_stripe_mock() -> None:
    out = cli("stack", "status")
    assert out.returncode == 0, out.stdout + out.stderr
    lines = {line.split()[0]: line for line in out.stdout.splitlines()}
    assert all(" up " in lines[name] for name in ("kafka", "registry", "stripe-mock"))
    if not os.environ.get("KAFKA_BOOTSTRAP_SERVERS"):
        assert "Apache Kafka 4." in lines["kafka"]
    if not os.environ.get("SCHEMA_REGISTRY_URL"):
        assert "Apicurio Registry" in lines["registry"]


def test_avro_through_the_real_registry_and_broker() -> None:
    topic = f"stack-test-{time.time_ns()}"
    serde = Serde(topic, "netsuite_backref")
    record = {
        "record_type": "customer",
        "external_id": "cus_1",
        "internal_id": "7",
        "stripe_object": "customer",
        "stripe_id": "cus_1",
        "metadata_key": "netsuite_customer_id",
        "command_id": "c",
        "written_at": datetime(2026, 1, 1, tzinfo=UTC),
    }
    conf = settings.kafka().client_config()
    producer = Producer(conf)
    producer.produce(topic, key=b"k", value=serde.dumps(record))
    assert producer.flush(30) == 0
    consumer = Consumer({**conf, "group.id": topic, "auto.offset.reset": "earliest"})
    consumer.subscribe([topic])
    try:
        deadline = time.monotonic() + 30
        msg = None
        while msg is None and time.monotonic() < deadline:
            msg = consumer.poll(1.0)
        assert msg is not None and msg.error() is None
        assert serde.loads(msg.value()) == record
    finally:
        consumer.close()
    versions = requests.get(
        f"{settings.kafka().schema_registry_url}/subjects/{topic}-value/versions", timeout=10
    )
    assert versions.ok and versions.json() == [1]


def _our_processes(marker: str) -> list[str]:
    found = []
    for proc in Path("/proc").iterdir():
        if proc.name.isdigit():
            try:
                cmdline = (proc / "cmdline").read_bytes().replace(b"\0", b" ").decode()
            except OSError:
                continue
            if marker in cmdline:
                found.append(f"{proc.name}: {cmdline[:120]}")
    return found


def test_a_second_stack_comes_up_and_down_leaving_nothing(tmp_path: Path) -> None:
    if os.environ.get("KAFKA_BOOTSTRAP_SERVERS"):
        pytest.fail("this test starts its own stack; unset KAFKA_BOOTSTRAP_SERVERS")
    state = tmp_path / "stack"
    ports = {
        name: str(free_port())
        for name in (
            "KAFKA_PORT",
            "KAFKA_CONTROLLER_PORT",
            "REGISTRY_PORT",
            "REGISTRY_MANAGEMENT_PORT",
            "STRIPE_MOCK_PORT",
            "STRIPE_MOCK_HTTPS_PORT",
        )
    }
    env = {
        k: v
        for k, v in os.environ.items()
        if k not in ("SCHEMA_REGISTRY_URL", "STRIPE_MOCK_URL") and not k.startswith("LEDGER_")
    }
    env.update({f"LEDGER_{k}": v for k, v in ports.items()})
    env["LEDGER_STACK_STATE_DIR"] = str(state)
    try:
        up = cli("stack", "up", env=env)
        assert up.returncode == 0, up.stdout + up.stderr
        assert "started now: kafka, registry, stripe-mock" in up.stdout
        status = cli("stack", "status", env=env)
        assert status.returncode == 0, status.stdout
        assert f"127.0.0.1:{ports['KAFKA_PORT']}" in status.stdout
        assert "Apache Kafka 4." in status.stdout
        # stripe-mock's command line names its port, the JVMs name the state directory
        assert len(_our_processes(str(state))) == 2
        assert len(_our_processes(f"127.0.0.1:{ports['STRIPE_MOCK_PORT']}")) == 1
    finally:
        down = cli("stack", "down", env=env)
    assert down.returncode == 0
    assert down.stdout.count("stopped") == 3
    assert _our_processes(str(state)) == []
    assert _our_processes(f"127.0.0.1:{ports['STRIPE_MOCK_PORT']}") == []
    status = cli("stack", "status", env=env)
    assert status.returncode == 1 and status.stdout.count("DOWN") == 3


def test_stack_up_with_three_brokers_forms_one_cluster_and_stops_it_all(tmp_path: Path) -> None:
    """`stack up --brokers 3`: three KRaft nodes on loopback, internal topics with replication
    factor 3 and min.insync.replicas=2; `stack down` (without the setting) stops all three."""
    if os.environ.get("KAFKA_BOOTSTRAP_SERVERS"):
        pytest.fail("this test starts its own stack; unset KAFKA_BOOTSTRAP_SERVERS")
    state = tmp_path / "stack"
    base = free_broker_ports(3)
    env = {
        k: v
        for k, v in os.environ.items()
        if k not in ("SCHEMA_REGISTRY_URL", "STRIPE_MOCK_URL") and not k.startswith("LEDGER_")
    }
    env.update(
        {
            "LEDGER_KAFKA_PORT": str(base),
            "LEDGER_KAFKA_CONTROLLER_PORT": str(base + 1),
            "LEDGER_REGISTRY_PORT": str(free_port()),
            "LEDGER_REGISTRY_MANAGEMENT_PORT": str(free_port()),
            "LEDGER_STRIPE_MOCK_PORT": str(free_port()),
            "LEDGER_STRIPE_MOCK_HTTPS_PORT": str(free_port()),
            "LEDGER_STACK_STATE_DIR": str(state),
        }
    )
    try:
        up = cli("stack", "up", "--brokers", "3", env=env)
        assert up.returncode == 0, up.stdout + up.stderr
        assert "started now: kafka, kafka-2, kafka-3, registry, stripe-mock" in up.stdout
        assert up.stdout.count("3 broker(s)") == 3  # each node sees the whole cluster
        topics_env = {**env, "LEDGER_KAFKA_BROKERS": "3", "LEDGER_TOPIC_PREFIX": "rf3."}
        made = cli("topics", env=topics_env)
        assert made.returncode == 0, made.stdout + made.stderr
        from confluent_kafka.admin import AdminClient

        admin = AdminClient({"bootstrap.servers": f"127.0.0.1:{base + 10}"})  # via node 2
        md = admin.list_topics(timeout=10).topics["rf3.stripe.events"]
        assert {len(p.replicas) for p in md.partitions.values()} == {3}
    finally:
        down = cli("stack", "down", env=env)
    assert down.returncode == 0, down.stdout + down.stderr
    assert down.stdout.count("stopped") == 5, down.stdout
    assert _our_processes(str(state)) == []


def test_a_finished_runs_topics_are_deleted_and_no_other_runs(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """`topic_admin.delete_run` (the demo's clean-up) deletes every topic of one run, its
    processor's changelogs included, and none of another run's."""
    from ledgerstream import topic_admin

    runs = [f"del{time.time_ns()}{n}" for n in range(2)]
    made: list[set[str]] = []
    for run in runs:
        monkeypatch.setenv("LEDGER_TOPIC_PREFIX", f"{run}.")
        monkeypatch.setenv("LEDGER_APP_ID", f"{run}-processor")
        settings.kafka.cache_clear()
        topic_admin.ensure_all()
        made.append({t for t in topic_admin.admin().list_topics(timeout=10).topics if run in t})
    settings.kafka.cache_clear()
    assert any(t.startswith(f"{runs[0]}-processor-") for t in made[0])
    assert any(t.endswith(".dlq") for t in made[0])
    assert set(topic_admin.delete_run(f"{runs[0]}.", f"{runs[0]}-processor")) == made[0]
    left = set(topic_admin.admin().list_topics(timeout=10).topics)
    assert not left & made[0]
    assert made[1] <= left
