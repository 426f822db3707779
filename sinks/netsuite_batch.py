"""Batch writes for the NetSuite sink: up to 100 records of one type in one asynchronous request.

NetSuite's REST batch operations (Oracle's help: "Batch Operations", article_0127092747; "REST
Web Services Request Processing", chapter_161251386312) take up to 100 upserts of one record
type in one request, answer 202 with a job, and execute the items in the background in the
account's REST async processors. The gain is requests, not speed: one submit, a few status
polls and one SuiteQL lookup of the internal ids replace 100 writes against the account's
concurrency limit, and the records are written as fast as the async processors go
(``LEDGER_NETSUITE_BATCH_JOBS`` jobs at once, one per processor).

What stays as with single writes (``sinks/netsuite.py``):
- a command is started (and so batched) only once every record it references is written, so a
  batch only holds records whose references NetSuite already has; one order key has at most one
  write under way, batched or not, so the writes of one record and of one invoice keep order;
- each item is an upsert on its externalId, and the submit carries an idempotency key (a new
  UUID per batch, reused by its retries): a submit whose answer was lost is sent again without
  running twice, and a replay writes the same records again, not new ones;
- an item NetSuite refused is written again on its own, with the single write's retries, stale
  reference handling and dead letter for a true 400; so is every item of a batch whose submit
  NetSuite refused as a whole;
- the offsets are committed after the records are written and their back-references
  acknowledged: the sink's results queue gets one outcome per item, as from single writes.

Modes (``LEDGER_NETSUITE_WRITE_MODE``): ``single`` never batches; ``batch`` batches every write
but link-mode matches (a lookup, then a write); ``auto`` sends each write where it will be written
sooner (``_batch_sooner``): singly while the concurrency keeps up, so live traffic keeps the
latency of single writes; on a backlog (a replay, a backfill, a catch-up after an outage) the
writes the single writers could not reach for a while go to batches, adding the async
processors' pace to the concurrency's.
"""

from __future__ import annotations

import logging
import threading
import time
import uuid
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

import requests

from ledgerstream.sinks.netsuite_client import (
    BATCH_MAX_ITEMS,
    SUITEQL_TRANSACTION_TYPES,
    NetSuiteResponseError,
)

if TYPE_CHECKING:
    from ledgerstream.sinks.netsuite import NetSuiteSink, Pending

log = logging.getLogger(__name__)

# the record types whose internal ids a SuiteQL lookup finds after a batch
BATCHABLE = frozenset({"customer", *SUITEQL_TRANSACTION_TYPES})
# a sink stopping still waits this long for its submitted jobs to end in NetSuite: a restarted
# sink writes their records again, and a job NetSuite ran after that could put back an older
# version
STOP_GRACE_S = 60.0
# polling a job: the first poll when it should be done (its items at the pace of the last jobs),
# then after a tenth of that, growing by half each time; never sooner or later than these
POLL_MIN_S, POLL_MAX_S = 0.25, 10.0


@dataclass
class Write:
    """A started write, as ``NetSuiteSink._write_task`` takes it."""

    item: Pending
    body_json: str
    replace: list[str]
    suspended: tuple[tuple[str, str], ...]
    refs: dict[tuple[str, str], str]
    settled: bool = False  # its outcome was handed to the sink

    @property
    def record_type(self) -> str:
        return self.item.cmd.record_type

    @property
    def external_id(self) -> str:
        return self.item.cmd.external_id


