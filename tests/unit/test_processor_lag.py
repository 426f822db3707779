"""The processor's consumer lag per input partition (``Processor.note_lag``), on a stand-in
consumer: what faust's consumer tells (its assignment, each partition's last high watermark,
its own record of the offsets it committed)."""

from __future__ import annotations

from collections import defaultdict
from types import SimpleNamespace
from typing import Any

from faust.types import TP
from prometheus_client import REGISTRY

from ledgerstream.processors.app import Processor

NAME = "ledgerstream_consumer_lag"


class Consumer:
    def __init__(self) -> None:
        self.highwaters: dict[TP, int | None] = {}
        self._committed_offset: defaultdict[TP, int | None] = defaultdict(lambda: None)

    def assignment(self) -> set[TP]:
        return set(self.highwaters)

    def highwater(self, tp: TP) -> int | None:
        return self.highwaters[tp]


def stand_in(consumer: Consumer) -> Any:
    return SimpleNamespace(
        app=SimpleNamespace(consumer=consumer),
        inputs={"lagtest.stripe.customer", "lagtest.stripe.charge"},
        lag_series=set(),
    )


def lag(topic: str, partition: int) -> float | None:
    labels = {"component": "processor", "topic": topic, "partition": str(partition)}
    return REGISTRY.get_sample_value(NAME, labels)


def test_lag_is_the_high_watermark_less_the_committed_offset_of_each_input_partition() -> None:
    customer, charge = "lagtest.stripe.customer", "lagtest.stripe.charge"
    changelog = "lagtest-processor-ledgerstream.emitted-changelog"
    consumer = Consumer()
    consumer.highwaters = {
        TP(customer, 0): 12,
        TP(customer, 1): 0,  # empty: nothing committed, nothing to read
        TP(charge, 0): 7,  # nothing committed yet: everything is to read
        TP(charge, 1): None,  # not fetched yet: no figure
        TP(changelog, 0): 500,  # a table's changelog is not input
    }
    consumer._committed_offset[TP(customer, 0)] = 9
    proc = stand_in(consumer)

    Processor.note_lag(proc)
    assert lag(customer, 0) == 3
    assert lag(customer, 1) == 0
    assert lag(charge, 0) == 7
    assert lag(charge, 1) is None
    assert lag(changelog, 0) is None

    # caught up; then a rebalance takes partition 0 of the customers to another worker
    consumer._committed_offset[TP(charge, 0)] = 7
    Processor.note_lag(proc)
    assert lag(charge, 0) == 0
    del consumer.highwaters[TP(customer, 0)]
    consumer.highwaters[TP(charge, 1)] = 4
    Processor.note_lag(proc)
    assert lag(customer, 0) is None  # the worker that holds it now reports it
    assert lag(charge, 1) == 4
    assert proc.lag_series == {(customer, 1), (charge, 0), (charge, 1)}
