"""Waiting for a restarted broker: as long as it loads its partitions' logs, with progress."""

from __future__ import annotations

from pathlib import Path

import pytest

from ledgerstream.stack import LogLoading, StackError, _wait

LINE = (
    "[2026-12-02 10:36:49,892] INFO Completed load of Log(dir=/d/t25-3, topic=t25, partition=3, "
    "highWatermark=0, lastStableOffset=0, logStartOffset=0, logEndOffset=0) with 1 segments, "
    "local-log-start-offset 0 and log-end-offset 0 in 40ms ({n}/{total} completed in /d) "
    "(kafka.log.LogManager)\n"
)


class Time:
    def __init__(self) -> None:
        self.now = 0.0

    def clock(self) -> float:
        return self.now

    def sleep(self, s: float) -> None:
        self.now += s


def test_log_loading_reads_only_new_whole_lines(tmp_path: Path) -> None:
    log = tmp_path / "server.log"
    log.write_text("[earlier run] INFO Loaded 5 logs in 10ms (kafka.log.LogManager)\n")
    progress = LogLoading(log, offset=log.stat().st_size)
    assert progress() is None  # the earlier run's lines are not this start's
    with open(log, "a") as f:
        f.write(LINE.format(n=1, total=4000) + LINE.format(n=2, total=4000)[:50])
    assert progress() == "loading partition logs: 1 of 4000"
    with open(log, "a") as f:  # the rest of the half-written line
        f.write(LINE.format(n=2, total=4000)[50:])
    assert progress() == "loading partition logs: 2 of 4000"
    with open(log, "a") as f:
        f.write("[t] INFO Loaded 4000 logs in 312000ms (kafka.log.LogManager)\n")
    assert progress() == "partition logs loaded (4000 in 312.0s)"


def test_wait_outlasts_its_timeout_while_loading_progresses_and_reports_it() -> None:
    t = Time()
    reports: list[str] = []
    step = iter(range(1, 10_000))

    def check() -> str | None:  # ready after 300 s of loading
        return "ready" if t.now >= 300 else None

    def progress() -> str:  # one partition per poll
        return f"loading partition logs: {next(step)} of 600"

    got = _wait(check, 60, "kafka", None, progress, reports.append, t.clock, t.sleep)
    assert got == "ready"
    assert reports[0] == "kafka: loading partition logs: 1 of 600"
    assert 25 <= len(reports) <= 31  # about one per 10 s of the 300 s, not one per poll


def test_wait_gives_up_when_nothing_progresses() -> None:
    t = Time()
    with pytest.raises(StackError, match="not ready after 60s"):
        _wait(
            lambda: None,
            60,
            "kafka",
            None,
            lambda: "loading partition logs: 7 of 600",
            None,
            t.clock,
            t.sleep,
        )
    assert 60 <= t.now <= 61
