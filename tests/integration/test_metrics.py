"""Every component serves Prometheus metrics, /healthz and /readyz: the slice through the whole
pipeline, then each component's figures read back over HTTP."""

from __future__ import annotations

import json
import time
from collections.abc import Iterable

import pytest
import requests
from prometheus_client.exposition import CONTENT_TYPE_PLAIN_0_0_4
from prometheus_client.parser import text_string_to_metric_families

from ledgerstream import topics
from ledgerstream.testing.fixtures import slice_events
from ledgerstream.testing.pipeline import Pipeline
from tests.integration.helpers import wait_caught_up
from tests.integration.test_slice import deliver

pytestmark = [pytest.mark.integration, pytest.mark.usefixtures("local_stack")]

Samples = dict[tuple[str, frozenset[tuple[str, str]]], float]


def scrape(url: str) -> Samples:
    answer = requests.get(url, timeout=10)
    assert answer.status_code == 200, answer.text
    # what prometheus_client's own server answers a scraper that asks for nothing in particular
    assert answer.headers["Content-Type"] == CONTENT_TYPE_PLAIN_0_0_4
    return {
        (s.name, frozenset(s.labels.items())): s.value
        for family in text_string_to_metric_families(answer.text)
        for s in family.samples
    }


def value(samples: Samples, name: str, **labels: str) -> float:
    """The sum of the series of ``name`` whose labels include ``labels``."""
    wanted = set(labels.items())
    return sum(v for (n, ls), v in samples.items() if n == name and wanted <= ls)


def labelled(samples: Samples, name: str, label: str) -> set[str]:
    return {dict(ls)[label] for (n, ls) in samples if n == name and label in dict(ls)}


def answers(base: str, paths: Iterable[str] = ("/healthz", "/readyz")) -> list[int]:
    return [requests.get(base + path, timeout=10).status_code for path in paths]


def test_each_component_reports_what_it_did_and_logs_json(pipeline: Pipeline) -> None:
    pipeline.extra_env["LEDGER_LOG_FORMAT"] = "json"
    pipeline.start_all()
    events = slice_events(seed=pipeline.name)
    assert deliver(pipeline, events) == [200] * 4
    assert deliver(pipeline, events[:1], secret="whsec_forged") == [400]
    pipeline.wait_for_records({"customer": 1, "invoice": 1, "customerPayment": 1})
    wait_caught_up(
        f"{pipeline.name}-netsuite-sink",
        [pipeline.prefix + topics.NETSUITE_COMMANDS.name],
        timeout=120,
        check=pipeline.check_alive,
    )

    webhook = scrape(f"http://127.0.0.1:{pipeline.webhook_port}/metrics")
    assert value(webhook, "ledgerstream_webhooks_total", outcome="accepted") == 4
    assert value(webhook, "ledgerstream_webhooks_total", outcome="bad_signature") == 1
    assert value(webhook, "ledgerstream_records_out_total", component="webhook") == 4

    processor_web = f"http://127.0.0.1:{pipeline.worker_port}"
    processor = scrape(processor_web + "/metrics")
    assert value(processor, "ledgerstream_records_in_total", component="processor") >= 4
    assert value(processor, "ledgerstream_records_out_total", component="processor") >= 3
    assert value(processor, "ledgerstream_processing_seconds_count", component="processor") >= 4
    kinds = labelled(processor, "ledgerstream_oldest_waiting_seconds", "kind")
    assert {"payout", "invoice", "charge"} <= kinds
    assert value(processor, "ledgerstream_oldest_waiting_seconds", component="processor") == 0
    assert answers(processor_web) == [200, 200]

    ports = pipeline.metrics_ports
    sink_base = f"http://127.0.0.1:{ports['sink']}"
    sink = scrape(sink_base + "/metrics")
    for rtype in ("customer", "invoice", "customerPayment"):
        assert (
            value(
                sink, "ledgerstream_netsuite_request_seconds_count", record_type=rtype, outcome="ok"
            )
            >= 1
        ), rtype
    assert value(sink, "ledgerstream_netsuite_limiter_window") >= 1
    assert value(sink, "ledgerstream_netsuite_in_flight") == 0
    commands = pipeline.prefix + topics.NETSUITE_COMMANDS.name
    assert value(sink, "ledgerstream_records_in_total", component="netsuite-sink") >= 3
    # caught up: the lag of every partition it committed is 0
    assert labelled(sink, "ledgerstream_consumer_lag", "topic") == {commands}
    assert value(sink, "ledgerstream_consumer_lag", component="netsuite-sink") == 0
    assert (
        value(sink, "ledgerstream_records_out_total", topic=pipeline.prefix + "netsuite.backrefs")
        >= 3
    )

    router = scrape(f"http://127.0.0.1:{ports['router']}/metrics")
    assert value(router, "ledgerstream_records_in_total", component="router") == 4
    # the metadata writer set the three records' ids on the Stripe objects (stripe-mock): it
    # runs after the sink, so its counter is read until it gets there
    metadata_url = f"http://127.0.0.1:{ports['metadata']}/metrics"
    deadline = time.monotonic() + 60
    updated = 0.0
    while updated < 3 and time.monotonic() < deadline:
        metadata = scrape(metadata_url)
        updated = value(metadata, "ledgerstream_stripe_requests_total", operation="update")
        time.sleep(0.5)
    assert updated >= 3  # one per Stripe object: the customer, the invoice, the charge
    assert value(metadata, "ledgerstream_stripe_requests_total", outcome="ok") == updated
    for name in ("router", "payouts", "sink", "metadata"):
        assert answers(f"http://127.0.0.1:{ports[name]}") == [200, 200], name
    assert requests.get(sink_base + "/nothing", timeout=10).status_code == 404

    # structured logs: every line of the stage components and the webhook is one JSON object
    for name, component in (
        ("webhook", "webhook"),
        ("router", "router"),
        ("sink", "netsuite-sink"),
        ("metadata", "stripe-metadata"),
    ):
        lines = [json.loads(line) for line in pipeline.log(name).splitlines() if line.strip()]
        assert lines, name
        assert all({"time", "level", "logger", "message", "component"} <= set(x) for x in lines)
        assert {x["component"] for x in lines if x["logger"].startswith("ledgerstream")} == {
            component
        }, name
    wrote = [x for x in map(json.loads, pipeline.log("sink").splitlines()) if "stripe_id" in x]
    assert {x["netsuite_record"].split("/")[0] for x in wrote} == {
        "customer",
        "invoice",
        "customerPayment",
    }
    processor = [
        json.loads(line) for line in pipeline.log("processor").splitlines() if line.startswith("{")
    ]
    assert any(x["component"] == "processor" and "Ready" in x["message"] for x in processor)
