"""Backfill from Stripe's list endpoints: any period, beyond the Events API's 30 days.

For each object type, the period is cut into ``created`` windows, each read with
``starting_after`` cursor paging (100 per page, the pinned API version, the client's rate
limit), and every object is published through the same encoding as a live event of it, so the
processors cannot tell the difference. Paid automatic payouts also get their balance
transactions (the deposit's contents). A progress bar counts objects per type.

Each object is stamped with when Stripe answered its page, so that a backfill over objects
already seen live brings them to their latest state (``stripe_records.object_event``).
"""

from __future__ import annotations

import logging
from collections import Counter
from collections.abc import Iterable, Iterator

from tqdm import tqdm

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


def backfill(
    api: StripeAPI,
    publisher: EventPublisher,
    start: int,
    end: int,
    kinds: Iterable[str] = tuple(LIST_ENDPOINTS),
    window_s: int = 7 * 86400,
    progress: bool = True,
) -> Counter[str]:
    """Publish every object created in ``[start, end)``; returns counts per type."""
    counts: Counter[str] = Counter()
    for kind in kinds:
        if kind not in LIST_ENDPOINTS:
            raise ValueError(f"cannot backfill {kind!r}; choose from {', '.join(LIST_ENDPOINTS)}")
        bar = tqdm(desc=f"backfill {kind}", unit="obj", disable=not progress, leave=True)
        try:
            for a, b in windows(start, end, window_s):
                params: dict[str, object] = {"created": {"gte": a, "lt": b}}
                if LIST_ENDPOINTS[kind]:
                    params["expand"] = list(LIST_ENDPOINTS[kind])
                batch = []
                for page, read_at in api.pages(f"/v1/{kind}", params):
                    for obj in page:
                        encoded = publisher.encode_object(obj, read_at)
                        if encoded is not None:
                            batch.append(encoded)
                        if kind == "payouts" and wants_contents(obj):
                            counts["payout_transactions"] += publish_payout_contents(
                                api, publisher, obj
                            )
                        counts[kind] += 1
                        bar.update(1)
                        if len(batch) >= 500:
                            publisher.send_all(batch)
                            batch = []
                publisher.send_all(batch)
        finally:
            bar.close()
    return counts
