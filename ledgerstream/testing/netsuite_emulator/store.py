"""The emulator's records, in SQLite so that they survive a restart.

Internal ids come from one sequence (NetSuite's are per record family; nothing in the pipeline
depends on that). Set-up records (subsidiary, currencies, accounts, payment method, items) are
seeded on first start with small ids, the way an administrator would have created them.
"""

from __future__ import annotations

import json
import sqlite3
import threading
from dataclasses import dataclass
from datetime import UTC, datetime
from decimal import Decimal
from pathlib import Path
from typing import Any

import simplejson

# type -> list of (internal id, externalId or None, fields)
SEED: dict[str, list[tuple[int, str | None, dict[str, Any]]]] = {
    "subsidiary": [(1, None, {"name": "Parent Company"})],
    "currency": [
        (11 + i, None, {"symbol": code, "name": code})
        for i, code in enumerate(
            ["USD", "GBP", "CAD", "EUR", "JPY", "KWD", "BHD", "CHF", "AUD", "SEK", "KRW", "ISK"]
        )
    ],
    "account": [
        (101, None, {"acctName": "Undeposited Funds", "acctType": "UnDepFunds"}),
        (102, None, {"acctName": "Stripe USD Bank", "acctType": "Bank", "currency": "USD"}),
        (103, None, {"acctName": "Stripe EUR Bank", "acctType": "Bank", "currency": "EUR"}),
        (104, None, {"acctName": "Stripe Fees", "acctType": "Expense"}),
        (105, None, {"acctName": "Stripe Variance", "acctType": "Expense"}),
        (106, None, {"acctName": "Stripe Other Income", "acctType": "Income"}),
        (107, None, {"acctName": "Stripe JPY Bank", "acctType": "Bank", "currency": "JPY"}),
    ],
    "paymentMethod": [(201, None, {"name": "Stripe"})],
    "serviceSaleItem": [(301, None, {"itemId": "Stripe Item"})],
    "discountItem": [(302, None, {"itemId": "Stripe Discount", "isPosting": False})],
}


@dataclass
class Record:
    type: str
    id: int
    external_id: str | None
    fields: dict[str, Any]
    created: str
    last_modified: str
    version: int

    def as_json(self) -> dict[str, Any]:
        out = dict(self.fields)
        out["id"] = str(self.id)
        if self.external_id is not None:
            out["externalId"] = self.external_id
        out["createdDate"] = self.created
        out["lastModifiedDate"] = self.last_modified
        return out


def dumps(value: Any) -> str:
    return simplejson.dumps(value, use_decimal=True, sort_keys=True, separators=(",", ":"))


def loads(text: str) -> Any:
    return json.loads(text, parse_float=Decimal)


def _now() -> str:
    return datetime.now(UTC).strftime("%Y-%m-%dT%H:%M:%S.%fZ")


