"""The balance: balance transactions and their fee details, settlement currencies and exchange
rates, and the daily automatic payouts."""

from __future__ import annotations

import random
from decimal import Decimal
from fractions import Fraction
from functools import partial
from typing import TYPE_CHECKING

from ledgerstream.testing.generator.common import _USD_VALUE, DAY, HOUR, Obj, _midnight
from ledgerstream.testing.generator.engine import _Engine

if TYPE_CHECKING:
    from ledgerstream.testing.generator.scenario import Scenario


class _Payouts(_Engine):
    """Books every movement of money as a balance transaction in its settlement currency, and
    pays out, once a day per currency, what has become available."""

    def __init__(self, scenario: Scenario, collect: bool) -> None:
        super().__init__(scenario, collect)
        self._pools: dict[str, list[Obj]] = {c: [] for c in scenario.settlement_currencies}
        self._banks = {c: self.ids.long("ba_", scenario.start) for c in self._pools}
        self._fx: dict[tuple[str, str, int], tuple[float, Fraction]] = {}

    def _fee(self, amount: int, currency: str, kind: str) -> Obj:
        description = {
            "stripe_fee": "Stripe processing fees",
            "tax": "Tax on Stripe fees",
            "application_fee": "Application fee",
        }[kind]
        application = None
        if kind == "application_fee":
            application = "ca_" + self.ids.account * 3 + "AB"
        return {
            "amount": amount,
            "application": application,
            "currency": currency,
            "description": description,
            "type": kind,
        }

    def _settlement(self, currency: str, t: int) -> tuple[str, float | None, Fraction | None]:
        if currency in self._pools:
            return currency, None, None
        target = self.scenario.settlement_currencies[0]
        rate_float, rate = self._exchange_rate(currency, target, t)
        return target, rate_float, rate

    def _exchange_rate(self, source: str, target: str, t: int) -> tuple[float, Fraction]:
        """The day's rate, as Stripe gives it: a float with six significant digits."""
        key = (source, target, t // DAY)
        cached = self._fx.get(key)
        if cached is None:
            # Seeded by text, so the rate is a function of (seed, pair, day) alone and does not
            # depend on how much of the main random stream was used before.
            wobble = random.Random(f"fx/{self.scenario.seed}/{source}/{target}/{t // DAY}").randint(
                -100, 100
            )
            base = _USD_VALUE[source] / _USD_VALUE[target] * (1 + Decimal(wobble) / 10_000)
            text = f"{base:.6g}"
            cached = (float(text), Fraction(Decimal(text)))
            self._fx[key] = cached
        return cached

    def _balance_transaction(
        self,
        *,
        amount: int,
        currency: str,
        rate: float | None,
        fee_details: list[Obj],
        source: str,
        kind: str,
        category: str,
        description: str | None,
        at: int | None = None,
    ) -> Obj:
        t = self._now if at is None else at
        fee = sum(detail["amount"] for detail in fee_details)
        txn = {
            "id": self.ids.long("txn_", t),
            "object": "balance_transaction",
            "amount": amount,
            "available_on": t if kind == "payout" else _midnight(t) + 2 * DAY,
            "created": t,
            "currency": currency,
            "description": description,
            "exchange_rate": rate,
            "fee": fee,
            "fee_details": fee_details,
            "net": amount - fee,
            "reporting_category": category,
            "source": source,
            "status": "available" if kind == "payout" else "pending",
            "type": kind,
        }
        if self.collect:
            self.balance_transactions[txn["id"]] = txn
        if kind != "payout":
            self._pools[currency].append(txn)
        return txn

    def _payout_tick(self, currency: str) -> None:
        midnight = self._now
        pool = self._pools[currency]
        ready = [txn for txn in pool if txn["available_on"] <= midnight]
        total = sum(txn["net"] for txn in ready)
        if ready and total > 0:
            self._pools[currency] = [txn for txn in pool if txn["available_on"] > midnight]
            self._payout(currency, ready, total)
        # Keep ticking while anything could still reach the balance; a balance that stays
        # negative with nothing left to happen is carried, never paid out.
        waiting = any(txn["available_on"] > midnight for txn in self._pools[currency])
        if self._active > 0 or waiting:
            self._at(midnight + DAY, partial(self._payout_tick, currency), tick=True)

    def _payout(self, currency: str, paid_out: list[Obj], amount: int) -> None:
        t = self._now
        payout_id = self.ids.long("po_", t)
        own = self._balance_transaction(
            amount=-amount,
            currency=currency,
            rate=None,
            fee_details=[],
            source=payout_id,
            kind="payout",
            category="payout",
            description="STRIPE PAYOUT",
        )
        for txn in paid_out:
            txn["status"] = "available"
        arrival = t + 2 * DAY
        payout = self._keep(
            {
                "id": payout_id,
                "object": "payout",
                "amount": amount,
                "application_fee": None,
                "application_fee_amount": None,
                "arrival_date": arrival,
                "automatic": True,
                "balance_transaction": own["id"],
                "created": t,
                "currency": currency,
                "description": "STRIPE PAYOUT",
                "destination": self._banks[currency],
                "failure_balance_transaction": None,
                "failure_code": None,
                "failure_message": None,
                "livemode": False,
                "metadata": {},
                "method": "standard",
                "original_payout": None,
                "reconciliation_status": "in_progress",
                "reversed_by": None,
                "source_type": "card",
                "statement_descriptor": None,
                "status": "pending",
                "type": "bank_account",
            }
        )
        if self.collect:
            listed = sorted([*paid_out, own], key=lambda x: (x["created"], x["id"]), reverse=True)
            self.payout_transactions[payout_id] = [txn["id"] for txn in listed]
        self._emit("payout.created", t, payout)
        self._at(arrival + self._between(6 * HOUR, 10 * HOUR), partial(self._payout_paid, payout))

    def _payout_paid(self, payout: Obj) -> None:
        payout["status"] = "paid"
        self._emit("payout.paid", self._now, payout)
        rate = self.scenario.payout_failure_rate
        if rate and self.payout_failure_rng.random() < rate:
            self._at(self._now + self._between(DAY, 3 * DAY), partial(self._payout_fails, payout))
            return
        self._at(self._now + self._between(60, HOUR), partial(self._payout_reconciled, payout))

    def _payout_fails(self, payout: Obj) -> None:
        """The bank returns the payout (account closed): ``payout.failed``, and a
        ``payout_failure`` balance transaction puts the money back in the balance, to be paid
        out again with a later payout."""
        txn = self._balance_transaction(
            amount=payout["amount"],
            currency=payout["currency"],
            rate=None,
            fee_details=[],
            source=payout["id"],
            kind="payout_failure",
            category="payout_reversal",
            description="STRIPE PAYOUT FAILURE",
        )
        payout.update(
            status="failed",
            failure_balance_transaction=txn["id"],
            failure_code="account_closed",
            failure_message="The bank account has been closed.",
        )
        self._emit("payout.failed", self._now, payout)

    def _payout_reconciled(self, payout: Obj) -> None:
        payout["reconciliation_status"] = "completed"
        self._emit("payout.reconciliation_completed", self._now, payout)
