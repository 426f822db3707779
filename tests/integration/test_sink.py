"""The NetSuite sink over a real broker against the emulator over HTTP: exactly one record per
command key under faults, dead letters with NetSuite's error, wrong credentials stop it."""

from __future__ import annotations

import json
import os
import re
import signal
import time
from collections import Counter
from datetime import UTC, datetime
from decimal import Decimal
from typing import Any

import pytest
import requests
from confluent_kafka import Producer

from ledgerstream import settings, topics
from ledgerstream.accounting import deposit_commands, plan_deposit
from ledgerstream.accounting.book import book_history
from ledgerstream.accounting.model import BalanceTransaction, Payout
from ledgerstream.avro import Serde
from ledgerstream.commands import Command, find_refs, ref, sublists
from ledgerstream.sinks.stripe_metadata import MetadataWriter
from ledgerstream.testing.generator import Scenario, generate
from ledgerstream.testing.pipeline import AppThread, Pipeline
from ledgerstream.testing.stripe_double import StripeDouble
from tests.integration.conftest import double_boot
from tests.integration.helpers import consume_all, drain, wait_caught_up
from tests.unit.test_ledger import CFG, expanded_payout_txns, routed

pytestmark = [pytest.mark.integration, pytest.mark.usefixtures("local_stack")]

SCENARIO = Scenario(
    seed=1,
    customers=6,
    months=2,
    settlement_currencies=("usd", "jpy"),
    refund_rate=0.2,
    dispute_rate=0.1,
    credit_note_rate=0.3,
    credit_note_void_rate=0.5,  # seed 1: one pre-payment credit note issued, then voided
)
# 20 % of requests fail transiently: throttling, server errors, spurious 401s, and writes that
# commit but whose answer never arrives
FAULTS = {
    "LEDGER_EMULATOR_ERRORS": "429=0.05,500=0.03,503=0.03",
    "LEDGER_EMULATOR_SPURIOUS_401_RATE": "0.04",
    "LEDGER_EMULATOR_DROP_AFTER_COMMIT_RATE": "0.05",
    "LEDGER_EMULATOR_LATENCY_MS": "20",
    "LEDGER_EMULATOR_LATENCY_SIGMA": "0.5",
    "LEDGER_EMULATOR_SEED": "7",
}


def command_stream() -> list[Command]:
    """Every command the processors emit for the scenario, in emission order."""
    history = generate(SCENARIO)
    stream: list[Command] = []
    book = book_history(
        [routed(history, e) for e in history.events],
        expanded_payout_txns(history),
        CFG,
        on_command=stream.append,
    )
    assert book.dead_letters == [] and book.waiting == {}
    return stream


def publish(commands: list[Command]) -> None:
    name = topics.name(topics.NETSUITE_COMMANDS)
    serde = Serde(name, topics.NETSUITE_COMMANDS.schema or "")
    producer = Producer({**settings.kafka().client_config(), "enable.idempotence": True})
    for cmd in commands:
        producer.produce(name, key=cmd.order_key.encode(), value=serde.dumps(cmd.to_avro()))
    assert producer.flush(60) == 0


def start_emulator(pipe: Pipeline, **env: str) -> None:
    pipe.start("emulator", "emulator", "netsuite", env=env)
    pipe.wait_http(f"{pipe.emulator_url}/_emulator/records", "emulator")


def wait_sink_done(pipe: Pipeline, timeout: float = 240) -> None:
    wait_caught_up(
        pipe.env()["LEDGER_SINK_GROUP_ID"],
        [topics.name(topics.NETSUITE_COMMANDS)],
        timeout=timeout,
        check=pipe.check_alive,
    )


def _scalars(body: dict[str, Any]) -> dict[str, Any]:
    return {k: v for k, v in body.items() if isinstance(v, str | int | float | bool)}


