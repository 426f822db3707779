"""The processor's tables (``ledgerstream.processors.store.Table``): what an assignment writes
to RocksDB and to the changelog, what a read looks up, when a rebalance collects garbage.

The app is not started: a table is written inside a stand-in event (faust partitions a table
write by the event being processed), its changelog message stays in the producer's queue."""

from __future__ import annotations

import asyncio
import weakref
from datetime import UTC, datetime
from pathlib import Path
from types import SimpleNamespace
from typing import Any
from unittest import mock

from faust.streams import _current_event
from faust.types import TP

from ledgerstream.processors import store
from ledgerstream.processors.delivery import LedgerApp

ROW = {"id": "in_1", "amount": 1250, "lines": [{"a": 1.5, "b": "é☃", "c": None}], "ok": True}


def table(tmp_path: Path) -> Any:
    app = LedgerApp(
        "store-test",
        broker="kafka://127.0.0.1:1",
        store="rocksdb://",
        datadir=str(tmp_path),
        topic_partitions=3,
        table_key_serializer="raw",
        table_value_serializer="json",
        Table=store.Table,
    )
    return app.Table("rows", default=None, partitions=3, key_type=str)


class Event:
    """A stand-in for the event being processed (faust holds a weak reference to it)."""

    def __init__(self, partition: int):
        self.message = SimpleNamespace(topic="in.stripe.invoice", partition=partition)


def in_event(partition: int) -> Event:
    event = Event(partition)
    _current_event.set(weakref.ref(event))  # type: ignore[arg-type]
    return event


def test_a_write_holds_the_same_bytes_in_rocksdb_and_in_the_changelog(tmp_path: Path) -> None:
    rows = table(tmp_path)
    assert isinstance(rows.data, store._Store)
    faust_bytes = rows.app.serializers.dumps_value(None, ROW, serializer="json")

    async def scenario() -> list[Any]:
        event = in_event(2)
        rows["in_1"] = ROW
        assert rows.get("in_1") == ROW
        # what faust itself wrote there (keys: faust's json serializer, a str's JSON)
        assert rows.data._dbs[2][b'"in_1"'] == faust_bytes
        del event
        buffer = rows.app.producer.buffer
        return [buffer.pending.get_nowait() for _ in range(buffer.pending.qsize())]

    queued = asyncio.run(scenario())
    assert len(queued) == 1
    message = queued[0].message
    assert (message.key, message.partition) == (b'"in_1"', 2)  # faust encodes it at once
    # sent as they are: the bytes faust's json serializer would have made of the value
    assert message.value == faust_bytes
    assert message.value_serializer == "raw"
    channel = message.channel
    value, _ = channel.prepare_value(message.value, message.value_serializer)
    key, _ = channel.prepare_key(message.key, message.key_serializer)
    assert (key, value) == (b'"in_1"', faust_bytes)


def test_a_read_looks_a_key_up_once(tmp_path: Path) -> None:
    rows = table(tmp_path)

    async def scenario() -> None:
        event = in_event(0)
        rows["cus_1"] = ["in_1", "in_2"]
        with mock.patch.object(type(rows.data), "_get", autospec=True) as lookup:
            lookup.side_effect = lambda data, key: data._dbs[0].get(key)
            assert rows.get("cus_1") == ["in_1", "in_2"]
            assert rows.get("cus_2") is None
            assert rows.get("cus_2", "none") == "none"
            assert lookup.call_count == 3
        assert "cus_1" in rows and "cus_2" not in rows
        del event

    asyncio.run(scenario())


def test_a_rebalance_collects_garbage_only_when_it_drops_a_database(tmp_path: Path) -> None:
    rows = table(tmp_path)
    changelog = rows.changelog_topic.get_topic_name()
    rows.data._dbs[1] = object()  # an open database of partition 1
    with mock.patch("gc.collect") as collect:
        rows.data.revoke_partitions(rows, set())  # a worker's start: nothing revoked
        rows.data.revoke_partitions(rows, {TP(changelog, 2)})  # not held here
        rows.data.revoke_partitions(rows, {TP("in.stripe.invoice", 1)})  # not a changelog
        assert collect.call_count == 0
        rows.data.revoke_partitions(rows, {TP(changelog, 1)})
        assert collect.call_count == 1
    assert 1 not in rows.data._dbs


def test_the_stores_shorter_coding_gives_faust_s_bytes_and_reads_what_faust_wrote(
    tmp_path: Path,
) -> None:
    """The store codes the tables' rows with the standard library's JSON (``_Store``) instead
    of faust's registry and simplejson. Changelogs and RocksDB written before must stay
    readable: a key is the JSON string of a Stripe id or of a key made from them, and must be
    the same bytes as faust made, or its row would not be found; a value is written as faust
    wrote it and reads back as the same row."""
    rows = table(tmp_path)
    serializers, data = rows.app.serializers, rows.data
    keys = ("cus_Q1x9", "in_1Pz/2", "invoice/in_1Pz", "po_1/txn_9", "cm_balpay_in_7", 'é☃\n"')
    for key in keys:
        assert data._encode_key(key) == serializers.dumps_key(str, key, serializer="json")
    old = serializers.dumps_value(None, ROW, serializer="json")  # faust's way (simplejson)
    assert data._decode_value(old) == ROW
    assert data._encode_value(ROW) == old  # compact and ASCII-escaped, as faust writes it
    # a value the standard encoder refuses goes faust's way, as before
    when = {"at": datetime(2026, 12, 3, tzinfo=UTC)}
    assert data._encode_value(when) == serializers.dumps_value(None, when, serializer="json")
