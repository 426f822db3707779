"""Offsets are committed only after every write they cover was acknowledged by the broker.

faust commits a worker's input offsets on a timer (and on rebalance and shutdown) after
``producer.flush()``. Two parts of faust's flush fall short of what the commit needs:

* Table changelog writes do not go to Kafka at once: a table assignment queues them in faust's
  ``ProducerBuffer``, whose ``flush()`` returns as soon as 0.1 s pass without a message leaving
  the queue (``flush_atmost``), whatever is still in it. When the broker is slow (a busy or
  recovering broker, a quota, a full client batch), faust then commits offsets whose table
  changes have not even been sent; a kill -9 loses them for good, because the input is not read
  again and the tables are rebuilt from changelogs that lack them (reproduced by
  ``tests/integration/test_processors.py::test_a_worker_killed_right_after_a_commit…``:
  before this module, 18 to 29 of 415 commands never booked).
* The aiokafka producer's ``flush()`` waits for the batches in flight but does not say whether
  they were delivered: a failed batch still lets the commit go ahead.

``LedgerApp`` gives the worker a producer whose ``flush()`` waits until every message queued or
sent before the call is acknowledged, and raises ``ProducerSendError`` if any write failed
since the worker started (a failure is sticky: no later commit can cover it), so faust does not
commit and the worker stops; its replacement reads the input again from the last good commit.

The guarantee, for sends made inside an agent, inside the timer, and for table changes: for
every committed input offset, every command, dead letter and table change derived from it was
acknowledged by the broker (acks=all) before the commit was sent.
"""

from __future__ import annotations

import asyncio
import logging
import time
from typing import Any, cast

import faust
from faust.exceptions import ProducerSendError
from faust.transport.drivers import aiokafka as aiokafka_driver
from faust.transport.producer import ProducerBuffer
from faust.types.tuples import FutureMessage

log = logging.getLogger(__name__)

# the longest a commit waits for its writes' answers (as librdkafka's delivery timeout for the
# other stages): a broker outage shorter than this is waited out, a longer one stops the worker
FLUSH_TIMEOUT_S = 300.0
# the longest a partition's commit may wait for records below an acknowledged one (delivered
# after a rebalance, their later neighbours acknowledged by agents of the previous assignment)
GAP_GRACE_S = 60.0


class AckedProducerBuffer(ProducerBuffer):
    """faust's queue of table changelog writes, whose flush waits for every write's answer."""

    def __post_init__(self) -> None:
        super().__post_init__()
        # queued writes whose answer has not come back; a write leaves when it is acknowledged
        # or failed (its FutureMessage is resolved by faust's delivery callback)
        self.outstanding: set[FutureMessage] = set()
        self.failure: BaseException | None = None

    def put(self, fut: FutureMessage) -> None:
        self.outstanding.add(fut)
        fut.add_done_callback(self._done)
        super().put(fut)

    def _done(self, fut: Any) -> None:
        self.outstanding.discard(fut)
        if not fut.cancelled() and fut.exception() is not None and self.failure is None:
            self.failure = fut.exception()

    async def _send_pending(self, fut: FutureMessage) -> None:
        try:
            await super()._send_pending(fut)
        except Exception as exc:  # handing over failed: the write will never be acknowledged
            if not fut.done():
                fut.set_exception(exc)
            log.error("a table changelog write could not be sent: %r", exc)

    async def flush(self, timeout: float | None = None) -> None:
        """Wait until every write queued before this call was acknowledged (or failed)."""
        if self.should_stop:
            # stopping: the task that hands queued writes to aiokafka is gone, so hand them
            # over here (or fail them), or their answers would be awaited for ever
            while not self.pending.empty():
                fut = self.pending.get_nowait()
                await self._send_pending(fut)
        pending = list(self.outstanding)
        if pending:
            done, late = await asyncio.wait(pending, timeout=timeout)
            if late and self.failure is None:
                self.failure = TimeoutError(
                    f"{len(late)} table change(s) not acknowledged within {timeout:.0f}s"
                )