def assert_written_exactly(pipe: Pipeline, last: dict[str, Command]) -> None:
    """NetSuite holds each record of ``last`` once, in that version, references resolved;
    nothing was dead-lettered and every back-reference names the record's internal id."""
    records = pipe.records()
    stored = Counter((r["type"], r["externalId"]) for r in records)
    expected = {(c.record_type, c.external_id) for c in last.values()}
    assert set(stored) == expected  # none missing, none extra
    assert max(stored.values()) == 1  # none duplicated
    by_key = {f"{r['type']}/{r['externalId']}": r for r in records}
    internal = {(r["type"], r["externalId"]): r["id"] for r in records}
    for key, cmd in last.items():
        record = by_key[key]
        for name, value in _scalars(cmd.body).items():  # the last write of each record won
            assert str(record[name]) == str(value), (key, name)
        for sublist in sublists(cmd.body):  # retried writes did not add lines
            assert len(record[sublist]["items"]) == len(cmd.body[sublist]["items"]), key
        for rtype, eid in find_refs(cmd.body):  # references resolved to the right records
            assert (rtype, eid) in internal

    assert consume_all(topics.dlq_name(topics.NETSUITE_COMMANDS), timeout=3) == []
    backrefs_topic = topics.name(topics.NETSUITE_BACKREFS)
    serde = Serde(backrefs_topic, topics.NETSUITE_BACKREFS.schema or "")
    backrefs = [serde.loads(m.value()) for m in consume_all(backrefs_topic, timeout=5)]
    assert {(b["record_type"], b["external_id"]) for b in backrefs} == expected
    for backref in backrefs:
        assert internal[(backref["record_type"], backref["external_id"])] == backref["internal_id"]


@pytest.mark.parametrize("auth", ["tba", "m2m"])
def test_faults_and_dropped_responses_end_with_exactly_the_expected_records(
    pipe: Pipeline, auth: str
) -> None:
    stream = command_stream()
    last = {c.key: c for c in stream}
    assert len(stream) > len(last)  # some records are written more than once (updates)
    voided = [c for c in last.values() if "VOIDED in Stripe" in c.body.get("memo", "")]
    assert [c.record_type for c in voided] == ["creditMemo"]  # written applied, then voided
    publish(stream)
    start_emulator(pipe, **FAULTS)
    pipe.start(
        "sink",
        "sink",
        "netsuite",
        env={"LEDGER_NETSUITE_AUTH": auth, "LEDGER_NETSUITE_CONCURRENCY": "4"},
    )
    wait_sink_done(pipe)
    assert_written_exactly(pipe, last)

    stats = pipe.emulator_stats()
    injected = sum(stats["faults"].values())
    puts = sum(n for k, n in stats["requests"].items() if k.startswith("PUT"))
    # the faults did happen, to a tenth of the writes at least (the sink writes each record
    # once here, in its newest version: the whole stream is a backlog it reads at once)
    assert injected >= 0.1 * puts, stats
    assert puts < len(stream), stats
    assert stats["faults"].get("drop", 0) > 0 and stats["faults"].get("401", 0) > 0
    if auth == "m2m":
        assert stats["tokens_issued"] >= 1 and "token 200" in stats["requests"]


def test_batch_writes_end_with_exactly_the_expected_records_in_fewer_requests(
    pipe: Pipeline,
) -> None:
    """LEDGER_NETSUITE_WRITE_MODE=batch, with the same faults on every request (submits whose
    answer is lost, status polls and lookups refused): the same records as single writes,
    written by batch jobs, in fewer requests than records."""
    stream = command_stream()
    last = {c.key: c for c in stream}
    publish(stream)
    start_emulator(pipe, **FAULTS, LEDGER_EMULATOR_ASYNC_ITEM_MS="5")
    pipe.start(
        "sink",
        "sink",
        "netsuite",
        env={"LEDGER_NETSUITE_WRITE_MODE": "batch", "LEDGER_NETSUITE_CONCURRENCY": "4"},
    )
    wait_sink_done(pipe)
    assert_written_exactly(pipe, last)

    stats = pipe.emulator_stats()
    jobs = stats["async"]
    print("batch:", stats["requests"], jobs, stats["faults"])
    assert jobs["items_executed"] >= len(last)  # every record went through a batch job
    assert jobs["jobs_completed"] < len(last) / 2  # batches, not one job per record
    # a submit, a poll or two and one lookup per job: fewer answered requests than records
    # (this history's chains of references make small waves; the sink benchmark's backlog
    # shows the figure for full batches)
    answered = sum(n for k, n in stats["requests"].items() if k.split()[1].startswith("2"))
    assert answered < len(last), stats["requests"]
    assert sum(stats["faults"].values()) > 0


