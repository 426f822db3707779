"""Every component serves Prometheus metrics, /healthz and /readyz: the slice through the whole
pipeline, then each component's figures read back over HTTP."""

from __future__ import annotations

import json
import time
from collections.abc import Callable, Iterable

import pytest
import requests
from prometheus_client.exposition import CONTENT_TYPE_PLAIN_0_0_4
from prometheus_client.parser import text_string_to_metric_families

from ledgerstream import topics
from ledgerstream.testing.fixtures import slice_events
from ledgerstream.testing.pipeline import Pipeline
from tests.integration.helpers import PROCESSOR_INPUTS, end_offsets, wait_caught_up
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


def scrape_until(
    url: str, done: Callable[[Samples], bool], what: str, timeout: float = 60
) -> Samples:
    """Scrape ``url`` every half second until ``done`` holds of what it answers (the callers
    say what they wait for); fail with the last answer after ``timeout`` seconds."""
    deadline = time.monotonic() + timeout
    while True:
        samples = scrape(url)
        if done(samples):
            return samples
        if time.monotonic() > deadline:
            raise AssertionError(f"{what}: not within {timeout:.0f}s; last scrape: {samples}")
        time.sleep(0.5)


def lag_partitions(samples: Samples, component: str) -> set[tuple[str, str]]:
    """The (topic, partition) of every consumer-lag series of ``component``."""
    found = set()
    for name, pairs in samples:
        labels = dict(pairs)
        if name == "ledgerstream_consumer_lag" and labels["component"] == component:
            found.add((labels["topic"], labels["partition"]))
    return found


OLDEST = "ledgerstream_oldest_waiting_seconds"


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
    # its lag, per partition of every input topic: 0 once it committed all it read. faust
    # commits every 2.8 s, after the commands the sink already wrote: read until it shows
    inputs = [pipeline.prefix + name for name in PROCESSOR_INPUTS]
    every_partition = {(topic, str(p)) for topic in inputs for p in end_offsets(topic)}
    scrape_until(
        processor_web + "/metrics",
        lambda s: (
            lag_partitions(s, "processor") == every_partition
            and value(s, "ledgerstream_consumer_lag", component="processor") == 0
        ),
        "the processor's lag 0 on every input partition",
    )
    assert len(every_partition) > len(inputs)  # partitions, not only topics

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


def test_a_charge_waiting_for_its_invoice_ages_until_the_invoice_comes(
    pipeline: Pipeline,
) -> None:
    """The oldest waiting record's age, read from the processor over HTTP: above 0 and growing
    while a charge waits for its invoice, 0 again once the invoice came and the charge was
    booked. And the Events API poller serves its figures like the other components."""
    # the processor's timer sets the ages every LEDGER_PROCESSOR_WAIT_S / 4 = 5 s; the charge
    # waits about 10 s, less than the 20 s after which it would also be reported overdue
    pipeline.extra_env["LEDGER_PROCESSOR_WAIT_S"] = "20"
    pipeline.start_all()
    pipeline.start("poller", "producer", "poll", "--interval", "30")
    customer, finalized, charge, paid = slice_events(seed=pipeline.name)
    processor_web = f"http://127.0.0.1:{pipeline.worker_port}"
    pipeline.wait_http(processor_web + "/readyz", "processor")  # it has its partitions

    assert deliver(pipeline, [customer, charge]) == [200, 200]

    def charge_age(samples: Samples) -> float:
        return value(samples, OLDEST, component="processor", kind="charge")

    metrics_url = processor_web + "/metrics"
    # the charge is routed, then waits for its invoice: the next tick of the timer reports it
    first = charge_age(scrape_until(metrics_url, lambda s: charge_age(s) > 0, "a charge waiting"))
    # and the tick after reports it older (one tick is 5 s)
    waiting = scrape_until(
        metrics_url, lambda s: charge_age(s) > first, "the waiting charge's age growing", 30
    )
    assert charge_age(waiting) - first >= 4  # about a tick older, measured from when it came
    assert value(waiting, OLDEST, component="processor") == charge_age(waiting)  # nothing else

    assert deliver(pipeline, [finalized, paid]) == [200, 200]
    pipeline.wait_for_records({"customer": 1, "invoice": 1, "customerPayment": 1})
    # booked once its invoice was paid: the next tick finds nothing waiting
    scrape_until(
        metrics_url,
        lambda s: value(s, OLDEST, component="processor") == 0,
        "nothing waiting after the invoice came",
        30,
    )

    # the poller: its first pass reads stripe-mock's events (one plan.created, a type the
    # pipeline ignores); it has run once the Stripe calls counter counts a read
    poller_base = f"http://127.0.0.1:{pipeline.metrics_ports['poller']}"
    pipeline.wait_http(poller_base + "/readyz", "poller")
    poller = scrape_until(
        poller_base + "/metrics",
        lambda s: value(s, "ledgerstream_stripe_requests_total", operation="read") >= 1,
        "the poller's first Stripe read",
    )
    reads = value(poller, "ledgerstream_stripe_requests_total", operation="read")
    assert value(poller, "ledgerstream_stripe_requests_total", outcome="ok") == reads
    assert value(poller, "ledgerstream_polled_events_total", outcome="ignored") >= 1
    assert value(poller, "ledgerstream_polled_events_total", outcome="published") == 0
    assert answers(poller_base) == [200, 200]
