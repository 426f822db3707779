"""Payments: cards, charges (with their balance transaction and fees), refunds, and the bare
one-off charges of customers and guests."""

from __future__ import annotations

from fractions import Fraction
from functools import partial

from ledgerstream.testing.generator.common import (
    _B62,
    _FIRST,
    _LAST,
    _REGIONS,
    DAY,
    HOUR,
    Obj,
    _convert,
    _copy,
    _empty_address,
    _from_usd,
    _Region,
    _round_to,
    _share,
    _unit,
)
from ledgerstream.testing.generator.disputes import _Disputes
from ledgerstream.testing.generator.engine import _Charge, _Customer

_ONE_OFF_DESCRIPTIONS = (
    "Setup fee",
    "Consulting hours",
    "Workshop ticket",
    "Replacement device",
    "Priority support",
    "Order #{n}",
)

# Stripe's pricing for cards, in USD cents; the fixed parts are converted to the settlement
# currency so a JPY or KWD fee has a sensible size.
_FEE_RATE = Fraction(29, 1000)
_FEE_FIXED_USD_CENTS = 30
_FEE_TAX_RATE = Fraction(1, 5)
_APPLICATION_FEE_RATE = Fraction(5, 100)

# Internal rates that the scenario does not expose.
_FEE_TAX_SHARE = 0.1  # charges whose fee carries a tax fee detail
_APPLICATION_FEE_SHARE = 0.03  # charges with a Connect application fee

# decline reason → (charge.failure_code, charge.failure_message)
_DECLINES: dict[str, tuple[str | None, str | None]] = {
    "generic_decline": ("card_declined", "Your card was declined."),
    "insufficient_funds": ("card_declined", "Your card has insufficient funds."),
    "expired_card": ("expired_card", "Your card has expired."),
}