def _customer(eid: str, subsidiary: str = "1") -> Command:
    body = {"companyName": f"Customer {eid}", "subsidiary": {"id": subsidiary}}
    return Command("customer", eid, body, "customer", eid, "netsuite_customer_id")


@pytest.mark.parametrize("mode", ["single", "batch"])
def test_a_400_is_dead_lettered_with_netsuite_error_and_later_records_are_written(
    pipe: Pipeline, mode: str
) -> None:
    """In batch mode the refused item fails in the job, the others are written by it, and the
    refused one is written again on its own: its 400 is dead-lettered like a single write's."""
    bad = _customer("cus_bad", subsidiary="999")
    later = [_customer(f"cus_ok{i}") for i in range(5)]
    publish([bad, *later])
    start_emulator(pipe)
    pipe.start("sink", "sink", "netsuite", env={"LEDGER_NETSUITE_WRITE_MODE": mode})
    wait_sink_done(pipe, timeout=90)
    if mode == "batch":
        jobs = pipe.emulator_stats()["async"]
        assert jobs["items_succeeded"] == 5 and jobs["items_failed"] == 1, jobs

    assert {r["externalId"] for r in pipe.records("customer")} == {c.external_id for c in later}
    dead = consume_all(topics.dlq_name(topics.NETSUITE_COMMANDS), timeout=10)
    assert len(dead) == 1
    headers = {k: (v or b"").decode() for k, v in dead[0].headers()}
    details = json.loads(headers["netsuite.errorDetails"])
    assert details[0]["o:errorCode"] == "INVALID_CONTENT"
    assert details[0]["o:errorPath"] == "subsidiary"
    assert headers["dlq.topic"] == topics.name(topics.NETSUITE_COMMANDS)
    commands = Serde(topics.name(topics.NETSUITE_COMMANDS), topics.NETSUITE_COMMANDS.schema or "")
    assert commands.loads(dead[0].value())["external_id"] == "cus_bad"  # the command, unchanged


def test_one_invoice_s_records_are_written_in_order_and_a_waiting_one_blocks_no_other(
    pipe: Pipeline,
) -> None:
    """The records of one invoice share an order key (one partition, one write at a time):
    a credit memo applied to the invoice and then voided is voided before the payment of the
    whole invoice is written (else NetSuite refuses the payment: beyond the amount remaining),
    and a refund's memo sent before its invoice (it was booked against a draft) waits for the
    invoice without holding the invoice back."""
    customer = _customer("cus_o")
    cus, inv = ref("customer", "cus_o"), ref("invoice", "in_o")
    order = "invoice/in_o"

    def on_invoice(rtype: str, eid: str, body: dict[str, Any]) -> Command:
        return Command(rtype, eid, body, "invoice", "in_o", None, order=order)

    def applied(amount: str) -> dict[str, Any]:
        return {"items": [{"doc": inv, "apply": True, "amount": amount}]}

    lines = {"items": [{"item": {"id": "301"}, "amount": "100.00"}]}
    memo_lines = {"items": [{"item": {"id": "301"}, "amount": "30.00"}]}
    refund_memo = on_invoice(
        "creditMemo", "cm_re_o", {"entity": cus, "createdFrom": inv, "item": memo_lines}
    )
    invoice = on_invoice("invoice", "in_o", {"entity": cus, "item": lines})
    note = {"entity": cus, "createdFrom": inv, "item": memo_lines}
    issued = on_invoice("creditMemo", "cm_cn_o", {**note, "apply": applied("30.00")})
    voided = on_invoice("creditMemo", "cm_cn_o", {**note, "apply": {"items": []}})
    payment = on_invoice(
        "customerPayment",
        "ch_o",
        {"customer": cus, "payment": "100.00", "apply": applied("100.00")},
    )
    publish([customer, refund_memo, invoice, issued, voided, payment])
    # slow writes: with one write per record at a time, the payment would overtake the void
    start_emulator(pipe, LEDGER_EMULATOR_LATENCY_MS="300")
    pipe.start("sink", "sink", "netsuite", env={"LEDGER_NETSUITE_CONCURRENCY": "4"})
    wait_sink_done(pipe, timeout=120)

    stored = {(r["type"], r["externalId"]): r for r in pipe.records()}
    assert set(stored) == {
        (c.record_type, c.external_id) for c in (customer, refund_memo, invoice, issued, payment)
    }
    assert stored[("creditMemo", "cm_cn_o")]["apply"]["items"] == []
    assert consume_all(topics.dlq_name(topics.NETSUITE_COMMANDS), timeout=3) == []


