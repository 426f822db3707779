"""RocksDB for the worker's tables within one memory budget, and a cheap memory report.

faust opens one RocksDB per table per partition (the ledger has 12 tables, so 36 databases
with 3 partitions) and gives each its own defaults: 64 MiB memtables (up to 3), a 2 GiB block
cache, index and filter blocks held outside any cache, and as many open files as the process
may have. Memory then grows with the data: nothing is flushed before a memtable holds 64 MiB,
so a worker keeps most of its recent rows in memory, one memtable per database.

Here every database of the worker draws on one budget (``ProcessorSettings``):

* one LRU block cache, ``LEDGER_PROCESSOR_ROCKSDB_CACHE_MB``, shared by every table and
  partition; it also holds the index and filter blocks (pinned for level 0), so reading
  more files does not add memory beside it;
* one write-buffer manager, ``LEDGER_PROCESSOR_ROCKSDB_WRITE_BUFFER_MB``: when the memtables
  of all databases together pass it, memtables are flushed to disk; their memory is charged
  to the block cache, so the cache size bounds both;
* small memtables per database (``LEDGER_PROCESSOR_ROCKSDB_MEMTABLE_MB``, at most 2) and a
  bounded number of open files per database (``LEDGER_PROCESSOR_ROCKSDB_MAX_OPEN_FILES``).

faust-streaming has no app-wide RocksDB setting: the hook is the ``Table`` class (faust's
``App(Table=...)`` setting), whose store gets these options instead of faust's defaults.

Two more things grew with the key count, both leftovers of table recovery rather than live
data (``.app`` sets them): glibc's rising mmap threshold kept freed memtable blocks
in the heap (``fix_mmap_threshold``), and recovery handed whole fetches of every changelog
partition to Python at once, whose freed objects left the Python heap's arenas mostly empty
but never returned (``LEDGER_PROCESSOR_MAX_POLL_RECORDS``,
``LEDGER_PROCESSOR_RECOVERY_BUFFER_SIZE``). ``benchmarks.processor_bench --keys`` measures it.
"""

from __future__ import annotations

import ctypes
import ctypes.util
import gc
import json
import sys
from pathlib import Path
from typing import Any, cast

import faust
import rocksdict
from faust.stores import rocksdb as faust_rocksdb
from yarl import URL

from ledgerstream import settings

MIB = 1024 * 1024
_M_MMAP_THRESHOLD = -3  # mallopt parameter (malloc.h)


class Budget:
    """The block cache and write-buffer manager shared by every RocksDB of one worker."""

    def __init__(self, proc: settings.ProcessorSettings):
        self.cache_bytes = proc.processor_rocksdb_cache_mb * MIB
        self.write_buffer_bytes = proc.processor_rocksdb_write_buffer_mb * MIB
        self.memtable_bytes = proc.processor_rocksdb_memtable_mb * MIB
        self.max_open_files = proc.processor_rocksdb_max_open_files
        self.cache = rocksdict.Cache(self.cache_bytes)
        # allow_stall=False: a write never waits for a flush, the budget is met by flushing
        self.write_buffers = rocksdict.WriteBufferManager.new_write_buffer_manager_with_cache(
            self.write_buffer_bytes, False, self.cache
        )

    def options(self) -> faust_rocksdb.RocksDBOptions:
        return _BudgetOptions(self)

    def usage(self) -> dict[str, int]:
        return {
            "cache_capacity_bytes": self.cache_bytes,
            "cache_usage_bytes": self.cache.get_usage(),
            "cache_pinned_bytes": self.cache.get_pinned_usage(),
            "write_buffer_limit_bytes": self.write_buffer_bytes,
            "write_buffer_usage_bytes": self.write_buffers.get_usage(),
        }


class _BudgetOptions(faust_rocksdb.RocksDBOptions):
    """faust's RocksDB options (rocksdict driver) drawing on a shared ``Budget``."""

    def __init__(self, budget: Budget):
        super().__init__(
            max_open_files=budget.max_open_files,
            write_buffer_size=budget.memtable_bytes,
            max_write_buffer_number=2,
            block_cache_size=budget.cache_bytes,
            use_rocksdict=True,
        )
        self.budget = budget

    def as_options(self) -> Any:
        opts = rocksdict.Options(raw_mode=True)
        opts.create_if_missing(True)
        opts.set_max_open_files(self.max_open_files or -1)
        opts.set_write_buffer_size(self.write_buffer_size)
        opts.set_max_write_buffer_number(self.max_write_buffer_number)
        opts.set_target_file_size_base(self.target_file_size_base)
        opts.set_write_buffer_manager(self.budget.write_buffers)
        table = rocksdict.BlockBasedOptions()
        table.set_bloom_filter(self.bloom_filter_size, True)
        table.set_block_cache(self.budget.cache)
        table.set_cache_index_and_filter_blocks(True)
        table.set_pin_l0_filter_and_index_blocks_in_cache(True)
        table.set_index_type(rocksdict.BlockBasedIndexType.binary_search())
        opts.set_block_based_table_factory(table)
        return opts


