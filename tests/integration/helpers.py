"""Helpers for integration tests: a recording proxy in front of stripe-mock, Kafka offsets."""

from __future__ import annotations

import contextlib
import threading
import time
from collections.abc import Iterable, Iterator
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

import requests
from confluent_kafka import Consumer, KafkaException, TopicPartition

from ledgerstream import settings, topics
from ledgerstream.kafka_util import end_offset, where
from ledgerstream.testing.fixtures import signed
from ledgerstream.testing.generator import History
from ledgerstream.testing.pipeline import AppThread, Pipeline
from ledgerstream.testing.stripe_double import StripeDouble

# the tests' histories settle in USD and JPY: the emulator's seeded bank accounts for them
ACCOUNTING_ENV = {"LEDGER_NETSUITE_BANK_ACCOUNT_IDS": '{"USD": "102", "JPY": "107"}'}


@dataclass
class Exchange:
    method: str
    path: str
    body: str
    status: int


@dataclass
class RecordingProxy:
    """Forwards every request to ``upstream`` (stripe-mock) and records what it answered."""

    upstream: str
    exchanges: list[Exchange] = field(default_factory=list)

    def __post_init__(self) -> None:
        proxy = self

        class Handler(BaseHTTPRequestHandler):
            def _forward(self) -> None:
                length = int(self.headers.get("Content-Length") or 0)
                body = self.rfile.read(length) if length else b""
                headers = {
                    k: v
                    for k, v in self.headers.items()
                    if k.lower() not in ("host", "content-length", "connection")
                }
                resp = requests.request(
                    self.command, proxy.upstream + self.path, data=body, headers=headers, timeout=30
                )
                proxy.exchanges.append(
                    Exchange(
                        self.command, self.path, body.decode(errors="replace"), resp.status_code
                    )
                )
                self.send_response(resp.status_code)
                for key, value in resp.headers.items():
                    if key.lower() not in (
                        "content-length",
                        "transfer-encoding",
                        "connection",
                        "content-encoding",
                    ):
                        self.send_header(key, value)
                self.send_header("Content-Length", str(len(resp.content)))
                self.end_headers()
                self.wfile.write(resp.content)

            do_GET = do_POST = do_DELETE = _forward

            def log_message(self, *args: Any) -> None:
                pass

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.thread = threading.Thread(target=self.server.serve_forever, daemon=True)
        self.thread.start()

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.server.server_address[1]}"

    def close(self) -> None:
        self.server.shutdown()
        self.server.server_close()


def end_offsets(topic: str) -> dict[int, int]:
    consumer = Consumer({**settings.kafka().client_config(), "group.id": "offsets-probe"})
    try:
        parts = consumer.list_topics(topic, timeout=10).topics[topic].partitions
        return {p: end_offset(consumer, topic, p) for p in parts}
    finally:
        consumer.close()


def committed(group: str, topic: str) -> dict[int, int]:
    consumer = Consumer({**settings.kafka().client_config(), "group.id": group})
    try:
        parts = consumer.list_topics(topic, timeout=10).topics[topic].partitions
        got = consumer.committed([TopicPartition(topic, p) for p in parts], timeout=10)
        return {tp.partition: tp.offset for tp in got}
    finally:
        consumer.close()


def wait_caught_up(
    group: str, topics: list[str], timeout: float = 90, check: Any = None, interval: float = 0.5
) -> None:
    """Wait until ``group`` has committed the end offset of every partition of ``topics``."""
    deadline = time.monotonic() + timeout
    while True:
        behind: dict[str, Any] = {}
        for topic in topics:
            try:
                ends = end_offsets(topic)
                done = committed(group, topic)
            except KafkaException as exc:  # a fresh broker's group coordinator still loading
                behind[topic] = str(exc)
                continue
            for part, end in ends.items():
                if end > 0 and done.get(part, -1) < end:
                    behind[f"{topic}[{part}]"] = (done.get(part), end)
        if not behind:
            return
        if check is not None:
            check()  # fail at once when a component died
        if time.monotonic() > deadline:
            raise TimeoutError(f"group {group} still behind: {behind}")
        time.sleep(interval)


def drain(component: Any, timeout: float = 90) -> None:
    """Run a stage component (router, payout contents, metadata writer, NetSuite sink) in a
    thread until it has partitions and its group has committed the end offset of every
    partition of its input, then stop it as a signal would. What the run raised is raised
    here. A component whose group has nothing left to read is caught up at once: to test a
    restart, give it a new record (caught up then means it read and committed that one)."""
    stage = component.runner.stage
    failure: list[BaseException] = []

    def target() -> None:
        try:
            component.run()
        except BaseException as exc:  # noqa: BLE001 - handed to the test
            failure.append(exc)

    thread = threading.Thread(target=target, name=f"drain-{stage.name}", daemon=True)
    thread.start()

    def check() -> None:
        if failure:
            raise failure[0]
        if not thread.is_alive():
            raise AssertionError(f"{stage.name} stopped before it caught up")

    try:
        deadline = time.monotonic() + timeout
        while not component.runner.counts["assignments"]:
            check()
            if time.monotonic() > deadline:
                raise TimeoutError(f"{stage.name}: no partitions assigned")
            time.sleep(0.1)
        wait_caught_up(stage.group_id, [stage.topic], timeout=timeout, check=check)
    finally:
        component.stop()
        thread.join(60)
    if failure:
        raise failure[0]
    assert not thread.is_alive(), f"{stage.name} did not stop within 60 s"