def test_a_payout_of_25_000_payments_is_written_as_several_deposits(pipe: Pipeline) -> None:
    """NetSuite holds at most 10,000 lines per deposit, and a Kafka message at most 1 MiB:
    the payout's deposit is written in parts that the emulator accepts (each payment in one
    deposit only, no part negative), the first of the payout's amount and the others of
    zero."""
    customer = _customer("cus_big")
    txns = []
    payments = []
    for i in range(25_000):
        amount = 1_000 + i % 500
        txns.append(
            BalanceTransaction(
                id=f"txn_{i:05d}",
                amount=amount,
                currency="usd",
                fee=0,
                fee_details=(),
                net=amount,
                reporting_category="charge",
                type="charge",
                source=f"ch_big{i:05d}",
                created=datetime(2025, 3, 1, tzinfo=UTC),
            )
        )
        body = {
            "customer": ref("customer", "cus_big"),
            "payment": Decimal(amount) / 100,
            "undepFunds": True,
            "account": {"id": "101"},
            "currency": {"id": "11"},
        }
        payments.append(
            Command("customerPayment", f"ch_big{i:05d}", body, "charge", f"ch_big{i:05d}", None)
        )
    payout = Payout(
        id="po_big",
        amount=sum(t.net for t in txns),
        currency="usd",
        status="paid",
        automatic=True,
        arrival_date=datetime(2025, 3, 3, tzinfo=UTC),
        created=datetime(2025, 3, 2, tzinfo=UTC),
        balance_transaction=None,
    )
    deposits = deposit_commands(plan_deposit(payout, txns, CFG, expected=len(txns)), CFG)
    names = ["po_big"] + [f"po_big-{n}" for n in range(2, len(deposits) + 1)]
    assert [d.external_id for d in deposits] == names and len(names) >= 3
    publish([customer, *payments, *deposits])
    start_emulator(pipe)
    pipe.start("sink", "sink", "netsuite", env={"LEDGER_NETSUITE_CONCURRENCY": "8"})
    wait_sink_done(pipe, timeout=900)

    assert consume_all(topics.dlq_name(topics.NETSUITE_COMMANDS), timeout=3) == []
    stored = {r["externalId"]: r for r in pipe.records("deposit")}
    assert sorted(stored) == sorted(names)
    lines = {eid: len(d.get("payment", {}).get("items", [])) for eid, d in stored.items()}
    assert all(n <= 10_000 for n in lines.values()) and sum(lines.values()) == 25_000
    totals = {
        eid: sum(Decimal(str(p["paymentAmount"])) for p in d.get("payment", {}).get("items", []))
        + sum(Decimal(str(o["amount"])) for o in d.get("other", {}).get("items", []))
        - sum(Decimal(str(c["amount"])) for c in d.get("cashback", {}).get("items", []))
        for eid, d in stored.items()
    }
    assert totals == {n: Decimal(payout.amount) / 100 if n == "po_big" else 0 for n in names}


def _deposit_total(deposit: dict[str, Any]) -> Decimal:
    def total(sublist: str, field: str) -> Decimal:
        return sum(
            (Decimal(str(x[field])) for x in deposit.get(sublist, {}).get("items", [])),
            Decimal(0),
        )

    return (
        total("payment", "paymentAmount") + total("other", "amount") - total("cashback", "amount")
    )


