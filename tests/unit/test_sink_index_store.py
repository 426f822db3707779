"""The sink's back-reference index on disk: a mapping like the dict it replaced, one directory
per sink, deleted at close, and directories of killed sinks deleted by the next one."""

from __future__ import annotations

import fcntl
import subprocess
import sys
from pathlib import Path

import pytest

from ledgerstream.sinks.index_store import PREFIX, DiskIds, remove_abandoned


def test_it_maps_references_to_internal_ids_as_a_dict_does(tmp_path: Path) -> None:
    ids = DiskIds(str(tmp_path), cache_mb=4)
    try:
        ids[("invoice", "in_1")] = "101"
        ids[("customerPayment", "ch_1")] = "102"
        assert ids.add(("invoice", "in_1"), "103") is False  # written again under a new id
        assert ids.add(("invoice", "in_3"), "104") is True
        del ids[("invoice", "in_3")]
        assert ids[("invoice", "in_1")] == "103"
        assert ("invoice", "in_1") in ids
        assert ("invoice", "in_2") not in ids
        assert "invoice/in_1" not in ids  # only (record type, externalId) pairs are keys
        assert ids.get(("invoice", "in_2")) is None
        assert ids.get(("invoice", "in_2"), "x") == "x"
        assert len(ids) == 2
        assert sorted(ids) == [("customerPayment", "ch_1"), ("invoice", "in_1")]
        assert ids.pop(("customerPayment", "ch_1")) == "102"
        assert ids.pop(("customerPayment", "ch_1"), None) is None
        with pytest.raises(KeyError):
            ids[("customerPayment", "ch_1")]
        with pytest.raises(KeyError):
            del ids[("customerPayment", "ch_1")]
        assert len(ids) == 1
        # an externalId may hold any character but the separator, a record type none of them
        ids[("journalEntry", "txn_1/é:x y")] = "7"
        assert dict(ids.items())[("journalEntry", "txn_1/é:x y")] == "7"
    finally:
        ids.close()


def test_each_sink_has_its_own_directory_deleted_at_close(tmp_path: Path) -> None:
    first, second = DiskIds(str(tmp_path), 4), DiskIds(str(tmp_path), 4)
    try:
        first[("invoice", "in_1")] = "1"
        assert first.path != second.path
        assert ("invoice", "in_1") not in second
        assert {p.name.startswith(PREFIX) for p in tmp_path.iterdir()} == {True}
    finally:
        first.close()
    assert not first.path.exists()
    assert second.path.exists()  # another sink's, still running
    second.close()
    first.close()  # twice: nothing more happens
    assert list(tmp_path.iterdir()) == []


def test_a_killed_sinks_directory_is_deleted_by_the_next_sink(tmp_path: Path) -> None:
    # a sink process killed with SIGKILL: its directory stays, nobody holds its lock
    code = (
        "import os, sys\n"
        "from ledgerstream.sinks.index_store import DiskIds\n"
        "ids = DiskIds(sys.argv[1], 4)\n"
        "ids[('invoice', 'in_1')] = '1'\n"
        "print(ids.path, flush=True)\n"
        "os.kill(os.getpid(), 9)\n"
    )
    killed = subprocess.run(
        [sys.executable, "-c", code, str(tmp_path)], capture_output=True, text=True
    )
    assert killed.returncode == -9, killed.stderr
    left = Path(killed.stdout.strip())
    assert left.exists()
    # a directory another sink is making this moment (not locked yet, not named yet) stays
    making = tmp_path / ".new-backrefs-making"
    making.mkdir()
    # a directory whose lock is held (a running sink) stays
    running = tmp_path / f"{PREFIX}running"
    running.mkdir()
    with open(running / "owner", "a+b") as owner:
        fcntl.flock(owner, fcntl.LOCK_EX | fcntl.LOCK_NB)
        ids = DiskIds(str(tmp_path), 4)
        try:
            assert not left.exists()
            assert running.exists()
            assert making.exists()
            assert remove_abandoned(tmp_path) == 0  # ours and the running one: both held
        finally:
            ids.close()
    assert remove_abandoned(tmp_path) == 1  # the running one, now stopped
