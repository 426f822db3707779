"""``ledgerstream replay``: a component's consumer group moved back to an offset or a time, over
a real broker, with the NetSuite sink reading the period again against the emulator."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
from datetime import UTC, datetime

import pytest

from ledgerstream.testing.pipeline import Pipeline
from tests.integration.test_sink import _customer, publish, start_emulator, wait_sink_done

pytestmark = [pytest.mark.integration, pytest.mark.usefixtures("local_stack")]


def replay(pipe: Pipeline, *args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "ledgerstream.cli", "replay", "--group", "sink", *args],
        env=pipe.env(),
        capture_output=True,
        text=True,
        timeout=120,
    )


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
