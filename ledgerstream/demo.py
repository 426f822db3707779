"""The demos on the local stack (``ledgerstream demo``; ``make demo`` runs the first):

- :func:`run_demo` (the main job): a merchant month through the whole pipeline, reconciled
  per payout, with an HTML report (``ledgerstream.demo_month``);
- :func:`run_slice_demo` (``--slice``): four signed webhooks in, three NetSuite records out,
  printed in full;
- :func:`run_merchant_demo` (``--merchant``): a small merchant with every hard case at once.

Each starts the local stack (unless servers are given in the environment), runs every
component as its own process through the CLI, and stops what it started.
"""

from __future__ import annotations

import json
import time
from collections.abc import Callable, Iterable
from pathlib import Path
from typing import Any

import requests

from ledgerstream import settings, topic_admin
from ledgerstream import stack as local_stack
from ledgerstream.testing.fixtures import signed, slice_events
from ledgerstream.testing.pipeline import Pipeline


def run_demo(keep_running: bool = False, echo: Callable[[str], None] = print) -> int:
    """The main job: a merchant month (see :mod:`ledgerstream.demo_month`)."""
    from ledgerstream.demo_month import run_month

    return run_month(keep_running=keep_running, echo=echo)


WANT = {"customer": 1, "invoice": 1, "customerPayment": 1}


def run_slice_demo(keep_running: bool = False, echo: Callable[[str], None] = print) -> int:
    """Four signed webhooks (customer, invoice, charge, paid) in; the three NetSuite records
    they make and their Stripe metadata back-references out, printed in full."""
    started = local_stack.up(echo=echo)
    run_dir = settings.stack().stack_state_dir / "demo" / time.strftime("%Y%m%dT%H%M%S")
    pipeline = Pipeline(Path(run_dir))
    try:
        echo(f"starting the pipeline (topics prefixed '{pipeline.prefix}', logs in {run_dir})")
        pipeline.start_all()
        events = slice_events(seed=pipeline.name, start=int(time.time()) - 3600)
        for event in events:
            body, signature = signed(event, pipeline.webhook_secret)
            resp = requests.post(
                pipeline.webhook_url,
                data=body,
                timeout=30,
                headers={"Stripe-Signature": signature, "Content-Type": "application/json"},
            )
            echo(
                f"webhook {event['type']:18} {event['data']['object']['id']} -> "
                f"HTTP {resp.status_code} {resp.text}"
            )
            resp.raise_for_status()
        records = pipeline.wait_for_records(WANT, timeout=180)
        echo("\nwritten to NetSuite (emulator):")
        for record in records:
            echo(
                f"--- {record['type']} internal id {record['id']}, externalId "
                f"{record['externalId']}"
            )
            shown = {
                k: v
                for k, v in record.items()
                if k not in ("createdDate", "lastModifiedDate", "version", "type")
            }
            echo(json.dumps(shown, indent=2, sort_keys=True, default=str))
        deadline = time.monotonic() + 60
        while time.monotonic() < deadline and pipeline.log("metadata").count("metadata {") < 3:
            time.sleep(0.5)
        echo("\nback-references written to Stripe metadata (stripe-mock):")
        for line in pipeline.log("metadata").splitlines():
            if "ledgerstream.sinks.stripe_metadata" in line and "metadata {" in line:
                echo("  " + line.split("ledgerstream.sinks.stripe_metadata: ", 1)[1])
        return 0
    finally:
        if keep_running:
            echo(
                f"\ncomponents left running; their pids: "
                f"{ {n: p.pid for n, p in pipeline.procs.items()} }"
            )
        else:
            pipeline.stop()
            _delete_topics(pipeline, echo)
            if started:
                local_stack.down(only=started, echo=echo)


def deliver(pipeline: Pipeline, events: Iterable[dict[str, Any]]) -> None:
    """Each event as a signed webhook, in turn, on one connection; an answer other than 2xx
    stops the demo."""
    with requests.Session() as http:
        for event in events:
            body, signature = signed(event, pipeline.webhook_secret)
            resp = http.post(
                pipeline.webhook_url,
                data=body,
                timeout=30,
                headers={"Stripe-Signature": signature, "Content-Type": "application/json"},
            )
            resp.raise_for_status()


def _delete_topics(pipeline: Pipeline, echo: Callable[[str], None]) -> None:
    """A finished demo run's topics go (its logs and the emulator's data stay in its run
    directory): the local broker keeps every partition in memory, so demo after demo would
    otherwise fill its heap."""
    try:
        gone = topic_admin.delete_run(pipeline.prefix, pipeline.env()["LEDGER_APP_ID"])
    except Exception as exc:  # reported, not raised: it must not hide how the run went
        echo(f"could not delete the run's topics (prefix {pipeline.prefix}): {exc}")
    else:
        echo(f"deleted the run's {len(gone)} topics")


