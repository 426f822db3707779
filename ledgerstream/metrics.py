"""Prometheus metrics and health endpoints, one set per component process.

Every long-running component serves ``/metrics`` (Prometheus text format, from
``prometheus_client``), ``/healthz`` (the process answers: 200) and ``/readyz`` (200 once it
does its work: its consumer has partitions or its server listens; 503 before, or while it
cannot) on ``LEDGER_METRICS_PORT``. The metric names below are a contract: the Grafana dashboard
and the alert rules in ``deploy/`` use them (a test checks that every name they use is here).

Labels stay bounded: component, topic, partition, record type, outcome, error class; never a
Stripe id or a NetSuite internal id.
"""

from __future__ import annotations

import logging
import threading
from collections.abc import Callable, Iterable
from typing import Any
from wsgiref.simple_server import WSGIRequestHandler, WSGIServer, make_server

from prometheus_client import REGISTRY, Counter, Gauge, Histogram, make_wsgi_app
from prometheus_client.exposition import choose_encoder

log = logging.getLogger(__name__)

# ---------------------------------------------------------------------------- every stage
RECORDS_IN = Counter("ledgerstream_records_in", "Records read from Kafka", ["component", "topic"])
RECORDS_OUT = Counter(
    "ledgerstream_records_out", "Records produced to Kafka (acknowledged)", ["component", "topic"]
)
DEAD_LETTERS = Counter(
    "ledgerstream_dead_letters",
    "Records sent to a dead-letter topic",
    ["component", "topic", "error_class"],
)
PROCESSING = Histogram(
    "ledgerstream_processing_seconds",
    "Time to handle one record (decode, book or map, hand over its outputs)",
    ["component"],
    buckets=(0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5),
)
LAG = Gauge(
    "ledgerstream_consumer_lag",
    "Records in the partition after the group's committed offset",
    ["component", "topic", "partition"],
)
OLDEST_WAITING = Gauge(
    "ledgerstream_oldest_waiting_seconds",
    "Age of the oldest record waiting for another (a deposit for its transactions, a "
    "payment for its invoice, a command for the records it references)",
    ["component", "kind"],
)
# ---------------------------------------------------------------------------- NetSuite sink
NETSUITE_REQUESTS = Histogram(
    "ledgerstream_netsuite_request_seconds",
    "NetSuite REST requests by record type and outcome (ok, or the HTTP status, or error)",
    ["record_type", "outcome"],
    buckets=(0.05, 0.1, 0.2, 0.3, 0.5, 0.75, 1, 1.5, 2, 3, 5, 10, 30, 60),
)
NETSUITE_THROTTLED = Counter(
    "ledgerstream_netsuite_throttled", "NetSuite answers 429 (concurrency limit exceeded)"
)
NETSUITE_RETRIES = Counter(
    "ledgerstream_netsuite_retries", "NetSuite writes attempted again", ["record_type"]
)
NETSUITE_LIMIT = Gauge(
    "ledgerstream_netsuite_limiter_window", "Writes the adaptive limiter lets run at once now"
)
NETSUITE_IN_FLIGHT = Gauge("ledgerstream_netsuite_in_flight", "NetSuite writes under way")
NETSUITE_SUPERSEDED = Counter(
    "ledgerstream_netsuite_superseded",
    "Commands not written because a newer version of the same record was written instead",
    ["record_type"],
)
DEPOSITS_ON_SUSPENSE = Gauge(
    "ledgerstream_deposits_on_suspense",
    "Deposits written with lines on the suspense account, waiting for their records",
)
# ---------------------------------------------------------------------------- Stripe
STRIPE_CALLS = Counter(
    "ledgerstream_stripe_requests",
    "Stripe API requests by operation (read, update) and outcome (ok, the HTTP status, error)",
    ["operation", "outcome"],
)


def stripe_outcome(exc: BaseException | None) -> str:
    """A Stripe call's outcome label: ok, the HTTP status it answered, or error."""
    if exc is None:
        return "ok"
    status = getattr(exc, "http_status", None)
    return str(status) if status else "error"


