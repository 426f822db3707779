"""The status page without a broker: the status table built from the topic's records, the
payouts' deposits, and the pages rendered from it (every value escaped, secrets masked)."""

from __future__ import annotations

import collections.abc
import itertools
import json
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest
import requests

from ledgerstream import dlq, redact
from ledgerstream.testing.pipeline import AppThread
from ledgerstream.ui import (
    DeadLetters,
    GroupHealth,
    PartitionLag,
    RedriveRequest,
    Sources,
    StatusTable,
    make_app,
    payout_view,
)

_clock = itertools.count()


def put(table: StatusTable, key: str, at: str | None = None, **fields: Any) -> None:
    """An entry as a component writes it (at a later time than the one before, unless given)."""
    at = at or (datetime(2026, 11, 5, tzinfo=UTC) + timedelta(seconds=next(_clock))).isoformat()
    table.apply(key.encode(), json.dumps({"at": at, **fields}).encode())


def delete(table: StatusTable, key: str) -> None:
    table.apply(key.encode(), None)


def customer_written(table: StatusTable, cus: str, internal_id: str = "7") -> None:
    put(table, f"{cus}|event|evt_1", "2026-11-02T10:00:00+00:00", type="customer.created")
    put(table, f"{cus}|processed", "2026-11-02T10:00:01+00:00", state="booked")
    put(
        table,
        f"{cus}|sent|customer/{cus}",
        "2026-11-02T10:00:02+00:00",
        record_type="customer",
        external_id=cus,
    )
    put(
        table,
        f"{cus}|written|customer/{cus}",
        "2026-11-02T10:00:03+00:00",
        record_type="customer",
        external_id=cus,
        internal_id=internal_id,
    )


def deposit_part(
    table: StatusTable, po: str, part: str, lines: dict[str, int], payout_amount: int | None
) -> None:
    put(
        table,
        f"{po}|sent|deposit/{part}",
        record_type="deposit",
        external_id=part,
        currency="eur",
        lines=lines,
        total=sum(lines.values()),
        payout_amount=payout_amount,
    )


def test_the_table_keeps_the_latest_entry_per_key_and_a_tombstone_deletes_it() -> None:
    table = StatusTable()
    customer_written(table, "cus_1")
    view = table.get("cus_1")
    assert view is not None and view.state == "written"
    assert [e.stage for e in view.ordered()] == ["event", "processed", "sent", "written"]
    put(table, "cus_1|backref", "2026-11-02T10:00:04+00:00", metadata={"netsuite_id": "7"})
    assert view.state == "backref" and view.last_at.startswith("2026-11-02T10:00:04")

    put(
        table,
        "in_1|failed|invoice/in_1",
        record_type="invoice",
        external_id="in_1",
        reason="HTTP 400",
        dlq="netsuite.commands.dlq",
    )
    put(table, "in_1|sent|invoice/in_1", record_type="invoice", external_id="in_1")
    assert table.get("in_1").state == "failed"  # type: ignore[union-attr]
    assert +table.counts == {"backref": 1, "failed": 1}  # (+: the states with any)
    # the sink's tombstone when a later write succeeds: the failure is gone
    delete(table, "in_1|failed|invoice/in_1")
    assert table.get("in_1").state == "sent"  # type: ignore[union-attr]
    put(table, "in_1|written|invoice/in_1", record_type="invoice", internal_id="9")
    assert +table.counts == {"backref": 1, "written": 1}
    put(table, "in_1|processed", state="waiting", reason="customer cus_9", since="x")
    assert table.get("in_1").state == "waiting"  # type: ignore[union-attr]

    # every key of an object deleted: the object is gone; odd records change nothing
    for key in list(table.get("cus_1").entries):  # type: ignore[union-attr]
        delete(table, f"cus_1|{key}")
    assert table.get("cus_1") is None and table.counts["backref"] == 0
    for key, value in [(b"no-separator", b"{}"), (b"x|event|e", b"not json"), (b"y|a", b"[1]")]:
        table.apply(key, value)
    table.apply(None, b"{}")
    delete(table, "never_seen|event|e")
    assert set(table.objects) == {"in_1"}


def test_recent_is_newest_first_and_filters_by_state_and_search_finds_ids() -> None:
    table = StatusTable()
    put(table, "ch_old|event|e1", "2026-11-01T09:00:00+00:00", type="charge.succeeded")
    customer_written(table, "cus_abc", internal_id="1234")
    put(table, "in_new|event|e2", "2026-11-03T09:00:00+00:00", type="invoice.finalized")
    assert [o.stripe_id for o in table.recent()] == ["in_new", "cus_abc", "ch_old"]
    assert [o.stripe_id for o in table.recent("written")] == ["cus_abc"]
    assert [o.stripe_id for o in table.recent(limit=1)] == ["in_new"]
    assert [o.stripe_id for o in table.search("ABC")] == ["cus_abc"]  # any case
    assert [o.stripe_id for o in table.search("1234")] == ["cus_abc"]  # a NetSuite id
    assert table.search("  ") == []


