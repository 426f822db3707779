"""Subscriptions: a plan (and sometimes extra seats), invoiced every month, with an upgrade's
proration now and then."""

from __future__ import annotations

from fractions import Fraction
from functools import partial

from ledgerstream.testing.generator.catalogue import _PLANS
from ledgerstream.testing.generator.common import (
    DAY,
    HOUR,
    Obj,
    _add_months,
    _date_text,
    _money_text,
    _round_to,
    _unit,
)
from ledgerstream.testing.generator.engine import _Bill, _Customer, _Item, _Subscription
from ledgerstream.testing.generator.invoices import _Invoices

# Internal rates that the scenario does not expose.
_PRORATION_RATE = 0.12  # cycle invoices carrying an upgrade's proration pair


class _Subscriptions(_Invoices):
    """Starts a customer's subscription and drafts its invoice for each period."""

    def _subscribe(self, customer: _Customer) -> None:
        t, rng, currency = self._now, self.rng, customer.currency
        self._fix_currency(customer)
        keys = [rng.choice(_PLANS)]
        quantities = [1]
        if rng.random() < 0.4:
            keys.append("seat")
            quantities.append(rng.randint(2, 20))
        # The catalog objects are never changed, so items share them; lines copy them.
        items = [
            _Item(
                self._prices[key, currency],
                self._plans[key, currency],
                self._names[key],
                self.ids.short("si_"),
                quantity,
            )
            for key, quantity in zip(keys, quantities, strict=True)
        ]
        customer.sub = _Subscription(self.ids.long("sub_", t), t, items)
        self._bill_period(customer, 0)

    def _bill_period(self, customer: _Customer, k: int) -> None:
        t, rng, sub = self._now, self.rng, customer.sub
        assert sub is not None
        currency, unit = customer.currency, _unit(customer.currency)
        start, end = _add_months(sub.anchor, k), _add_months(sub.anchor, k + 1)
        invoice_id = self.ids.long("in_", t)
        lines: list[Obj] = []
        if k > 0 and rng.random() < _PRORATION_RATE:
            # An upgrade during the last period: Stripe credits the unused time at the old
            # quantity and charges the remaining time at the new one, on this invoice.
            previous_start = _add_months(sub.anchor, k - 1)
            item = rng.choice(sub.items)
            old, new = item.quantity, item.quantity + rng.randint(1, 3)
            changed = self._between(previous_start + DAY, start - DAY)
            remaining = Fraction(start - changed, start - previous_start)
            price = item.price["unit_amount"]
            credit = -_round_to(price * old * remaining.numerator, remaining.denominator, unit)
            charge = _round_to(price * new * remaining.numerator, remaining.denominator, unit)
            when = _date_text(changed)
            for amount, quantity, text, credited in (
                (credit, old, "Unused time on", True),
                (charge, new, "Remaining time on", False),
            ):
                line = self._line(
                    invoice_id,
                    currency,
                    amount=amount,
                    quantity=quantity,
                    description=f"{text} {quantity} × {item.product_name} after {when}",
                    period=(changed, start),
                    price=item.price,
                    plan=item.plan,
                    kind="invoiceitem",
                    subscription=sub.id,
                    subscription_item=item.si,
                    proration=True,
                )
                if credited and sub.last_invoice and item.last_line:
                    line["proration_details"]["credited_items"] = {
                        "invoice": sub.last_invoice,
                        "invoice_line_items": [item.last_line],
                    }
                lines.append(line)
            item.quantity = new
        for item in sub.items:
            price = item.price["unit_amount"]
            line = self._line(
                invoice_id,
                currency,
                amount=price * item.quantity,
                quantity=item.quantity,
                description=(
                    f"{item.quantity} × {item.product_name} "
                    f"(at {_money_text(price, currency)} / month)"
                ),
                period=(start, end),
                price=item.price,
                plan=item.plan,
                kind="subscription",
                subscription=sub.id,
                subscription_item=item.si,
                proration=False,
            )
            item.last_line = line["id"]
            lines.append(line)
        first = k == 0
        invoice = self._draft(
            invoice_id,
            customer,
            lines,
            billing_reason="subscription_create" if first else "subscription_cycle",
            subscription=sub.id,
            period=(t, t) if first else (_add_months(sub.anchor, k - 1), t),
            collection="charge_automatically",
            shipping=0,
        )
        sub.last_invoice = invoice_id
        bill = _Bill(invoice, customer, lines=lines)
        self._emit("invoice.created", t, invoice)
        # A subscription's first invoice is finalized at once; renewals stay draft for an hour.
        self._at(t + (1 if first else HOUR), partial(self._finalize, bill))
        if k + 1 < self.scenario.months:
            self._at(end, partial(self._bill_period, customer, k + 1))