WEBHOOKS = Counter(
    "ledgerstream_webhooks",
    "Stripe webhooks received, by answer (accepted, ignored: a type not handled, "
    "bad_signature, malformed, too_large, unavailable: the broker did not acknowledge)",
    ["outcome"],
)
POLLED_EVENTS = Counter(
    "ledgerstream_polled_events",
    "Stripe events the Events API poller read, by what became of them (published: "
    "acknowledged by the broker, ignored: a type not handled, rejected: malformed)",
    ["outcome"],
)

EVERY = (
    RECORDS_IN,
    RECORDS_OUT,
    DEAD_LETTERS,
    PROCESSING,
    LAG,
    OLDEST_WAITING,
    NETSUITE_REQUESTS,
    NETSUITE_THROTTLED,
    NETSUITE_RETRIES,
    NETSUITE_LIMIT,
    NETSUITE_IN_FLIGHT,
    NETSUITE_SUPERSEDED,
    DEPOSITS_ON_SUSPENSE,
    STRIPE_CALLS,
    WEBHOOKS,
    POLLED_EVENTS,
)


def exposed_names() -> set[str]:
    """Every series name Prometheus sees (counters get ``_total``, histograms ``_bucket``,
    ``_sum`` and ``_count``)."""
    return {
        family.name + suffix
        for metric in EVERY
        for family in metric.describe()
        for suffix in _SUFFIXES[family.type]
    }


def exposition(accept: str) -> tuple[bytes, str]:
    """This process's metrics in the format the scraper asks for (its ``Accept`` header), and
    that format's content type: what ``prometheus_client``'s own server answers."""
    encoder, content_type = choose_encoder(accept)
    return encoder(REGISTRY), content_type


_SUFFIXES = {
    "counter": ("_total",),
    "gauge": ("",),
    "histogram": ("_bucket", "_sum", "_count"),
}


class _Quiet(WSGIRequestHandler):
    def log_message(self, format: str, *args: Any) -> None:  # noqa: A002 - the base's name
        pass  # Prometheus scrapes every few seconds: not worth a log line each


class _Threaded(WSGIServer):
    daemon_threads = True


class Health:
    """The metrics and health server of one component."""

    def __init__(self, ready: Callable[[], bool] = lambda: True) -> None:
        self.ready = ready
        self.server: WSGIServer | None = None
        self.port = 0
        self._metrics = make_wsgi_app()

    def app(self, environ: dict[str, Any], start: Callable[..., Any]) -> Iterable[bytes]:
        path = environ.get("PATH_INFO", "")
        if path == "/healthz":
            return self._text(start, "200 OK", "ok")
        if path == "/readyz":
            try:
                ready = self.ready()
            except Exception as exc:  # noqa: BLE001 - not ready, and why
                return self._text(start, "503 Service Unavailable", f"not ready: {exc}")
            if ready:
                return self._text(start, "200 OK", "ready")
            return self._text(start, "503 Service Unavailable", "not ready")
        if path == "/metrics":
            result: Iterable[bytes] = self._metrics(environ, start)
            return result
        return self._text(start, "404 Not Found", "not found")

    @staticmethod
    def _text(start: Callable[..., Any], status: str, body: str) -> list[bytes]:
        start(status, [("Content-Type", "text/plain; charset=utf-8")])
        return [body.encode() + b"\n"]

    def serve(self, host: str, port: int) -> None:
        """Serve from a daemon thread; port 0 picks a free one (``self.port`` tells which)."""
        try:
            self.server = make_server(
                host, port, self.app, server_class=_Threaded, handler_class=_Quiet
            )
        except OSError as exc:
            raise SystemExit(
                f"cannot serve metrics on {host}:{port} ({exc}): set LEDGER_METRICS_PORT to a "
                "free port (each component on a host needs its own)"
            ) from exc
        self.port = self.server.server_port
        threading.Thread(target=self.server.serve_forever, name="metrics", daemon=True).start()
        log.info("metrics and health on http://%s:%d/metrics, /healthz, /readyz", host, self.port)

    def close(self) -> None:
        if self.server is not None:
            self.server.shutdown()
            self.server.server_close()
