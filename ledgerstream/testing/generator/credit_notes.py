"""Credit notes: before payment they lower what an open invoice asks for (and may be voided);
after payment they refund part of the charge."""

from __future__ import annotations

from decimal import Decimal
from fractions import Fraction
from functools import partial

from ledgerstream.testing.generator.common import HOUR, Obj, _copy, _share, _unit_amount_text
from ledgerstream.testing.generator.engine import _Bill
from ledgerstream.testing.generator.payments import _Payments


def _pre_payment_credit(invoice: Obj, amount: int) -> Obj:
    """Credit ``amount`` on an open invoice (negative: take it back, as a void does); the
    previous values, for the ``invoice.updated`` event."""
    previous = {
        key: invoice[key]
        for key in ("amount_due", "amount_remaining", "pre_payment_credit_notes_amount")
    }
    invoice["amount_due"] -= amount
    invoice["amount_remaining"] -= amount
    invoice["pre_payment_credit_notes_amount"] += amount
    return previous


class _CreditNotes(_Payments):
    """Issues credit notes on invoices, and voids pre-payment ones."""

    def _credit_note(self, bill: _Bill, kind: str) -> None:
        rng, t, invoice = self.rng, self._now, bill.obj
        currency = invoice["currency"]
        candidates = [line for line in bill.lines if not line["proration"]]
        if not candidates:
            return
        line = rng.choice(candidates)
        quantity = rng.randint(1, line["quantity"])
        share = Fraction(quantity, line["quantity"])
        subtotal = line["amount"] * quantity // line["quantity"]
        line_discount = sum(d["amount"] for d in line["discount_amounts"])
        discount = _share(line_discount, share, currency)
        tax = 0
        tax_amounts = []
        if line["tax_rates"]:
            rate = Fraction(Decimal(str(line["tax_rates"][0]["percentage"]))) / 100
            tax = _share(subtotal - discount, rate, currency)
            tax_amounts = [
                {
                    "amount": tax,
                    "inclusive": False,
                    "tax_rate": line["tax_rates"][0]["id"],
                    "taxability_reason": None,
                    "taxable_amount": subtotal - discount,
                }
            ]
        total = subtotal - discount + tax
        charge = bill.charge
        if kind == "pre_payment":
            # A pre-payment credit note must leave something to pay on the open invoice.
            if invoice["status"] != "open" or total >= invoice["amount_remaining"]:
                return
        else:
            if invoice["status"] != "paid" or charge is None or charge.obj["disputed"]:
                return
            if total > charge.obj["amount"] - charge.obj["amount_refunded"] or total <= 0:
                return
        refund_id = None
        to_balance = None
        if kind == "post_payment":
            assert charge is not None
            credit_rate = self.scenario.balance_credit_rate
            if credit_rate and self.balance_rng.random() < credit_rate:
                # credited to the customer's balance, for the next invoices to take off
                to_balance = self.ids.long("cbtxn_", t)
                self._change_balance(bill.customer.obj, -total, t + 1)
            else:
                refund_id = self._refund(charge, total, None)["id"]
        bill.credit_notes += 1
        credit_note_id = self.ids.long("cn_", t)
        discount_amounts = (
            [{"amount": discount, "discount": line["discount_amounts"][0]["discount"]}]
            if line["discount_amounts"]
            else []
        )
        item = {
            "id": self.ids.long("cnli_", t),
            "object": "credit_note_line_item",
            "amount": subtotal,
            "amount_excluding_tax": subtotal,
            "description": line["description"],
            "discount_amount": discount,
            "discount_amounts": _copy(discount_amounts),
            "invoice_line_item": line["id"],
            "livemode": False,
            "quantity": quantity,
            "tax_amounts": _copy(tax_amounts),
            "tax_rates": _copy(line["tax_rates"]),
            "type": "invoice_line_item",
            "unit_amount": None,
            "unit_amount_decimal": None,
            "unit_amount_excluding_tax": _unit_amount_text(subtotal, quantity),
        }
        credit_note = self._keep(
            {
                "id": credit_note_id,
                "object": "credit_note",
                "amount": total,
                "amount_shipping": 0,
                "created": t + 1,
                "currency": currency,
                "customer": invoice["customer"],
                "customer_balance_transaction": to_balance,
                "discount_amount": discount,
                "discount_amounts": discount_amounts,
                "effective_at": t + 1,
                "invoice": invoice["id"],
                "lines": {
                    "object": "list",
                    "data": [item],
                    "has_more": False,
                    "total_count": 1,
                    "url": f"/v1/credit_notes/{credit_note_id}/lines",
                },
                "livemode": False,
                "memo": None,
                "metadata": {},
                "number": f"{invoice['number']}-CN-{bill.credit_notes:02d}",
                "out_of_band_amount": None,
                "pdf": f"https://pay.stripe.com/credit_notes/{self._account}/"
                f"test_{credit_note_id[3:]}/pdf",
                "reason": rng.choice(("product_unsatisfactory", "order_change", "duplicate")),
                "refund": refund_id,
                "shipping_cost": None,
                "status": "issued",
                "subtotal": subtotal,
                "subtotal_excluding_tax": subtotal,
                "tax_amounts": tax_amounts,
                "total": total,
                "total_excluding_tax": total - tax,
                "type": kind,
                "voided_at": None,
            }
        )
        self._emit("credit_note.created", t + 1, credit_note)
        if kind == "pre_payment":
            previous = _pre_payment_credit(invoice, total)
        else:
            previous = {
                "post_payment_credit_notes_amount": invoice["post_payment_credit_notes_amount"]
            }
            invoice["post_payment_credit_notes_amount"] += total
        self._emit("invoice.updated", t + 1, invoice, previous)
        void_rate = self.scenario.credit_note_void_rate
        if kind == "pre_payment" and void_rate and rng.random() < void_rate:
            self._at(
                t + self._between(10 * 60, HOUR), partial(self._void_credit_note, bill, credit_note)
            )

    def _change_balance(self, customer: Obj, amount: int, t: int) -> None:
        """The customer's balance moves by ``amount`` (negative: a credit): customer.updated."""
        previous = {"balance": customer["balance"]}
        customer["balance"] += amount
        self._emit("customer.updated", t, customer, previous)

    def _void_credit_note(self, bill: _Bill, credit_note: Obj) -> None:
        """Void a pre-payment credit note: the invoice owes its amount again."""
        t, invoice = self._now, bill.obj
        if invoice["status"] != "open" or credit_note["status"] != "issued":
            return
        total = credit_note["total"]
        credit_note["status"] = "void"
        credit_note["voided_at"] = t
        self._emit("credit_note.voided", t, credit_note, {"status": "issued", "voided_at": None})
        previous = _pre_payment_credit(invoice, -total)
        self._emit("invoice.updated", t + 1, invoice, previous)