# a merchant with every hard case of real accounts at once (BEHAVIOR.md), small enough to run
# through the whole pipeline in a few minutes
HARD_CASES: dict[str, Any] = {
    "seed": 16,
    "customers": 8,
    "months": 2,
    "refund_rate": 0.2,
    "dispute_rate": 0.1,
    "failure_rate": 0.2,
    "credit_note_rate": 0.3,
    "credit_note_void_rate": 0.3,
    "long_invoice_rate": 0.1,
    "individual_rate": 0.3,
    "out_of_band_rate": 0.2,
    "uncaptured_rate": 0.3,
    "refund_failure_rate": 0.2,
    "payout_failure_rate": 0.1,
    "blocked_rate": 0.15,
    "second_charge_rate": 0.1,
    "balance_credit_rate": 0.5,
}
# the demo's wait for records NetSuite never gets before a deposit posts without them (on
# suspense); the default, LEDGER_SINK_DEPENDENCY_TIMEOUT_S, is 900 s
DEMO_DEPENDENCY_TIMEOUT_S = "30"


def run_merchant_demo(echo: Callable[[str], None] = print) -> int:
    """A generated merchant history with every hard case (long invoices, out-of-band and
    balance-paid invoices, captures, failed refunds and payouts, blocked customers, second
    charges, credit notes) served by the Stripe double, delivered as signed webhooks; prints
    what NetSuite holds, every deposit's balance and what went to suspense."""
    import logging
    import os
    from collections import Counter
    from decimal import Decimal

    from ledgerstream.money import to_minor
    from ledgerstream.testing.generator import Scenario, generate
    from ledgerstream.testing.pipeline import AppThread
    from ledgerstream.testing.reference import reference_booking
    from ledgerstream.testing.stripe_double import StripeDouble

    os.environ.setdefault("LEDGER_PROFILE", "local")  # the emulator's seeded set-up
    logging.getLogger("aiohttp.access").setLevel(logging.WARNING)  # the double's every request
    history = generate(Scenario(**HARD_CASES))
    expected = reference_booking(history, settings.AccountingSettings())
    want = Counter(c.record_type for c in expected.commands.values())
    started = local_stack.up(echo=echo)
    run_dir = settings.stack().stack_state_dir / "demo" / time.strftime("merchant-%Y%m%dT%H%M%S")
    stripe = AppThread(StripeDouble(history).app())
    pipeline = Pipeline(
        Path(run_dir),
        extra_env={
            "LEDGER_STRIPE_API_BASE": stripe.url,
            "LEDGER_STRIPE_MAX_REQUESTS_PER_S": "1000",
            "LEDGER_SINK_DEPENDENCY_TIMEOUT_S": DEMO_DEPENDENCY_TIMEOUT_S,
        },
    )
    try:
        echo(f"starting the pipeline (topics prefixed '{pipeline.prefix}', logs in {run_dir})")
        pipeline.start_all()
        kinds = Counter(e["type"] for e in history.events)
        echo(f"delivering {len(history.events)} signed webhooks: {dict(kinds.most_common(8))} …")
        deliver(pipeline, history.events)
        echo(
            f"waiting for NetSuite to hold {sum(want.values())} records (deposits whose records "
            f"NetSuite never gets post after {DEMO_DEPENDENCY_TIMEOUT_S} s here)"
        )
        records = pipeline.wait_for_records(dict(want), timeout=900)
        unbalanced = 0
        echo(
            "\nwritten to NetSuite (emulator): "
            + ", ".join(f"{n} {t}" for t, n in sorted(want.items()))
        )
        for record in sorted(records, key=lambda r: str(r["externalId"])):
            if record["type"] != "deposit":
                continue

            def total(sublist: str, field: str, record: Any = record) -> Decimal:
                items = record.get(sublist, {}).get("items", [])
                return sum((Decimal(str(x[field])) for x in items), Decimal(0))

            amount = total("payment", "paymentAmount") + total("other", "amount")
            amount -= total("cashback", "amount")
            payout = history.objects[record["externalId"]]
            paid = 0 if payout["status"] == "failed" else payout["amount"]
            balanced = to_minor(amount, payout["currency"]) == paid
            echo(
                f"--- deposit {record['externalId']}: {amount} "
                f"({'equals its payout' if balanced else 'DOES NOT EQUAL ITS PAYOUT'}) — "
                f"{record['memo']}"
            )
            unbalanced += not balanced
            for sublist in ("other", "cashback"):
                for line in record.get(sublist, {}).get("items", []):
                    if "on suspense" in line["memo"]:
                        echo(f"      suspense {sublist:8} {line['amount']:>10}  {line['memo']}")
        return 1 if unbalanced else 0
    finally:
        pipeline.stop()
        stripe.close()
        _delete_topics(pipeline, echo)
        if started:
            local_stack.down(only=started, echo=echo)