class _Store(faust_rocksdb.Store):
    """faust's RocksDB store, without a full garbage collection when nothing is revoked, and
    with a shorter way to code the tables' rows.

    faust's ``revoke_partitions`` ends with ``gc.collect()`` (so that the databases it drops
    are closed), called for every table at every rebalance, also when the table loses no
    partition, as at a worker's start: 14 tables, each a full collection of a heap of a few
    hundred thousand objects, took 3 to 4 s of a worker's start-up (a third of it). Here it
    runs as before whenever a database is dropped, and not at all when none is."""

    def revoke_partitions(self, table: Any, tps: set[Any]) -> None:
        topics = table.changelog_topic.topics
        if any(tp.topic in topics and tp.partition in self._dbs for tp in tps):
            super().revoke_partitions(table, tps)

    # Rows: faust codes a key or value through its serializer registry, a codec lookup and
    # its json codec, which ends in simplejson called with a faust JSONEncoder subclass, and
    # simplejson encodes through its pure-Python encoder when given one. The ledger's tables
    # read and write several rows per record: in processor_bench those layers took about 12 %
    # of a worker's CPU. For the tables' own case (a str key; a dict or list value; the json
    # serializer, no model type) the standard library's C encoder and decoder are called
    # here, with faust's separators: keys and values get the same bytes as faust's (both
    # escape the same way, non-ASCII included), so rows written before are found and read
    # alike. Anything else, a value the standard encoder refuses, and a value
    # holding faust's model marker go faust's way. (orjson, faust's optional codec, did the
    # same but added about 35 MiB to a worker's resident size.)
    # tests/unit/test_processor_store.py compares both ways.

    def _encode_key(self, key: Any) -> bytes:
        if type(key) is str and self.key_serializer == "json":
            return json.dumps(key).encode()
        return cast(bytes, super()._encode_key(key))

    def _encode_value(self, value: Any) -> bytes | None:
        if type(value) in (dict, list) and self._plain_json_values():
            try:
                return json.dumps(value, separators=(",", ":")).encode()
            except (TypeError, ValueError):  # a type only faust's encoder knows
                pass
        return cast(bytes | None, super()._encode_value(value))

    def _decode_value(self, value: bytes | None) -> Any:
        if value is not None and self._plain_json_values():
            row = json.loads(value)
            if not (isinstance(row, dict) and _MODEL_MARKER in row):
                return row
        return super()._decode_value(value)

    def _plain_json_values(self) -> bool:
        return self.value_serializer == "json" and self.value_type is None


_MODEL_MARKER = "__faust"  # faust's key for a serialized model (faust.models.base)


class Table(faust.Table):
    """faust's Table; with a ``budget`` its RocksDB store uses the worker's shared budget."""

    budget: Budget | None = None

    def _new_store_by_url(self, url: str | URL) -> Any:
        store = super()._new_store_by_url(url)
        if type(store) is faust_rocksdb.Store:
            store.__class__ = _Store  # same object, one method changed (above)
        if (
            self.budget is not None
            and isinstance(store, faust_rocksdb.Store)
            and store.use_rocksdict
        ):
            store.rocksdb_options = self.budget.options()
        return store

    def __setitem__(self, key: Any, value: Any) -> None:
        """faust's assignment (changelog message, then the RocksDB write) with the key and
        value encoded once. faust encoded each twice, the same way (the table's serializers):
        for RocksDB, and again for the changelog message. Here the changelog gets those same
        bytes (``raw``: sent as they are), so both hold the same bytes as before."""
        data = self.data
        if not isinstance(data, _Store):
            super().__setitem__(key, value)
            return
        encoded = data._encode_value(value)
        key_bytes = data._encode_key(key)
        # Table.on_key_set, with the encoded key and value
        fut = self.send_changelog(
            self.partition_for_key(key),
            key_bytes,
            encoded,
            key_serializer="raw",
            value_serializer="raw",
        )
        partition = fut.message.partition
        assert partition is not None
        self._maybe_set_key_ttl(key, partition)
        self._sensor_on_set(self, key, value)
        data._set(key_bytes, encoded)

    def get(self, key: Any, default: Any = None) -> Any:
        """One store lookup. faust's ``get`` (``Mapping.get`` over ``__getitem__``) looked a
        key up twice in RocksDB (``key in data``, then ``data[key]``) and raised and caught a
        KeyError for a missing one; ``take`` and the ledger read rows this way several times
        per record. Same result: the value stored, else ``default`` (the tables here have no
        ``default`` factory, whose value a missing key would get instead)."""
        if self.default is not None:
            return super().get(key, default)
        self.on_key_get(key)  # faust's sensors count reads, as __getitem__ does
        try:
            return self.data[key]
        except KeyError:
            return default


