"""``ledgerstream check`` without the stack: the table, the exit status, missing settings, and the
NetSuite and Stripe checks against in-process servers (the NetSuite emulator, a Stripe stand-in
that judges the key and the Stripe-Version header as Stripe does)."""

from __future__ import annotations

import collections.abc
import json
import os
from pathlib import Path

import pytest
import requests
import stripe
from aiohttp import web
from click.testing import CliRunner
from cryptography.hazmat.primitives.asymmetric import rsa
from cryptography.hazmat.primitives.serialization import (
    Encoding,
    NoEncryption,
    PrivateFormat,
    PublicFormat,
)

from ledgerstream import preflight, settings
from ledgerstream.cli import check_cmd
from ledgerstream.preflight import FAIL, OK, Row
from ledgerstream.testing.netsuite_emulator.server import Behaviour, Credentials, make_app
from ledgerstream.testing.netsuite_emulator.store import Store
from ledgerstream.testing.pipeline import AppThread

TOKEN_SECRET = "token-secret-4f1d9c2b7a"
CONSUMER_SECRET = "consumer-secret-8e3a1f6d"


_monkeypatch: list[pytest.MonkeyPatch] = []  # this test's, for setenv()


def _clear() -> None:
    for cached in (settings.kafka, settings.stripe, settings.netsuite, settings.accounting):
        cached.cache_clear()


