"""The main job (``make demo``): a merchant's month through the whole pipeline, reconciled.

The merchant (:data:`MONTH`, from the history generator, ``ledgerstream.testing.generator``):
50 customers sign up during the first 20 days and pay in USD, EUR, JPY or KWD; subscriptions
with coupons and tax, renewed a month later with upgrades' prorations; one-off invoices and
charges; full and partial refunds; disputes won and lost; credit notes; invoices voided and
marked uncollectible; daily automatic payouts in USD and EUR with Stripe's fees and currency
conversion. The history runs until every payout of it has been paid, so the second month's
renewals are there too. :func:`cases` counts each of these; a unit test holds the scenario to
having every one.

Its events arrive as signed webhooks, in the order Stripe created them; the Stripe double
(``ledgerstream.testing.stripe_double``; stripe-mock is stateless and cannot serve a history)
answers the pipeline's reads (payout contents, lines) and takes the metadata back-references.
The NetSuite emulator is the account. Progress bars follow the webhooks, the NetSuite records
and the back-references. At the end: per payout its amount, the deposit NetSuite holds, its
lines by kind and ✔/✖ (balanced to the minor unit); the records per type against the
reference booking (the accounting core run on the same history, in process); the dead
letters; the NetSuite requests per record. The same goes into ``report.html`` in the run's
directory, with a chart of every deposit's composition.
"""

from __future__ import annotations

import html
import logging
import os
import signal
import time
from collections import Counter
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from confluent_kafka import Consumer
from tqdm import tqdm

from ledgerstream import settings, topics
from ledgerstream import stack as local_stack
from ledgerstream.accounting.deposits import composition
from ledgerstream.demo import _delete_topics, deliver
from ledgerstream.kafka_util import watermarks
from ledgerstream.money import to_decimal
from ledgerstream.stripe_records import route
from ledgerstream.testing.generator import History, Scenario, generate
from ledgerstream.testing.pipeline import AppThread, Pipeline
from ledgerstream.testing.reference import reference_booking
from ledgerstream.testing.stripe_double import StripeDouble

MONTH = Scenario(
    seed=1,
    customers=50,
    months=2,  # sign-ups in the first 20 days; the renewals (and their prorations) a month on
    currencies=("usd", "eur", "jpy", "kwd"),
    settlement_currencies=("usd", "eur"),  # the local set-up's two bank accounts
    refund_rate=0.12,
    dispute_rate=0.08,
    credit_note_rate=0.12,
    failure_rate=0.1,
)
# what a realistic month has; cases() counts them
CASES = (
    "customers",
    "subscription invoices",
    "one-off invoices",
    "prorations",
    "coupons",
    "tax",
    "full refunds",
    "partial refunds",
    "disputes won",
    "disputes lost",
    "credit notes",
    "uncollectible invoices",
    "voided invoices",
    "payouts",
    "converted payments",
    "invoices in USD",
    "invoices in EUR",
    "invoices in JPY",
    "invoices in KWD",
)
TIMEOUT_S = 240.0  # for NetSuite to hold every record: a healthy run needs well under a minute


def cases(history: History) -> Counter[str]:
    """How many of each case of :data:`CASES` the history has."""
    found: Counter[str] = Counter()
    for event in history.events:
        obj, kind = event["data"]["object"], event["type"]
        if kind == "customer.created":
            found["customers"] += 1
        elif kind == "invoice.finalized":
            found["subscription invoices" if obj.get("subscription") else "one-off invoices"] += 1
            found[f"invoices in {obj['currency'].upper()}"] += 1
            found["prorations"] += any(line.get("proration") for line in obj["lines"]["data"])
            found["coupons"] += bool(obj.get("total_discount_amounts"))
            found["tax"] += (obj.get("tax") or 0) > 0
        elif kind == "charge.refunded":
            full = obj["amount_refunded"] == obj["amount"]
            found["full refunds" if full else "partial refunds"] += 1
        elif kind == "charge.dispute.closed":
            found[f"disputes {obj['status']}"] += 1
        elif kind == "credit_note.created":
            found["credit notes"] += 1
        elif kind == "invoice.marked_uncollectible":
            found["uncollectible invoices"] += 1
        elif kind == "invoice.voided":
            found["voided invoices"] += 1
        elif kind == "payout.paid":
            found["payouts"] += 1
    found["converted payments"] = sum(
        1
        for txn in history.balance_transactions.values()
        if txn.get("exchange_rate") is not None and txn["reporting_category"] == "charge"
    )
    return found


