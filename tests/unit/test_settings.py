from pathlib import Path

import pytest

from ledgerstream.settings import KafkaSettings, NetSuiteSettings, StripeSettings


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


def test_worker_web_server_listens_on_loopback_unless_told(monkeypatch: pytest.MonkeyPatch) -> None:
    from processors.app import create_app

    assert create_app(7001).conf.web_bind == "127.0.0.1"  # faust alone binds every interface
    monkeypatch.setenv("LEDGER_PROCESSOR_WEB_BIND", "0.0.0.0")
    assert create_app(7002).conf.web_bind == "0.0.0.0"
