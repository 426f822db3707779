import os
import subprocess
import sys
from pathlib import Path

import pytest
from pydantic import ValidationError

from ledgerstream import settings
from ledgerstream.settings import (
    AccountingSettings,
    KafkaSettings,
    NetSuiteSettings,
    StripeSettings,
)


def test_standard_kafka_names_are_honoured(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("KAFKA_BOOTSTRAP_SERVERS", "broker-1:9093,broker-2:9093")
    monkeypatch.setenv("SCHEMA_REGISTRY_URL", "https://registry.example/apis/ccompat/v7")
    cfg = KafkaSettings()
    assert cfg.client_config()["bootstrap.servers"] == "broker-1:9093,broker-2:9093"
    assert cfg.registry_config()["url"] == "https://registry.example/apis/ccompat/v7"


def test_security_settings_pass_through(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("LEDGER_KAFKA_SECURITY_PROTOCOL", "SASL_SSL")
    monkeypatch.setenv("LEDGER_KAFKA_SASL_MECHANISM", "SCRAM-SHA-512")
    monkeypatch.setenv("LEDGER_KAFKA_SASL_USERNAME", "svc")
    monkeypatch.setenv("LEDGER_KAFKA_SASL_PASSWORD", "hunter2")
    cfg = KafkaSettings()
    conf = cfg.client_config()
    assert conf["security.protocol"] == "SASL_SSL"
    assert conf["sasl.mechanism"] == "SCRAM-SHA-512"
    assert conf["sasl.password"] == "hunter2"
    assert "hunter2" not in repr(cfg) and "hunter2" not in str(cfg.model_dump())


def test_webhook_secrets_list_and_files(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    monkeypatch.setenv("LEDGER_STRIPE_WEBHOOK_SECRETS", "whsec_a, whsec_b")
    assert [s.get_secret_value() for s in StripeSettings().stripe_webhook_secrets] == [
        "whsec_a",
        "whsec_b",
    ]
    monkeypatch.setenv("LEDGER_STRIPE_WEBHOOK_SECRETS", '["whsec_c"]')
    assert [s.get_secret_value() for s in StripeSettings().stripe_webhook_secrets] == ["whsec_c"]
    key_file = tmp_path / "key"
    key_file.write_text("sk_test_from_file\n")
    monkeypatch.setenv("LEDGER_STRIPE_API_KEY_FILE", str(key_file))
    cfg = StripeSettings()
    assert cfg.stripe_api_key.get_secret_value() == "sk_test_from_file"
    assert "sk_test_from_file" not in repr(cfg)


def test_missing_netsuite_credentials_fail_fast(monkeypatch: pytest.MonkeyPatch) -> None:
    for name in ("ACCOUNT_ID", "CONSUMER_KEY", "CONSUMER_SECRET", "TOKEN_ID", "TOKEN_SECRET"):
        monkeypatch.delenv(f"LEDGER_NETSUITE_{name}", raising=False)
    monkeypatch.setenv("LEDGER_NETSUITE_ACCOUNT_ID", "123456_SB1")
    cfg = NetSuiteSettings()
    with pytest.raises(SystemExit, match="LEDGER_NETSUITE_CONSUMER_KEY"):
        cfg.require_credentials()
    assert cfg.rest_root() == "https://123456-sb1.suitetalk.api.netsuite.com"


def test_worker_web_server_listens_on_loopback_unless_told(
    monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    from ledgerstream.processors.app import create_app

    monkeypatch.setenv("LEDGER_PROCESSOR_DATA_DIR", str(tmp_path))  # not the user's own

    assert create_app(7001).conf.web_bind == "127.0.0.1"  # faust alone binds every interface
    monkeypatch.setenv("LEDGER_PROCESSOR_WEB_BIND", "0.0.0.0")
    assert create_app(7002).conf.web_bind == "0.0.0.0"


SETUP_IDS = [
    "LEDGER_NETSUITE_SUBSIDIARY_ID",
    "LEDGER_NETSUITE_BASE_CURRENCY",
    "LEDGER_NETSUITE_CURRENCY_IDS",
    "LEDGER_NETSUITE_UNDEPOSITED_FUNDS_ACCOUNT_ID",
    "LEDGER_NETSUITE_BANK_ACCOUNT_IDS",
    "LEDGER_NETSUITE_FEE_ACCOUNT_IDS",
    "LEDGER_NETSUITE_OTHER_INCOME_ACCOUNT_ID",
    "LEDGER_NETSUITE_FX_ACCOUNT_ID",
    "LEDGER_NETSUITE_SUSPENSE_ACCOUNT_ID",
    "LEDGER_NETSUITE_PAYMENT_METHOD_ID",
    "LEDGER_NETSUITE_GLOBAL_ITEM_ID",
    "LEDGER_NETSUITE_DISCOUNT_ITEM_ID",
    "LEDGER_NETSUITE_TAX_ITEM_ID",
    "LEDGER_NETSUITE_SHIPPING_ITEM_ID",
    "LEDGER_NETSUITE_PARTIAL_REFUND_ITEM_ID",
    "LEDGER_NETSUITE_INCOME_ACCOUNT_ID",
]


def test_netsuite_setup_ids_and_the_stripe_key_have_no_production_defaults(
    monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    monkeypatch.delenv("LEDGER_PROFILE", raising=False)
    monkeypatch.chdir(tmp_path)  # no .env
    for name in SETUP_IDS:
        monkeypatch.delenv(name, raising=False)
    monkeypatch.setenv("LEDGER_NETSUITE_PAYMENT_METHOD_ID", "7")  # one given: not named
    with pytest.raises(SystemExit) as refused:
        AccountingSettings.load()
    message = str(refused.value)
    named = [name for name in SETUP_IDS if name in message]
    assert named == [n for n in SETUP_IDS if n != "LEDGER_NETSUITE_PAYMENT_METHOD_ID"]
    monkeypatch.delenv("LEDGER_STRIPE_API_KEY", raising=False)
    with pytest.raises(SystemExit, match="LEDGER_STRIPE_API_KEY"):
        StripeSettings().api_key()


def test_the_local_profile_gives_the_emulators_setup_and_the_environment_wins(
    monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    monkeypatch.chdir(tmp_path)
    monkeypatch.setenv("LEDGER_PROFILE", "local")
    monkeypatch.setenv("LEDGER_NETSUITE_BANK_ACCOUNT_IDS", '{"USD": "900"}')
    cfg = AccountingSettings.load()
    assert cfg.netsuite_undeposited_funds_account_id == "101"  # the emulator's seeded account
    assert cfg.netsuite_bank_account_ids == {"USD": "900"}
    assert StripeSettings().api_key() == "sk_test_123"  # stripe-mock's
    monkeypatch.setenv("LEDGER_PROFILE", "prod")
    with pytest.raises(SystemExit, match="LEDGER_PROFILE='prod' is not a profile"):
        AccountingSettings.load()


@pytest.mark.parametrize(
    ("command", "names"),
    [
        (["processor", "worker"], SETUP_IDS),
        (["producer", "route"], ["LEDGER_STRIPE_API_KEY"]),
        (["producer", "payout-contents"], ["LEDGER_STRIPE_API_KEY"]),
        (["sink", "stripe-metadata"], ["LEDGER_STRIPE_API_KEY"]),
    ],
    ids=["processor", "router", "payout-contents", "metadata-writer"],
)
def test_a_component_without_its_settings_refuses_to_start_naming_them(
    command: list[str], names: list[str], tmp_path: Path
) -> None:
    env = {k: v for k, v in os.environ.items() if not k.startswith("LEDGER_")}
    env["LEDGER_KAFKA_BOOTSTRAP_SERVERS"] = "127.0.0.1:9"  # never reached: it stops before
    proc = subprocess.run(
        [sys.executable, "-m", "ledgerstream.cli", *command],
        env=env,
        cwd=tmp_path,
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert proc.returncode != 0
    assert all(name in proc.stderr for name in names), proc.stderr[-2000:]
    assert "Traceback" not in proc.stderr


def test_the_bootstrap_reads_a_system_s_settings_only_when_a_component_needs_them(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """A bad NetSuite value must not stop the webhook or the router, which never call NetSuite."""
    from ledgerstream.bootstrap import Bootstrap

    monkeypatch.setenv("LEDGER_NETSUITE_CONCURRENCY", "five")
    settings.netsuite.cache_clear()
    try:
        boot = Bootstrap()
        assert boot.stripe.stripe_api_base
        with pytest.raises(ValidationError):
            boot.netsuite_client()
    finally:
        settings.netsuite.cache_clear()


def test_the_profile_can_come_from_the_env_file(
    monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    monkeypatch.delenv("LEDGER_PROFILE", raising=False)
    monkeypatch.chdir(tmp_path)
    with pytest.raises(SystemExit, match="LEDGER_NETSUITE_SUBSIDIARY_ID"):
        AccountingSettings.load()
    (tmp_path / ".env").write_text("LEDGER_PROFILE=local\n")
    assert AccountingSettings.load().netsuite_subsidiary_id == "1"


def test_missing_and_invalid_settings_are_named_together(
    monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    monkeypatch.delenv("LEDGER_PROFILE", raising=False)
    monkeypatch.chdir(tmp_path)
    monkeypatch.setenv("LEDGER_NETSUITE_BANK_ACCOUNT_IDS", '["102"]')  # JSON, not an object
    with pytest.raises(SystemExit) as refused:
        AccountingSettings.load()
    message = str(refused.value)
    assert "LEDGER_NETSUITE_SUBSIDIARY_ID" in message
    assert "invalid: LEDGER_NETSUITE_BANK_ACCOUNT_IDS" in message
    monkeypatch.setenv("LEDGER_NETSUITE_BANK_ACCOUNT_IDS", "not json")
    with pytest.raises(SystemExit, match="LEDGER_NETSUITE_BANK_ACCOUNT_IDS is not valid JSON"):
        AccountingSettings.load()
