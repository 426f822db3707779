"""Disputes: opened on a charge, funds withdrawn, evidence submitted or not, won or lost."""

from __future__ import annotations

from functools import partial

from ledgerstream.testing.generator.common import DAY, Obj, _convert, _copy, _list_price, _midnight
from ledgerstream.testing.generator.engine import _Charge
from ledgerstream.testing.generator.payouts import _Payouts

# Stripe's dispute fee, in USD; converted to the settlement currency like the card fees.
_DISPUTE_FEE_USD = 15  # whole units, so the fee is a round amount in any currency


class _Disputes(_Payouts):
    """A dispute's life: ``charge.dispute.*`` events and its withdrawal and reinstatement."""

    def _dispute(self, charge: _Charge) -> None:
        rng, t, obj = self.rng, self._now, charge.obj
        amount = obj["amount"] - obj["amount_refunded"]
        if amount <= 0 or obj["disputed"]:
            return
        obj["disputed"] = True
        dispute_id = self.ids.long("dp_", t)
        due_by = _midnight(t) + self._between(7, 21) * DAY - 1
        reason = rng.choice(("fraudulent", "product_not_received", "subscription_canceled"))
        dispute = self._keep(
            {
                "id": dispute_id,
                "object": "dispute",
                "amount": amount,
                "balance_transactions": [],
                "charge": obj["id"],
                "created": t,
                "currency": obj["currency"],
                "evidence": dict.fromkeys(_EVIDENCE_FIELDS),
                "evidence_details": {
                    "due_by": due_by,
                    "has_evidence": False,
                    "past_due": False,
                    "submission_count": 0,
                },
                "is_charge_refundable": False,
                "livemode": False,
                "metadata": {},
                "payment_intent": obj["payment_intent"],
                "payment_method_details": {
                    "card": {
                        "brand": obj["payment_method_details"]["card"]["brand"],
                        "case_type": "chargeback",
                        "network_reason_code": {"fraudulent": "10.4"}.get(reason, "13.1"),
                    },
                    "type": "card",
                },
                "reason": reason,
                "status": "needs_response",
            }
        )
        self._emit("charge.dispute.created", t, dispute)
        # Disputed funds are taken at the day's exchange rate, not the charge's: the difference
        # is the currency gain or loss that the books must carry.
        withdrawal = self._dispute_transaction(charge, dispute, -1, t + 1)
        dispute["balance_transactions"].append(withdrawal)
        self._emit("charge.dispute.funds_withdrawn", t + 1, dispute)
        if rng.random() < 0.7:  # the merchant submits evidence
            review = t + self._between(2 * DAY, 6 * DAY)
            self._at(review, partial(self._dispute_evidence, charge, dispute))
        else:
            close = due_by + self._between(DAY, 3 * DAY)
            self._at(close, partial(self._dispute_close, charge, dispute, False))

    def _dispute_transaction(self, charge: _Charge, dispute: Obj, sign: int, t: int) -> Obj:
        currency, settlement = dispute["currency"], charge.settlement
        rate_float, rate = (None, None)
        if charge.rate is not None:
            rate_float, rate = self._exchange_rate(currency, settlement, t)
        amount = (
            dispute["amount"]
            if rate is None
            else _convert(dispute["amount"], currency, settlement, rate)
        )
        fee = _list_price(_DISPUTE_FEE_USD, settlement)
        detail = self._fee(-sign * fee, settlement, "stripe_fee")
        detail["description"] = "Dispute fee" if sign < 0 else "Dispute fee refund"
        verb = "withdrawal" if sign < 0 else "reversal"
        return self._balance_transaction(
            amount=sign * amount,
            currency=settlement,
            rate=rate_float,
            fee_details=[detail],
            source=dispute["id"],
            kind="adjustment",
            category="dispute" if sign < 0 else "dispute_reversal",
            description=f"Chargeback {verb} for {charge.obj['id']}",
            at=t,
        )

    def _dispute_evidence(self, charge: _Charge, dispute: Obj) -> None:
        t = self._now
        previous = {
            "evidence": _copy(dispute["evidence"]),
            "evidence_details": _copy(dispute["evidence_details"]),
            "status": dispute["status"],
        }
        customer_name = charge.obj["billing_details"]["name"]
        dispute["evidence"].update(
            {
                "customer_email_address": charge.obj["billing_details"]["email"],
                "customer_name": customer_name,
                "product_description": charge.obj["description"],
                "uncategorized_text": "Service was delivered as agreed; logs attached.",
            }
        )
        dispute["evidence_details"]["has_evidence"] = True
        dispute["evidence_details"]["submission_count"] = 1
        dispute["status"] = "under_review"
        self._emit("charge.dispute.updated", t, dispute, previous)
        won = self.rng.random() < 0.55
        close = t + self._between(20 * DAY, 60 * DAY)
        self._at(close, partial(self._dispute_close, charge, dispute, won))

    def _dispute_close(self, charge: _Charge, dispute: Obj, won: bool) -> None:
        t = self._now
        previous = {"status": dispute["status"]}
        dispute["status"] = "won" if won else "lost"
        if (
            dispute["evidence_details"]["due_by"] < t
            and not dispute["evidence_details"]["has_evidence"]
        ):
            dispute["evidence_details"]["past_due"] = True
        self._emit("charge.dispute.closed", t, dispute, previous)
        if won:
            reversal = self._dispute_transaction(charge, dispute, 1, t + 1)
            dispute["balance_transactions"].append(reversal)
            self._emit("charge.dispute.funds_reinstated", t + 1, dispute)


_EVIDENCE_FIELDS = (
    "access_activity_log",
    "billing_address",
    "cancellation_policy",
    "cancellation_policy_disclosure",
    "cancellation_rebuttal",
    "customer_communication",
    "customer_email_address",
    "customer_name",
    "customer_purchase_ip",
    "customer_signature",
    "duplicate_charge_documentation",
    "duplicate_charge_explanation",
    "duplicate_charge_id",
    "product_description",
    "receipt",
    "refund_policy",
    "refund_policy_disclosure",
    "refund_refusal_explanation",
    "service_date",
    "service_documentation",
    "shipping_address",
    "shipping_carrier",
    "shipping_date",
    "shipping_documentation",
    "shipping_tracking_number",
    "uncategorized_file",
    "uncategorized_text",
)