def test_a_payouts_deposit_is_summed_over_its_parts_against_the_payout_amount() -> None:
    table = StatusTable()
    put(table, "po_1|event|evt_p", type="payout.paid")
    assert payout_view(table.get("po_1")).status == "received"  # type: ignore[arg-type]
    deposit_part(
        table, "po_1", "po_1", {"payments": 10_000, "fee: stripe_fee": -290}, payout_amount=14_510
    )
    deposit_part(table, "po_1", "po_1-2", {"payments": 5_000, "refunds": -200}, payout_amount=None)
    put(table, "po_1|written|deposit/po_1", record_type="deposit", internal_id="55")
    view = payout_view(table.get("po_1"))  # type: ignore[arg-type]
    assert view.currency == "eur" and view.payout_amount == 14_510
    assert view.lines == [("payments", 15_000), ("refunds", -200), ("fee: stripe_fee", -290)]
    assert view.total == 14_510 and view.matches is True
    assert [(p.key, p.state, p.internal_id) for p in view.parts] == [
        ("deposit/po_1", "written", "55"),
        ("deposit/po_1-2", "sent", None),
    ]
    assert view.status == "sent"  # one part still to be written
    put(table, "po_1|written|deposit/po_1-2", record_type="deposit", internal_id="56")
    assert payout_view(table.get("po_1")).status == "written"  # type: ignore[arg-type]

    deposit_part(table, "po_2", "po_2", {"payments": 100, "suspense": 5}, payout_amount=100)
    assert payout_view(table.get("po_2")).matches is False  # type: ignore[arg-type]
    assert [p.stripe_id for p in table.payouts()] == ["po_2", "po_1"]


# --------------------------------------------------------------------------- the pages
HOSTILE = '<script>alert("x")</script>'
SECRET = "sk_live_verysecretvalue123"


def letter(offset: int, stripe_id: str, reason: str) -> dlq.DeadLetter:
    ms = int(datetime(2026, 11, 2, 10, offset, tzinfo=UTC).timestamp() * 1000)
    headers = {
        "dlq.topic": "ui-test.commands",  # no topic of the pipeline: its payload is JSON
        "dlq.partition": "0",
        "dlq.offset": str(offset),
        "dlq.exception.class": "NetSuiteResponseError",
        "dlq.exception.message": reason,
    }
    value = json.dumps({"stripe_id": stripe_id, "token": SECRET}).encode()
    return dlq.DeadLetter("ui-test.commands.dlq", 0, offset, ms, stripe_id.encode(), value, headers)


class Fakes:
    """What the pages read besides the status table, and the redrives asked for."""

    def __init__(self) -> None:
        self.letters = [letter(1, "in_1", "HTTP 400: bad"), letter(2, HOSTILE, HOSTILE)]
        self.done: dict[str, dict[str, Any]] = {}
        self.asked: list[RedriveRequest] = []

    def health(self) -> list[GroupHealth]:
        return [
            GroupHealth("sink", "g-sink", ["sink-1@/127.0.0.1"], [PartitionLag("t", 0, 5, 0, 8)]),
            GroupHealth("router", "g-router", [], [PartitionLag("t", 0, None, 2, 2)]),
        ]

    def dead_letters(self) -> DeadLetters:
        return DeadLetters(list(self.letters), dict(self.done))

    def redrive(self, request: RedriveRequest) -> dlq.Redrive:
        self.asked.append(request)
        chosen = [x for x in self.letters if x.ref in request.refs]
        for x in chosen:
            self.done[x.ref] = {"at": "2026-11-02T11:00:00+00:00", "to": x.source}
        return dlq.Redrive(sent=chosen)


@pytest.fixture
def served(
    monkeypatch: pytest.MonkeyPatch,
) -> collections.abc.Iterator[tuple[str, StatusTable, Fakes]]:
    monkeypatch.setenv("LEDGER_NETSUITE_ACCOUNT_ID", "123456_SB1")
    redact.add([SECRET])
    table = StatusTable()
    table.caught_up = True
    fakes = Fakes()
    sources = Sources(health=fakes.health, dead_letters=fakes.dead_letters, redrive=fakes.redrive)
    server = AppThread(make_app(table, sources, feed=False))
    yield server.url, table, fakes
    server.close()