def consume_all(topic: str, timeout: float = 30) -> list[Any]:
    """Every record of ``topic`` up to its current end offsets."""
    ends = end_offsets(topic)
    consumer = Consumer(
        {
            **settings.kafka().client_config(),
            "group.id": "reader-" + topic,
            "enable.auto.commit": False,
            "auto.offset.reset": "earliest",
        }
    )
    consumer.assign([TopicPartition(topic, p, 0) for p in ends])
    out = []
    position = {p: 0 for p in ends}
    deadline = time.monotonic() + timeout
    try:
        while any(position[p] < end for p, end in ends.items()):
            if time.monotonic() > deadline:
                raise TimeoutError(f"{topic}: read {position} of {ends}")
            msg = consumer.poll(0.5)
            if msg is None or msg.error():
                continue
            _, partition, offset = where(msg)
            position[partition] = offset + 1
            out.append(msg)
    finally:
        consumer.close()
    return out


class producer_quota:  # noqa: N801 - used as a context manager, reads like a statement
    """Slow one Kafka client's writes with a broker-side quota (``producer_byte_rate``).

    The broker accepts the writes and holds each answer back for as long as the quota asks, so
    the client's acknowledgements lag far behind its sends: the window in which a component that
    commits its input offsets before its writes are acknowledged loses them to a kill -9. Set
    through Kafka's own ``kafka.admin.ConfigCommand`` (the Python clients have no quota API),
    run from the Kafka libraries the local stack caches.
    """

    def __init__(self, client_id: str, bytes_per_s: int):
        self.client_id = client_id
        self.rate = bytes_per_s

    def _config(self, *change: str) -> None:
        import subprocess

        from ledgerstream import stack

        kafka = stack.Kafka(settings.StackSettings())
        kafka.fetch()  # cached; also where the brokers are external (Docker)
        subprocess.run(
            [
                stack.find_java(17),
                "-cp",
                str(kafka.home / "libs" / "*"),
                "kafka.admin.ConfigCommand",
                "--bootstrap-server",
                settings.kafka().kafka_bootstrap_servers,
                "--alter",
                *change,
                "--entity-type",
                "clients",
                "--entity-name",
                self.client_id,
            ],
            check=True,
            capture_output=True,
            timeout=120,
        )

    def __enter__(self) -> producer_quota:
        self._config("--add-config", f"producer_byte_rate={self.rate}")
        return self

    def __exit__(self, *exc: object) -> None:
        self._config("--delete-config", "producer_byte_rate")


@contextlib.contextmanager
def pipeline_on_double(tmp_path: Path, history: History, **env: str) -> Iterator[Pipeline]:
    """The whole pipeline, started, with the Stripe double serving ``history`` as its Stripe
    API (``env``: more settings); stopped afterwards."""
    stripe = AppThread(StripeDouble(history).app())
    pipe = Pipeline(
        tmp_path / "run",
        extra_env={
            **ACCOUNTING_ENV,
            "LEDGER_STRIPE_API_BASE": stripe.url,
            "LEDGER_STRIPE_MAX_REQUESTS_PER_S": "1000",
            **env,
        },
    )
    try:
        pipe.start_all()
        yield pipe
    finally:
        pipe.stop()
        stripe.close()


def post_webhooks(pipe: Pipeline, events: Iterable[dict[str, Any]]) -> None:
    """Each event as Stripe sends it: signed, to the webhook; each must be taken (200)."""
    for event in events:
        body, header = signed(event, pipe.webhook_secret)
        answer = requests.post(
            pipe.webhook_url, data=body, headers={"Stripe-Signature": header}, timeout=30
        )
        assert answer.status_code == 200, answer.text


# the processor's input topics (without the topic prefix)
PROCESSOR_INPUTS = (
    "stripe.customer",
    "stripe.invoice",
    "stripe.charge",
    "stripe.refund",
    "stripe.dispute",
    "stripe.credit_note",
    "stripe.payout",
    "stripe.payout_transactions",
)


def written_by_pipeline(
    tmp_path: Path,
    history: History,
    feed: Iterable[dict[str, Any]],
    expected: set[tuple[str, str]],
    **env: str,
) -> tuple[list[dict[str, Any]], list[Any]]:
    """``feed`` (events of ``history``) through the whole pipeline by signed webhooks, until
    NetSuite holds every ``expected`` (type, externalId) and every stage has consumed all that
    was sent to it (``env``: more settings). Returns the NetSuite records and the dead letters
    of the commands topic."""
    with pipeline_on_double(tmp_path, history, **env) as pipe:
        post_webhooks(pipe, feed)
        want: dict[str, int] = {}
        for rtype, _ in expected:
            want[rtype] = want.get(rtype, 0) + 1
        pipe.wait_for_records(want, timeout=300)
        # everything sent was booked and written: nothing more is on its way
        wait_pipeline_caught_up(pipe)
        commands = pipe.prefix + topics.NETSUITE_COMMANDS.name
        return pipe.records(), consume_all(commands + ".dlq", timeout=3)


def wait_pipeline_caught_up(pipe: Pipeline, sink_timeout: float = 120) -> None:
    """Until the processor's and the sink's groups committed the end of their inputs."""
    wait_caught_up(
        f"{pipe.name}-processor",
        [pipe.prefix + t for t in PROCESSOR_INPUTS],
        timeout=120,
        check=pipe.check_alive,
    )
    commands = pipe.prefix + topics.NETSUITE_COMMANDS.name
    wait_caught_up(
        f"{pipe.name}-netsuite-sink", [commands], timeout=sink_timeout, check=pipe.check_alive
    )
