"""docker-compose.kafka.yml cannot run here (no Docker engine); keep it equal to the local stack."""

from __future__ import annotations

import yaml

from ledgerstream.settings import StackSettings
from tests import CHECKOUT


def compose() -> dict:
    return yaml.safe_load((CHECKOUT / "docker-compose.kafka.yml").read_text())


def test_same_versions_as_the_local_stack() -> None:
    cfg = StackSettings()
    services = compose()["services"]
    assert services["kafka"]["image"] == f"apache/kafka:{cfg.kafka_version}"
    assert services["registry"]["image"] == f"apicurio/apicurio-registry:{cfg.apicurio_version}"
    assert services["stripe-mock"]["image"] == f"stripe/stripe-mock:{cfg.stripe_mock_version}"


def test_same_ports_as_the_local_stack() -> None:
    cfg = StackSettings()
    services = compose()["services"]
    host_ports = {
        name: [int(p.split(":")[1]) for p in svc.get("ports", [])] for name, svc in services.items()
    }
    assert host_ports["kafka"] == [cfg.kafka_port]
    assert host_ports["registry"] == [cfg.registry_port]
    assert host_ports["stripe-mock"] == [cfg.stripe_mock_port, cfg.stripe_mock_https_port]
    env = services["kafka"]["environment"]
    assert env["KAFKA_ADVERTISED_LISTENERS"] == f"PLAINTEXT://127.0.0.1:{cfg.kafka_port}"
    assert env["KAFKA_PROCESS_ROLES"] == "broker,controller"  # KRaft, no ZooKeeper


def test_every_service_image_is_pinned() -> None:
    for name, svc in compose()["services"].items():
        assert ":" in svc["image"] and not svc["image"].endswith(":latest"), name
