"""Choosing dead letters to redrive, and grouping them for ``dlq list`` (no broker)."""

from __future__ import annotations

from collections.abc import Iterator
from datetime import UTC, datetime

import pytest

from ledgerstream import settings
from ledgerstream.dlq import DeadLetter, Selection, summary


def letter(
    offset: int, source: str, cls: str, at: str, key: bytes | None = None, value: bytes = b"{}"
) -> DeadLetter:
    ms = int(datetime.fromisoformat(at).replace(tzinfo=UTC).timestamp() * 1000)
    headers = {"dlq.topic": source, "dlq.exception.class": cls, "dlq.exception.message": cls}
    return DeadLetter(source + ".dlq", 0, offset, ms, key, value, headers)


@pytest.fixture
def prefixed(monkeypatch: pytest.MonkeyPatch) -> Iterator[str]:
    monkeypatch.setenv("LEDGER_TOPIC_PREFIX", "acme.")
    settings.kafka.cache_clear()
    yield "acme."
    settings.kafka.cache_clear()


def test_a_selection_holds_only_when_every_condition_given_holds(prefixed: str) -> None:
    commands = f"{prefixed}netsuite.commands"
    a = letter(1, commands, "NetSuiteResponseError", "2026-11-02T10:00", key=b"customer/cus_1")
    b = letter(2, commands, "LookupError", "2026-11-03T10:00", key=b"invoice/in_2")
    c = letter(3, f"{prefixed}stripe.charge", "ValueError", "2026-11-04T10:00", value=b"x")
    everything = [a, b, c]

    def chosen(**given: object) -> list[int]:
        select = Selection(**given)  # type: ignore[arg-type]
        return [x.offset for x in everything if select(x)]

    assert chosen() == [1, 2, 3]
    # the topic with or without the prefix, with or without .dlq
    assert chosen(topic="netsuite.commands") == chosen(topic=f"{commands}.dlq") == [1, 2]
    assert chosen(error_class="LookupError") == [2]
    assert chosen(stripe_id="cus_1") == [1]  # from the key
    since = datetime(2026, 11, 3, 10, tzinfo=UTC)
    assert chosen(since=since) == [2, 3] and chosen(until=since) == [1]
    assert chosen(topic="netsuite.commands", error_class="ValueError") == []


def test_the_list_groups_by_topic_and_class_with_redriven_counts_and_times() -> None:
    a = letter(1, "netsuite.commands", "NetSuiteResponseError", "2026-11-02T10:00")
    b = letter(2, "netsuite.commands", "NetSuiteResponseError", "2026-11-05T10:00")
    c = letter(3, "stripe.charge", "PartnerTimeout", "2026-11-04T10:00")
    c.value = None
    rows = summary([a, b, c], done={a.ref: {"at": "…", "to": "netsuite.commands"}})
    assert [(r["topic"], r["error_class"], r["count"], r["redriven"]) for r in rows] == [
        ("netsuite.commands", "NetSuiteResponseError", 2, 1),
        ("stripe.charge", "PartnerTimeout", 1, 0),
    ]
    assert rows[0]["oldest"] == a.time and rows[0]["newest"] == b.time
    assert not c.redrivable and a.redrivable
