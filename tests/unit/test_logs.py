"""The repeat limiter keeps an outage's reconnect lines to one per kind per interval."""

from __future__ import annotations

import logging

from ledgerstream.logs import RepeatLimiter


class Clock:
    def __init__(self) -> None:
        self.now = 100.0

    def __call__(self) -> float:
        return self.now


def test_repeats_of_a_kind_are_dropped_then_counted_other_kinds_pass() -> None:
    clock = Clock()
    limiter = RepeatLimiter(every_s=10, clock=clock)
    logger = logging.getLogger("test.logs.limiter")
    logger.propagate = False
    logger.setLevel(logging.INFO)
    seen: list[str] = []

    class Keep(logging.Handler):
        def emit(self, record: logging.LogRecord) -> None:
            seen.append(record.getMessage())

    logger.addHandler(Keep())
    logger.addFilter(limiter)
    for second in range(25):  # one attempt per 0.5 s for 12.5 s, on two nodes
        clock.now = 100.0 + second / 2
        logger.error("Unable connect to node with id %s: %s", second % 2, "refused")
    logger.warning("Marking the coordinator dead (node %s)", 1)  # another kind: passes
    for _ in range(2):  # informational lines are never held back (a new assignment, say)
        logger.info("Setting newly assigned partitions %s", {0})
    clock.now = 120.0
    logger.error("Unable connect to node with id %s: %s", 0, "refused")
    assert seen == [
        "Unable connect to node with id 0: refused",
        "Unable connect to node with id 0: refused [19 more like this in the last 10s]",
        "Marking the coordinator dead (node 1)",
        "Setting newly assigned partitions {0}",
        "Setting newly assigned partitions {0}",
        "Unable connect to node with id 0: refused [4 more like this in the last 10s]",
    ]