def test_a_deposit_posts_with_unwritten_records_on_suspense_and_is_rewritten_when_they_are(
    pipe: Pipeline,
) -> None:
    """Issue 12, deposits always post: a payout's deposit whose payments NetSuite never got
    (blocked through their customer, skipped, dead-lettered…) is not dead-lettered after the
    wait: it posts, balanced, with their lines on the suspense account labelled with their
    Stripe ids, and is rewritten to deposit each one once it is written, by a sink restarted
    in between too."""
    customer = _customer("cus_s")
    amounts = {"ch_s1": 4900, "ch_s2": 2500, "ch_s3": 1000, "ch_s4": 700}
    txns = [
        BalanceTransaction(
            id=f"txn_{source}",
            amount=amount,
            currency="usd",
            fee=0,
            fee_details=(),
            net=amount,
            reporting_category="charge",
            type="charge",
            source=source,
            created=datetime(2025, 3, 1, tzinfo=UTC),
        )
        for source, amount in amounts.items()
    ]

    def payment(source: str) -> Command:
        body = {
            "customer": ref("customer", "cus_s"),
            "payment": Decimal(amounts[source]) / 100,
            "undepFunds": True,
            "account": {"id": "101"},
            "currency": {"id": "11"},
        }
        return Command("customerPayment", source, body, "charge", source, None)

    payout = Payout(
        id="po_s",
        amount=sum(amounts.values()),
        currency="usd",
        status="paid",
        automatic=True,
        arrival_date=datetime(2025, 3, 3, tzinfo=UTC),
        created=datetime(2025, 3, 2, tzinfo=UTC),
        balance_transaction=None,
    )
    [deposit] = deposit_commands(plan_deposit(payout, txns, CFG, expected=len(txns)), CFG)
    suspense = {"id": CFG.netsuite_suspense_account_id}
    publish([customer, payment("ch_s1"), deposit, payment("ch_s4")])
    start_emulator(pipe)
    pipe.start("sink", "sink", "netsuite", env={"LEDGER_SINK_DEPENDENCY_TIMEOUT_S": "10"})
    wait_sink_done(pipe, timeout=120)

    def deposited() -> tuple[dict[str, Any], set[str], list[str]]:
        [stored] = pipe.records("deposit")
        paid = {x["id"] for x in stored.get("payment", {}).get("items", [])}
        internal = {r["id"]: r["externalId"] for r in pipe.records("customerPayment")}
        on_suspense = [
            x["memo"] for x in stored.get("other", {}).get("items", []) if x["account"] == suspense
        ]
        assert _deposit_total(stored) == Decimal(payout.amount) / 100  # balanced, always
        return stored, {internal[i] for i in paid}, on_suspense

    stored, paid, on_suspense = deposited()
    assert paid == {"ch_s1", "ch_s4"}
    assert sorted(m.split()[1].rstrip(":") for m in on_suspense) == ["ch_s2", "ch_s3"]
    assert "ON SUSPENSE until written: ch_s2, ch_s3" in stored["memo"]
    assert consume_all(topics.dlq_name(topics.NETSUITE_COMMANDS), timeout=3) == []

    # the sink is killed and restarted before the missing record comes: the deposits it wrote
    # on suspense are kept on the compacted netsuite.suspended topic
    sink = pipe.procs.pop("sink")
    os.killpg(sink.pid, signal.SIGKILL)
    sink.wait()
    pipe.start("sink-2", "sink", "netsuite", env={"LEDGER_SINK_DEPENDENCY_TIMEOUT_S": "10"})
    publish([payment("ch_s2")])  # written later (after a fix and a redrive)
    deadline = time.monotonic() + 60
    while (paid := deposited()[1]) != {"ch_s1", "ch_s2", "ch_s4"}:
        assert time.monotonic() < deadline, f"deposit not rewritten: {paid}"
        pipe.check_alive()
        time.sleep(0.5)
    stored, _, on_suspense = deposited()
    assert [m.split()[1].rstrip(":") for m in on_suspense] == ["ch_s3"]
    assert "ON SUSPENSE until written: ch_s3" in stored["memo"]


@pytest.mark.parametrize("auth", ["tba", "m2m"])
def test_wrong_secret_stops_the_sink_with_a_clear_error_not_a_retry_storm(
    pipe: Pipeline, auth: str
) -> None:
    publish([_customer(f"cus_w{i}") for i in range(30)])
    start_emulator(pipe)
    if auth == "tba":
        wrong = {"LEDGER_NETSUITE_TOKEN_SECRET": "0" * 64}
        expected = "NetSuite rejects the credentials"
    else:
        key = pipe.run_dir / "other-key.pem"
        from tests.integration.test_netsuite_emulator import other_private_key

        key.write_text(other_private_key())
        wrong = {"LEDGER_NETSUITE_PRIVATE_KEY_FILE": str(key)}
        expected = "token endpoint refused the client assertion"
    sink = pipe.start("sink", "sink", "netsuite", env={"LEDGER_NETSUITE_AUTH": auth, **wrong})
    deadline = time.monotonic() + 90
    while sink.poll() is None and time.monotonic() < deadline:
        time.sleep(0.5)
    assert sink.returncode not in (None, 0), "the sink kept running with wrong credentials"
    del pipe.procs["sink"]
    log = pipe.log("sink")
    assert expected in log
    assert "0" * 64 not in log and "PRIVATE KEY" not in log  # no secret in the log
    stats = pipe.emulator_stats()
    attempts = stats["requests"].get("PUT 401", 0) + stats["requests"].get("token 401", 0)
    print("refused:", stats["requests"])
    assert 1 <= attempts <= 10, stats  # stopped after a few, not a storm
    assert pipe.records("customer") == []