@pytest.fixture(autouse=True)
def clean_env(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> collections.abc.Iterator[None]:
    """No LEDGER_ variable, no .env file: each test sets what it checks."""
    for name in list(os.environ):
        if name.startswith("LEDGER_") or name in ("KAFKA_BOOTSTRAP_SERVERS", "SCHEMA_REGISTRY_URL"):
            monkeypatch.delenv(name)
    monkeypatch.chdir(tmp_path)
    _monkeypatch.append(monkeypatch)
    _clear()
    yield
    _clear()
    _monkeypatch.pop()


def setenv(**env: str) -> None:
    """Set variables for this test (restored after it) and forget cached settings."""
    for name, value in env.items():
        _monkeypatch[-1].setenv(name, value)
    _clear()


def by_name(rows: list[Row]) -> dict[str, Row]:
    return {row.name: row for row in rows}


def failed(rows: list[Row]) -> set[str]:
    return {row.name for row in rows if not row.ok}


# ----------------------------------------------------------------- the table and the exit status
def test_table_is_aligned_and_a_failure_carries_its_fix() -> None:
    rows = [
        Row("NetSuite auth", True, "token-based auth (TBA) accepted"),
        Row("Stripe webhook secrets", False, "not set", "set LEDGER_STRIPE_WEBHOOK_SECRETS"),
        Row("Kafka topics", False, "skipped: no broker answers", "resolve “Kafka brokers” first"),
    ]
    lines = preflight.render(rows).splitlines()
    assert lines[0] == f"{OK} NetSuite auth           token-based auth (TBA) accepted"
    assert lines[1] == f"{FAIL} Stripe webhook secrets  not set"
    assert lines[2] == "                          fix: set LEDGER_STRIPE_WEBHOOK_SECRETS"
    assert lines[3] == f"{FAIL} Kafka topics            skipped: no broker answers"
    # every detail and every fix starts in the same column
    assert {
        line.index(text)
        for line, text in zip(lines[:5], ["token", "not", "fix", "skip", "fix"], strict=True)
    } == {26}
    assert lines[-1] == f"3 checks: 1 {OK}, 2 {FAIL}"
    assert preflight.exit_status(rows) == 1
    assert preflight.exit_status(rows[:1]) == 0


def test_check_with_nothing_configured_exits_1_with_a_row_per_missing_setting() -> None:
    # nothing set, and nothing listening where Kafka, the registry and Stripe are looked for
    env = {
        "KAFKA_BOOTSTRAP_SERVERS": "127.0.0.1:1",
        "SCHEMA_REGISTRY_URL": "http://registry-user:registry-pass-77@127.0.0.1:1/apis/ccompat/v7",
        "LEDGER_STRIPE_API_BASE": "http://127.0.0.1:1",
    }
    result = CliRunner().invoke(check_cmd, ["--timeout", "2"], env=env)
    assert result.exit_code == 1, result.output
    assert isinstance(result.exception, SystemExit)  # no traceback: a table
    out = result.output
    rows = {
        line[2:].split("  ")[0].strip(): line for line in out.splitlines() if line[:1] in (OK, FAIL)
    }
    assert all(line.startswith(FAIL) for line in rows.values())
    assert "LEDGER_NETSUITE_ACCOUNT_ID" in rows["NetSuite auth"]
    assert "LEDGER_NETSUITE_TOKEN_SECRET" in rows["NetSuite auth"]
    for name in (
        "LEDGER_NETSUITE_SUBSIDIARY_ID",
        "LEDGER_NETSUITE_BANK_ACCOUNT_IDS",
        "LEDGER_NETSUITE_GLOBAL_ITEM_ID",
        "LEDGER_NETSUITE_BASE_CURRENCY",
    ):
        assert "not set" in rows[name]
    assert "fix: set LEDGER_NETSUITE_BANK_ACCOUNT_IDS: a JSON object" in out
    assert "LEDGER_STRIPE_API_KEY not set" in rows["Stripe key"]
    assert "skipped" in rows["Stripe API version"]
    assert "LEDGER_STRIPE_WEBHOOK_SECRETS not set" in rows["Stripe webhook secrets"]
    assert "no broker answers at 127.0.0.1:1" in rows["Kafka brokers"]
    assert "skipped: no broker answers" in rows["Kafka topics"]
    assert "skipped: no broker answers" in rows["Kafka partitions"]
    assert "no answer from http://127.0.0.1:1/apis/ccompat/v7" in rows["Schema registry"]
    assert "skipped: the registry does not answer" in rows["Schema compatibility"]
    assert "registry-pass-77" not in out and "registry-user" not in out


# ----------------------------------------------------------------- NetSuite, against the emulator
@pytest.fixture
def netsuite() -> collections.abc.Iterator[AppThread]:
    """An in-process emulator seeded with the local profile's set-up, and settings pointing at
    it (TBA and M2M credentials)."""
    key = rsa.generate_private_key(public_exponent=65537, key_size=2048)
    private = key.private_bytes(Encoding.PEM, PrivateFormat.PKCS8, NoEncryption()).decode()
    public = key.public_key().public_bytes(Encoding.PEM, PublicFormat.SubjectPublicKeyInfo)
    creds = Credentials(
        account="TSTDRV1_SB1",
        consumer_key="consumer-key-1",
        consumer_secret=CONSUMER_SECRET,
        token_id="token-id-1",
        token_secret=TOKEN_SECRET,
        client_id="client-1",
        certificate_id="cert-1",
        public_key_pem=public.decode(),
    )
    server = AppThread(make_app(Store(":memory:"), creds, Behaviour()))
    setenv(
        LEDGER_PROFILE="local",
        LEDGER_NETSUITE_BASE_URL=server.url,
        LEDGER_NETSUITE_ACCOUNT_ID=creds.account,
        LEDGER_NETSUITE_CONSUMER_KEY="consumer-key-1",
        LEDGER_NETSUITE_CONSUMER_SECRET=CONSUMER_SECRET,
        LEDGER_NETSUITE_TOKEN_ID="token-id-1",
        LEDGER_NETSUITE_TOKEN_SECRET=TOKEN_SECRET,
        LEDGER_NETSUITE_CLIENT_ID="client-1",
        LEDGER_NETSUITE_CERTIFICATE_ID="cert-1",
        LEDGER_NETSUITE_PRIVATE_KEY=private,
    )
    yield server
    server.close()


def netsuite_rows(**env: str) -> list[Row]:
    setenv(**env)
    ns, bad = preflight._load("NetSuite", settings.netsuite)
    accounting, missing = preflight.load_accounting()
    return bad + preflight.netsuite_checks(ns, accounting, missing, timeout=5)


def test_netsuite_correct_configuration_is_all_ticks(netsuite: AppThread) -> None:
    rows = netsuite_rows()
    assert failed(rows) == set(), preflight.render(rows)
    found = by_name(rows)
    assert found["NetSuite auth"].detail.startswith("token-based auth (TBA) accepted by http://")
    assert "LEDGER_NETSUITE_CONCURRENCY=5 ≤ 5" in found["NetSuite concurrency"].detail
    assert found["NetSuite bank accounts"].detail == (
        "EUR → account 103 'Stripe EUR Bank' (Bank), USD → account 102 'Stripe USD Bank' (Bank)"
    )
    assert found["NetSuite discount item"].detail == "discountItem 302 'Stripe Discount'"
    assert found["NetSuite undeposited funds"].detail.endswith("(UnDepFunds)")
    assert "NetSuite global customer" not in found  # not set: not checked
    assert netsuite_rows(LEDGER_NETSUITE_AUTH="m2m")[0].ok


def test_netsuite_broken_configuration_names_exactly_each_problem(netsuite: AppThread) -> None:
    rows = netsuite_rows(
        LEDGER_NETSUITE_BANK_ACCOUNT_IDS='{"USD": "102", "JPY": "999"}',  # no such record
        LEDGER_NETSUITE_TAX_ITEM_ID="104",  # an account, not an item
        LEDGER_NETSUITE_DISCOUNT_ITEM_ID="301",  # a service item, not a discount item
        LEDGER_NETSUITE_FEE_ACCOUNT_IDS='{"default": "102"}',  # a bank account, not an expense
        LEDGER_NETSUITE_CURRENCY_IDS='{"USD": "11", "EUR": "12"}',  # 12 is GBP
        LEDGER_NETSUITE_GLOBAL_CUSTOMER_ID="eid:acme",  # not an internal id
        LEDGER_NETSUITE_CONCURRENCY="6",  # above the account's 5
    )
    found = by_name(rows)
    assert failed(rows) == {
        "NetSuite bank accounts",
        "NetSuite tax item",
        "NetSuite discount item",
        "NetSuite fee accounts",
        "NetSuite currencies",
        "NetSuite global customer",
        "NetSuite concurrency",
    }, preflight.render(rows)
    assert found["NetSuite bank accounts"].detail == "JPY → no account with id 999"
    assert found["NetSuite bank accounts"].fix.startswith(
        "correct JPY in LEDGER_NETSUITE_BANK_ACCOUNT_IDS"
    )
    assert found["NetSuite tax item"].detail == (
        "no serviceSaleItem or nonInventorySaleItem or otherChargeSaleItem with id 104"
    )
    assert found["NetSuite tax item"].fix.startswith("set LEDGER_NETSUITE_TAX_ITEM_ID to")
    assert found["NetSuite discount item"].detail == "no discountItem with id 301"
    assert (
        "account 102 'Stripe USD Bank' (Bank) is not Expense"
        in found["NetSuite fee accounts"].detail
    )
    assert found["NetSuite currencies"].detail == "EUR → currency 12 'GBP' is GBP, not EUR"
    assert "not an internal id" in found["NetSuite global customer"].detail
    concurrency = found["NetSuite concurrency"]
    assert concurrency.detail.startswith("LEDGER_NETSUITE_CONCURRENCY=6 > 5")
    assert "set LEDGER_NETSUITE_CONCURRENCY to at most 5" in concurrency.fix


def test_an_integration_specific_limit_is_the_one_compared(netsuite: AppThread) -> None:
    requests.post(
        f"{netsuite.url}/_emulator/behaviour",
        json={"account_concurrency_limit": 20, "integration_concurrency_limit": 4},
        timeout=5,
    ).raise_for_status()
    row = by_name(netsuite_rows())["NetSuite concurrency"]
    assert not row.ok
    assert row.detail == (
        "LEDGER_NETSUITE_CONCURRENCY=5 > 4, the integration's own limit; account limit 20"
    )
    assert by_name(netsuite_rows(LEDGER_NETSUITE_CONCURRENCY="4"))["NetSuite concurrency"].ok


def test_governance_limits_as_oracle_documents_them() -> None:
    # the three answers of Oracle's GovernanceLimits Operation (NetSuite help)
    specific = {
        "accountConcurrencyLimit": 5,
        "accountUnallocatedConcurrencyLimit": 3,
        "integrationConcurrencyLimit": 2,
        "integrationLimitType": "integrationSpecific",
    }
    account = {k: v for k, v in specific.items() if k != "integrationConcurrencyLimit"}
    assert preflight.concurrency_limit(specific)[0] == 2
    assert preflight.concurrency_limit({**account, "integrationLimitType": "accountLimit"})[0] == 3
    assert preflight.concurrency_limit({**account, "integrationLimitType": "internal"})[0] == 5


def test_wrong_token_secret_fails_auth_and_skips_every_record_check(
    netsuite: AppThread,
) -> None:
    rows = netsuite_rows(LEDGER_NETSUITE_TOKEN_SECRET="not-the-token-secret")
    auth = rows[0]
    assert auth.name == "NetSuite auth" and not auth.ok
    assert auth.detail.endswith("HTTP 401 INVALID_LOGIN")
    assert "LEDGER_NETSUITE_TOKEN_SECRET" in auth.fix
    rest = rows[1:]
    assert len(rest) == len(preflight.REFS) and not any(r.ok for r in rest)  # none silently ✔
    assert all(r.detail == "skipped: NetSuite authentication failed" for r in rest)
    out = preflight.render(rows)
    for secret in ("not-the-token-secret", CONSUMER_SECRET):
        assert secret not in out


def test_m2m_with_a_wrong_certificate_id_names_what_netsuite_refused(
    netsuite: AppThread,
) -> None:
    auth = netsuite_rows(LEDGER_NETSUITE_AUTH="m2m", LEDGER_NETSUITE_CERTIFICATE_ID="other")[0]
    assert not auth.ok
    assert "kid is not a certificate of this client" in auth.detail
    assert "LEDGER_NETSUITE_CERTIFICATE_ID" in auth.fix


def test_missing_ids_are_rows_and_the_others_are_still_checked(
    netsuite: AppThread, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.delenv("LEDGER_PROFILE")
    for name, value in settings.PROFILES["local"].items():
        if name not in ("netsuite_subsidiary_id", "netsuite_bank_account_ids"):
            monkeypatch.setenv(
                f"LEDGER_{name.upper()}", json.dumps(value) if isinstance(value, dict) else value
            )
    rows = netsuite_rows()
    assert failed(rows) == {"LEDGER_NETSUITE_SUBSIDIARY_ID", "LEDGER_NETSUITE_BANK_ACCOUNT_IDS"}
    found = by_name(rows)
    assert found["LEDGER_NETSUITE_SUBSIDIARY_ID"].detail == "not set"
    assert found["NetSuite tax item"].ok and found["NetSuite currencies"].ok


def test_an_unreadable_secret_file_is_a_row_not_a_crash(netsuite: AppThread) -> None:
    rows = netsuite_rows(LEDGER_NETSUITE_PRIVATE_KEY_FILE="/nonexistent/key.pem")
    found = by_name(rows)
    assert "/nonexistent/key.pem" in found["NetSuite settings"].detail
    assert "/nonexistent/key.pem" in found["NetSuite set-up ids"].detail
    assert found["NetSuite auth"].detail == "skipped: the NetSuite settings are invalid"
    assert not any(r.ok for r in rows)


def test_unreachable_netsuite_is_a_row_naming_the_url(netsuite: AppThread) -> None:
    rows = netsuite_rows(LEDGER_NETSUITE_BASE_URL="http://127.0.0.1:1")
    assert rows[0].detail == "unreachable: http://127.0.0.1:1 (ConnectionError)"
    assert "LEDGER_NETSUITE_BASE_URL" in rows[0].fix
    assert not any(r.ok for r in rows)


# ----------------------------------------------------------------- Stripe, against a stand-in
GOOD_KEY = "sk_test_preflight0123456789"


def stripe_app() -> web.Application:
    """``GET /v1/events`` as Stripe answers it: 401 for an unknown key, 400 for an unknown
    Stripe-Version, a list otherwise."""

    async def events(request: web.Request) -> web.Response:
        if request.headers.get("Authorization") != f"Bearer {GOOD_KEY}":
            error = {"type": "invalid_request_error", "message": "Invalid API Key provided"}
            return web.json_response({"error": error}, status=401)
        version = request.headers.get("Stripe-Version")
        if version not in ("2024-06-20", stripe.api_version):
            message = f"Invalid Stripe API version: {version}"
            error = {"type": "invalid_request_error", "message": message}
            return web.json_response({"error": error}, status=400)
        return web.json_response({"object": "list", "data": [], "has_more": False})

    app = web.Application()
    app.router.add_get("/v1/events", events)
    return app


@pytest.fixture
def stripe_base(monkeypatch: pytest.MonkeyPatch) -> collections.abc.Iterator[str]:
    server = AppThread(stripe_app())
    monkeypatch.setenv("LEDGER_STRIPE_API_BASE", server.url)
    monkeypatch.setenv("LEDGER_STRIPE_API_KEY", GOOD_KEY)
    monkeypatch.setenv("LEDGER_STRIPE_WEBHOOK_SECRETS", "whsec_one,whsec_two")
    yield server.url
    server.close()


def stripe_rows(**env: str) -> dict[str, Row]:
    setenv(**env)
    return by_name(preflight.stripe_checks(settings.stripe(), timeout=5))


def test_stripe_key_version_and_secrets_accepted(stripe_base: str) -> None:
    rows = stripe_rows()
    assert all(r.ok for r in rows.values()), rows
    assert rows["Stripe key"].detail == f"sk_test_… key accepted by {stripe_base} (GET /v1/events)"
    assert rows["Stripe API version"].detail == "LEDGER_STRIPE_API_VERSION=2024-06-20 accepted"
    assert rows["Stripe webhook secrets"].detail == "2 signing secrets (whsec_…)"


def test_stripe_refuses_the_version_not_the_key(stripe_base: str) -> None:
    rows = stripe_rows(LEDGER_STRIPE_API_VERSION="2024-02-30")
    assert rows["Stripe key"].ok
    version = rows["Stripe API version"]
    assert not version.ok and "Invalid Stripe API version: 2024-02-30" in version.detail
    assert "LEDGER_STRIPE_API_VERSION" in version.fix
    malformed = stripe_rows(LEDGER_STRIPE_API_VERSION="latest")["Stripe API version"]
    assert not malformed.ok and "is not YYYY-MM-DD" in malformed.detail


def test_stripe_wrong_or_publishable_key(stripe_base: str) -> None:
    rows = stripe_rows(LEDGER_STRIPE_API_KEY="sk_test_wrong0123456789")
    assert rows["Stripe key"].detail == f"sk_test_… key refused by {stripe_base} (401)"
    assert "LEDGER_STRIPE_API_KEY" in rows["Stripe key"].fix
    assert rows["Stripe API version"].detail.startswith("skipped: ")
    publishable = stripe_rows(LEDGER_STRIPE_API_KEY="pk_live_abc0123456789")["Stripe key"]
    assert not publishable.ok and "publishable" in publishable.detail


@pytest.mark.parametrize(
    ("secrets", "detail"),
    [
        ("", "LEDGER_STRIPE_WEBHOOK_SECRETS not set"),
        ("whsec_ok,we_notasecret", "secret 2 of 2 does not start with whsec_"),
    ],
)
def test_webhook_secrets_present_and_well_formed(
    stripe_base: str, secrets: str, detail: str
) -> None:
    row = stripe_rows(LEDGER_STRIPE_WEBHOOK_SECRETS=secrets)["Stripe webhook secrets"]
    assert not row.ok and row.detail == detail
    assert "LEDGER_STRIPE_WEBHOOK_SECRETS" in row.fix
    assert "we_notasecret" not in row.detail


@pytest.mark.parametrize(
    "env",
    [
        {
            "LEDGER_KAFKA_SSL_CA_LOCATION": "/nonexistent/ca.pem",
            "LEDGER_KAFKA_SECURITY_PROTOCOL": "SSL",
        },
        {
            "LEDGER_KAFKA_SASL_MECHANISM": "SCRAM-SHA256",
            "LEDGER_KAFKA_SECURITY_PROTOCOL": "SASL_SSL",
        },
    ],
    ids=["missing CA file", "unknown SASL mechanism"],
)
def test_kafka_settings_the_client_refuses_are_a_row_not_a_crash(env: dict[str, str]) -> None:
    setenv(**env)
    rows = by_name(preflight.kafka_checks(settings.kafka(), timeout=1))
    brokers = rows["Kafka brokers"]
    assert not brokers.ok and "the Kafka client refuses its settings" in brokers.detail
    assert all(
        not r.ok and r.detail.startswith("skipped: ")
        for n, r in rows.items()
        if n != "Kafka brokers"
    )


def test_a_check_that_stops_unexpectedly_is_a_row_not_a_traceback(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    def broken(*_: object) -> list[Row]:
        raise KeyError("access_token")

    monkeypatch.setattr(preflight, "stripe_checks", broken)
    rows = by_name(preflight._guarded("Stripe", lambda: preflight.stripe_checks(None, 1)))
    row = rows["Stripe checks"]
    assert not row.ok and row.detail == "the check stopped: KeyError: 'access_token'"
