"""Backfill from Stripe's list endpoints: any period, beyond the Events API's 30 days.

For each object type, the period is cut into ``created`` windows, each read with
``starting_after`` cursor paging (100 per page, the pinned API version, the client's rate
limit), and every object is published through the same encoding as a live event of it, so the
processors cannot tell the difference. Paid automatic payouts also get their balance
transactions (the deposit's contents). A progress bar counts windows against their total, with
an estimate of the objects and of the NetSuite writes they bring; the position is kept in the
cursor topic after every window, so a backfill that stopped resumes where it was.

Each object is stamped with when Stripe answered its page, so that a backfill over objects
already seen live brings them to their latest state (``stripe_records.object_event``).
"""

from __future__ import annotations

import hashlib
import json
import logging
import time
from collections import Counter
from collections.abc import Iterable, Iterator
from dataclasses import dataclass
from typing import Any

from tqdm import tqdm

from ledgerstream import settings
from ledgerstream.producers.cursor import CursorStore
from ledgerstream.producers.payouts import publish_payout_contents, wants_contents
from ledgerstream.producers.publisher import EventPublisher
from ledgerstream.producers.stripe_api import LIST_ENDPOINTS, StripeAPI

log = logging.getLogger(__name__)


def windows(start: int, end: int, size: int) -> Iterator[tuple[int, int]]:
    """``[start, end)`` as consecutive ``[a, b)`` windows of ``size`` seconds."""
    a = start
    while a < end:
        b = min(a + size, end)
        yield a, b
        a = b


@dataclass
class Progress:
    """Where a backfill is, kept under ``key`` in the cursor topic after every window whose
    objects Kafka acknowledged: a backfill started again with the same period, types and
    window size goes on after the last completed window. A completed one starts over."""

    key: str
    kind_index: int = 0  # every type before this one is complete
    window_end: int | None = None  # the type at kind_index is complete up to here
    objects: int = 0  # read so far (for the estimate)
    windows: int = 0  # completed so far
    end: int = 0  # the period's end (a backfill "up to now" resumes up to the same now)

    def value(self) -> dict[str, Any]:
        return {
            "kind_index": self.kind_index,
            "window_end": self.window_end,
            "objects": self.objects,
            "windows": self.windows,
            "end": self.end,
        }


def progress_key(start: int, end: int | None, kinds: list[str], window_s: int) -> str:
    """The cursor key of a backfill: its period (``end`` None: up to now), types and window."""
    plan = json.dumps([start, end, kinds, window_s])
    return "backfill:" + hashlib.sha256(plan.encode()).hexdigest()[:16]


@dataclass(frozen=True)
class Estimate:
    """A backfill's size, reckoned from the windows read so far: Stripe's list endpoints give
    no count, so the objects per window read so far stand for the windows still to read."""

    objects: int
    netsuite_s: float  # at the configured concurrency and time per write

    @staticmethod
    def of(done: Progress, total_windows: int, write_s: float, concurrency: int) -> Estimate:
        per_window = done.objects / done.windows if done.windows else 0.0
        objects = round(done.objects + per_window * (total_windows - done.windows))
        # about one NetSuite record per Stripe object (customers, invoices, payments,
        # refunds, memos, deposits); the processor writes nothing for some (a failed charge)
        return Estimate(objects, objects * write_s / max(1, concurrency))


def backfill(
    api: StripeAPI,
    publisher: EventPublisher,
    start: int,
    end: int | None,
    kinds: Iterable[str] = tuple(LIST_ENDPOINTS),
    window_s: int = 7 * 86400,
    progress: bool = True,
    cursors: CursorStore | None = None,
    write_s: float = 0.5,
) -> Counter[str]:
    """Publish every object created in ``[start, end)`` (``end`` None: up to now); returns
    counts per type (of this run: a resumed backfill counts what it read since). With
    ``cursors``, it resumes after the last completed window of an earlier run of the same
    backfill that stopped (one up to now: up to the now of that run)."""
    kinds = list(kinds)
    for kind in kinds:
        if kind not in LIST_ENDPOINTS:
            raise ValueError(f"cannot backfill {kind!r}; choose from {', '.join(LIST_ENDPOINTS)}")
    key = progress_key(start, end, kinds, window_s)
    done = Progress(key, end=end if end is not None else int(time.time()))
    saved = cursors.load(key) if cursors is not None else None
    if saved is not None and not saved.get("complete"):
        done = Progress(key, **{k: saved.get(k, v) for k, v in done.value().items()})
        log.info(
            "resuming the backfill after %d completed windows (%s up to %s)",
            done.windows,
            kinds[done.kind_index] if done.kind_index < len(kinds) else "all",
            done.window_end,
        )
    spans = list(windows(start, done.end, window_s))
    concurrency = settings.NetSuiteSettings().netsuite_concurrency
    counts: Counter[str] = Counter()
    bar = tqdm(
        desc="backfill",
        total=len(kinds) * len(spans),
        initial=done.windows,
        unit="window",
        disable=not progress,
        leave=True,
    )
    try:
        for index, kind in enumerate(kinds):
            if index < done.kind_index:
                continue
            for a, b in spans:
                if (
                    index == done.kind_index
                    and done.window_end is not None
                    and b <= done.window_end
                ):
                    continue
                read = _window(api, publisher, kind, a, b, counts)
                done.kind_index, done.window_end = index, b
                done.objects += read
                done.windows += 1
                if cursors is not None:
                    cursors.save(key, done.value())  # after Kafka acknowledged the window
                guess = Estimate.of(done, len(kinds) * len(spans), write_s, concurrency)
                bar.set_postfix_str(
                    f"{kind}: {done.objects} objects of about {guess.objects}; NetSuite writes "
                    f"about {guess.netsuite_s / 60:.0f} min at {concurrency} at once"
                )
                bar.update(1)
            done.kind_index, done.window_end = index + 1, None
        if cursors is not None:
            cursors.save(key, {**done.value(), "complete": True})
    finally:
        bar.close()
    return counts


def _window(
    api: StripeAPI, publisher: EventPublisher, kind: str, a: int, b: int, counts: Counter[str]
) -> int:
    """Publish the objects of ``kind`` created in ``[a, b)``; return how many were read once
    Kafka acknowledged them all."""
    params: dict[str, object] = {"created": {"gte": a, "lt": b}}
    if LIST_ENDPOINTS[kind]:
        params["expand"] = list(LIST_ENDPOINTS[kind])
    batch = []
    read = 0
    for page, read_at in api.pages(f"/v1/{kind}", params):
        for obj in page:
            encoded = publisher.encode_object(obj, read_at)
            if encoded is not None:
                batch.append(encoded)
            if kind == "payouts" and wants_contents(obj):
                counts["payout_transactions"] += publish_payout_contents(api, publisher, obj)
            counts[kind] += 1
            read += 1
            if len(batch) >= 500:
                publisher.send_all(batch)
                batch = []
    publisher.send_all(batch)
    return read