# ------------------------------------------------------------------ reconciliation
@dataclass
class PayoutRow:
    """One payout and the deposit NetSuite holds for it (all its parts)."""

    payout: dict[str, Any]
    parts: list[dict[str, Any]] = field(default_factory=list)  # NetSuite deposit records
    # of its transactions, those Stripe converted: source currency -> amount in the payout's
    converted: Counter[str] = field(default_factory=Counter)

    @property
    def id(self) -> str:
        return str(self.payout["id"])

    @property
    def currency(self) -> str:
        return str(self.payout["currency"])

    @property
    def expected(self) -> int:
        """What the deposit must add up to: the payout, or nothing for one the bank returned
        (its money is deposited again by a later payout; BEHAVIOR.md)."""
        return 0 if self.payout["status"] == "failed" else int(self.payout["amount"])

    @property
    def lines(self) -> Counter[str]:
        kinds: Counter[str] = Counter()
        for part in self.parts:
            kinds.update(composition(part, self.currency))
        return kinds

    @property
    def total(self) -> int:
        return sum(self.lines.values())

    @property
    def balanced(self) -> bool:
        return bool(self.parts) and self.total == self.expected

    def money(self, minor: int) -> str:
        return f"{to_decimal(minor, self.currency):,}"


def reconcile(history: History, records: Iterable[dict[str, Any]]) -> list[PayoutRow]:
    """Every payout of the history with the deposit records NetSuite holds for it."""
    rows = {
        oid: PayoutRow(obj)
        for oid, obj in history.objects.items()
        if obj["object"] == "payout" and obj["status"] in ("paid", "failed")
    }
    for payout_id, row in rows.items():
        for txn_id in history.payout_transactions.get(payout_id, []):
            txn = history.balance_transactions[txn_id]
            source = history.objects.get(str(txn.get("source")), {})
            if txn.get("exchange_rate") is not None and source.get("currency"):
                row.converted[str(source["currency"]).upper()] += int(txn["amount"])
    for record in records:
        if record.get("type") != "deposit":
            continue
        payout_id = str(record.get("externalId", "")).split("-", 1)[0]  # parts: <po>-2, …
        if payout_id in rows:
            rows[payout_id].parts.append(record)
    return sorted(rows.values(), key=lambda r: (r.payout["arrival_date"], r.id))


def dead_letters(prefix: str) -> Counter[str]:
    """Dead letters per ``.dlq`` topic of one run (by watermarks: nothing is read)."""
    consumer = Consumer({**settings.kafka().client_config(), "group.id": "unused-demo"})
    counts: Counter[str] = Counter()
    try:
        names = [prefix + spec.name + ".dlq" for spec in topics.ALL if spec.dead_letters]
        listed = consumer.list_topics(timeout=10).topics
        for name in names:
            if name in listed:
                for partition in listed[name].partitions:
                    low, high = watermarks(consumer, name, partition)
                    counts[name.removeprefix(prefix)] += high - low
    finally:
        consumer.close()
    return +counts


@dataclass
class Summary:
    rows: list[PayoutRow]
    records: Counter[str]  # NetSuite records per type
    expected: Counter[str]  # the reference booking's
    dead: Counter[str]
    requests: Counter[str]  # the emulator's, by method and status
    cases: Counter[str]
    events: int
    seconds: float

    @property
    def ok(self) -> bool:
        return (
            all(r.balanced for r in self.rows) and self.records == self.expected and not self.dead
        )

    @property
    def writes(self) -> int:
        """Requests that write: upserts (PUT …/eid:), creates (POST), updates (PATCH)."""
        return sum(
            n for k, n in self.requests.items() if k.split(" ")[0] in ("PUT", "POST", "PATCH")
        )

    def text(self) -> list[str]:
        out = ["", "reconciliation, per payout (amounts in the payout's currency):"]
        for r in self.rows:
            mark = "✔" if r.balanced else "✖"
            day = datetime.fromtimestamp(r.payout["arrival_date"], UTC).date()
            failed = " (failed: returned by the bank)" if r.payout["status"] == "failed" else ""
            out.append(
                f"  {mark} {r.id} {day} {r.currency.upper()} payout {r.money(r.payout['amount'])}"
                f"{failed}, deposit {r.money(r.total) if r.parts else 'MISSING'}"
                + (f" in {len(r.parts)} parts" if len(r.parts) > 1 else "")
            )
            out.append(
                "      "
                + ", ".join(f"{kind} {r.money(n)}" for kind, n in sorted(r.lines.items()))
                + _conversions(r)
            )
        balanced = sum(r.balanced for r in self.rows)
        out.append(f"  {balanced} of {len(self.rows)} payouts balanced to the minor unit")
        out.append("")
        out.append("NetSuite records per type (held / the reference booking's):")
        for rtype in sorted(set(self.records) | set(self.expected)):
            got, want = self.records[rtype], self.expected[rtype]
            out.append(f"  {'✔' if got == want else '✖'} {rtype:16} {got:5} / {want}")
        out.append(
            f"dead letters: {sum(self.dead.values())}"
            + (f" {dict(self.dead)}" if self.dead else "")
        )
        records = sum(self.records.values())
        out.append(
            f"NetSuite requests: {sum(self.requests.values())} ({self.writes} writes) for "
            f"{records} records, {self.writes / max(records, 1):.2f} writes per record"
        )
        out.append(f"{self.events} webhooks to {records} records in {self.seconds:.0f} s")
        return out


