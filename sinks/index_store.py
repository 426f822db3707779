"""The sink's back-reference index on disk, within a fixed memory budget.

The index maps every NetSuite record the pipeline wrote, (record type, externalId), to its
internal id. As a dict it took about 240 B per record (a million records: about 230 MiB) and
grew for as long as the sink ran. Here it is a RocksDB database of its own in a fresh
directory under ``LEDGER_SINK_DATA_DIR``: one LRU block cache of ``LEDGER_SINK_INDEX_CACHE_MB``
holds the index and filter blocks (partitioned) and is charged with the memtables, so the
index's memory follows that budget, not the number of records; the rest is on disk (about
35 B per record). ``benchmarks.sink_index_bench`` measures both.

Nothing in it needs to survive the process: the compacted ``netsuite.backrefs`` topic is the
index's source, read whole at every start (``BackrefIndex.load``). So writes skip RocksDB's
write-ahead log, the directory is deleted when the sink closes, and one a killed sink left
behind is deleted by the next sink that starts on the host (a directory counts as left behind
when no process holds the lock on its ``owner`` file). Several sinks on one host each have a
directory of their own.

A lookup takes about 5 to 20 µs against about 1 µs in a dict: a few per command, against a
NetSuite request of hundreds of milliseconds.
"""

from __future__ import annotations

import fcntl
import logging
import shutil
import tempfile
from collections.abc import Iterator, MutableMapping
from pathlib import Path
from typing import IO, cast

import rocksdict

log = logging.getLogger(__name__)

MIB = 1024 * 1024
PREFIX = "backrefs-"
_NEW = ".new-backrefs-"  # a directory being made, not yet locked
_SEP = "\x00"  # neither a record type nor an externalId holds it


def _key(ref: tuple[str, str]) -> bytes:
    return f"{ref[0]}{_SEP}{ref[1]}".encode()


def _ref(key: bytes) -> tuple[str, str]:
    record_type, _, external_id = key.decode().partition(_SEP)
    return record_type, external_id


def remove_abandoned(data_dir: Path) -> int:
    """Delete the index directories no live process holds; how many were deleted."""
    removed = 0
    for directory in data_dir.glob(f"{PREFIX}*"):
        try:
            with open(directory / "owner", "a+b") as owner:
                fcntl.flock(owner, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            continue  # a running sink's
        except OSError:  # unreadable: nobody can use it
            pass
        shutil.rmtree(directory, ignore_errors=True)
        removed += 1
    return removed


class DiskIds(MutableMapping[tuple[str, str], str]):
    """(record type, externalId) → internal id, in RocksDB (see the module's docstring)."""

    def __init__(self, data_dir: str, cache_mb: int):
        root = Path(data_dir)
        root.mkdir(parents=True, exist_ok=True)
        removed = remove_abandoned(root)
        if removed:
            log.info("deleted %d back-reference index director(ies) left by stopped sinks", removed)
        # locked before it takes its name: another sink starting at the same moment would
        # otherwise find it unlocked and delete it as left behind
        new = Path(tempfile.mkdtemp(prefix=_NEW, dir=root))
        self._owner: IO[bytes] | None = open(new / "owner", "a+b")  # noqa: SIM115
        fcntl.flock(self._owner, fcntl.LOCK_EX | fcntl.LOCK_NB)
        self.path = root / (PREFIX + new.name.removeprefix(_NEW))
        new.rename(self.path)
        cache = rocksdict.Cache(cache_mb * MIB)
        opts = rocksdict.Options(raw_mode=True)
        opts.create_if_missing(True)
        memtable = max(1, cache_mb // 4) * MIB
        opts.set_write_buffer_size(memtable)
        opts.set_max_write_buffer_number(2)
        # memtables are charged to the block cache: the cache's size bounds both
        opts.set_write_buffer_manager(
            rocksdict.WriteBufferManager.new_write_buffer_manager_with_cache(
                2 * memtable, False, cache
            )
        )
        opts.set_max_open_files(64)
        table = rocksdict.BlockBasedOptions()
        table.set_block_cache(cache)
        # index and filter blocks in the cache too, partitioned: whole ones for a million
        # records are a few MiB each, evicted and read again lookup after lookup by a small
        # cache (measured: 230 µs per lookup); left outside the cache, they grow with the data.
        # Partitioned, the cache holds the pieces in use and pins only their top level.
        table.set_index_type(rocksdict.BlockBasedIndexType.two_level_index_search())
        table.set_partition_filters(True)
        table.set_metadata_block_size(4096)
        table.set_bloom_filter(10, False)  # full filters (False: not the legacy block-based)
        table.set_cache_index_and_filter_blocks(True)
        table.set_pin_top_level_index_and_filter(True)
        opts.set_block_based_table_factory(table)
        self.db = rocksdict.Rdict(str(self.path / "db"), opts)
        writes = rocksdict.WriteOptions()
        # rebuilt from the topic at every start (a property: the stubs call it a method)
        writes.disable_wal = True  # type: ignore[method-assign,assignment]
        self.db.set_write_options(writes)
        self._count = 0

    def __getitem__(self, ref: tuple[str, str]) -> str:
        value = self.db.get(_key(ref))
        if value is None:
            raise KeyError(ref)
        return bytes(value).decode()

    def get(self, ref: tuple[str, str], default: str | None = None) -> str | None:  # type: ignore[override]
        value = self.db.get(_key(ref))
        return default if value is None else bytes(value).decode()

    def __contains__(self, ref: object) -> bool:
        if not (isinstance(ref, tuple) and len(ref) == 2):
            return False
        return self.db.get(_key(ref)) is not None

    def __setitem__(self, ref: tuple[str, str], internal_id: str) -> None:
        self.add(ref, internal_id)

    def add(self, ref: tuple[str, str], internal_id: str) -> bool:
        """Set ``ref``; True when it was not there before (one read, for the count)."""
        key = _key(ref)
        new = self.db.get(key) is None
        if new:
            self._count += 1
        self.db.put(key, internal_id.encode())
        return new

    def __delitem__(self, ref: tuple[str, str]) -> None:
        key = _key(ref)
        if self.db.get(key) is None:
            raise KeyError(ref)
        self.db.delete(key)
        self._count -= 1

    def __iter__(self) -> Iterator[tuple[str, str]]:
        for key in self.db.keys():
            yield _ref(cast(bytes, key))

    def __len__(self) -> int:
        return self._count

    def close(self) -> None:
        """Close the database and delete its directory."""
        if self._owner is None:
            return
        self.db.close()
        shutil.rmtree(self.path, ignore_errors=True)
        self._owner.close()
        self._owner = None
