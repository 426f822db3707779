"""No secret in any log line at debug level, through a whole pipeline run with failures.

Every component runs with ``--log-level debug`` and distinctive credentials: the webhook secret,
the Stripe API key, the NetSuite TBA consumer key/secret and token id/secret, and the OAuth 2.0
client id and private key. The run includes what makes libraries talk: OAuth 1.0a signing
(requests-oauthlib logs base strings and headers at debug), OAuth 2.0 token requests, spurious
401s and 503s from NetSuite, a forged webhook signature, and a sink started with a wrong token
secret that stops on it. Then every line every component wrote is searched for every secret,
as written and percent-encoded once and twice.
"""

from __future__ import annotations

import secrets
import time
from pathlib import Path

import pytest
import requests

from ledgerstream.redact import forms
from ledgerstream.testing.fixtures import signed, slice_events
from ledgerstream.testing.pipeline import Pipeline

pytestmark = [pytest.mark.integration, pytest.mark.usefixtures("local_stack")]


def test_no_secret_reaches_any_log_line_at_debug_level(tmp_path: Path) -> None:
    stripe_key = "sk_test_" + secrets.token_hex(24)
    pipe = Pipeline(
        tmp_path / "run",
        extra_env={
            "LEDGER_LOG_LEVEL": "debug",
            "LEDGER_STRIPE_API_KEY": stripe_key,
            "LEDGER_EMULATOR_SPURIOUS_401_RATE": "0.2",
            "LEDGER_EMULATOR_ERRORS": "503=0.2",
            "LEDGER_EMULATOR_SEED": "3",
        },
    )
    try:
        pipe.start_all()
        events = slice_events(seed=pipe.name)
        for event in events:
            body, signature = signed(event, pipe.webhook_secret)
            resp = requests.post(
                pipe.webhook_url, data=body, headers={"Stripe-Signature": signature}, timeout=30
            )
            assert resp.status_code == 200
        body, forged = signed(events[0], "whsec_" + secrets.token_hex(16))
        resp = requests.post(
            pipe.webhook_url, data=body, headers={"Stripe-Signature": forged}, timeout=30
        )
        assert resp.status_code == 400
        pipe.wait_for_records({"customer": 1, "invoice": 1, "customerPayment": 1})
        # OAuth 2.0 as well (token requests), in a group of its own
        pipe.start(
            "sink-m2m",
            "sink",
            "netsuite",
            env={"LEDGER_NETSUITE_AUTH": "m2m", "LEDGER_SINK_GROUP_ID": pipe.name + "-m2m"},
        )
        # and a sink with a wrong token secret, which must stop on it
        wrong = pipe.start(
            "sink-wrong",
            "sink",
            "netsuite",
            env={
                "LEDGER_NETSUITE_TOKEN_SECRET": secrets.token_hex(32),
                "LEDGER_SINK_GROUP_ID": pipe.name + "-wrong",
                "LEDGER_EMULATOR_SPURIOUS_401_RATE": "0",
            },
        )
        deadline = time.monotonic() + 120
        while wrong.poll() is None and time.monotonic() < deadline:
            time.sleep(0.5)
        assert wrong.returncode not in (None, 0)
        del pipe.procs["sink-wrong"]
        assert "NetSuite rejects the credentials" in pipe.log("sink-wrong")
        deadline = time.monotonic() + 60
        while time.monotonic() < deadline:
            if "-> internal id" in pipe.log("sink-m2m"):
                break
            time.sleep(0.5)
        assert "-> internal id" in pipe.log("sink-m2m")
    finally:
        pipe.stop()
    key = Path(pipe.netsuite["LEDGER_NETSUITE_PRIVATE_KEY_FILE"]).read_text()
    # the account id is no secret (it is in every NetSuite URL); the rest are
    values = [v for k, v in pipe.netsuite.items() if not k.endswith(("_FILE", "_ACCOUNT_ID"))]
    values += [key, pipe.webhook_secret, stripe_key]
    names = [k for k in pipe.netsuite if not k.endswith(("_FILE", "_ACCOUNT_ID"))]
    names += ["private key", "webhook secret", "stripe key"]
    logs = {p.name: p.read_text(errors="replace") for p in pipe.run_dir.glob("*.log")}
    assert {"webhook.log", "router.log", "processor.log", "sink.log", "metadata.log"} <= set(logs)
    for name in ("webhook.log", "router.log", "processor.log", "sink.log", "sink-m2m.log"):
        assert " DEBUG " in logs[name] or "[DEBUG]" in logs[name], f"{name} not at debug"
    leaks = [
        (name, secret_name, form[:12] + "…")
        for name, text in logs.items()
        for secret_name, value in zip(names, values, strict=True)
        for form in forms(value)
        if form in text
    ]
    assert leaks == []