class AckedProducer(aiokafka_driver.Producer):
    """The aiokafka driver's producer with a flush that covers every write, delivered or not."""

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        buffer = AckedProducerBuffer(loop=self.loop, beacon=self.beacon)
        buffer.app = self.app
        self.buffer = buffer
        self._unacked: set[asyncio.Future[Any]] = set()  # direct sends awaiting their answer
        self._failure: BaseException | None = None

    async def create_topic(self, topic: str, *args: Any, **kwargs: Any) -> None:
        """faust's, except for a topic the producer's metadata already lists.

        faust declares each table's changelog topic twice at start (table, then recovery):
        for a topic that exists it skips the creation (this same check on the same metadata)
        but then refreshes the metadata of every topic of the cluster, decoded in Python —
        about 30 refreshes of a few hundred topics, some 3 s of a worker's start. Here an
        existing topic is left as it is without that refresh; a missing one is created as
        before."""
        producer = self._producer
        if (
            self.app.conf.topic_allow_declare
            and producer is not None
            and topic in producer.client.cluster.topics()
        ):
            return
        await super().create_topic(topic, *args, **kwargs)

    def fail(self, exc: BaseException) -> None:
        """Record a write that did not happen: no offset may be committed from now on."""
        if self._failure is None:
            self._failure = exc

    async def send(self, *args: Any, **kwargs: Any) -> Any:
        try:
            fut = await super().send(*args, **kwargs)
        except BaseException as exc:
            self.fail(exc)
            raise
        self._unacked.add(fut)  # type: ignore[arg-type]
        fut.add_done_callback(self._delivered)  # type: ignore[attr-defined]
        return fut

    def _delivered(self, fut: asyncio.Future[Any]) -> None:
        self._unacked.discard(fut)
        if not fut.cancelled() and fut.exception() is not None:
            self.fail(fut.exception())  # type: ignore[arg-type]

    async def flush(self) -> None:
        """Return once everything sent before the call is acknowledged; raise if any failed.

        A failure already recorded raises at once (no commit can cover it, and waiting could
        be for ever: a stopping worker's queue is no longer sent); waiting is bounded by
        ``FLUSH_TIMEOUT_S``, after which the unanswered writes count as failed."""
        self._raise_if_failed()
        buffer = cast(AckedProducerBuffer, self.buffer)
        await buffer.flush(FLUSH_TIMEOUT_S)  # table changes: handed to aiokafka and answered
        self._raise_if_failed()
        direct = list(self._unacked)  # commands and dead letters sent from agents and timers
        await super().flush()
        if direct:
            _, late = await asyncio.wait(direct, timeout=FLUSH_TIMEOUT_S)
            if late:
                self.fail(TimeoutError(f"{len(late)} write(s) not acknowledged in time"))
        self._raise_if_failed()

    def _raise_if_failed(self) -> None:
        failure = self._failure or cast(AckedProducerBuffer, self.buffer).failure
        if failure is not None:
            raise ProducerSendError(f"a write was not acknowledged, not committing: {failure!r}")


class SkippedRecords(RuntimeError):
    """faust was about to commit past input records that no agent processed."""