def test_pages_escape_every_value_from_kafka_and_mask_secrets(
    served: tuple[str, StatusTable, Fakes],
) -> None:
    url, table, _ = served
    put(table, f"{HOSTILE}|event|evt_1", type=HOSTILE, topic="stripe.charge")
    put(
        table,
        "in_1|failed|invoice/in_1",
        record_type="invoice",
        external_id="in_1",
        reason=f"refused with {SECRET}",
        dlq="netsuite.commands.dlq",
    )
    for path in ("/", "/?state=received", f"/search?q={HOSTILE[:8]}", "/dlq", "/object/in_1"):
        page = requests.get(url + path, timeout=10)
        assert page.status_code == 200, path
        assert HOSTILE not in page.text and "<script" not in page.text, path
        assert SECRET not in page.text, path
    overview = requests.get(url + "/", timeout=10)
    assert "&lt;script&gt;alert(&#34;x&#34;)&lt;/script&gt;" in overview.text
    assert "script-src" not in overview.headers["Content-Security-Policy"]  # none allowed
    assert "default-src 'none'" in overview.headers["Content-Security-Policy"]
    assert "refused with ***" in requests.get(url + "/object/in_1", timeout=10).text
    # an id with a slash or a percent sign still has its page
    put(table, "odd/id%2F|event|e", type="x")
    odd = requests.get(url + "/object/odd%2Fid%252F", timeout=10)
    assert odd.status_code == 200 and "odd/id%2F" in odd.text


def test_search_goes_to_the_object_page_which_links_to_netsuite(
    served: tuple[str, StatusTable, Fakes],
) -> None:
    url, table, _ = served
    customer_written(table, "cus_1", internal_id="77")
    customer_written(table, "cus_2", internal_id="78")
    found = requests.get(url + "/search", params={"q": "cus_1"}, timeout=10)
    assert found.url == url + "/object/cus_1"
    assert "NetSuite customer cus_1 internal id 77" in found.text
    assert "https://123456-sb1.app.netsuite.com/app/common/entity/custjob.nl?id=77" in found.text
    several = requests.get(url + "/search", params={"q": "cus_"}, timeout=10)
    assert several.url.startswith(url + "/search") and "cus_2" in several.text
    missing = requests.get(url + "/object/cus_none", timeout=10)
    assert missing.status_code == 404 and "Nothing recorded" in missing.text
    assert requests.get(url + "/?state=nonsense", timeout=10).status_code == 400


def test_payouts_page_shows_each_deposit_against_its_payout(
    served: tuple[str, StatusTable, Fakes],
) -> None:
    url, table, _ = served
    assert "No payouts yet" in requests.get(url + "/payouts", timeout=10).text
    deposit_part(
        table,
        "po_1",
        "po_1",
        {"payments": 123_456, "fee: stripe_fee": -3_456},
        payout_amount=120_000,
    )
    put(table, "po_1|written|deposit/po_1", record_type="deposit", internal_id="55")
    page = requests.get(url + "/payouts", timeout=10).text
    for shown in ("1,234.56 EUR", "-34.56 EUR", "1,200.00 EUR", "fee: stripe_fee", "✔", "55"):
        assert shown in page, shown
    assert "transaction.nl?id=55" in page


def test_dlq_page_lists_letters_and_its_button_redrives_one_then_says_how_many(
    served: tuple[str, StatusTable, Fakes],
) -> None:
    url, _, fakes = served
    page = requests.get(url + "/dlq", timeout=10)
    assert "ui-test.commands" in page.text and "NetSuiteResponseError" in page.text
    assert "2 dead letters, 2 not redriven" in page.text
    ref = fakes.letters[0].ref
    done = requests.post(url + "/dlq/redrive", data={"ref": ref}, timeout=10)
    assert done.url.startswith(url + "/dlq?")
    assert "1 redriven; 0 redriven before, passed over" in done.text
    assert "2 dead letters, 1 not redriven" in done.text  # read again after the redrive
    assert fakes.asked == [RedriveRequest(refs=(ref,))]
    # another site's page cannot press the button; nor may a button redrive everything unasked
    forged = requests.post(
        url + "/dlq/redrive", data={"ref": ref}, headers={"Origin": "https://evil.test"}
    )
    assert forged.status_code == 403
    assert requests.post(url + "/dlq/redrive", data={}, timeout=10).status_code == 400
    # back to the page that asked, never to another site
    back = requests.post(
        url + "/dlq/redrive", data={"stripe_id": "in_1", "back": "//evil.test/x"}, timeout=10
    )
    assert back.url.startswith(url + "/dlq?")


def test_health_shows_each_group_with_its_lag_and_members(
    served: tuple[str, StatusTable, Fakes],
) -> None:
    url, _, _ = served
    page = requests.get(url + "/health", timeout=10).text
    assert "g-sink" in page and "sink-1@/127.0.0.1" in page and "catching up" in page
    assert "g-router" in page and "idle" in page
    overview = requests.get(url + "/", timeout=10).text
    assert 'id="health-summary"' in overview and "catching up" in overview
    assert requests.get(url + "/healthz", timeout=10).text == "ok\n"
    assert requests.get(url + "/readyz", timeout=10).status_code == 200
