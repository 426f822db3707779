"""The processor's consumer: what it hands the client thread, and when it resumes partitions.

The client thread is replaced by stand-ins here; the same paths run against a real broker in
``tests/integration/test_processors.py`` (restarts, kills, rebalances)."""

from __future__ import annotations

import asyncio
from typing import Any

from faust.types import TP

from ledgerstream.processors.delivery import GaplessConsumer, LedgerApp

INPUT = TP("in.stripe.charge", 0)
OTHER = TP("in.stripe.invoice", 1)


def consumer() -> GaplessConsumer:
    app = LedgerApp("delivery-test", broker="kafka://127.0.0.1:1", store="memory://")
    made = app.consumer
    assert isinstance(made, GaplessConsumer)
    return made


def test_a_waiting_fetch_keeps_the_partitions_it_began_with() -> None:
    """faust pauses partitions in its own set while a fetch waits for records; aiokafka would
    then return the records of every partition (it reads an empty set as all of them), and
    faust would drop them. The fetch gets a copy, so a later pause does not widen it."""

    async def scenario() -> tuple[set[TP], set[TP]]:
        made = consumer()
        release = asyncio.Event()
        handed: list[set[TP]] = []

        async def client_getmany(active: set[TP], timeout: float) -> dict[Any, Any]:
            handed.append(active)
            await release.wait()  # the client thread waits for records
            return {}

        made._thread.getmany = client_getmany  # type: ignore[method-assign]
        live = {INPUT, OTHER}
        fetch = asyncio.ensure_future(made._getmany(live, 1.0))
        await asyncio.sleep(0)
        live.clear()  # recovery pauses them while the fetch waits
        release.set()
        await fetch
        return live, handed[0]

    live, handed = asyncio.run(scenario())
    assert live == set()
    assert handed == {INPUT, OTHER}


def seeking(made: GaplessConsumer, positions: dict[TP, int]) -> list[Any]:
    """Stand-ins for the client thread's seeks; returns the partitions sent to the beginning."""
    rewound: list[Any] = []

    async def seek_to_committed() -> dict[TP, int]:
        return {}  # nothing committed yet

    async def seek_to_beginning(*tps: Any) -> None:
        rewound.extend(tps)

    async def position(tp: TP) -> int:
        return positions[tp]

    made._thread.seek_to_committed = seek_to_committed  # type: ignore[method-assign]
    made._thread.seek_to_beginning = seek_to_beginning  # type: ignore[method-assign]
    made.position = position  # type: ignore[method-assign]
    return rewound


def test_the_recovery_seek_rewinds_and_resumes_new_input_partitions() -> None:
    async def scenario() -> tuple[list[Any], set[TP], set[TP]]:
        made = consumer()
        rewound = seeking(made, {INPUT: 0})
        made._unseeked = {INPUT}
        made.pause_partitions({INPUT})
        made.resume_partitions({INPUT})  # recovery's resume: still waits for the seek
        waiting_before = set(made._paused_partitions)
        made.resume_flow()  # as recovery leaves it
        await made.perform_seek()
        return rewound, waiting_before, set(made._get_active_partitions())

    rewound, waiting_before, active = asyncio.run(scenario())
    assert INPUT in waiting_before
    assert [(tp.topic, tp.partition) for tp in rewound] == [(INPUT.topic, INPUT.partition)]
    assert INPUT in active


def test_a_seek_while_the_flow_is_stopped_leaves_new_partitions_to_the_recovery() -> None:
    """faust seeks when a fetch returns after a rebalance stopped the flow; resuming the new
    input partitions then would feed the agents before their tables are restored."""

    async def scenario() -> tuple[list[Any], set[TP], set[TP]]:
        made = consumer()
        rewound = seeking(made, {INPUT: 0})
        made._unseeked = {INPUT}
        made.pause_partitions({INPUT})
        made.stop_flow()  # a rebalance
        await made.perform_seek()
        return rewound, set(made._unseeked), set(made._get_active_partitions())

    rewound, unseeked, active = asyncio.run(scenario())
    assert rewound == []
    assert unseeked == {INPUT}
    assert INPUT not in active


def test_a_seek_begun_while_the_flow_was_stopped_does_not_resume_when_it_ends_after_restart() -> (
    None
):
    """The flow may be turned on (recovery reading the changelogs) while faust's seek from a
    stopped flow is still waiting for the client: the input partitions stay for recovery."""

    async def scenario() -> tuple[set[TP], set[TP]]:
        made = consumer()
        rewound = seeking(made, {INPUT: 0})

        async def seek_to_committed() -> dict[TP, int]:
            made.resume_flow()  # recovery starts reading the changelogs meanwhile
            return {}

        made._thread.seek_to_committed = seek_to_committed  # type: ignore[method-assign]
        made._unseeked = {INPUT}
        made.pause_partitions({INPUT})
        made.stop_flow()
        await made.perform_seek()
        assert rewound == []
        return set(made._unseeked), set(made._get_active_partitions())

    unseeked, active = asyncio.run(scenario())
    assert unseeked == {INPUT}
    assert INPUT not in active
