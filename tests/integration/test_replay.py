"""``ledgerstream replay``: a component's consumer group moved back to an offset or a time, over
a real broker, with the NetSuite sink reading the period again against the emulator."""

from __future__ import annotations

import os
import signal
import subprocess
from collections import Counter
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import pytest

from ledgerstream import topics
from ledgerstream.testing.generator import Scenario, generate
from ledgerstream.testing.pipeline import Pipeline
from ledgerstream.testing.reference import reference_booking
from tests.integration.helpers import (
    consume_all,
    pipeline_on_double,
    post_webhooks,
    wait_pipeline_caught_up,
)
from tests.integration.test_netsuite_emulator import client_for
from tests.integration.test_sink import _customer, publish, start_emulator, wait_sink_done
from tests.unit.test_ledger import CFG

pytestmark = [pytest.mark.integration, pytest.mark.usefixtures("local_stack")]


def replay(pipe: Pipeline, *args: str, group: str = "sink") -> subprocess.CompletedProcess[str]:
    return pipe.run_cli("replay", "--group", group, *args)


def test_a_stopped_sink_reads_a_period_again_and_a_running_one_is_not_moved(
    pipe: Pipeline,
) -> None:
    publish([_customer(f"cus_r{i}") for i in range(3)])
    start_emulator(pipe)
    pipe.start("sink", "sink", "netsuite")
    wait_sink_done(pipe)
    mark = datetime.now(UTC)
    publish([_customer(f"cus_t{i}") for i in range(2)])
    wait_sink_done(pipe)
    before = {r["externalId"]: r for r in pipe.records("customer")}
    assert len(before) == 5
    writes = pipe.emulator_stats()["requests"]

    # running: Kafka would refuse, and so does the command, naming the member
    refused = replay(pipe, "--from-beginning")
    assert refused.returncode == 2, refused.stdout + refused.stderr
    assert "live member" in refused.stderr and "stop them first" in refused.stderr

    sink = pipe.procs.pop("sink")
    os.killpg(sink.pid, signal.SIGTERM)
    sink.wait(60)
    # the dry run shows the plan and moves nothing
    dry = replay(pipe, "--to-time", mark.isoformat(), "--dry-run")
    assert dry.returncode == 0, dry.stderr
    assert "2 records to read again" in dry.stdout and "nothing moved" in dry.stdout
    assert "NetSuite writes to expect: up to 2 (one write per command read again)" in dry.stdout
    again = replay(pipe, "--to-time", mark.isoformat(), "--dry-run")
    assert again.stdout == dry.stdout
    # moved to the time: the two later commands are read and written again, not the others
    moved = replay(pipe, "--to-time", mark.isoformat())
    assert moved.returncode == 0, moved.stderr
    assert "moved" in moved.stdout
    pipe.start("sink-again", "sink", "netsuite")
    wait_sink_done(pipe)
    after_writes = pipe.emulator_stats()["requests"]
    puts = {k: n for k, n in after_writes.items() if k.startswith("PUT")}
    puts_before = {k: n for k, n in writes.items() if k.startswith("PUT")}
    assert sum(puts.values()) - sum(puts_before.values()) == 2
    after = {r["externalId"]: r for r in pipe.records("customer")}
    assert after == before  # upserts of the same bodies: nothing changed, nothing duplicated
    # and from the beginning: all five
    sink = pipe.procs.pop("sink-again")
    os.killpg(sink.pid, signal.SIGTERM)
    sink.wait(60)
    full = replay(pipe, "--from-beginning")
    assert full.returncode == 0 and "5 records to read again" in full.stdout, full.stdout


def _stop(pipe: Pipeline, *names: str) -> None:
    for name in names:
        proc = pipe.procs.pop(name)
        os.killpg(proc.pid, signal.SIGTERM)
        assert proc.wait(60) == 0, pipe.log(name)[-3000:]


def _by_external_id(records: list[dict[str, Any]]) -> dict[tuple[str, str], Any]:
    """Each record keyed by (type, externalId), its references to other written records
    named by their externalIds (internal ids change when a record is written again)."""
    names = {str(r["id"]): r["externalId"] for r in records}

    def named(value: Any) -> Any:
        if isinstance(value, dict):
            out = {k: named(v) for k, v in value.items()}
            if str(value.get("id")) in names:
                out["id"] = names[str(value["id"])]
            return out
        if isinstance(value, list):
            return [named(v) for v in value]
        return value

    volatile = ("id", "createdDate", "lastModifiedDate", "version", "links")
    return {
        (r["type"], r["externalId"]): named({k: v for k, v in r.items() if k not in volatile})
        for r in records
    }


def test_resync_after_netsuite_lost_every_record_writes_them_all_again_identical(
    tmp_path: Path,
) -> None:
    """After a NetSuite restore to a time before the integration wrote anything: every record
    is deleted (through NetSuite's REST DELETE), the processor's group is moved to the
    beginning with --resync, and the same records come back, with new internal ids, the same
    fields and references, none twice, nothing dead-lettered. The sink learns the new ids:
    its back-reference index still held the lost ones, and NetSuite refused them."""
    history = generate(Scenario(seed=21, customers=3, months=1, settlement_currencies=("usd",)))
    expected = reference_booking(history, CFG).commands
    want = Counter(c.record_type for c in expected.values())
    assert want["deposit"] >= 1 and want["customerPayment"] >= 1
    with pipeline_on_double(tmp_path, history) as pipe:
        post_webhooks(pipe, history.events)
        pipe.wait_for_records(dict(want), timeout=300)
        wait_pipeline_caught_up(pipe, sink_timeout=180)
        before = pipe.records()
        assert len(before) == sum(want.values())

        _stop(pipe, "processor", "sink")
        client = client_for(pipe)
        for record in sorted(before, key=lambda r: int(r["id"]), reverse=True):
            client.session.delete(client.url(record["type"], str(record["id"]))).raise_for_status()
        assert pipe.records() == []

        refused = replay(pipe, "--from-beginning", "--resync", group="sink")
        assert refused.returncode == 2 and "--group processor" in refused.stderr
        sent = len(consume_all(pipe.prefix + topics.NETSUITE_COMMANDS.name))
        dry = replay(pipe, "--from-beginning", "--resync", "--dry-run", group="processor")
        assert dry.returncode == 0, dry.stdout + dry.stderr
        # every input record read again, so every command sent so far is expected again
        assert f"NetSuite writes to expect: up to {sent} (re-sync:" in dry.stdout, dry.stdout
        resync = replay(pipe, "--from-beginning", "--resync", group="processor")
        assert resync.returncode == 0, resync.stdout + resync.stderr
        # every command the processor sent, forgotten (one per NetSuite record)
        assert f"forgot the {len(before)} commands" in resync.stdout, resync.stdout
        pipe.start("processor-again", "processor", "worker")
        pipe.start("sink-again", "sink", "netsuite")
        pipe.wait_for_records(dict(want), timeout=300)
        wait_pipeline_caught_up(pipe, sink_timeout=180)
        after = pipe.records()

    assert len(after) == len(before)  # nothing twice
    assert not {r["id"] for r in after} & {r["id"] for r in before}  # all written anew
    assert _by_external_id(after) == _by_external_id(before)
    assert consume_all(pipe.prefix + topics.NETSUITE_COMMANDS.name + ".dlq", timeout=3) == []
    # the sink found the internal ids it knew stale, and learnt the new ones
    assert "NetSuite no longer holds" in pipe.log("sink-again")