def _conversions(row: PayoutRow) -> str:
    if not row.converted:
        return ""
    return (
        " (converted by Stripe: "
        + ", ".join(
            f"{code}→{row.currency.upper()} {row.money(n)}"
            for code, n in sorted(row.converted.items())
        )
        + ")"
    )


# ------------------------------------------------------------------ the HTML report
_STYLE = """
body{font:14px system-ui,sans-serif;margin:2em;color:#222}
table{border-collapse:collapse;margin:1em 0}
td,th{border-bottom:1px solid #ddd;padding:3px 8px;text-align:right}
td:first-child,th:first-child{text-align:left}
.lines{text-align:left}
.ok{color:#1a7f37}.bad{color:#cf222e;font-weight:bold}
"""


def _chart(rows: list[PayoutRow], currency: str) -> str:
    """A stacked bar per deposit: its lines by kind, in major units (money out of it to the
    left of zero); the table under it sets each total against its payout."""
    import pygal  # a maintained SVG chart library; the chart is inlined, no JavaScript

    chart = pygal.HorizontalStackedBar(
        js=[],
        width=1000,
        height=max(260, 22 * len(rows) + 140),
        legend_at_bottom=True,
        title=f"Deposits in {currency.upper()}: composition by kind",
        x_title=currency.upper(),
    )
    chart.x_labels = [r.id for r in rows]
    for kind in sorted({k for r in rows for k in r.lines}):
        chart.add(kind, [float(to_decimal(r.lines.get(kind, 0), currency)) for r in rows])
    return str(chart.render(is_unicode=True))


def write_report(path: Path, summary: Summary) -> Path:
    e = html.escape
    parts = [
        "<!doctype html><meta charset='utf-8'><title>ledgerstream demo: reconciliation</title>",
        f"<style>{_STYLE}</style><h1>A merchant month, reconciled</h1>",
        f"<p>{summary.events} Stripe webhooks → {sum(summary.records.values())} NetSuite "
        f"records in {summary.seconds:.0f} s. "
        f"{sum(r.balanced for r in summary.rows)} of {len(summary.rows)} payouts balanced to the "
        f"minor unit; {sum(summary.dead.values())} dead letters.</p>",
        "<h2>What the month had</h2><table><tr><th>case</th><th>count</th></tr>",
        *(f"<tr><td>{e(k)}</td><td>{summary.cases[k]}</td></tr>" for k in CASES),
        "</table><h2>NetSuite records</h2>",
        "<table><tr><th>type</th><th>held</th><th>reference</th></tr>",
        *(
            f"<tr><td>{e(t)}</td><td>{summary.records[t]}</td><td>{summary.expected[t]}</td></tr>"
            for t in sorted(set(summary.records) | set(summary.expected))
        ),
        "</table>",
    ]
    for currency in sorted({r.currency for r in summary.rows}):
        rows = [r for r in summary.rows if r.currency == currency]
        parts.append(f"<h2>Payouts in {e(currency.upper())}</h2>")
        parts.append(_chart(rows, currency))
        parts.append(
            "<table><tr><th>payout</th><th>arrival</th><th>status</th><th>payout</th>"
            "<th>deposit</th><th>lines</th><th></th></tr>"
        )
        for r in rows:
            day = datetime.fromtimestamp(r.payout["arrival_date"], UTC).date()
            lines = "<br>".join(f"{e(k)} {r.money(n)}" for k, n in sorted(r.lines.items()))
            lines += e(_conversions(r))
            mark = "<span class=ok>✔</span>" if r.balanced else "<span class=bad>✖</span>"
            parts.append(
                f"<tr><td>{e(r.id)}</td><td>{day}</td><td>{e(r.payout['status'])}</td>"
                f"<td>{r.money(r.expected)}</td><td>{r.money(r.total)}</td>"
                f"<td class=lines>{lines}</td><td>{mark}</td></tr>"
            )
        parts.append("</table>")
    path.write_text("\n".join(parts), encoding="utf-8")
    return path


