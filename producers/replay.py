"""Publish Stripe Event objects from a JSON-lines file (one event per line, as the Events API
returns them) through the same validation and topics as the webhook.

Lines that are not events are reported with their line number and skipped; nothing is
published for them.
"""

from __future__ import annotations

import json
from collections import Counter
from collections.abc import Iterable
from typing import Any

from ledgerstream.producers.publisher import EventPublisher, Outgoing
from ledgerstream.stripe_records import BadEvent


def replay_lines(
    publisher: EventPublisher, lines: Iterable[str], batch: int = 1000
) -> tuple[Counter[str], list[tuple[int, str]]]:
    counts: Counter[str] = Counter()
    problems: list[tuple[int, str]] = []
    pending: list[Outgoing] = []
    for number, line in enumerate(lines, start=1):
        if not line.strip():
            continue
        try:
            event: Any = json.loads(line)
            encoded = publisher.encode_event(event, source="replay")
        except (ValueError, BadEvent) as exc:
            problems.append((number, str(exc)[:200]))
            counts["rejected"] += 1
            continue
        if encoded is None:
            counts["ignored"] += 1
            continue
        pending.append(encoded)
        counts["published"] += 1
        if len(pending) >= batch:
            publisher.send_all(pending)
            pending = []
    publisher.send_all(pending)
    return counts, problems
