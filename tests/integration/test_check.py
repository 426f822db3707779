"""``ledgerstream check`` against the real stack (Kafka, the registry, stripe-mock) and the NetSuite
emulator: a correct configuration passes every row, a broken one fails exactly its problems."""

from __future__ import annotations

import json
import subprocess
import sys
import time

import pytest
from confluent_kafka.admin import AdminClient
from confluent_kafka.schema_registry import Schema, SchemaRegistryClient

from ledgerstream import settings
from ledgerstream.preflight import FAIL, OK
from ledgerstream.testing.pipeline import Pipeline

pytestmark = [pytest.mark.integration, pytest.mark.usefixtures("local_stack")]


@pytest.fixture
def checked(pipe: Pipeline) -> Pipeline:
    """A pipeline whose topics and schemas exist (own prefix), with its NetSuite emulator."""
    pipe.start("emulator", "emulator", "netsuite")
    pipe.wait_http(f"{pipe.emulator_url}/_emulator/records", "emulator")
    return pipe


def check(pipe: Pipeline, **env: str) -> tuple[int, dict[str, tuple[str, str]], str]:
    """Run ``ledgerstream check`` with the pipeline's settings (and ``env`` over them): the exit
    status, each row's mark and detail by name, and the output."""
    out = subprocess.run(
        [sys.executable, "-m", "ledgerstream.cli", "check", "--timeout", "10"],
        env={**pipe.env(), **env},
        capture_output=True,
        text=True,
        timeout=180,
    )
    rows: dict[str, tuple[str, str]] = {}
    for line in out.stdout.splitlines():
        if line[:1] in (OK, FAIL):
            name, _, detail = line[2:].partition("  ")
            rows[name.strip()] = (line[0], detail.strip())
    return out.returncode, rows, out.stdout


def failed(rows: dict[str, tuple[str, str]]) -> dict[str, str]:
    return {name: detail for name, (mark, detail) in rows.items() if mark == FAIL}


def test_correct_configuration_passes_every_check(checked: Pipeline) -> None:
    status, rows, out = check(checked)
    assert status == 0, out
    assert failed(rows) == {}, out
    assert set(rows) >= {
        "NetSuite auth",
        "NetSuite concurrency",
        "NetSuite subsidiary",
        "NetSuite bank accounts",
        "NetSuite global item",
        "Stripe key",
        "Stripe API version",
        "Stripe webhook secrets",
        "Kafka brokers",
        "Kafka topics",
        "Kafka partitions",
        "Schema registry",
        "Schema compatibility",
    }
    assert rows["NetSuite bank accounts"][1] == (
        "JPY → account 107 'Stripe JPY Bank' (Bank), USD → account 102 'Stripe USD Bank' (Bank)"
    )
    assert f"prefix '{checked.prefix}'" in rows["Kafka topics"][1]
    # the M2M credentials pass as well
    status, rows, out = check(checked, LEDGER_NETSUITE_AUTH="m2m")
    assert status == 0 and rows["NetSuite auth"][1].startswith("OAuth 2.0 M2M accepted"), out


def _delete_topic(topic: str) -> None:
    admin = AdminClient(settings.kafka().client_config())
    admin.delete_topics([topic], operation_timeout=30)[topic].result()
    deadline = time.monotonic() + 30
    while topic in admin.list_topics(timeout=10).topics:
        assert time.monotonic() < deadline, f"{topic} still listed"
        time.sleep(0.3)


def _register_incompatible(subject: str) -> None:
    """A later version that the repository's schema cannot follow, under BACKWARD."""
    client = SchemaRegistryClient(settings.kafka().registry_config())
    other = {"type": "record", "name": "Other", "fields": [{"name": "only", "type": "int"}]}
    client.register_schema(subject, Schema(json.dumps(other), "AVRO"))
    client.set_compatibility(subject, "BACKWARD")


def test_broken_configuration_fails_exactly_its_problems(checked: Pipeline) -> None:
    missing_topic = f"{checked.prefix}stripe.charge"
    _delete_topic(missing_topic)
    subject = f"{checked.prefix}stripe.coupon-value"
    _register_incompatible(subject)
    status, rows, out = check(
        checked,
        LEDGER_NETSUITE_BANK_ACCOUNT_IDS='{"USD": "102", "JPY": "999"}',  # no such account
        LEDGER_NETSUITE_TAX_ITEM_ID="104",  # an account's id, not an item's
        LEDGER_NETSUITE_CONCURRENCY="6",  # the emulator's account allows 5
    )
    assert status == 1, out
    assert failed(rows) == {
        "NetSuite bank accounts": "JPY → no account with id 999",
        "NetSuite tax item": (
            "no serviceSaleItem or nonInventorySaleItem or otherChargeSaleItem with id 104"
        ),
        "NetSuite concurrency": (
            "LEDGER_NETSUITE_CONCURRENCY=6 > 5, the account's unallocated limit (none is "
            "allocated to the integration); account limit 5"
        ),
        "Kafka topics": f"missing: {missing_topic}",
        "Schema compatibility": (
            f"incompatible with the registered version: schemas/stripe_coupon.avsc ({subject})"
        ),
    }, out
    assert "fix: correct JPY in LEDGER_NETSUITE_BANK_ACCOUNT_IDS" in out
    assert "fix: set LEDGER_NETSUITE_TAX_ITEM_ID to the internal id of a sale item" in out
    assert "fix: set LEDGER_NETSUITE_CONCURRENCY to at most 5" in out
    assert "fix: run `ledgerstream topics`" in out
    # the topics have 3 partitions: a different LEDGER_TOPIC_PARTITIONS is a ✖ of its own
    status, rows, out = check(checked, LEDGER_TOPIC_PARTITIONS="4")
    assert status == 1 and set(failed(rows)) == {
        "Kafka topics",
        "Kafka partitions",
        "Schema compatibility",
    }, out
    assert failed(rows)["Kafka partitions"].startswith("all ")
    assert failed(rows)["Kafka partitions"].endswith(": 3 partitions, LEDGER_TOPIC_PARTITIONS=4")


def test_wrong_token_secret_fails_auth_and_skips_the_netsuite_records(checked: Pipeline) -> None:
    wrong = "wrong-token-secret-0123456789"
    status, rows, out = check(checked, LEDGER_NETSUITE_TOKEN_SECRET=wrong)
    assert status == 1, out
    bad = failed(rows)
    assert bad.pop("NetSuite auth").endswith("HTTP 401 INVALID_LOGIN")
    # every other NetSuite row is skipped, never silently ✔; Stripe and Kafka pass
    assert bad and all(name.startswith("NetSuite ") for name in bad)
    assert set(bad.values()) == {"skipped: NetSuite authentication failed"}
    assert "LEDGER_NETSUITE_TOKEN_SECRET" in out
    for name in ("CONSUMER_KEY", "CONSUMER_SECRET", "TOKEN_ID", "CLIENT_ID"):
        assert checked.netsuite[f"LEDGER_NETSUITE_{name}"] not in out
    assert wrong not in out