class Store:
    def __init__(self, path: str | Path):
        self.path = str(path)
        if self.path != ":memory:":
            Path(self.path).parent.mkdir(parents=True, exist_ok=True)
        self._db = sqlite3.connect(self.path, check_same_thread=False, isolation_level=None)
        self._lock = threading.Lock()
        self._db.execute("PRAGMA journal_mode=WAL")
        # WAL with synchronous=NORMAL: a commit survives the emulator being killed (what the
        # chaos suite does), not a power cut; FULL would fsync every write (~4 ms here) on the
        # event loop, and that time would count as NetSuite latency in every benchmark
        # (https://www.sqlite.org/pragma.html#pragma_synchronous)
        self._db.execute("PRAGMA synchronous=NORMAL")
        self._db.execute(
            """CREATE TABLE IF NOT EXISTS records (
                 id INTEGER PRIMARY KEY AUTOINCREMENT, type TEXT NOT NULL, external_id TEXT,
                 fields TEXT NOT NULL, created TEXT NOT NULL, last_modified TEXT NOT NULL,
                 version INTEGER NOT NULL DEFAULT 1)"""
        )
        self._db.execute(
            "CREATE UNIQUE INDEX IF NOT EXISTS records_eid ON records(type, external_id)"
        )
        if self._db.execute("SELECT COUNT(*) FROM records").fetchone()[0] == 0:
            self.seed()
        self._reserve_seed_ids()

    def seed(self) -> None:
        now = _now()
        with self._lock:
            for rtype, rows in SEED.items():
                for rid, eid, fields in rows:
                    self._db.execute(
                        "INSERT OR REPLACE INTO records VALUES (?,?,?,?,?,?,1)",
                        (rid, rtype, eid, dumps(fields), now, now),
                    )

    def reset(self) -> None:
        with self._lock:
            self._db.execute("DELETE FROM records")
            self._db.execute("DELETE FROM sqlite_sequence WHERE name = 'records'")
        self.seed()
        self._reserve_seed_ids()

    def _reserve_seed_ids(self) -> None:
        """Written records get ids from 1000 on, well above the seeded set-up records."""
        self._db.execute(
            "INSERT OR IGNORE INTO records(id, type, fields, created, last_modified) "
            "VALUES (999, '_sequence', '{}', '', '')"
        )

    @staticmethod
    def _row(row: tuple[Any, ...]) -> Record:
        rid, rtype, eid, fields, created, modified, version = row
        return Record(rtype, rid, eid, loads(fields), created, modified, version)

    _COLS = "id, type, external_id, fields, created, last_modified, version"

    def get(self, rtype: str, rid: int) -> Record | None:
        row = self._db.execute(
            f"SELECT {self._COLS} FROM records WHERE type=? AND id=?", (rtype, rid)
        ).fetchone()
        return self._row(row) if row else None

    def get_by_eid(self, rtype: str, eid: str) -> Record | None:
        row = self._db.execute(
            f"SELECT {self._COLS} FROM records WHERE type=? AND external_id=?", (rtype, eid)
        ).fetchone()
        return self._row(row) if row else None

    def exists(self, types: tuple[str, ...], rid: int) -> bool:
        marks = ",".join("?" * len(types))
        row = self._db.execute(
            f"SELECT 1 FROM records WHERE id=? AND type IN ({marks})", (rid, *types)
        ).fetchone()
        return row is not None

    def create(self, rtype: str, eid: str | None, fields: dict[str, Any]) -> Record:
        now = _now()
        with self._lock:
            cur = self._db.execute(
                "INSERT INTO records(type, external_id, fields, created, last_modified) "
                "VALUES (?,?,?,?,?)",
                (rtype, eid, dumps(fields), now, now),
            )
            rid = cur.lastrowid
        assert rid is not None
        return Record(rtype, rid, eid, fields, now, now, 1)

    def update(self, record: Record, fields: dict[str, Any]) -> Record:
        """Store new fields; the version moves only when something actually changed."""
        if fields == record.fields:
            return record
        now = _now()
        with self._lock:
            self._db.execute(
                "UPDATE records SET fields=?, last_modified=?, version=version+1 WHERE id=?",
                (dumps(fields), now, record.id),
            )
        return Record(
            record.type,
            record.id,
            record.external_id,
            fields,
            record.created,
            now,
            record.version + 1,
        )

    def delete(self, record: Record) -> None:
        """Gone for good: its internal id is never given again (AUTOINCREMENT), as NetSuite
        never reuses one."""
        with self._lock:
            self._db.execute("DELETE FROM records WHERE id=?", (record.id,))

    def list(self, rtype: str | None = None, include_seed: bool = False) -> list[Record]:
        sql = f"SELECT {self._COLS} FROM records WHERE type != '_sequence'"
        args: list[Any] = []
        if rtype:
            sql += " AND type=?"
            args.append(rtype)
        if not include_seed:
            sql += " AND id >= 1000"
        rows = self._db.execute(sql + " ORDER BY id", args).fetchall()
        return [self._row(r) for r in rows]

    def close(self) -> None:
        self._db.close()