class Batches:
    """Started writes grouped by record type (and the sublists they replace), submitted as
    batch jobs by a small pool of threads, at most ``jobs`` at once."""

    def __init__(self, sink: NetSuiteSink, mode: str, jobs: int):
        self.sink = sink
        self.mode = mode
        self.jobs = jobs
        self.groups: dict[tuple[str, tuple[str, ...]], list[Write]] = {}
        self.pool = ThreadPoolExecutor(jobs, thread_name_prefix="netsuite-batch")
        self.running = 0  # jobs submitted to the pool and not finished (main thread only)
        self.in_jobs = 0  # the writes of those jobs
        self._finished: list[int] = []  # the sizes of jobs ended (appended by job threads)
        self._lock = threading.Lock()
        self.seconds_per_item: float | None = None  # the pace of the last jobs
        self.submitted = self.items = self.fallbacks = 0

    def takes(self, write: Write, singles_open: int) -> bool:
        """Whether this write goes into a batch (else it is written on its own)."""
        if self.mode == "single" or write.item.cmd.operation == "link":
            return False
        if write.record_type not in BATCHABLE:
            return False
        if self.mode == "batch":
            return True
        return self._batch_sooner(singles_open)

    def _batch_sooner(self, singles_open: int) -> bool:
        """Auto mode: would a batch write this record sooner than the single writers? They
        get through the writes before it at the limiter's window per round trip; a batch job
        through the items before it (waiting, or in jobs under way) at the async processors'
        pace, plus a submit, a poll or two and a lookup. Until a job has run, an item is taken to
        cost a round trip. Each write goes where it is written sooner: batches take only what
        the concurrency cannot keep up with, and records that others wait for are not held
        in a long job while a single write would have been quicker."""
        self._settle()
        limiter = self.sink.limiter
        rtt = limiter.rtt
        if rtt is None or singles_open < 2 * limiter.ceiling:
            return False  # single writes have room (or nothing is known yet)
        single_wait = singles_open * rtt / max(1.0, limiter.limit)
        per_item = self.seconds_per_item if self.seconds_per_item is not None else rtt
        ahead = self.held + self.in_jobs + 1
        batch_wait = ahead * per_item / self.jobs + 4 * rtt + POLL_MIN_S
        return single_wait > batch_wait

    def add(self, write: Write) -> None:
        key = (write.record_type, tuple(write.replace))
        self.groups.setdefault(key, []).append(write)

    @property
    def held(self) -> int:
        return sum(len(writes) for writes in self.groups.values())

    def _settle(self) -> None:
        """Count the jobs that ended (their threads append to ``_finished``)."""
        with self._lock:
            self.running -= len(self._finished)
            self.in_jobs -= sum(self._finished)
            self._finished.clear()

    def flush(self) -> None:
        """Submit what waits, fullest group first, as far as job slots allow: a free async
        processor never idles while writes wait, and while all are busy the writes that become
        ready (the dependents of those a job wrote) gather into the next batches. (Waiting for
        a group to fill while a slot is free was tried: it made the jobs no bigger, since the
        writes held are what limits them, and the backlog slower.)"""
        self._settle()
        for key, writes in sorted(self.groups.items(), key=lambda kv: -len(kv[1])):
            while writes and self.running < self.jobs:
                chunk = writes[:BATCH_MAX_ITEMS]
                del writes[:BATCH_MAX_ITEMS]
                self.running += 1
                self.in_jobs += len(chunk)
                self.pool.submit(self._job, chunk)
            if not writes:
                del self.groups[key]
        if self.mode == "auto":
            self._back_to_singles()

    def _back_to_singles(self) -> None:
        """Auto mode: writes still waiting for a job go back to single writes when these have
        room again, so that the concurrency is never idle while the processors are busy."""
        room = 2 * self.sink.limiter.ceiling - self.sink.singles_open
        for key in list(self.groups):
            if room <= 0:
                return
            writes = self.groups[key]
            moved = writes[:room]
            del writes[:room]
            room -= len(moved)
            for write in moved:
                self.sink.submit_single(write)
            if not writes:
                del self.groups[key]

    def drop(self, revoked: set[tuple[str, int]]) -> list[Write]:
        """Forget the writes not submitted yet of revoked partitions (not written, not
        committed: their new owner reads them again)."""
        dropped: list[Write] = []
        for key in list(self.groups):
            writes = self.groups[key]
            kept = [w for w in writes if w.item.tp is None or w.item.tp not in revoked]
            dropped += [w for w in writes if w not in kept]
            if kept:
                self.groups[key] = kept
            else:
                del self.groups[key]
        return dropped

    def close(self) -> None:
        self.groups.clear()
        self.pool.shutdown(wait=True, cancel_futures=True)

    # ----------------------------------------------------------------- job threads
    def _job(self, writes: list[Write]) -> None:
        from ledgerstream.sinks.netsuite import CredentialsRefused
        from ledgerstream.sinks.netsuite_client import NetSuiteAuthError

        try:
            self._run(writes)
        except Exception as exc:  # noqa: BLE001 - every write gets its outcome
            rest = [w for w in writes if not w.settled]
            if not isinstance(exc, InterruptedError | CredentialsRefused | NetSuiteAuthError):
                # a job NetSuite accepted, whose fate is unknown: not written again here (the
                # job could still run, after a newer version): dead-lettered with the reason,
                # for a redrive once NetSuite shows what it holds
                log.error(
                    "batch of %d %s: %s; its %d unsettled records go to the dead-letter topic",
                    len(writes),
                    writes[0].record_type,
                    exc,
                    len(rest),
                )
            for write in rest:
                write.settled = True
                self.sink.fail(write.item, exc)  # stopping, credentials: as single writes
        finally:
            with self._lock:
                self._finished.append(len(writes))

    def _run(self, writes: list[Write]) -> None:
        sink, client = self.sink, self.sink.client
        record_type = writes[0].record_type
        key = str(uuid.uuid4())  # one per batch; its retries send it again
        items = [(w.external_id, w.body_json) for w in writes]
        attempts = 0

        def submit() -> str:
            nonlocal attempts
            attempts += 1
            return client.batch_upsert(record_type, items, key, replace=writes[0].replace)

        try:
            job = sink.retrying_call(submit, record_type, f"batch of {len(writes)} {record_type}")
        except NetSuiteResponseError as exc:
            if attempts > 1:
                raise  # an earlier attempt may have created the job: its fate is unknown
            # refused as a whole (e.g. one item makes the request invalid), no job made: each
            # record on its own
            log.warning(
                "batch of %d %s refused (%s): writing them one by one",
                len(writes),
                record_type,
                exc,
            )
            self._one_by_one(writes)
            return
        with self._lock:
            self.submitted += 1
        started = time.monotonic()
        try:
            status = self._wait(job, record_type, len(writes))
        except NetSuiteResponseError as exc:
            if exc.status != 404:
                raise
            # NetSuite does not know the job (it cannot run later): each record on its own
            log.warning("%s: not found (%s): writing its records one by one", job, exc)
            self._one_by_one(writes)
            return
        pace = (time.monotonic() - started) / len(writes)
        eids = [w.external_id for w in writes]
        if status.succeeded:
            # all written: their internal ids in one SuiteQL lookup
            results: dict[str, Any] = sink.retrying_call(
                lambda: client.ids_by_external_id(record_type, eids),
                record_type,
                f"internal ids of {job}",
            )
        else:
            # not all-clear: what each item got (one read per item, for this batch only)
            results = sink.retrying_call(
                lambda: client.job_results(job, eids), record_type, f"results of {job}"
            )
        again = []
        for write in writes:
            outcome = results.get(write.external_id)
            if isinstance(outcome, str):
                write.settled = True
                sink.succeed(write.item, outcome, write.suspended)
            else:  # refused by NetSuite (the job ended): on its own, as a single write would
                again.append(write)
        with self._lock:
            self.items += len(writes) - len(again)
            self.seconds_per_item = (
                pace if self.seconds_per_item is None else 0.7 * self.seconds_per_item + 0.3 * pace
            )
        if again:
            log.info(
                "%s: %d of %d %s items not written by the batch, writing them one by one",
                job,
                len(again),
                len(writes),
                record_type,
            )
            self._one_by_one(again)

    def _wait(self, job: str, record_type: str, n: int) -> Any:
        """Poll the job until it is done (each poll with the sink's retries). Once the sink is
        stopping, polls go on for up to ``STOP_GRACE_S`` (then InterruptedError)."""
        sink = self.sink
        expected = n * (self.seconds_per_item or 0.0)
        wait = min(POLL_MAX_S, max(POLL_MIN_S, expected))
        then = max(POLL_MIN_S, expected / 10)
        grace_until: float | None = None
        while True:
            if grace_until is None and sink.stopping.wait(wait):
                grace_until = time.monotonic() + STOP_GRACE_S
                log.info("stopping: waiting up to %.0f s for %s to end", STOP_GRACE_S, job)
            elif grace_until is not None:
                if time.monotonic() >= grace_until:
                    raise InterruptedError(f"sink stopping; {job} not ended")
                time.sleep(min(wait, grace_until - time.monotonic()))
            status = self._status(job, record_type, draining=grace_until is not None)
            if status is not None and status.done:
                return status
            wait, then = min(POLL_MAX_S, then), then * 1.5

    def _status(self, job: str, record_type: str, draining: bool) -> Any:
        """The job's status; while the sink is stopping, one try (None when it failed)."""
        sink = self.sink
        if not draining:
            return sink.retrying_call(
                lambda: sink.client.job_status(job), record_type, f"status of {job}"
            )
        try:
            return sink.call(lambda: sink.client.job_status(job), record_type)
        except (InterruptedError, NetSuiteResponseError, requests.RequestException) as exc:
            if isinstance(exc, NetSuiteResponseError) and exc.status == 404:
                raise
            return None

    def _one_by_one(self, writes: list[Write]) -> None:
        """Back to the sink's single writes (each hands over its outcome in any case)."""
        with self._lock:
            self.fallbacks += len(writes)
        for write in writes:
            write.settled = True
            self.sink.submit_single(write)
