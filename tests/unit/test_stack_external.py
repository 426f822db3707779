"""A server named in the environment is external: ``stack up`` checks it, never starts it."""

from __future__ import annotations

import pytest

from ledgerstream import settings, stack


@pytest.mark.parametrize(
    ("variable", "server"),
    [
        ("KAFKA_BOOTSTRAP_SERVERS", "kafka"),
        ("LEDGER_KAFKA_BOOTSTRAP_SERVERS", "kafka"),
        ("SCHEMA_REGISTRY_URL", "registry"),
        ("STRIPE_MOCK_URL", "stripe-mock"),
    ],
)
def test_a_server_named_in_the_environment_is_external(
    variable: str, server: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    for other in ("KAFKA_BOOTSTRAP_SERVERS", "LEDGER_KAFKA_BOOTSTRAP_SERVERS"):
        monkeypatch.delenv(other, raising=False)
    for other in ("SCHEMA_REGISTRY_URL", "LEDGER_SCHEMA_REGISTRY_URL", "STRIPE_MOCK_URL"):
        monkeypatch.delenv(other, raising=False)
    cfg = settings.StackSettings()
    before = {s.name: s.external() for s in stack.servers(cfg)}
    assert not any(before.values())
    monkeypatch.setenv(variable, "127.0.0.1:1")
    after = {s.name: s.external() for s in stack.servers(cfg)}
    assert after == {name: name == server for name in before}
