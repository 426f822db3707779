"""Catch-up poller: ``GET /v1/events`` from the last event seen, for gaps after an outage.

The cursor (the newest event id published) lives in the compacted ``ledgerstream.cursors`` topic
and moves only after the broker acknowledged a whole page, so a crash re-reads at most one
page — harmless, since downstream effects are keyed upserts. On the first run, without a cursor,
it starts at ``since`` (default: 30 days back, the Events API's horizon).
"""

from __future__ import annotations

import logging
import time
from dataclasses import dataclass

from ledgerstream.producers.cursor import CursorStore
from ledgerstream.producers.publisher import EventPublisher
from ledgerstream.producers.stripe_api import StripeAPI
from ledgerstream.stripe_records import BadEvent

log = logging.getLogger(__name__)

CURSOR = "stripe-events"
HORIZON_S = 30 * 86400


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
                    log.warning("event %s rejected: %s", event.get("id"), exc)
                    continue
                if encoded is None:
                    result.ignored += 1
                else:
                    outgoing.append(encoded)
            self.publisher.send_all(outgoing)
            result.published += len(outgoing)
            result.pages += 1
            newest = page[-1]
            self.cursors.save(
                self.name, {"last_event_id": newest["id"], "last_created": newest["created"]}
            )
        return result

    def run(self, interval_s: float, stop: StopFlag) -> None:
        while not stop.is_set():
            result = self.poll_once()
            if result.events:
                log.info("catch-up: %s", result)
            stop.wait(interval_s)


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