# ----------------------------------------------------------------- Stripe metadata writer
def test_metadata_writer_coalesces_per_object_backs_off_and_dead_letters_refusals(
    pipe: Pipeline,
) -> None:
    history = generate(SCENARIO)
    refund = next(o for o in history.objects.values() if o["object"] == "refund")
    customer = next(o for o in history.objects.values() if o["object"] == "customer")
    double = StripeDouble(history, rate_limit=2)  # Stripe answers 429 beyond 2 calls/s
    server = AppThread(double.app())
    try:
        refs = [
            ("refund", refund["id"], "creditMemo", "netsuite_credit_memo_id", "41"),
            ("refund", refund["id"], "customerRefund", "netsuite_customer_refund_id", "42"),
            ("customer", customer["id"], "customer", "netsuite_customer_id", "43"),
            (
                "charge",
                "ch_does_not_exist",
                "customerPayment",
                "netsuite_customer_payment_id",
                "44",
            ),
            ("refund", refund["id"], "creditMemo", "netsuite_credit_memo_id", "41"),  # again
        ]
        name = topics.name(topics.NETSUITE_BACKREFS)
        serde = Serde(name, topics.NETSUITE_BACKREFS.schema or "")
        producer = Producer(settings.kafka().client_config())
        for obj, sid, rtype, key, internal in refs:
            value = {
                "record_type": rtype,
                "external_id": sid,
                "internal_id": internal,
                "stripe_object": obj,
                "stripe_id": sid,
                "metadata_key": key,
                "command_id": "c" * 64,
                "written_at": datetime.now(UTC),
            }
            # one partition, so that all five come in one batch: coalescing is per batch, and
            # the refund's two keys hash to partitions 1 and 2 (a batch with only one of them,
            # as the fetches of two partitions may come apart, is one call each: 3 updates)
            producer.produce(
                name, key=f"{rtype}/{sid}".encode(), value=serde.dumps(value), partition=0
            )
        assert producer.flush(30) == 0

        writer = MetadataWriter(double_boot(server.url))
        drain(writer)

        assert double.objects[refund["id"]]["metadata"] == {
            **(refund.get("metadata") or {}),
            "netsuite_credit_memo_id": "41",
            "netsuite_customer_refund_id": "42",
        }
        assert double.objects[customer["id"]]["metadata"]["netsuite_customer_id"] == "43"
        # one call per object (the refund's two keys and its repeat coalesced), 429s retried
        assert writer.updated == 2 and writer.dead_lettered == 1
        assert double.stats["429"] >= 1
        posts = sum(n for k, n in double.stats.items() if k.startswith("POST "))
        assert writer.calls == posts == 3 + double.stats["429"]
        dead = consume_all(topics.dlq_name(topics.NETSUITE_BACKREFS), timeout=10)
        assert len(dead) == 1
        assert serde.loads(dead[0].value())["stripe_id"] == "ch_does_not_exist"
        headers = {k: (v or b"").decode() for k, v in dead[0].headers()}
        assert "No such charge" in headers["dlq.exception.message"]
    finally:
        server.close()
        settings.stripe.cache_clear()