# ------------------------------------------------------------------ the run
def _backrefs(double: StripeDouble) -> set[tuple[str, str]]:
    return {
        (oid, key)
        for oid, obj in double.objects.items()
        for key in (obj.get("metadata") or {})
        if key.startswith("netsuite_")
    }


def _wait(
    pipeline: Pipeline,
    double: StripeDouble,
    want: set[str],
    refs: set[tuple[str, str]],
) -> list[dict[str, Any]]:
    """Poll the emulator (and the double's metadata) once a second until NetSuite holds every
    record of the reference booking and Stripe every back-reference, or TIMEOUT_S."""
    deadline = time.monotonic() + TIMEOUT_S
    with (
        tqdm(total=len(want), desc="NetSuite records", unit="record") as written,
        tqdm(total=len(refs), desc="back-references", unit="ref") as backrefs,
    ):
        while True:
            pipeline.check_alive()
            records = pipeline.records()
            held = {f"{r['type']}/{r['externalId']}" for r in records} & want
            written.update(len(held) - written.n)
            done_refs = _backrefs(double) & refs
            backrefs.update(len(done_refs) - backrefs.n)
            if (len(held) == len(want) and done_refs == refs) or time.monotonic() > deadline:
                return records
            time.sleep(1)


def run_month(keep_running: bool = False, echo: Callable[[str], None] = print) -> int:
    """Run :data:`MONTH` through the pipeline; 0 when every payout balanced, NetSuite holds
    exactly the reference booking's records and nothing was dead-lettered."""
    os.environ.setdefault("LEDGER_PROFILE", "local")  # the emulator's seeded set-up
    logging.getLogger("aiohttp.access").setLevel(logging.WARNING)  # the double's every request
    started_at = time.monotonic()
    history = generate(MONTH)
    book = reference_booking(history, settings.AccountingSettings())
    want = set(book.commands)
    refs = {(c.stripe_id, c.metadata_key) for c in book.commands.values() if c.metadata_key}
    events = [e for e in history.events if route(e["type"]) is not None]
    found = cases(history)
    echo(
        f"a merchant month: {found['customers']} customers, {len(events)} events ("
        + ", ".join(f"{found[k]} {k}" for k in CASES[1:15])
        + f"); NetSuite must hold {len(want)} records"
    )
    started = local_stack.up(echo=echo)
    run_dir = settings.stack().stack_state_dir / "demo" / time.strftime("month-%Y%m%dT%H%M%S")
    double = StripeDouble(history)
    stripe = AppThread(double.app())
    pipeline = Pipeline(
        Path(run_dir),
        extra_env={
            "LEDGER_STRIPE_API_BASE": stripe.url,
            # the double's own limit; production keeps Stripe's (LEDGER_STRIPE_MAX_REQUESTS_PER_S)
            "LEDGER_STRIPE_MAX_REQUESTS_PER_S": "1000",
        },
    )
    ui = None
    try:
        echo(f"starting the pipeline (topics prefixed '{pipeline.prefix}', logs in {run_dir})")
        pipeline.start_all()
        deliver(pipeline, tqdm(events, desc="webhooks", unit="event"))
        records = _wait(pipeline, double, want, refs)
        summary = Summary(
            rows=reconcile(history, records),
            records=Counter(str(r["type"]) for r in records),
            expected=Counter(c.record_type for c in book.commands.values()),
            dead=dead_letters(pipeline.prefix),
            requests=Counter(pipeline.emulator_stats().get("requests", {})),
            cases=found,
            events=len(events),
            seconds=time.monotonic() - started_at,
        )
        for line in summary.text():
            echo(line)
        report = write_report(Path(run_dir) / "report.html", summary)
        echo(f"\nreport: {report}")
        if keep_running:
            ui = _keep_running(pipeline, echo)
        return 0 if summary.ok else 1
    finally:
        if ui is not None:
            ui.terminate()
        pipeline.stop()
        stripe.close()
        _delete_topics(pipeline, echo)
        if started:
            local_stack.down(only=started, echo=echo)


def _keep_running(pipeline: Pipeline, echo: Callable[[str], None]) -> Any:
    """The status page on this run's topics, until Ctrl-C (the Stripe double lives in this
    process, so the pipeline stops with it)."""
    from ledgerstream.testing.pipeline import free_port

    port = free_port()
    proc = pipeline.start("ui", "ui", "--port", str(port))
    echo(f"status page: http://127.0.0.1:{port}/ (Ctrl-C stops the pipeline)")
    # a service manager's stop (SIGTERM) as Ctrl-C: the run's processes and topics are cleaned
    signal.signal(signal.SIGTERM, signal.default_int_handler)
    try:
        while proc.poll() is None:
            time.sleep(1)
    except KeyboardInterrupt:
        pass
    return proc