class GaplessConsumer(aiokafka_driver.Consumer):
    """faust's consumer, reading each assigned partition from where the group left it.

    **Seek before reading.** After a rebalance faust's recovery resumes the stream partitions
    and only then seeks them to the committed offsets (``Recovery._resume_streams``), while the
    fetcher is already running. Records fetched in between come from wherever the client stood,
    and once the seek resets faust's read offset, the rest of such a batch looks like a jump
    over the records in between: faust takes that for a gap (meant for compacted and
    transactional topics, where offsets really are missing) and acknowledges it, and it counts
    acknowledged offsets from the committed one as if that had been processed — so the next
    commit could pass records no agent saw. The chaos suite caught it (two charges committed
    and never booked, docs/reliability.md). Here a newly assigned input partition stays paused
    until ``perform_seek`` has placed it at its committed offset (or, with none, at the
    beginning), so nothing is read before the seek.

    **Never commit past undelivered records**, as a safety net: the input topics are neither
    compacted nor transactional, so a jump in offsets never means missing offsets. A jump is not
    acknowledged, and a commit whose first acknowledged offset lies past where the partition was
    read from waits for the records in between (an agent still busy with a record of the
    previous assignment acknowledges it after the rebalance, before the re-read records below
    it arrive). If they do not arrive within ``GAP_GRACE_S`` it is recorded as a failed write:
    nothing more is committed and the worker stops; its replacement reads from the last commit.

    **Fetch what was active when the fetch began.** faust hands the client thread its own set of
    active partitions, the one it changes in place when it pauses or resumes partitions, and a
    fetch waits up to a second for records. aiokafka reads an empty set as "every partition", so
    a fetch that began while only the changelogs were active and was still waiting when recovery
    paused them came back with the records of every input partition, just rewound by the seek
    above, and faust dropped them as not active. The client stood past them and nothing read
    them again: a restarted worker that never consumed (docs/reliability.md). Each fetch here
    gets a copy of the set as it was when the fetch began.

    **A seek while the flow is stopped only seeks.** faust also calls ``perform_seek`` when a
    fetch returns after a rebalance stopped the flow; the input partitions of the new
    assignment then wait for the recovery's own seek, and are not resumed before their tables
    are restored.
    """

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self._unseeked: set[Any] = set()  # assigned input partitions not yet seeked
        self._start: dict[Any, int] = {}  # where reading began, for partitions with no commit
        self._blocked: dict[Any, float] = {}  # since when a partition's commit waits for a gap

    async def on_partitions_assigned(self, assigned: set[Any], generation_id: int = 0) -> None:
        self._unseeked = {tp for tp in assigned if not self._is_changelog_tp(tp)}
        await super().on_partitions_assigned(assigned, generation_id)

    async def on_partitions_revoked(self, revoked: set[Any]) -> None:
        self._unseeked.difference_update(revoked)
        for tp in revoked:
            self._start.pop(tp, None)
            self._blocked.pop(tp, None)
        await super().on_partitions_revoked(revoked)

    def resume_partitions(self, tps: Any) -> None:
        # input partitions wait for their seek (perform_seek resumes them)
        super().resume_partitions({tp for tp in tps if tp not in self._unseeked})

    async def _getmany(self, active_partitions: Any, timeout: float) -> Any:
        # a copy: faust changes its set in place while the client thread waits for records
        wanted = None if active_partitions is None else set(active_partitions)
        return await super()._getmany(wanted, timeout)

    async def perform_seek(self) -> None:
        flowing = self.flow_active
        await super().perform_seek()
        if not (flowing and self.flow_active):
            # faust's getmany after a rebalance stopped the flow (also if recovery turned the
            # flow on meanwhile, to read the changelogs): the recovery's own seek comes later
            return
        waiting, self._unseeked = self._unseeked, set()
        # faust's seek leaves a partition with no commit where the client stands; records the
        # client handed over while faust's flow was stopped (a rebalance, the start-up) were
        # dropped by faust, so the client may stand past records nobody read: rewind those to
        # the beginning, as auto_offset_reset=earliest means
        fresh = [tp for tp in waiting if self._committed_offset[tp] is None]
        if fresh:
            client_tps = [self._new_topicpartition(tp.topic, tp.partition) for tp in fresh]
            await self._thread.seek_to_beginning(*client_tps)  # on the client's own thread
            for tp in fresh:
                position = await self.position(tp)
                if position is not None:
                    self._start[tp] = position
                self._read_offset[tp] = None
        super().resume_partitions(waiting)

    def _skipped(self, tp: Any, first: int, last: int) -> None:
        exc = SkippedRecords(
            f"{tp.topic}[{tp.partition}] offsets {first}..{last} not delivered in "
            f"{GAP_GRACE_S:.0f}s"
        )
        log.error("%s: not committing past them; the worker stops and reads them again", exc)
        cast(AckedProducer, self.app.producer).fail(exc)
        # stop now: with nothing committable the commit timer would never raise, and the
        # worker would sit on records it will never deliver
        asyncio.ensure_future(self.crash(exc))

    async def _add_gap(self, tp: Any, offset_from: int, offset_to: int) -> None:
        # faust would acknowledge the jumped-over offsets as if processed: they are not
        # acknowledged here, so no commit passes them until they are delivered (_new_offset)
        log.info(
            "%s[%d] offsets %d..%d not delivered yet: not acknowledged",
            tp.topic,
            tp.partition,
            offset_from,
            offset_to - 1,
        )

    def _new_offset(self, tp: Any) -> int | None:
        acked = self._acked[tp]
        done = self._committed_offset[tp]  # Kafka's: the next offset to process
        if done is None:
            done = self._start.get(tp)
        if acked and done is not None and min(acked) > done:
            # records below an acknowledged one are missing: wait for them (an agent of the
            # previous assignment may have acknowledged a later record before the re-read
            # ones arrive); if they never come, stop, and the replacement reads them again
            since = self._blocked.setdefault(tp, time.monotonic())
            if time.monotonic() - since > GAP_GRACE_S:
                self._skipped(tp, done, min(acked) - 1)
            return None
        self._blocked.pop(tp, None)
        return cast(int | None, super()._new_offset(tp))


class LedgerApp(faust.App):
    """faust's App with the producer and consumer above (see the module's docstring)."""

    def _new_producer(self) -> Any:
        return AckedProducer(self.transport, loop=self.loop, beacon=self.beacon)

    def _new_consumer(self) -> Any:
        return GaplessConsumer(
            self.transport,
            callback=self.topics.on_message,
            on_partitions_revoked=self._on_partitions_revoked,
            on_partitions_assigned=self._on_partitions_assigned,
            beacon=self.beacon,
            loop=self.loop,
        )
