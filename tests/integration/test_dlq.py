"""``ledgerstream dlq``: dead letters listed, shown and redriven over a real broker, with the
NetSuite sink writing the redriven commands to the emulator once it accepts them."""

from __future__ import annotations

import subprocess

import pytest
import requests

from ledgerstream.testing.pipeline import Pipeline
from tests.integration.test_sink import _customer, publish, start_emulator, wait_sink_done

pytestmark = [pytest.mark.integration, pytest.mark.usefixtures("local_stack")]


def dlq(pipe: Pipeline, *args: str) -> subprocess.CompletedProcess[str]:
    return pipe.run_cli("dlq", *args)


def behave(pipe: Pipeline, **changes: object) -> None:
    answer = requests.post(f"{pipe.emulator_url}/_emulator/behaviour", json=changes, timeout=5)
    answer.raise_for_status()


def test_commands_netsuite_refused_are_redriven_once_it_accepts_them(pipe: Pipeline) -> None:
    assert dlq(pipe, "list").stdout.strip() == "no dead letters"
    start_emulator(pipe)
    behave(pipe, error_rates={"400": 1.0})  # NetSuite refuses every write (a set-up fault)
    publish([_customer(f"cus_d{i}") for i in range(3)])
    pipe.start("sink", "sink", "netsuite")
    wait_sink_done(pipe, timeout=90)
    assert pipe.records("customer") == []

    listed = dlq(pipe, "list")
    assert listed.returncode == 0, listed.stderr
    assert f"{pipe.prefix}netsuite.commands  NetSuiteResponseError: 3 (0 redriven)" in listed.stdout
    assert "HTTP 400" in listed.stdout and "3 dead letters, 3 not redriven" in listed.stdout

    shown = dlq(pipe, "show", "cus_d1")
    assert shown.returncode == 0, shown.stderr
    heads = [x for x in shown.stdout.splitlines() if x.startswith(pipe.prefix)]
    assert len(heads) == 1 and heads[0].startswith(f"{pipe.prefix}netsuite.commands.dlq:")
    assert "netsuite.errorDetails" in shown.stdout, shown.stdout
    assert "Injected validation error." in shown.stdout
    assert '"external_id": "cus_d1"' in shown.stdout  # the command, pretty-printed
    ref = shown.stdout.split()[0]
    assert f"ledgerstream dlq redrive --ref {ref}" in shown.stdout
    for secret in ("LEDGER_NETSUITE_CONSUMER_SECRET", "LEDGER_NETSUITE_TOKEN_SECRET"):
        assert pipe.env()[secret] not in shown.stdout
    assert dlq(pipe, "show", ref).stdout == shown.stdout
    assert dlq(pipe, "redrive").returncode == 2  # says which: never everything by default

    failed = pipe.run_cli("status", "cus_d1").stdout
    assert "FAILED" in failed and "ledgerstream dlq redrive --stripe-id cus_d1" in failed, failed

    behave(pipe, error_rates={})  # fixed
    dry = dlq(pipe, "redrive", "--topic", "netsuite.commands", "--dry-run")
    assert "would redrive: 3;" in dry.stdout, dry.stdout + dry.stderr
    one = dlq(pipe, "redrive", "--stripe-id", "cus_d1")
    assert one.returncode == 0 and "redriven: 1;" in one.stdout, one.stdout + one.stderr
    wait_sink_done(pipe, timeout=90)
    assert [r["externalId"] for r in pipe.records("customer")] == ["cus_d1"]
    written = pipe.run_cli("status", "cus_d1").stdout
    assert "written" in written and "FAILED" not in written, written  # the failure is gone

    rest = dlq(pipe, "redrive", "--error-class", "NetSuiteResponseError")
    assert "redriven: 2; redriven before, passed over: 1;" in rest.stdout, rest.stdout
    wait_sink_done(pipe, timeout=90)
    again = dlq(pipe, "redrive", "--all")
    assert "redriven: 0; redriven before, passed over: 3;" in again.stdout, again.stdout
    wait_sink_done(pipe, timeout=90)
    customers = pipe.records("customer")
    assert sorted(r["externalId"] for r in customers) == ["cus_d0", "cus_d1", "cus_d2"]
    assert "3 (3 redriven)" in dlq(pipe, "list").stdout