def test_link_mode_matches_an_existing_customer_or_creates_one(pipe: Pipeline) -> None:
    start_emulator(pipe)
    from tests.integration.test_netsuite_emulator import client_for

    ns = client_for(pipe)
    existing = ns.upsert(
        "customer",
        "crm-7",
        '{"companyName":"Acme","email":" ACME@Example.com ","subsidiary":{"id":"1"}}',
    )

    def link(eid: str, email: str) -> Command:
        create = {"companyName": f"Customer {eid}", "email": email, "subsidiary": {"id": "1"}}
        body = {"match": {"field": "email", "value": email}, "create": create}
        return Command(
            "customer", eid, body, "customer", eid, "netsuite_customer_id", operation="link"
        )

    publish([link("cus_L1", "acme@example.com"), link("cus_L2", "new@example.com")])
    pipe.start("sink", "sink", "netsuite")
    wait_sink_done(pipe, timeout=90)

    customers = {r["externalId"]: r["id"] for r in pipe.records("customer")}
    assert customers == {"crm-7": existing, "cus_L2": customers["cus_L2"]}  # no duplicate Acme
    name = topics.name(topics.NETSUITE_BACKREFS)
    serde = Serde(name, topics.NETSUITE_BACKREFS.schema or "")
    refs = {
        r["external_id"]: r["internal_id"]
        for r in map(serde.loads, (m.value() for m in consume_all(name)))
    }
    assert refs == {"cus_L1": existing, "cus_L2": customers["cus_L2"]}
    assert pipe.emulator_stats()["requests"] == {"PUT 204": 2, "QUERY 200": 2}


def test_the_sink_adapts_to_an_account_limit_below_its_configured_concurrency(
    pipe: Pipeline,
) -> None:
    customers = [_customer(f"cus_a{i}") for i in range(300)]
    publish(customers)
    start_emulator(pipe, LEDGER_EMULATOR_CONCURRENCY_LIMIT="3", LEDGER_EMULATOR_LATENCY_MS="100")
    pipe.start("sink", "sink", "netsuite", env={"LEDGER_NETSUITE_CONCURRENCY": "9"})
    wait_sink_done(pipe, timeout=120)
    assert len(pipe.records("customer")) == 300
    requests = pipe.emulator_stats()["requests"]
    # without adapting, 6 of every 9 requests would be refused (two 429s per write); the
    # limiter keeps the refusals to the probes above the account's limit
    print("adaptation:", requests)
    assert requests["PUT 204"] == 300
    assert requests.get("PUT 429", 0) < 0.5 * 300, requests


def test_a_burst_of_401s_after_successes_does_not_stop_the_sink(pipe: Pipeline) -> None:
    """NetSuite under load answers valid credentials with 401 INVALID_LOGIN for a while: the
    sink asks again with a cheap authenticated read before it gives up, and goes on."""
    commands = [_customer(f"cus_b{i}") for i in range(80)]
    publish(commands)
    start_emulator(pipe, LEDGER_EMULATOR_LATENCY_MS="50")
    # a short run of 401s is enough to make the sink doubt the credentials
    sink = pipe.start("sink", "sink", "netsuite", env={"LEDGER_SINK_AUTH_FAILURES": "5"})
    deadline = time.monotonic() + 60
    while len(pipe.records("customer")) < 10 and time.monotonic() < deadline:
        pipe.check_alive()
        time.sleep(0.1)
    requests.post(
        f"{pipe.emulator_url}/_emulator/behaviour", json={"spurious_401_burst_s": 2}, timeout=10
    ).raise_for_status()
    wait_sink_done(pipe, timeout=120)
    assert sink.poll() is None, pipe.log("sink")[-2000:]
    assert {r["externalId"] for r in pipe.records("customer")} == {c.external_id for c in commands}
    stats = pipe.emulator_stats()
    assert stats["faults"]["401 burst"] >= 5, stats
    assert "the credentials work: a burst" in pipe.log("sink")


def _stop(pipe: Pipeline, name: str) -> None:
    proc = pipe.procs.pop(name)
    os.killpg(proc.pid, signal.SIGTERM)
    proc.wait(60)


def _sink_read(pipe: Pipeline, name: str) -> int:
    """Commands the sink ``name`` has read, from its /metrics."""
    try:
        url = f"http://127.0.0.1:{pipe.metrics_ports[name]}/metrics"
        text = requests.get(url, timeout=5).text
    except requests.RequestException:  # not serving yet
        return 0
    found = re.findall(
        r'^ledgerstream_records_in_total\{component="netsuite-sink",[^}]*\} (\S+)$', text, re.M
    )
    return int(sum(float(n) for n in found))


