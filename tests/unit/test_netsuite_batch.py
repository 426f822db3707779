"""Which writes the sink batches, and when it submits them (no NetSuite: the job pool and the
sink are stand-ins that record what they are given)."""

from __future__ import annotations

import threading
from types import SimpleNamespace
from typing import Any

from ledgerstream.commands import Command
from ledgerstream.sinks.netsuite import Pending
from ledgerstream.sinks.netsuite_batch import Batches, Write
from ledgerstream.sinks.netsuite_client import JobStatus, NetSuiteResponseError


class Sink(SimpleNamespace):
    def __init__(self, ceiling: int = 5) -> None:
        limiter = SimpleNamespace(ceiling=ceiling, limit=float(ceiling), rtt=None)
        super().__init__(limiter=limiter, singles_open=0, singles=[])

    def submit_single(self, write: Write) -> None:
        self.singles.append(write)
        self.singles_open += 1


class Pool:
    def __init__(self) -> None:
        self.jobs: list[list[Write]] = []

    def submit(self, fn: Any, writes: list[Write]) -> None:
        self.jobs.append(writes)

    def shutdown(self, **_: Any) -> None:
        pass


def batches(mode: str, jobs: int = 2, sink: Sink | None = None) -> tuple[Batches, Sink, Pool]:
    sink = sink or Sink()
    b = Batches(sink, mode, jobs)  # type: ignore[arg-type]
    b.pool.shutdown()
    pool = Pool()
    b.pool = pool  # type: ignore[assignment]
    return b, sink, pool


def write(record_type: str, eid: str, operation: str = "upsert") -> Write:
    cmd = Command(record_type, eid, {"memo": eid}, "charge", eid, "k", operation=operation)
    return Write(Pending(None, cmd), "{}", [], (), {})


def test_what_each_mode_batches() -> None:
    single, _, _ = batches("single")
    assert not single.takes(write("invoice", "in_1"), singles_open=0)
    batch, _, _ = batches("batch")
    assert batch.takes(write("invoice", "in_1"), singles_open=0)
    assert not batch.takes(write("customer", "cus_1", operation="link"), singles_open=0)


def test_auto_sends_a_write_where_it_is_written_sooner() -> None:
    auto, sink, _ = batches("auto", jobs=2)  # a window of 5
    w = write("invoice", "in_1")
    assert not auto.takes(w, singles_open=500)  # no round trip measured yet: single
    sink.limiter.rtt = 0.2  # singles: 5 per 0.2 s; a batch: 4 round trips and a poll's wait,
    # then 0.1 s per item (two jobs at once, an item a round trip until a job has run)
    assert not auto.takes(w, singles_open=9)  # fewer than two windows waiting
    assert not auto.takes(w, singles_open=25)  # 1.0 s single vs 1.15 s in a batch
    assert auto.takes(w, singles_open=30)  # 1.2 s vs 1.15 s
    for i in range(10):
        auto.add(write("invoice", f"in_{i + 2}"))
    assert not auto.takes(w, singles_open=30)  # 1.2 s vs 2.15 s behind ten waiting items
    auto.seconds_per_item = 0.02  # the last jobs went faster than a round trip
    assert auto.takes(w, singles_open=30)  # 1.2 s vs 1.16 s


def test_waiting_writes_go_by_record_type_fullest_first_within_the_job_slots() -> None:
    b, _, pool = batches("batch", jobs=2)
    for i in range(250):
        b.add(write("invoice", f"in_{i}"))
    b.add(write("customer", "cus_1"))
    b.flush()
    assert [len(j) for j in pool.jobs] == [100, 100]  # two slots, the fullest group first
    assert {w.record_type for j in pool.jobs for w in j} == {"invoice"}
    assert b.held == 51
    b.flush()
    assert len(pool.jobs) == 2  # no slot free: they wait, and more may join them
    b.add(write("invoice", "in_250"))
    b._finished.append(100)  # one job ended: its slot takes the fullest group
    b.flush()
    assert [len(j) for j in pool.jobs] == [100, 100, 51] and b.held == 1
    b._finished += [100, 51]
    b.flush()
    assert [len(j) for j in pool.jobs] == [100, 100, 51, 1] and b.held == 0


def test_auto_gives_waiting_writes_back_to_idle_single_writers() -> None:
    b, sink, pool = batches("auto", jobs=1)
    for i in range(230):
        b.add(write("invoice", f"in_{i}"))
    sink.singles_open = 10  # two windows of single writes open: no room
    b.flush()
    assert len(pool.jobs) == 1 and b.held == 130 and sink.singles == []
    sink.singles_open = 6  # four single writes finished
    b.flush()
    assert len(sink.singles) == 4 and b.held == 126


