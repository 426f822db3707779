"""The main job on the local stack: four signed Stripe webhooks in, NetSuite records out.

Starts the local stack (unless servers are given in the environment), runs every component as
its own process through the CLI, delivers ``customer.created``, ``invoice.finalized``,
``charge.succeeded`` and ``invoice.paid`` as signed webhooks, waits for the NetSuite emulator
to hold the customer, the invoice and the payment applied to it, prints them and the Stripe
metadata updates, then stops what it started.
"""

from __future__ import annotations

import json
import time
from collections.abc import Callable
from pathlib import Path

import requests

from ledgerstream import settings
from ledgerstream import stack as local_stack
from ledgerstream.testing.fixtures import signed, slice_events
from ledgerstream.testing.pipeline import Pipeline

WANT = {"customer": 1, "invoice": 1, "customerPayment": 1}


def run_demo(keep_running: bool = False, echo: Callable[[str], None] = print) -> int:
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
            if started:
                local_stack.down(only=started, echo=echo)
