"""A server named in the environment is external: ``stack up`` checks it, never starts it.
``stack down --wipe`` deletes the state directory and keeps the download cache."""

from __future__ import annotations

from pathlib import Path

import pytest
from click.testing import CliRunner

from ledgerstream import settings, stack
from ledgerstream.cli import main


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


def test_stack_down_wipe_deletes_the_state_directory_only(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    state, cache = tmp_path / "state", tmp_path / "cache"
    (state / "kafka" / "data").mkdir(parents=True)
    (cache / "kafka_2.13-x").mkdir(parents=True)
    monkeypatch.setenv("LEDGER_STACK_STATE_DIR", str(state))
    monkeypatch.setenv("LEDGER_STACK_CACHE_DIR", str(cache))
    settings.stack.cache_clear()
    try:
        done = CliRunner().invoke(main, ["stack", "down", "--wipe"])
    finally:
        settings.stack.cache_clear()
    assert done.exit_code == 0, done.output
    assert f"removed {state}" in done.output
    assert not state.exists() and (cache / "kafka_2.13-x").is_dir()