def test_revoked_partitions_lose_their_unsubmitted_writes() -> None:
    b, _, _ = batches("batch")
    mine, theirs = write("invoice", "in_1"), write("invoice", "in_2")
    theirs.item.msg = SimpleNamespace(topic=lambda: "t", partition=lambda: 3, offset=lambda: 9)  # type: ignore[assignment]
    b.add(mine)
    b.add(theirs)
    assert b.drop({("t", 3)}) == [theirs]
    assert b.held == 1


# ------------------------------------------------------------------ a job's outcomes
class Transient(Exception):
    pass


class JobSink(Sink):
    """Runs requests at once; a ``Transient`` is retried, as the sink's retries would."""

    def __init__(self, client: Any) -> None:
        super().__init__()
        self.client, self.stopping = client, threading.Event()
        self.outcomes: list[tuple[str, Any]] = []

    def retrying_call(self, request: Any, record_type: str, what: str) -> Any:
        while True:
            try:
                return request()
            except Transient:
                continue

    def call(self, request: Any, record_type: str) -> Any:
        return request()

    def succeed(self, item: Pending, internal_id: str, suspended: Any) -> None:
        self.outcomes.append((item.cmd.external_id, internal_id))

    def fail(self, item: Pending, exc: BaseException) -> None:
        self.outcomes.append((item.cmd.external_id, exc))


class Client:
    def __init__(self, progress: str = "succeeded", submit: list[Any] | None = None) -> None:
        self.progress, self.submits = progress, submit or []
        self.status_error: Exception | None = None
        self.calls: list[str] = []

    def batch_upsert(self, record_type: str, items: Any, key: str, replace: Any) -> str:
        self.calls.append("submit")
        if self.submits:
            raise self.submits.pop(0)
        return "job/1"

    def job_status(self, job: str) -> JobStatus:
        self.calls.append("status")
        if self.status_error is not None:
            raise self.status_error
        return JobStatus(job, "1", self.progress, completed=True)

    def ids_by_external_id(self, record_type: str, eids: list[str]) -> dict[str, str]:
        self.calls.append("lookup")
        return {eid: str(100 + i) for i, eid in enumerate(eids)}

    def job_results(self, job: str, eids: list[str]) -> dict[str, Any]:
        self.calls.append("results")
        refused = NetSuiteResponseError(400, "Bad Request", [{"detail": "no"}])
        return {eid: refused if eid == "in_1" else "7" for eid in eids}


def run_job(client: Client) -> tuple[JobSink, list[Write]]:
    sink = JobSink(client)
    b = Batches(sink, "batch", 1)  # type: ignore[arg-type]
    b.pool.shutdown()
    writes = [write("invoice", f"in_{i}") for i in range(3)]
    b._job(writes)
    assert all(w.settled for w in writes)
    return sink, writes


def test_a_job_that_succeeded_gives_every_record_its_id_from_one_lookup() -> None:
    sink, _ = run_job(Client())
    assert sink.outcomes == [("in_0", "100"), ("in_1", "101"), ("in_2", "102")]
    assert sink.client.calls == ["submit", "status", "lookup"]


def test_a_job_not_all_clear_reads_each_result_and_writes_a_refused_one_again_alone() -> None:
    for progress in ("failed", "finishedWithErrors", "something undocumented"):
        sink, writes = run_job(Client(progress=progress))
        assert sink.outcomes == [("in_0", "7"), ("in_2", "7")]
        assert sink.singles == [writes[1]]  # its 400 comes from the single write: dead letter


def test_a_batch_refused_at_once_is_written_one_by_one_an_ambiguous_refusal_is_dead_lettered() -> (
    None
):
    refused = NetSuiteResponseError(400, "Bad Request", [])
    sink, writes = run_job(Client(submit=[refused]))
    assert sink.singles == writes and sink.outcomes == []  # no job was made
    sink, writes = run_job(Client(submit=[Transient(), refused]))  # the first try may have
    assert sink.singles == [] and [o[1] for o in sink.outcomes] == [refused] * 3  # made one


def test_a_job_netsuite_does_not_know_is_written_one_by_one_an_unreadable_one_dead_lettered() -> (
    None
):
    client = Client()
    client.status_error = NetSuiteResponseError(404, "Not Found", [])
    sink, writes = run_job(client)
    assert sink.singles == writes and sink.outcomes == []
    client = Client()
    client.status_error = NetSuiteResponseError(403, "Forbidden", [])
    sink, writes = run_job(client)  # it may still run: not written again, dead-lettered
    assert sink.singles == [] and [o[1] for o in sink.outcomes] == [client.status_error] * 3
