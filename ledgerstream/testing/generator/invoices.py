"""Invoices: drafting one (lines, discounts, tax, totals), one-off invoices, and the life cycle
of every invoice (finalized, attempted, paid, marked uncollectible or voided)."""

from __future__ import annotations

from decimal import Decimal
from fractions import Fraction
from functools import partial

from ledgerstream.testing.generator.catalogue import _ONE_TIME, _Catalogue
from ledgerstream.testing.generator.common import (
    DAY,
    EMBEDDED_LINES,
    HOUR,
    Obj,
    _add_months,
    _copy,
    _from_usd,
    _share,
    _unit,
    _unit_amount_text,
)
from ledgerstream.testing.generator.credit_notes import _CreditNotes
from ledgerstream.testing.generator.engine import _Bill, _Customer

# Internal rates that the scenario does not expose.
_ONE_OFF_CHARGE_RATE = 0.3  # per customer and month
_ONE_OFF_INVOICE_RATE = 0.08  # per customer and month
# What a long invoice's many pending invoice items are (one-time products, one each): repeated
# services and kits rather than the onboarding package, which a customer buys once.
_PENDING_ITEMS = ("consulting", "hardware")


class _Invoices(_CreditNotes, _Catalogue):
    """Drafts invoices and takes them through their life cycle."""

    _first_customer_at: int  # when the first customer signs up (set by the simulation)

    def _fix_currency(self, customer: _Customer) -> None:
        # Stripe fixes a customer's currency with its first invoice and says so.
        if customer.obj["currency"] is None:
            customer.obj["currency"] = customer.currency
            self._emit("customer.updated", self._now, customer.obj, {"currency": None})

    def _invoice_item(
        self, invoice_id: str, currency: str, price: Obj, key: str, t: int, quantity: int
    ) -> Obj:
        """The line of a one-off invoice item: ``quantity`` of ``price`` at time ``t``."""
        return self._line(
            invoice_id,
            currency,
            amount=price["unit_amount"] * quantity,
            quantity=quantity,
            description=self._names[key],
            period=(t, t),
            price=price,
            plan=None,
            kind="invoiceitem",
            subscription=None,
            subscription_item=None,
            proration=False,
        )

    def _line(
        self,
        invoice_id: str,
        currency: str,
        *,
        amount: int,
        quantity: int,
        description: str,
        period: tuple[int, int],
        price: Obj,
        plan: Obj | None,
        kind: str,
        subscription: str | None,
        subscription_item: str | None,
        proration: bool,
    ) -> Obj:
        t = self._now
        return {
            "id": self.ids.long("il_", t),
            "object": "line_item",
            "amount": amount,
            "amount_excluding_tax": amount,
            "currency": currency,
            "description": description,
            "discount_amounts": [],
            # Simplification: proration lines are not discounted (see _apply_discount).
            "discountable": not proration,
            "discounts": [],
            "invoice": invoice_id,
            "invoice_item": self.ids.long("ii_", t) if kind == "invoiceitem" else None,
            "livemode": False,
            "metadata": {},
            "period": {"end": period[1], "start": period[0]},
            "plan": _copy(plan) if plan is not None else None,
            "price": _copy(price),
            "proration": proration,
            "proration_details": {"credited_items": None},
            "quantity": quantity,
            "subscription": subscription,
            "subscription_item": subscription_item,
            "tax_amounts": [],
            "tax_rates": [],
            "type": kind,
            "unit_amount_excluding_tax": _unit_amount_text(amount, quantity),
        }

    def _pending_items(self, invoice_id: str, currency: str, own: int) -> list[Obj]:
        """What makes an invoice long (``Scenario.long_invoice_rate``): invoice items pending
        on the customer, which Stripe pulls into its next invoice, as many as make it, with its
        ``own`` lines, one of ``Scenario.long_invoice_lines`` lines long; none for most
        invoices. Drawn from ``long_rng`` only, and not at all at rate 0."""
        rate, rng = self.scenario.long_invoice_rate, self.long_rng
        if not (rate and rng.random() < rate):
            return []
        t, count = self._now, rng.choice(self.scenario.long_invoice_lines)
        items = []
        for _ in range(count - own):
            key = rng.choice(_PENDING_ITEMS)
            price = self._prices[key, currency]
            items.append(self._invoice_item(invoice_id, currency, price, key, t, 1))
        return items

    def _draft(
        self,
        invoice_id: str,
        customer: _Customer,
        lines: list[Obj],
        *,
        billing_reason: str,
        subscription: str | None,
        period: tuple[int, int],
        collection: str,
        shipping: int,
    ) -> Obj:
        """The draft invoice of ``lines``. A long one gets pending invoice items first: they go
        into ``lines`` itself, so the caller's list holds every line; the invoice embeds only
        the first ``EMBEDDED_LINES`` (the rest: ``invoice_lines``, GET .../lines)."""
        t, currency, cus = self._now, customer.currency, customer.obj
        lines[:0] = self._pending_items(invoice_id, currency, len(lines))
        discount = customer.discount
        if discount is not None and discount["end"] is not None and discount["end"] <= t:
            discount = None
        discount_total = self._apply_discount(lines, discount, currency) if discount else 0
        tax_total, taxable_total = self._apply_tax(lines, customer.tax_rate, currency)
        subtotal = sum(line["amount"] for line in lines)
        total = subtotal - discount_total + tax_total + shipping
        tax_rate = customer.tax_rate
        embedded, truncated = lines, len(lines) > EMBEDDED_LINES
        if truncated:
            embedded = _copy(lines[:EMBEDDED_LINES])
            if self.collect:
                self.invoice_lines[invoice_id] = lines
        shipping_cost = None
        if shipping:
            shipping_cost = {
                "amount_subtotal": shipping,
                "amount_tax": 0,
                "amount_total": shipping,
                "shipping_rate": self.ids.long("shr_", t),
                "taxes": [],
            }
        return self._keep(
            {
                "id": invoice_id,
                "object": "invoice",
                "account_country": "US",
                "account_name": "Ledgerstream Demo Inc.",
                "account_tax_ids": None,
                "amount_due": total,
                "amount_paid": 0,
                "amount_remaining": total,
                "amount_shipping": shipping,
                "application": None,
                "application_fee_amount": None,
                "attempt_count": 0,
                "attempted": False,
                "auto_advance": True,
                "automatic_tax": {"enabled": False, "liability": None, "status": None},
                "billing_reason": billing_reason,
                "charge": None,
                "collection_method": collection,
                "created": t,
                "currency": currency,
                "custom_fields": None,
                "customer": cus["id"],
                "customer_address": _copy(cus["address"]),
                "customer_email": cus["email"],
                "customer_name": cus["name"],
                "customer_phone": cus["phone"],
                "customer_shipping": _copy(cus["shipping"]),
                "customer_tax_exempt": cus["tax_exempt"],
                "customer_tax_ids": [],
                "default_payment_method": None,
                "default_source": None,
                "default_tax_rates": [],
                "description": None,
                "discount": _copy(discount) if discount else None,
                "discounts": [discount["id"]] if discount else [],
                "due_date": t + 30 * DAY if collection == "send_invoice" else None,
                "effective_at": None,
                "ending_balance": None,
                "footer": None,
                "from_invoice": None,
                "hosted_invoice_url": None,
                "invoice_pdf": None,
                "issuer": {"type": "self"},
                "last_finalization_error": None,
                "latest_revision": None,
                "lines": {
                    "object": "list",
                    "data": embedded,
                    "has_more": truncated,
                    "total_count": len(lines),
                    "url": f"/v1/invoices/{invoice_id}/lines",
                },
                "livemode": False,
                "metadata": {},
                "next_payment_attempt": t + HOUR if collection == "charge_automatically" else None,
                "number": None,
                "on_behalf_of": None,
                "paid": False,
                "paid_out_of_band": False,
                "payment_intent": None,
                "payment_settings": {
                    "default_mandate": None,
                    "payment_method_options": None,
                    "payment_method_types": None,
                },
                "period_end": period[1],
                "period_start": period[0],
                "post_payment_credit_notes_amount": 0,
                "pre_payment_credit_notes_amount": 0,
                "quote": None,
                "receipt_number": None,
                "rendering": {
                    "amount_tax_display": None,
                    "pdf": {"page_size": "auto"},
                    "template": None,
                    "template_version": None,
                },
                "shipping_cost": shipping_cost,
                "shipping_details": _copy(cus["shipping"]) if shipping else None,
                "starting_balance": 0,
                "statement_descriptor": None,
                "status": "draft",
                "status_transitions": {
                    "finalized_at": None,
                    "marked_uncollectible_at": None,
                    "paid_at": None,
                    "voided_at": None,
                },
                "subscription": subscription,
                "subscription_details": {"metadata": {}} if subscription else None,
                "subtotal": subtotal,
                "subtotal_excluding_tax": subtotal,
                "tax": tax_total if tax_rate else None,
                "test_clock": None,
                "threshold_reason": None,
                "total": total,
                "total_discount_amounts": (
                    [{"amount": discount_total, "discount": discount["id"]}] if discount else []
                ),
                "total_excluding_tax": total - tax_total,
                "total_tax_amounts": (
                    [
                        {
                            "amount": tax_total,
                            "inclusive": False,
                            "tax_rate": tax_rate["id"],
                            "taxability_reason": None,
                            "taxable_amount": taxable_total,
                        }
                    ]
                    if tax_rate
                    else []
                ),
                "transfer_data": None,
                "webhooks_delivered_at": t,
            }
        )

    @staticmethod
    def _apply_discount(lines: list[Obj], discount: Obj, currency: str) -> int:
        """Write each line's discount_amounts; return the invoice's discount total.

        Only positive, discountable lines take part: Stripe's treatment of discounts on proration
        credits is left out (proration lines are marked not discountable).
        """
        coupon, unit = discount["coupon"], _unit(currency)
        eligible = [line for line in lines if line["discountable"] and line["amount"] > 0]
        if not eligible:
            return 0
        shares: list[int]
        if coupon["percent_off"] is not None:
            rate = Fraction(Decimal(str(coupon["percent_off"]))) / 100
            shares = [_share(line["amount"], rate, currency) for line in eligible]
        elif coupon["currency"] == currency:
            base = sum(line["amount"] for line in eligible)
            units = min(coupon["amount_off"], base) // unit
            # Largest remainder in whole units, so the shares add up to the coupon exactly.
            exact = [Fraction(units * line["amount"], base) for line in eligible]
            shares = [int(x) for x in exact]
            order = sorted(range(len(exact)), key=lambda i: (-(exact[i] - shares[i]), i))
            for i in order[: units - sum(shares)]:
                shares[i] += 1
            shares = [s * unit for s in shares]
        else:
            return 0
        for line, amount in zip(eligible, shares, strict=True):
            line["discount_amounts"] = [{"amount": amount, "discount": discount["id"]}]
        return sum(shares)

    @staticmethod
    def _apply_tax(lines: list[Obj], tax_rate: Obj | None, currency: str) -> tuple[int, int]:
        if tax_rate is None:
            return 0, 0
        rate = Fraction(Decimal(str(tax_rate["percentage"]))) / 100
        tax_total = taxable_total = 0
        for line in lines:
            taxable = line["amount"] - sum(d["amount"] for d in line["discount_amounts"])
            tax = _share(taxable, rate, currency)
            line["tax_rates"] = [_copy(tax_rate)]
            line["tax_amounts"] = [
                {
                    "amount": tax,
                    "inclusive": False,
                    "tax_rate": tax_rate["id"],
                    "taxability_reason": None,
                    "taxable_amount": taxable,
                }
            ]
            tax_total += tax
            taxable_total += taxable
        return tax_total, taxable_total

    # -- one-off invoices --------------------------------------------------------------------------

    def _month(self, month: int) -> None:
        rng, scenario = self.rng, self.scenario
        begin = max(self._now, self._first_customer_at + 1)
        end = _add_months(scenario.start, month + 1)
        if begin >= end:
            return
        charges = sum(rng.random() < _ONE_OFF_CHARGE_RATE for _ in range(scenario.customers))
        invoices = sum(rng.random() < _ONE_OFF_INVOICE_RATE for _ in range(scenario.customers))
        for _ in range(charges):
            guest = rng.random() < scenario.guest_charge_rate
            self._at(self._between(begin, end), partial(self._one_off_charge, guest))
        for _ in range(invoices):
            self._at(self._between(begin, end), self._one_off_invoice)

    def _one_off_invoice(self) -> None:
        rng, t = self.rng, self._now
        customer = rng.choice(self._customers)
        self._fix_currency(customer)
        currency = customer.currency
        invoice_id = self.ids.long("in_", t)
        lines = []
        keys = rng.sample(_ONE_TIME, rng.randint(1, 2))
        for key in keys:
            price = self._prices[key, currency]
            quantity = rng.randint(1, 3)
            lines.append(self._invoice_item(invoice_id, currency, price, key, t, quantity))
        ships = customer.obj["shipping"] is not None and not self._shippable.isdisjoint(keys)
        shipping = _from_usd(rng.choice((900, 1500, 2500)), currency) if ships else 0
        collection = rng.choice(("charge_automatically", "send_invoice"))
        invoice = self._draft(
            invoice_id,
            customer,
            lines,
            billing_reason="manual",
            subscription=None,
            period=(t, t),
            collection=collection,
            shipping=shipping,
        )
        self._emit("invoice.created", t, invoice)
        self._at(
            t + self._between(60, 2 * HOUR),
            partial(self._finalize, _Bill(invoice, customer, lines=lines)),
        )

    # -- invoice life cycle --------------------------------------------------------------------

    def _finalize(self, bill: _Bill) -> None:
        rng, t, invoice = self.rng, self._now, bill.obj
        cus = bill.customer.obj
        invoice["number"] = f"{cus['invoice_prefix']}-{cus['next_invoice_sequence']:04d}"
        cus["next_invoice_sequence"] += 1
        invoice["status"] = "open"
        invoice["status_transitions"]["finalized_at"] = t
        invoice["effective_at"] = t
        # the customer's credit balance pays what it can of the invoice (Stripe applies it at
        # finalization); a balance of 0 leaves the invoice as it was
        balance = bill.customer.obj["balance"]
        invoice["starting_balance"] = balance
        if balance < 0 and invoice["amount_due"] > 0:
            used = min(-balance, invoice["amount_due"])
            invoice["amount_due"] -= used
            invoice["amount_remaining"] -= used
            self._change_balance(bill.customer.obj, used, t)
        invoice["ending_balance"] = bill.customer.obj["balance"]
        # Stripe creates no PaymentIntent for an invoice with nothing to pay.
        invoice["payment_intent"] = self.ids.long("pi_", t) if invoice["amount_due"] else None
        page = f"{self._account}/test_{invoice['id'][3:]}"
        invoice["hosted_invoice_url"] = f"https://invoice.stripe.com/i/{page}"
        invoice["invoice_pdf"] = f"https://pay.stripe.com/invoice/{page}/pdf"
        bill.wants_credit_note = rng.random() < self.scenario.credit_note_rate
        automatic = invoice["collection_method"] == "charge_automatically"
        attempt = t + rng.randint(1, 3)
        invoice["next_payment_attempt"] = attempt if automatic else None
        self._emit("invoice.finalized", t, invoice)
        if automatic:
            self._at(attempt, partial(self._attempt, bill))
            return
        if bill.wants_credit_note:
            self._at(t + self._between(HOUR, DAY), partial(self._credit_note, bill, "pre_payment"))
        if rng.random() < 0.15:  # the merchant voids an invoice the customer never paid
            self._at(t + self._between(5 * DAY, 25 * DAY), partial(self._void, bill))
        else:  # paid on the hosted invoice page, or (out_of_band_rate) by cheque or wire
            rate = self.scenario.out_of_band_rate
            outside = bool(rate) and self.band_rng.random() < rate
            pay = self._pay_out_of_band if outside else self._pay
            self._at(t + self._between(2 * DAY, 20 * DAY), partial(pay, bill))

    def _attempt(self, bill: _Bill) -> None:
        rng, t, invoice = self.rng, self._now, bill.obj
        if invoice["status"] != "open":
            return
        if invoice["amount_remaining"] == 0:
            self._pay(bill)
            return
        if invoice["attempt_count"] == 0 and rng.random() < self.scenario.failure_rate:
            bill.fate = rng.choices(("recover", "uncollectible", "void"), (45, 35, 20))[0]
            bill.failures_left = {"recover": rng.randint(1, 3), "uncollectible": 4, "void": 1}[
                bill.fate
            ]
        if bill.failures_left == 0:
            self._pay(bill)
            return
        bill.failures_left -= 1
        first_failure = invoice["attempt_count"] == 0
        retry = None
        if bill.failures_left > 0 or bill.fate == "recover":
            retry = t + self._between(3 * DAY, 5 * DAY)
            self._at(retry, partial(self._attempt, bill))
        elif bill.fate == "uncollectible":
            self._at(t + 60, partial(self._uncollectible, bill))
        else:
            self._at(t + self._between(2 * DAY, 4 * DAY), partial(self._void, bill))
        if first_failure and bill.wants_credit_note:
            self._at(t + self._between(HOUR, DAY), partial(self._credit_note, bill, "pre_payment"))
        rate = self.scenario.out_of_band_rate
        if first_failure and rate and self.band_rng.random() < rate:
            # the card failed; the customer wires the money and the merchant marks it paid
            self._at(t + self._between(DAY, 2 * DAY), partial(self._pay_out_of_band, bill))
        charge = self._charge(
            bill.customer,
            invoice["currency"],
            invoice["amount_remaining"],
            invoice=invoice["id"],
            description=self._charge_description(invoice),
            payment_intent=invoice["payment_intent"],
            succeeded=False,
        )
        self._emit("charge.failed", t, charge.obj)
        invoice["attempt_count"] += 1
        invoice["attempted"] = True
        invoice["charge"] = charge.obj["id"]
        invoice["next_payment_attempt"] = retry
        self._emit("invoice.payment_failed", t + 1, invoice)

    @staticmethod
    def _charge_description(invoice: Obj) -> str:
        return {
            "subscription_create": "Subscription creation",
            "subscription_cycle": "Subscription update",
        }.get(invoice["billing_reason"], "Payment for Invoice")

    def _pay(self, bill: _Bill) -> None:
        t, invoice = self._now, bill.obj
        if invoice["status"] != "open":
            return
        charge = None
        if invoice["amount_remaining"]:
            charge = self._charge(
                bill.customer,
                invoice["currency"],
                invoice["amount_remaining"],
                invoice=invoice["id"],
                description=self._charge_description(invoice),
                payment_intent=invoice["payment_intent"],
                succeeded=True,
            )
            bill.charge = charge
            self._emit("charge.succeeded", t, charge.obj)
            invoice["attempt_count"] += 1
            invoice["attempted"] = True
            invoice["charge"] = charge.obj["id"]
        invoice["amount_paid"] += invoice["amount_remaining"]
        invoice["amount_remaining"] = 0
        invoice["next_payment_attempt"] = None
        invoice["paid"] = True
        invoice["status"] = "paid"
        invoice["status_transitions"]["paid_at"] = t + 1
        self._emit("invoice.paid", t + 1, invoice)
        self._emit("invoice.payment_succeeded", t + 1, invoice)
        if charge is None:
            return
        self._follow_up(charge)
        rate = self.scenario.second_charge_rate
        if rate and self.second_charge_rng.random() < rate:
            self._at(t + self._between(HOUR, 2 * DAY), partial(self._pay_again, bill))
        if bill.wants_credit_note and bill.credit_notes == 0:
            self._at(
                t + self._between(DAY, 25 * DAY), partial(self._credit_note, bill, "post_payment")
            )

    def _pay_again(self, bill: _Bill) -> None:
        """The customer pays the paid invoice a second time (a second succeeded charge on it,
        which Stripe keeps and pays out; the invoice still names the first)."""
        invoice = bill.obj
        charge = self._charge(
            bill.customer,
            invoice["currency"],
            invoice["amount_paid"],
            invoice=invoice["id"],
            description=self._charge_description(invoice),
            payment_intent=invoice["payment_intent"],
            succeeded=True,
        )
        self._emit("charge.succeeded", self._now, charge.obj)

    def _pay_out_of_band(self, bill: _Bill) -> None:
        """The merchant marks the invoice paid outside Stripe: no charge, no balance
        transaction; ``paid_out_of_band`` set, the amount remaining taken as paid."""
        t, invoice = self._now, bill.obj
        if invoice["status"] != "open":
            return
        invoice["paid_out_of_band"] = True
        invoice["amount_paid"] += invoice["amount_remaining"]
        invoice["amount_remaining"] = 0
        invoice["next_payment_attempt"] = None
        invoice["paid"] = True
        invoice["status"] = "paid"
        invoice["status_transitions"]["paid_at"] = t
        self._emit("invoice.paid", t, invoice)

    def _uncollectible(self, bill: _Bill) -> None:
        invoice, t = bill.obj, self._now
        if invoice["status"] != "open":
            return
        invoice["status"] = "uncollectible"
        invoice["status_transitions"]["marked_uncollectible_at"] = t
        invoice["next_payment_attempt"] = None
        self._emit("invoice.marked_uncollectible", t, invoice)

    def _void(self, bill: _Bill) -> None:
        invoice, t = bill.obj, self._now
        if invoice["status"] != "open":
            return
        invoice["status"] = "void"
        invoice["status_transitions"]["voided_at"] = t
        invoice["next_payment_attempt"] = None
        self._emit("invoice.voided", t, invoice)
        used = (invoice["ending_balance"] or 0) - (invoice["starting_balance"] or 0)
        if used > 0:  # the balance it had paid goes back to the customer
            self._change_balance(bill.customer.obj, -used, t)