class _Payments(_Disputes):
    """Charges and what follows a successful one: refunds or a dispute."""

    def _card(self, region: _Region) -> Obj:
        rng = self.rng
        brand, funding = rng.choice(
            (("visa", "credit"), ("visa", "debit"), ("mastercard", "credit"), ("amex", "credit"))
        )
        return {
            "brand": brand,
            "country": region.country,
            "exp_month": rng.randint(1, 12),
            "exp_year": 2026 + rng.randrange(6),
            "fingerprint": "".join(rng.choice(_B62) for _ in range(16)),
            "funding": funding,
            "last4": f"{rng.randrange(10_000):04d}",
        }

    def _charge(
        self,
        customer: _Customer | None,
        currency: str,
        amount: int,
        *,
        invoice: str | None,
        description: str,
        payment_intent: str,
        succeeded: bool,
        authorise_only: bool = False,
    ) -> _Charge:
        rng, t = self.rng, self._now
        charge_id = self.ids.long("ch_", t)
        if customer is not None:
            cus = customer.obj
            card, pm, region = customer.card, customer.pm, customer.region
            address = _copy(cus["address"]) or _empty_address(region.country)
            billing = {"address": address, "email": cus["email"], "name": cus["name"]}
            billing["phone"] = cus["phone"]
        else:
            region = _REGIONS.get(currency) or _REGIONS["usd"]
            card, pm = self._card(region), self.ids.long("pm_", t)
            name = f"{rng.choice(_FIRST)} {rng.choice(_LAST)}"
            billing = {
                "address": _empty_address(region.country),
                "email": f"{name.lower().replace(' ', '.')}@example.net",
                "name": name,
                "phone": None,
            }
        application_fee = None
        if succeeded and rng.random() < _APPLICATION_FEE_SHARE:
            application_fee = _share(amount, _APPLICATION_FEE_RATE, currency)
        if succeeded:
            outcome = {
                "network_status": "approved_by_network",
                "reason": None,
                "risk_level": "normal",
                "risk_score": rng.randrange(0, 65),
                "seller_message": "Payment complete.",
                "type": "authorized",
            }
        else:
            reason = rng.choice(("generic_decline", "insufficient_funds", "expired_card"))
            outcome = {
                "network_status": "declined_by_network",
                "reason": reason,
                "risk_level": "normal",
                "risk_score": rng.randrange(0, 65),
                "seller_message": "The bank did not return any further details with this decline.",
                "type": "issuer_declined",
            }
        failure = _DECLINES.get(str(outcome["reason"]), (None, None))
        obj = {
            "id": charge_id,
            "object": "charge",
            "amount": amount,
            "amount_captured": amount if succeeded else 0,
            "amount_refunded": 0,
            "application": "ca_" + self.ids.account * 3 + "AB" if application_fee else None,
            "application_fee": self.ids.long("fee_", t) if application_fee else None,
            "application_fee_amount": application_fee,
            "balance_transaction": None,
            "billing_details": billing,
            "calculated_statement_descriptor": "LEDGERSTREAM DEMO",
            "captured": succeeded,
            "created": t,
            "currency": currency,
            "customer": customer.obj["id"] if customer is not None else None,
            "description": description,
            "disputed": False,
            "failure_balance_transaction": None,
            "failure_code": failure[0],
            "failure_message": failure[1],
            "fraud_details": {},
            "invoice": invoice,
            "livemode": False,
            "metadata": {},
            "on_behalf_of": None,
            "outcome": outcome,
            "paid": succeeded,
            "payment_intent": payment_intent,
            "payment_method": pm,
            "payment_method_details": {
                "card": {
                    "amount_authorized": amount if succeeded else None,
                    "brand": card["brand"],
                    "checks": {
                        "address_line1_check": None,
                        "address_postal_code_check": None,
                        "cvc_check": "pass",
                    },
                    "country": card["country"],
                    "exp_month": card["exp_month"],
                    "exp_year": card["exp_year"],
                    "extended_authorization": {"status": "disabled"},
                    "fingerprint": card["fingerprint"],
                    "funding": card["funding"],
                    "incremental_authorization": {"status": "unavailable"},
                    "installments": None,
                    "last4": card["last4"],
                    "mandate": None,
                    "multicapture": {"status": "unavailable"},
                    "network": card["brand"],
                    "network_token": {"used": False},
                    "overcapture": {"maximum_amount_capturable": amount, "status": "unavailable"},
                    "three_d_secure": None,
                    "wallet": None,
                },
                "type": "card",
            },
            "radar_options": {},
            "receipt_email": None if invoice else billing["email"],
            "receipt_number": None,
            "receipt_url": f"https://pay.stripe.com/receipts/payment/{self._account}/{charge_id}",
            "refunded": False,
            "review": None,
            "shipping": None,
            "source": None,
            "source_transfer": None,
            "statement_descriptor": None,
            "statement_descriptor_suffix": None,
            "status": "succeeded" if succeeded else "failed",
            "transfer_data": None,
            "transfer_group": None,
        }
        settlement, rate_float, rate = self._settlement(currency, t)
        charge = _Charge(self._keep(obj), settlement, rate, rate_float)
        if succeeded and not authorise_only:
            self._settle(charge, application_fee)
        elif authorise_only:
            # an authorisation to capture later (capture_method=manual): no money moved yet
            obj.update(captured=False, amount_captured=0)
        return charge

    def _settle(self, charge: _Charge, application_fee: int | None) -> None:
        """The money of a captured charge lands in the balance: its balance transaction."""
        rng, obj = self.rng, charge.obj
        amount, currency, description = obj["amount"], obj["currency"], obj["description"]
        settlement, rate = charge.settlement, charge.rate
        rate_float, charge_id = charge.rate_float, obj["id"]
        settled = amount if rate is None else _convert(amount, currency, settlement, rate)
        fees = [self._fee(_share(settled, _FEE_RATE, settlement), settlement, "stripe_fee")]
        fees[0]["amount"] += _from_usd(_FEE_FIXED_USD_CENTS, settlement)
        if rng.random() < _FEE_TAX_SHARE:
            tax = _share(fees[0]["amount"], _FEE_TAX_RATE, settlement)
            fees.append(self._fee(tax, settlement, "tax"))
        if application_fee:
            converted = (
                application_fee
                if rate is None
                else _convert(application_fee, currency, settlement, rate)
            )
            fees.append(self._fee(converted, settlement, "application_fee"))
        txn = self._balance_transaction(
            amount=settled,
            currency=settlement,
            rate=rate_float,
            fee_details=fees,
            source=charge_id,
            kind="charge",
            category="charge",
            description=description,
        )
        obj["balance_transaction"] = txn["id"]

    def _capture(self, charge: _Charge) -> None:
        """The merchant captures an authorisation (shipped the goods): ``charge.captured``."""
        obj = charge.obj
        obj.update(captured=True, amount_captured=obj["amount"])
        self._settle(charge, obj["application_fee_amount"])
        self._emit("charge.captured", self._now, obj)
        self._follow_up(charge)

    def _follow_up(self, charge: _Charge) -> None:
        rng, t = self.rng, self._now
        draw = rng.random()
        if draw < self.scenario.refund_rate:
            self._at(t + self._between(HOUR, 20 * DAY), partial(self._refund_later, charge, True))
        elif draw < self.scenario.refund_rate + self.scenario.dispute_rate:
            self._at(t + self._between(3 * DAY, 40 * DAY), partial(self._dispute, charge))

    def _refund_later(self, charge: _Charge, may_repeat: bool) -> None:
        rng, obj = self.rng, charge.obj
        left = obj["amount"] - obj["amount_refunded"]
        unit = _unit(obj["currency"])
        if left <= 0 or obj["disputed"]:
            return
        if left > unit and rng.random() < 0.5:  # partial refund
            amount = max(unit, _round_to(left * rng.randint(10, 70), 100, unit))
            amount = min(amount, left - unit)
        else:
            amount = left
        reason = rng.choice(("requested_by_customer", "duplicate", None))
        rate = self.scenario.refund_failure_rate
        fails = bool(rate) and self.refund_failure_rng.random() < rate
        self._refund(charge, amount, reason, fails_later=fails)
        if amount < left and may_repeat and rng.random() < 0.35:
            self._at(
                self._now + self._between(DAY, 10 * DAY),
                partial(self._refund_later, charge, False),
            )

    def _refund(
        self, charge: _Charge, amount: int, reason: str | None, fails_later: bool = False
    ) -> Obj:
        t, obj = self._now, charge.obj
        currency = obj["currency"]
        refund_id = self.ids.long("re_", t)
        previous: Obj = {"amount_refunded": obj["amount_refunded"]}
        obj["amount_refunded"] += amount
        if obj["amount_refunded"] == obj["amount"]:
            previous["refunded"] = False
            obj["refunded"] = True
        # Converting the cumulative refunded amount (at the charge's own rate) and taking the
        # difference makes the refunds of a fully refunded charge cancel it to the minor unit.
        if charge.rate is None:
            settled_total = obj["amount_refunded"]
        else:
            settled_total = _convert(
                obj["amount_refunded"], currency, charge.settlement, charge.rate
            )
        settled = settled_total - charge.refunded_settled
        charge.refunded_settled = settled_total
        txn = self._balance_transaction(
            amount=-settled,
            currency=charge.settlement,
            rate=charge.rate_float,
            fee_details=[],
            source=refund_id,
            kind="refund",
            category="refund",
            description=f"REFUND FOR CHARGE ({obj['description']})",
        )
        refund = self._keep(
            {
                "id": refund_id,
                "object": "refund",
                "amount": amount,
                "balance_transaction": txn["id"],
                "charge": obj["id"],
                "created": t,
                "currency": currency,
                "destination_details": {
                    "card": {
                        "reference": None,
                        "reference_status": "pending",
                        "reference_type": "acquirer_reference_number",
                        "type": "refund",
                    },
                    "type": "card",
                },
                "metadata": {},
                "payment_intent": obj["payment_intent"],
                "reason": reason,
                "receipt_number": None,
                "source_transfer_reversal": None,
                "status": "succeeded",
                "transfer_reversal": None,
            }
        )
        self._emit("charge.refunded", t, obj, previous)
        self._emit("refund.created", t, refund)
        if fails_later:
            later = t + self._between(DAY, 5 * DAY)
            self._at(later, partial(self._refund_fails, charge, refund, settled))
        return refund

    def _refund_fails(self, charge: _Charge, refund: Obj, settled: int) -> None:
        """The card cannot take the refund (closed, expired): Stripe marks it failed and puts
        its money back in the balance, a ``refund_failure`` balance transaction."""
        t = self._now
        txn = self._balance_transaction(
            amount=settled,
            currency=charge.settlement,
            rate=charge.rate_float,
            fee_details=[],
            source=refund["id"],
            kind="refund_failure",
            category="refund_failure",
            description=f"REFUND FAILURE FOR CHARGE ({charge.obj['description']})",
        )
        previous = {"status": refund["status"], "failure_balance_transaction": None}
        refund.update(
            status="failed",
            failure_balance_transaction=txn["id"],
            failure_reason="expired_or_canceled_card",
        )
        self._emit("charge.refund.updated", t, refund, previous)

    def _one_off_charge(self, guest: bool) -> None:
        rng, t = self.rng, self._now
        customer = None if guest else rng.choice(self._customers)
        # A bare charge does not fix the customer's currency (only invoices do).
        currency = (
            customer.currency if customer is not None else rng.choice(self.scenario.currencies)
        )
        amount = _from_usd(rng.randrange(2_000, 90_000), currency)
        description = rng.choice(_ONE_OFF_DESCRIPTIONS).format(n=rng.randrange(1000, 99_999))
        succeeded = rng.random() >= self.scenario.failure_rate
        rate = self.scenario.uncaptured_rate
        later = succeeded and bool(rate) and self.capture_rng.random() < rate
        charge = self._charge(
            customer,
            currency,
            amount,
            invoice=None,
            description=description,
            payment_intent=self.ids.long("pi_", t),
            succeeded=succeeded,
            authorise_only=later,
        )
        self._emit("charge.succeeded" if succeeded else "charge.failed", t, charge.obj)
        if later:
            self._at(t + self._between(HOUR, 3 * DAY), partial(self._capture, charge))
        elif succeeded:
            self._follow_up(charge)
