"""The stage runner on the real broker: a consumer that Kafka fenced joins again and carries on.

With static membership (``LEDGER_KAFKA_GROUP_INSTANCE_ID``) the group coordinator fences a
member whose identity another consumer took over — after a broker restart that outlasted the
session, librdkafka's own rejoin can race a commit and fence the consumer it replaces. A fenced
librdkafka consumer is dead for good; the chaos suite caught the payout-contents stage sitting
on such a consumer for ten minutes, its group empty, its partitions unread.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Iterator
from typing import Any

import pytest
from confluent_kafka import Consumer, Producer

from ledgerstream import settings, topics
from ledgerstream.avro import Serde
from ledgerstream.bootstrap import Bootstrap
from ledgerstream.producers.publisher import EventPublisher
from ledgerstream.producers.router import Router
from ledgerstream.testing.generator import History, Scenario, generate
from tests.integration.helpers import consume_all

pytestmark = [pytest.mark.integration, pytest.mark.usefixtures("local_stack")]


@pytest.fixture(scope="module")
def history() -> History:
    return generate(Scenario(seed=11, customers=2, months=1))


@pytest.fixture
def static_member(isolated: str, monkeypatch: pytest.MonkeyPatch) -> Iterator[str]:
    instance = f"{isolated}worker-1"
    monkeypatch.setenv("LEDGER_KAFKA_GROUP_INSTANCE_ID", instance)
    settings.kafka.cache_clear()
    yield instance
    settings.kafka.cache_clear()


def until(what: str, check: Any, timeout: float = 60) -> None:
    deadline = time.monotonic() + timeout
    while not check():
        if time.monotonic() > deadline:
            raise TimeoutError(what)
        time.sleep(0.2)


def test_a_fenced_consumer_is_replaced_and_the_stage_reads_on(
    static_member: str, history: History, boot: Bootstrap
) -> None:
    events = [e for e in history.events if e["type"] == "customer.created"][:2]
    publisher = EventPublisher()
    producer = Producer(settings.kafka().client_config())

    def publish(event: dict[str, Any]) -> None:
        typed = publisher.encode_event(event)
        assert typed is not None
        producer.produce(
            topics.name(topics.STRIPE_EVENTS), key=typed.key.encode(), value=typed.value
        )
        assert producer.flush(30) == 0

    ids = [e["data"]["object"]["id"] for e in events]
    customers = topics.name(topics.STRIPE_CUSTOMER)
    serde = Serde(customers, topics.STRIPE_CUSTOMER.schema or "")

    def routed() -> set[str]:
        return {serde.loads(m.value())["id"] for m in consume_all(customers)}

    router = Router(boot)
    worker = threading.Thread(target=router.run, daemon=True)
    worker.start()
    try:
        publish(events[0])
        until("the first event routed", lambda: router.routed == 1)
        # another consumer takes the router's static identity: the coordinator fences the
        # router's consumer, which librdkafka then reports as a fatal error
        intruder = Consumer(
            {
                **settings.kafka().client_config(),
                "group.id": router.group_id,
                "group.instance.id": f"{static_member}-router",
                "session.timeout.ms": 6000,
            }
        )
        intruder.subscribe([router.topic])
        until("the intruder assigned", lambda: intruder.poll(0.2) is None and intruder.assignment())
        intruder.close()  # a static member leaves no group on close: its session expires
        until(
            "the router's consumer replaced",
            lambda: router.runner.counts["consumer_replaced"] >= 1,
        )
        publish(events[1])
        # seen on the customer topic, not counted: when the fence came before the commit of
        # the first event, the new consumer reads that one again too (at-least-once), and a
        # count of 2 was skipped (1, then 3 in one batch: a fresh-clone CI run of 21bdcdd;
        # reproduced by delaying that commit)
        until("the second event routed", lambda: ids[1] in routed())
        assert ids[0] in routed()  # nothing lost
    finally:
        router.stop()
        worker.join(30)
    assert not worker.is_alive()
    assert router.dead_lettered == 0