def test_a_backlog_writes_each_record_once_in_its_newest_version(pipe: Pipeline) -> None:
    """Five versions of a customer, three of another and four of a payment queued at once (a
    replay, a backfill, a burst of updates): one write per record, its newest version, unless
    a record NetSuite holds is queued between two versions (a credit memo voided between two
    versions of a payment frees what the second applies: both are written, in order); every
    offset committed, nothing dead-lettered."""
    cus, inv = ref("customer", "cus_c"), ref("invoice", "in_c")
    gate = ref("customer", "cus_gate")
    order = "invoice/in_c"

    def on_invoice(rtype: str, eid: str, body: dict[str, Any]) -> Command:
        return Command(rtype, eid, body, "invoice", "in_c", None, order=order)

    def applied(amount: str) -> dict[str, Any]:
        return {"items": [{"doc": inv, "apply": True, "amount": amount}]}

    def payment(amount: str) -> Command:
        body = {"customer": cus, "payment": amount, "apply": applied(amount)}
        return on_invoice("customerPayment", "ch_c", {**body, "custbody_gate": gate})

    def customer(eid: str, **fields: str) -> Command:
        cmd = _customer(eid)
        cmd.body.update(fields, parent=gate)
        return cmd

    lines = {"items": [{"item": {"id": "301"}, "amount": "100.00"}]}
    note = {"entity": cus, "createdFrom": inv}
    note["item"] = {"items": [{"item": {"id": "301"}, "amount": "30.00"}]}
    memo = on_invoice("creditMemo", "cm_c", {**note, "apply": applied("30.00")})
    # held back like the payments (else, ready, it would pass them and be written first)
    voided = on_invoice(
        "creditMemo", "cm_c", {**note, "apply": {"items": []}, "custbody_gate": gate}
    )
    invoice = on_invoice("invoice", "in_c", {"entity": cus, "item": lines})
    # written first: the customer, its invoice and a credit memo applied to it
    publish([_customer("cus_c"), invoice, memo])
    start_emulator(pipe)
    pipe.start("sink", "sink", "netsuite")
    wait_sink_done(pipe, timeout=90)
    _stop(pipe, "sink")

    # the backlog: every command refers to a customer not written yet, so the restarted sink
    # holds them all until it is
    backlog = [
        *(customer("cus_c", companyName=f"Customer cus_c, version {n}") for n in range(1, 4)),
        customer("cus_d", phone="555-0000"),
        *(customer("cus_c", companyName=f"Customer cus_c, version {n}") for n in range(4, 6)),
        customer("cus_d", phone="555-0001"),
        customer("cus_d", phone="555-0002"),
        payment("10.00"),
        payment("20.00"),  # not in NetSuite yet and nothing between: both superseded
        payment("70.00"),  # written: a record NetSuite holds is next
        voided,
        payment("100.00"),  # the whole invoice, once the memo no longer takes 30 of it
    ]
    publish(backlog)
    pipe.start("sink-again", "sink", "netsuite")
    # every command of the backlog read (counted on the sink's /metrics) before the customer
    # they wait for is sent; asked again every 0.3 s until the deadline
    deadline = time.monotonic() + 60
    while _sink_read(pipe, "sink-again") < len(backlog):
        pipe.check_alive()
        assert time.monotonic() < deadline, "the sink did not read the backlog"
        time.sleep(0.3)
    publish([_customer("cus_gate")])
    wait_sink_done(pipe, timeout=90)

    records = {(r["type"], r["externalId"]): r for r in pipe.records()}
    assert records[("customer", "cus_c")]["companyName"] == "Customer cus_c, version 5"
    assert records[("customer", "cus_c")]["version"] == 2  # the first run's, then the newest
    assert records[("customer", "cus_d")]["phone"] == "555-0002"
    assert records[("customer", "cus_d")]["version"] == 1  # one write for three versions
    assert records[("creditMemo", "cm_c")]["apply"]["items"] == []
    paid = records[("customerPayment", "ch_c")]
    assert str(paid["payment"]) == "100.00"
    assert paid["version"] == 2  # 70.00 (superseding 10.00 and 20.00), then 100.00
    assert consume_all(topics.dlq_name(topics.NETSUITE_COMMANDS), timeout=3) == []
    writes = sum(n for k, n in pipe.emulator_stats()["requests"].items() if k.startswith("PUT 2"))
    # the first run's 3; then the gate, cus_c, cus_d, the memo and two payments
    assert writes == 3 + 6