def open_databases(app: faust.App) -> int:
    """How many RocksDB databases the worker's tables have open."""
    return sum(
        len(table.data._dbs)
        for table in app.tables.values()
        if isinstance(table.data, faust_rocksdb.Store)
    )


def _rss_bytes() -> dict[str, int]:
    """Resident size now, at its peak, anonymous and file-backed (Linux; empty elsewhere)."""
    try:
        status = Path("/proc/self/status").read_text()
    except OSError:
        return {}
    names = {
        "VmRSS": "rss_bytes",
        "VmHWM": "rss_peak_bytes",
        "RssAnon": "rss_anon_bytes",
        "RssFile": "rss_file_bytes",
    }
    out = {}
    for line in status.splitlines():
        name, _, value = line.partition(":")
        if name in names:
            out[names[name]] = int(value.split()[0]) * 1024
    return out


class _MallInfo2(ctypes.Structure):
    _fields_ = [
        (name, ctypes.c_size_t)
        for name in (
            "arena",
            "ordblks",
            "smblks",
            "hblks",
            "hblkhd",
            "usmblks",
            "fsmblks",
            "uordblks",
            "fordblks",
            "keepcost",
        )
    ]


def _malloc() -> dict[str, int]:
    """glibc's heap: bytes in use and free-but-kept (what RSS holds beyond live data)."""
    try:
        libc = ctypes.CDLL(ctypes.util.find_library("c") or "libc.so.6")
        mallinfo2 = libc.mallinfo2
    except (OSError, AttributeError):  # not glibc >= 2.33
        return {}
    mallinfo2.restype = _MallInfo2
    info = mallinfo2()
    return {
        "malloc_in_use_bytes": info.uordblks + info.hblkhd,
        "malloc_free_kept_bytes": info.fordblks,
    }


def fix_mmap_threshold(kib: int) -> bool:
    """Fix glibc's mmap threshold (allocations from ``kib`` KiB get their own mapping, given
    back to the system when freed); False when 0 or not glibc.

    glibc raises the threshold (up to 32 MiB) each time a mapped block is freed. Once RocksDB
    has flushed a few memtables, their 512 KiB blocks come from the heap instead, freed blocks
    stay there and the heap grows with the data the worker has written (measured after
    recovering a million keys: about 140 MiB free in the heap, about 30 MiB with the
    threshold fixed).
    """
    if kib <= 0:
        return False
    try:
        libc = ctypes.CDLL(ctypes.util.find_library("c") or "libc.so.6")
        return bool(libc.mallopt(_M_MMAP_THRESHOLD, kib * 1024))
    except (OSError, AttributeError):
        return False


def memory_report(app: faust.App, budget: Budget | None, objects: bool = False) -> dict[str, Any]:
    """Process, Python-heap and RocksDB figures of this worker.

    Cheap (a few system calls and counters) except ``objects``: counting every object the
    garbage collector tracks walks the whole Python heap (tens of ms per million objects).
    """
    recovery = cast(Any, app.tables).recovery  # the TableManager's, not in TableManagerT
    report: dict[str, Any] = {
        **_rss_bytes(),
        **_malloc(),
        "python_allocated_blocks": sys.getallocatedblocks(),
        "rocksdb_databases": open_databases(app),
        "recovery_completed": recovery.completed.is_set(),
        "in_recovery": recovery.in_recovery,
    }
    if objects:
        report["gc_objects"] = len(gc.get_objects())
    if budget is not None:
        report.update(budget.usage())
    return report
