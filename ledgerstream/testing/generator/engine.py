"""The discrete-event engine that every concern builds on, and the records the simulation keeps
between actions (customers, subscriptions, invoices being collected, charges)."""

from __future__ import annotations

import heapq
import random
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from fractions import Fraction
from typing import TYPE_CHECKING

from ledgerstream.testing.generator.common import API_VERSION, DAY, Obj, _b62, _copy, _Ids, _Region

if TYPE_CHECKING:
    from ledgerstream.testing.generator.scenario import Scenario


@dataclass
class _Item:
    price: Obj
    plan: Obj
    product_name: str
    si: str
    quantity: int
    last_line: str | None = None


@dataclass
class _Subscription:
    id: str
    anchor: int
    items: list[_Item]
    last_invoice: str | None = None


@dataclass
class _Customer:
    obj: Obj
    currency: str
    region: _Region
    card: Obj
    pm: str
    discount: Obj | None
    tax_rate: Obj | None
    sub: _Subscription | None = None


@dataclass
class _Charge:
    obj: Obj
    settlement: str
    rate: Fraction | None  # presentment → settlement, exact; None when no conversion
    rate_float: float | None
    refunded_settled: int = 0  # settlement amount refunded so far (for exact full refunds)


@dataclass
class _Bill:
    obj: Obj
    customer: _Customer
    fate: str = "pay"  # pay | recover | uncollectible | void
    failures_left: int = 0
    wants_credit_note: bool = False
    credit_notes: int = 0
    charge: _Charge | None = None
    # every line, also those beyond the ones the invoice embeds (what credit notes pick from)
    lines: list[Obj] = field(default_factory=list)


# (time, sequence, is a daily payout tick, what to run): plain tuples keep the heap fast, and the
# unique sequence number means the callable is never compared.
_Action = tuple[int, int, bool, Callable[[], None]]


class _Engine:
    """Discrete-event simulation: actions run in time order and emit events at or after their
    own time, so every event older than the next action is final and can be streamed out."""

    def __init__(self, scenario: Scenario, collect: bool) -> None:
        self.scenario = scenario
        self.rng = random.Random(scenario.seed)
        # Long invoices are drawn from a stream of their own, and not at all at rate 0: the
        # main stream's draws, and so a history without long invoices, stay as they were.
        self.long_rng = random.Random(f"{scenario.seed}-long")
        self.individual_rng = random.Random(f"{scenario.seed}-individual")  # the same, for those
        self.band_rng = random.Random(f"{scenario.seed}-out-of-band")  # and for these
        self.capture_rng = random.Random(f"{scenario.seed}-capture")
        self.refund_failure_rng = random.Random(f"{scenario.seed}-refund-failure")
        self.payout_failure_rng = random.Random(f"{scenario.seed}-payout-failure")
        self.blocked_rng = random.Random(f"{scenario.seed}-blocked")
        self.second_charge_rng = random.Random(f"{scenario.seed}-second-charge")
        self.balance_rng = random.Random(f"{scenario.seed}-balance")
        self.ids = _Ids(self.rng)
        self.collect = collect
        self.objects: dict[str, Obj] = {}
        self.balance_transactions: dict[str, Obj] = {}
        self.payout_transactions: dict[str, list[str]] = {}
        self.invoice_lines: dict[str, list[Obj]] = {}  # in_ id -> every line, if truncated

        self._actions: list[_Action] = []
        self._out: list[tuple[int, str, Obj]] = []
        self._seq = 0
        self._active = 0
        self._now = scenario.start
        self._account = f"acct_{_b62(scenario.start - 400 * DAY, 6)}{self.ids.account}"
        self._customers: list[_Customer] = []

    def run(self) -> Iterator[Obj]:
        actions, out = self._actions, self._out
        while actions:
            at, _, tick, action = heapq.heappop(actions)
            while out and out[0][0] < at:
                yield heapq.heappop(out)[2]
            if not tick:
                self._active -= 1
            self._now = at
            action()
        while out:
            yield heapq.heappop(out)[2]

    def _at(self, t: int, run: Callable[[], None], tick: bool = False) -> None:
        assert t >= self._now, "an action cannot be scheduled in the past"
        self._seq += 1
        if not tick:
            self._active += 1
        heapq.heappush(self._actions, (t, self._seq, tick, run))

    def _emit(self, kind: str, created: int, obj: Obj, previous: Obj | None = None) -> None:
        # Emitting at or after the running action's time is what makes streaming safe.
        assert created >= self._now, "an event cannot be emitted in the past"
        data: Obj = {"object": _copy(obj)}
        if previous is not None:
            data["previous_attributes"] = _copy(previous)
        event_id = self.ids.long("evt_", created)
        event = {
            "id": event_id,
            "object": "event",
            "api_version": API_VERSION,
            "created": created,
            "data": data,
            "livemode": False,
            "pending_webhooks": 1,
            "request": {"id": None, "idempotency_key": None},
            "type": kind,
        }
        heapq.heappush(self._out, (created, event_id, event))

    def _keep(self, obj: Obj) -> Obj:
        if self.collect:
            self.objects[obj["id"]] = obj
        return obj

    def _between(self, low: int, high: int) -> int:
        return low + self.rng.randrange(max(1, high - low))
