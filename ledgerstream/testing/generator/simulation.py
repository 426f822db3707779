"""The whole simulation: the concerns composed into one object, and the story scheduled."""

from __future__ import annotations

from functools import partial
from typing import TYPE_CHECKING

from ledgerstream.testing.generator.catalogue import _Catalogue
from ledgerstream.testing.generator.common import DAY, _add_months, _midnight
from ledgerstream.testing.generator.credit_notes import _CreditNotes
from ledgerstream.testing.generator.customers import _Customers
from ledgerstream.testing.generator.disputes import _Disputes
from ledgerstream.testing.generator.invoices import _Invoices
from ledgerstream.testing.generator.payments import _Payments
from ledgerstream.testing.generator.payouts import _Payouts
from ledgerstream.testing.generator.subscriptions import _Subscriptions

if TYPE_CHECKING:
    from ledgerstream.testing.generator.scenario import Scenario


class _Simulation(
    _Customers,
    _Subscriptions,
    _Invoices,
    _CreditNotes,
    _Payments,
    _Disputes,
    _Payouts,
    _Catalogue,
):
    """One merchant's history: every concern on one engine. Starting it schedules the story's
    beginnings (the catalogue, the sign-ups, each month's one-off business, the daily payout
    ticks); each action schedules what follows from it."""

    def __init__(self, scenario: Scenario, collect: bool) -> None:
        super().__init__(scenario, collect)
        self._at(scenario.start, self._catalog)
        joined = sorted(
            scenario.start + 60 + self.rng.randrange(20 * DAY) for _ in range(scenario.customers)
        )
        self._first_customer_at = joined[0]
        for t in joined:
            self._at(t, self._new_customer)
        for month in range(scenario.months):
            self._at(_add_months(scenario.start, month), partial(self._month, month))
        for currency in self._pools:
            self._at(_midnight(scenario.start) + DAY, partial(self._payout_tick, currency), True)
