"""Catch-up poller: ``GET /v1/events`` from the last event seen, for gaps after an outage.

The cursor (the newest event id published) lives in the compacted ``ledgerstream.cursors`` topic
and moves only after the broker acknowledged a whole page, so a crash re-reads at most one
page — harmless, since downstream effects are keyed upserts. On the first run, without a cursor,
it starts at ``since`` (default: 30 days back, the Events API's horizon).

Run as a service (``ledgerstream producer poll``), it serves ``/metrics``, ``/healthz`` and
``/readyz`` on ``LEDGER_METRICS_PORT`` like the stages: the events it read by outcome, the
records it published, and (counted by ``StripeAPI``) its Stripe calls with their 429s.
"""

from __future__ import annotations

import logging
import time
from collections import Counter
from dataclasses import dataclass

from ledgerstream import logs, metrics, settings
from ledgerstream.producers.cursor import CursorStore
from ledgerstream.producers.publisher import EventPublisher
from ledgerstream.producers.stripe_api import StripeAPI
from ledgerstream.stripe_records import BadEvent

log = logging.getLogger(__name__)

CURSOR = "stripe-events"
HORIZON_S = 30 * 86400
# ready while a page was published or a pass ended within the interval and this much more (a
# pass waits out Stripe's 429s and a broker outage, each up to a few minutes)
STALL_S = 600.0


@dataclass
class PollResult:
    pages: int = 0
    events: int = 0
    published: int = 0
    ignored: int = 0
    rejected: int = 0


class CatchUpPoller:
    def __init__(
        self, api: StripeAPI, publisher: EventPublisher, cursors: CursorStore, name: str = CURSOR
    ):
        self.api, self.publisher, self.cursors, self.name = api, publisher, cursors, name
        self.progress = time.monotonic()  # when a page was last published or a pass ended

    def poll_once(self, since: int | None = None) -> PollResult:
        """Publish every event newer than the cursor; move the cursor page by page."""
        state = self.cursors.load(self.name) or {}
        last = state.get("last_event_id")
        start = since if since is not None else int(time.time()) - HORIZON_S
        result = PollResult()
        for page in self.api.events_after(last, None if last else start):
            outgoing = []
            for event in page:
                result.events += 1
                try:
                    encoded = self.publisher.encode_event(event, source="events_api")
                except BadEvent as exc:
                    result.rejected += 1
                    metrics.POLLED_EVENTS.labels("rejected").inc()
                    log.warning("event %s rejected: %s", event.get("id"), exc)
                    continue
                if encoded is None:
                    result.ignored += 1
                    metrics.POLLED_EVENTS.labels("ignored").inc()
                else:
                    outgoing.append(encoded)
            self.publisher.send_all(outgoing)
            result.published += len(outgoing)
            metrics.POLLED_EVENTS.labels("published").inc(len(outgoing))
            for topic, count in Counter(out.topic for out in outgoing).items():
                metrics.RECORDS_OUT.labels("poller", topic).inc(count)
            result.pages += 1
            self.progress = time.monotonic()
            newest = page[-1]
            self.cursors.save(
                self.name, {"last_event_id": newest["id"], "last_created": newest["created"]}
            )
        return result

    def run(self, interval_s: float, stop: StopFlag) -> None:
        while not stop.is_set():
            result = self.poll_once()
            self.progress = time.monotonic()
            if result.events:
                log.info("catch-up: %s", result)
            stop.wait(interval_s)

    def ready(self, interval_s: float) -> bool:
        """Working: a broker answers, and a page was published or a pass ended lately."""
        return time.monotonic() - self.progress < interval_s + STALL_S and self.publisher.ready()


def serve_metrics(poller: CatchUpPoller, interval_s: float) -> metrics.Health | None:
    """The poller's /metrics, /healthz and /readyz on ``LEDGER_METRICS_PORT`` (0: none)."""
    logs.COMPONENT["name"] = "poller"  # in every structured log line
    cfg = settings.ObservabilitySettings()
    if not cfg.metrics_port:
        return None
    health = metrics.Health(ready=lambda: poller.ready(interval_s))
    health.serve(cfg.metrics_host, cfg.metrics_port)
    return health


class StopFlag:
    """A threading.Event, named for what it is used for here."""

    def __init__(self) -> None:
        import threading

        self._event = threading.Event()

    def set(self, *_: object) -> None:
        self._event.set()

    def is_set(self) -> bool:
        return self._event.is_set()

    def wait(self, timeout: float) -> None:
        self._event.wait(timeout)
