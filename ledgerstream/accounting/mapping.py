"""Stripe objects → NetSuite commands: pure functions, no Kafka, HTTP or clock.

Every function takes domain objects (``model``) and the ``AccountingSettings`` and returns the
commands to write, in dependency order; an empty list means "nothing to write" (a draft, a
blocked object, a trial invoice …). Input that cannot be mapped raises ``UnmappedError`` with a
reason for people (the callers dead-letter it). The same input always gives byte-identical
commands, so replays are harmless. See BEHAVIOR.md for the accounting decisions.
"""

from __future__ import annotations

from collections.abc import Iterable
from datetime import date, datetime, timedelta
from decimal import Decimal
from typing import Any

from ledgerstream.accounting import ids
from ledgerstream.accounting.balance import Allocation
from ledgerstream.accounting.model import (
    Charge,
    Controls,
    CreditNote,
    Customer,
    Invoice,
    InvoiceLine,
    Refund,
)
from ledgerstream.commands import Command, ref
from ledgerstream.money import to_decimal, to_netsuite
from ledgerstream.settings import AccountingSettings


class UnmappedError(ValueError):
    """The input cannot be mapped with this configuration (it goes to the dead-letter topic)."""


# --------------------------------------------------------------------------- shared pieces
def synced(metadata: Any, cfg: AccountingSettings, *parents: Any) -> bool:
    """Whether the control metadata lets an object through.

    ``parents``: the metadata of the objects it belongs to, nearest first (a charge's invoice,
    then its customer). The nearest object that says anything decides: blocking a customer
    blocks its invoices, charges, refunds, disputes and credit notes, and
    ``netsuite_allow_integration`` on one of them lets that one through again (in
    ``sync_mode=opt_in``, allowing a customer opts in what belongs to it)."""
    for md in (metadata, *parents):
        controls = Controls.of(md)
        if controls.allowed:
            return True
        if controls.blocked:
            return False
    return cfg.sync_mode == "all"


def _md(obj: Customer | Invoice | Charge | None) -> Any:
    """An object's metadata, for ``synced``'s parents (none when the object is unknown)."""
    return obj.metadata if obj is not None else None


def currency_ref(code: str, cfg: AccountingSettings) -> dict[str, str]:
    try:
        return {"id": cfg.netsuite_currency_ids[code.upper()]}
    except KeyError:
        raise UnmappedError(f"currency {code.upper()} has no NetSuite currency id") from None


def tran_date(when: datetime, cfg: AccountingSettings) -> tuple[str, str]:
    """The NetSuite date of a transaction and the memo note when it had to move."""
    day = when.date()
    if cfg.open_period_start:
        opens = date.fromisoformat(cfg.open_period_start)
        if day < opens:
            return opens.isoformat(), f"Original transaction date: {day.isoformat()}"
    return day.isoformat(), ""


def inclusive_end(start: datetime, end: datetime) -> date:
    """Stripe's period end is exclusive; NetSuite's revenue end date is inclusive."""
    if end <= start:
        return start.date()
    return (end - timedelta(microseconds=1)).date()


def _events(*event_ids: str | None) -> tuple[str, ...]:
    return tuple(e for e in event_ids if e)


def global_customer_command(cfg: AccountingSettings) -> list[Command]:
    """The customer that takes everything in global mode and guest charges in every mode."""
    if cfg.netsuite_global_customer_id:
        return []  # an existing NetSuite customer is referenced by its internal id
    body = {
        "companyName": "Stripe Unallocated Charges",
        "isPerson": False,
        "subsidiary": {"id": cfg.netsuite_subsidiary_id},
        "currencyList": {
            "items": [
                {"currency": {"id": cid}} for _, cid in sorted(cfg.netsuite_currency_ids.items())
            ]
        },
    }
    return [Command("customer", ids.GLOBAL_CUSTOMER, body, "customer", ids.GLOBAL_CUSTOMER, None)]


def customer_ref(
    customer_id: str | None, customer: Customer | None, cfg: AccountingSettings
) -> tuple[dict[str, Any], list[Command]]:
    """How a transaction names its customer, and the commands that customer needs first."""
    if customer_id is None or cfg.customer_mode == "global":
        if cfg.netsuite_global_customer_id:
            return {"id": cfg.netsuite_global_customer_id}, []
        return ref("customer", ids.GLOBAL_CUSTOMER), global_customer_command(cfg)
    linked = (customer.metadata if customer else {}).get("netsuite_customer_id")
    if linked and str(linked).isdigit():
        return {"id": str(linked)}, []
    return ref("customer", customer_id), []


# --------------------------------------------------------------------------- customers
def _address(addr: dict[str, Any] | None, **flags: bool) -> dict[str, Any] | None:
    if not addr:
        return None
    fields = {
        "addr1": addr.get("line1"),
        "addr2": addr.get("line2"),
        "city": addr.get("city"),
        "state": addr.get("state"),
        "zip": addr.get("postal_code"),
        "country": addr.get("country"),
    }
    fields = {k: v for k, v in fields.items() if v}
    if not fields:
        return None
    return {**flags, "addressBookAddress": fields}


def _entity_name(customer: Customer) -> dict[str, Any]:
    """A company's name as ``companyName``; an individual's split into first and last name
    (the last word is the last name). NetSuite needs both for an individual, so one whose name
    is a single word is written as a company of that name. Lengths are NetSuite's:
    companyName 83, firstName and lastName 32 characters."""
    name = customer.display_name.strip()
    first, _, last = name.rpartition(" ")
    if customer.is_person and first.strip() and last:
        return {"isPerson": True, "firstName": first.strip()[:32], "lastName": last[:32]}
    return {"companyName": name[:83], "isPerson": False}


def customer_commands(
    customer: Customer, cfg: AccountingSettings, currencies: Iterable[str] = ()
) -> list[Command]:
    """A NetSuite customer for a Stripe customer (per-customer and link modes).

    ``currencies``: every currency the customer transacts in (NetSuite needs each one listed).
    In link mode a customer that names its NetSuite record (``netsuite_customer_id``) needs no
    write; one that does not is matched on ``customer_match_field`` by the sink (``link``).
    """
    if cfg.customer_mode == "global" or not synced(customer.metadata, cfg):
        return []
    linked = customer.metadata.get("netsuite_customer_id")
    if cfg.customer_mode == "link" and linked and str(linked).isdigit():
        return []
    body: dict[str, Any] = {
        **_entity_name(customer),
        "subsidiary": {"id": cfg.netsuite_subsidiary_id},
    }
    if customer.email:
        body["email"] = customer.email[:254]
    if customer.phone:
        body["phone"] = customer.phone[:32]
    codes = sorted({c.upper() for c in [*currencies, customer.currency or ""] if c})
    if codes:
        body["currency"] = currency_ref(customer.currency or codes[0], cfg)
        body["currencyList"] = {"items": [{"currency": currency_ref(c, cfg)} for c in codes]}
    shipping = (customer.shipping or {}).get("address") if customer.shipping else None
    book = [
        a
        for a in (
            _address(customer.address, defaultBilling=True, defaultShipping=shipping is None),
            _address(shipping, defaultBilling=False, defaultShipping=True),
        )
        if a
    ]
    if book:
        body["addressBook"] = {"items": book}
    operation = "upsert"
    if cfg.customer_mode == "link" and not Controls.of(customer.metadata).allow_duplicate:
        match_value = customer.value_of(cfg.match_source())
        if match_value:
            operation = "link"
            body = {
                "match": {"field": cfg.customer_match_field, "value": match_value},
                "create": body,
            }
    return [
        Command(
            "customer",
            customer.id,
            body,
            "customer",
            customer.id,
            "netsuite_customer_id",
            _events(customer.event_id),
            operation=operation,
        )
    ]


# --------------------------------------------------------------------------- items
def item_commands(lines: Iterable[InvoiceLine], cfg: AccountingSettings) -> list[Command]:
    """Per-price service sale items (per-price item mode), each once, in price-id order."""
    if cfg.item_mode != "per_price":
        return []
    prices = {ln.price_id: ln for ln in lines if ln.price_id}
    out = []
    for price_id in sorted(prices):
        line = prices[price_id]
        body = {
            "itemId": price_id,
            "displayName": (line.product_name or line.description or price_id)[:60],
            "incomeAccount": {"id": cfg.netsuite_income_account_id},
            "subsidiary": {"items": [{"id": cfg.netsuite_subsidiary_id}]},
        }
        out.append(
            Command(
                "serviceSaleItem",
                price_id,
                body,
                "price",
                price_id,
                "netsuite_service_sale_item_id",
            )
        )
    return out


def discount_item_commands(coupons: Iterable[str], cfg: AccountingSettings) -> list[Command]:
    if cfg.item_mode != "per_price":
        return []
    out = []
    for coupon in sorted(set(coupons)):
        eid = ids.discount_item(coupon)
        body = {
            "itemId": eid[:60],
            "displayName": f"Stripe coupon {coupon}"[:60],
            "isPosting": False,
            "account": {"id": cfg.netsuite_income_account_id},
            "subsidiary": {"items": [{"id": cfg.netsuite_subsidiary_id}]},
        }
        out.append(
            Command("discountItem", eid, body, "coupon", coupon, "netsuite_discount_item_id")
        )
    return out


def _item(line: InvoiceLine, cfg: AccountingSettings) -> dict[str, Any]:
    if cfg.item_mode == "per_price" and line.price_id:
        return ref("serviceSaleItem", line.price_id)
    return {"id": cfg.netsuite_global_item_id}


def _discount_item(coupon: str | None, cfg: AccountingSettings) -> dict[str, Any]:
    if cfg.item_mode == "per_price" and coupon:
        return ref("discountItem", ids.discount_item(coupon))
    return {"id": cfg.netsuite_discount_item_id}


# --------------------------------------------------------------------------- invoices
def invoice_lines(invoice: Invoice, cfg: AccountingSettings) -> tuple[list[dict[str, Any]], int]:
    """NetSuite item lines of an invoice and their total in minor units.

    Each Stripe line → an item line net of inclusive tax, followed by its discounts (negative
    discount-item lines); then one tax line per tax rate (inclusive and exclusive), then
    shipping. The lines add up to the invoice total, or UnmappedError says why not.
    """
    cur = invoice.currency
    lines: list[dict[str, Any]] = []
    running = 0

    def add(line: dict[str, Any], minor: int) -> None:
        nonlocal running
        line["amount"] = to_netsuite(minor, cur)
        lines.append(line)
        running += minor

    line_discounts = 0
    taxes: dict[str, tuple[str, int]] = {}
    for ln in invoice.lines:
        inclusive = sum(t.amount for t in ln.taxes if t.inclusive)
        desc = (ln.description or ln.id)[:4000]
        if ln.proration and not desc.lower().startswith("proration"):
            desc = f"Proration: {desc}"[:4000]
        item: dict[str, Any] = {
            "item": _item(ln, cfg),
            "description": desc,
            "quantity": ln.quantity or 1,
        }
        if cfg.revenue_recognition:
            item["revRecStartDate"] = ln.period_start.date().isoformat()
            item["revRecEndDate"] = inclusive_end(ln.period_start, ln.period_end).isoformat()
        add(item, ln.amount - inclusive)
        for d in ln.discounts:
            line_discounts += d.amount
            add(
                {
                    "item": _discount_item(d.coupon, cfg),
                    "description": f"Discount {d.coupon or d.discount}"[:4000],
                },
                -d.amount,
            )
        for t in ln.taxes:
            key = t.tax_rate or t.display_name or "tax"
            label, amount = taxes.get(key, (t.display_name or "Tax", 0))
            taxes[key] = (label, amount + t.amount)
    # invoice-level discounts Stripe did not spread over the lines
    rest = sum(d.amount for d in invoice.total_discounts) - line_discounts
    if rest > 0:
        add(
            {"item": {"id": cfg.netsuite_discount_item_id}, "description": "Invoice discount"},
            -rest,
        )
    line_tax = sum(a for _, a in taxes.values())
    invoice_tax = sum(t.amount for t in invoice.total_taxes)
    if invoice_tax > line_tax:  # tax only given at invoice level
        for t in invoice.total_taxes:
            key = t.tax_rate or t.display_name or "tax"
            if key not in taxes:
                taxes[key] = (t.display_name or "Tax", t.amount)
    for key in sorted(taxes):
        label, amount = taxes[key]
        if amount:
            add(
                {
                    "item": {"id": cfg.netsuite_tax_item_id},
                    "description": f"{label} ({key})"[:4000],
                },
                amount,
            )
    if invoice.shipping_amount:
        add(
            {"item": {"id": cfg.netsuite_shipping_item_id}, "description": "Shipping"},
            invoice.shipping_amount,
        )
    if running != invoice.total:
        raise UnmappedError(
            f"invoice {invoice.id}: lines add up to {running}, Stripe's total is {invoice.total} "
            f"({cur.upper()} minor units)"
        )
    return lines, running


def _applied(applied: Iterable[tuple[str, int]], currency: str) -> dict[str, Any]:
    """An ``apply`` sublist: each invoice and the amount (minor units) applied to it."""
    return {
        "items": [
            {
                "doc": ref("invoice", invoice_id),
                "apply": True,
                "amount": to_netsuite(amount, currency),
            }
            for invoice_id, amount in applied
        ]
    }


def invoice_commands(
    invoice: Invoice,
    cfg: AccountingSettings,
    customer: Customer | None = None,
    close: bool = True,
    balance: Allocation | None = None,
) -> list[Command]:
    """An open, paid, void or uncollectible Stripe invoice → NetSuite invoice (+ its needs).

    Negative totals become a zero invoice plus a credit memo for the customer's balance, applied
    to the later invoices the balance paid (``balance``: how the customer's balance credits
    are applied, ``balance.allocate``); void and uncollectible invoices are then closed by
    ``closing_commands`` (unless ``close`` is false: the ledger holds the closing back while a
    credit note's void is on its way).
    """
    if invoice.status == "draft" or not synced(invoice.metadata, cfg, _md(customer)):
        return []
    if (
        not cfg.sync_zero_invoices
        and invoice.total == 0
        and all(ln.amount == 0 for ln in invoice.lines)
    ):
        return []
    who, needs = customer_ref(invoice.customer, customer, cfg)
    lines, total = invoice_lines(invoice, cfg)
    balance_credit = 0
    if total < 0:  # NetSuite refuses negative invoices
        balance_credit = -total
        lines.append(
            {
                "item": {"id": cfg.netsuite_global_item_id},
                "description": "Credited to the customer's balance",
                "amount": to_netsuite(balance_credit, invoice.currency),
            }
        )
    day, note = tran_date(invoice.finalized_at or invoice.created, cfg)
    notes = [note]
    if invoice.from_invoice:
        notes.append(f"Revision of {invoice.from_invoice}")
    body: dict[str, Any] = {
        "entity": who,
        "subsidiary": {"id": cfg.netsuite_subsidiary_id},
        "currency": currency_ref(invoice.currency, cfg),
        "tranDate": day,
        "memo": ids.memo(invoice.id, *notes),
        "otherRefNum": (invoice.number or invoice.id)[:45],
        "item": {"items": lines},
    }
    if invoice.due_date:
        body["dueDate"] = invoice.due_date.date().isoformat()
    coupons = [d.coupon for ln in invoice.lines for d in ln.discounts if d.coupon]
    out = [*needs, *item_commands(invoice.lines, cfg), *discount_item_commands(coupons, cfg)]
    out.append(
        Command(
            "invoice",
            invoice.id,
            body,
            "invoice",
            invoice.id,
            "netsuite_invoice_id",
            _events(invoice.event_id),
            order=_order(invoice.id),
        )
    )
    if balance_credit:
        memo_body = {
            "entity": who,
            "subsidiary": {"id": cfg.netsuite_subsidiary_id},
            "currency": currency_ref(invoice.currency, cfg),
            "tranDate": day,
            "memo": ids.memo(invoice.id, "Customer balance credit of a negative invoice"),
            "item": {
                "items": [
                    {
                        "item": {"id": cfg.netsuite_global_item_id},
                        "description": "Customer balance credit",
                        "amount": to_netsuite(balance_credit, invoice.currency),
                    }
                ]
            },
            "apply": _applied(
                balance.of(ids.balance_memo(invoice.id)) if balance else [], invoice.currency
            ),
        }
        out.append(
            Command(
                "creditMemo",
                ids.balance_memo(invoice.id),
                memo_body,
                "invoice",
                invoice.id,
                None,
                _events(invoice.event_id),
                order=_order(invoice.id),
            )
        )
    if close and invoice.status in ("void", "uncollectible"):
        closing = balance.of(ids.closing_memo(invoice.id)) if balance else []
        out += closing_commands(invoice, cfg, customer, closing)
    return out


def _one_line_memo(
    invoice: Invoice,
    cfg: AccountingSettings,
    who: dict[str, Any],
    day: str,
    label: str,
    note: str,
    amount: int,
    applied: Iterable[tuple[str, int]],
) -> dict[str, Any]:
    """A credit memo body created from ``invoice``: one line of ``amount`` on the global item
    described ``label``, applied as ``applied`` says."""
    cur = invoice.currency
    return {
        "entity": who,
        "subsidiary": {"id": cfg.netsuite_subsidiary_id},
        "currency": currency_ref(cur, cfg),
        "createdFrom": ref("invoice", invoice.id),
        "tranDate": day,
        "memo": ids.memo(invoice.id, label, note),
        "item": {
            "items": [
                {
                    "item": {"id": cfg.netsuite_global_item_id},
                    "description": label,
                    "amount": to_netsuite(amount, cur),
                }
            ]
        },
        "apply": _applied(applied, cur),
    }


def balance_payment_commands(
    invoice: Invoice,
    cfg: AccountingSettings,
    amount: int,
    customer: Customer | None = None,
    balance_applied: Iterable[tuple[str, int]] = (),
) -> list[Command]:
    """A credit on the customer's balance that no record booked here explains (adjusted by
    hand in Stripe, or credited before the pipeline's history), found missing when this
    invoice was paid from the balance → a credit memo ``cm_balpay_…`` of that amount, the
    amount in its memo, applied to the invoice (and any later one it pays: ``balance_applied``,
    from ``balance.allocate``)."""
    if amount <= 0 or not synced(invoice.metadata, cfg, _md(customer)):
        return []
    who, _ = customer_ref(invoice.customer, customer, cfg)
    cur = invoice.currency
    day, note = tran_date(invoice.finalized_at or invoice.created, cfg)
    label = f"Paid from the customer's Stripe balance: {to_decimal(amount, cur)} {cur.upper()}"
    body = _one_line_memo(invoice, cfg, who, day, label, note, amount, balance_applied)
    return [
        Command(
            "creditMemo",
            ids.balance_payment_memo(invoice.id),
            body,
            "invoice",
            invoice.id,
            None,
            _events(invoice.event_id),
            order=_order(invoice.id),
        )
    ]


def out_of_band_commands(
    invoice: Invoice, cfg: AccountingSettings, amount: int, customer: Customer | None = None
) -> list[Command]:
    """An invoice marked paid outside Stripe (``paid_out_of_band``), ``amount`` (minor units)
    of it not paid by a Stripe charge → closed as ``out_of_band_close`` says: a customer
    payment ``oob_…`` applied to it (into ``out_of_band_account_id``, else Undeposited Funds,
    where it waits to be deposited with the real bank receipt: no Stripe payout carries it),
    or a credit memo ``cm_oob_…`` applied to it."""
    if not (invoice.status == "paid" and invoice.paid_out_of_band) or amount <= 0:
        return []
    if not synced(invoice.metadata, cfg, _md(customer)):
        return []
    who, _ = customer_ref(invoice.customer, customer, cfg)
    day, note = tran_date(invoice.paid_at or invoice.finalized_at or invoice.created, cfg)
    cur = invoice.currency
    apply = _applied([(invoice.id, amount)], cur)
    label = "Paid outside Stripe (marked paid out of band)"
    if cfg.out_of_band_close == "credit_memo":
        body = _one_line_memo(invoice, cfg, who, day, label, note, amount, [(invoice.id, amount)])
        rtype, eid, key = "creditMemo", ids.out_of_band_memo(invoice.id), "netsuite_credit_memo_id"
    else:
        account = cfg.out_of_band_account_id or cfg.netsuite_undeposited_funds_account_id
        body = {
            "customer": who,
            "subsidiary": {"id": cfg.netsuite_subsidiary_id},
            "currency": currency_ref(cur, cfg),
            "payment": to_netsuite(amount, cur),
            "tranDate": day,
            "undepFunds": cfg.out_of_band_account_id is None,
            "account": {"id": account},
            "memo": ids.memo(invoice.id, label, note),
            "apply": apply,
        }
        rtype, eid = "customerPayment", ids.out_of_band_payment(invoice.id)
        key = "netsuite_customer_payment_id"
    return [
        Command(
            rtype,
            eid,
            body,
            "invoice",
            invoice.id,
            key,
            _events(invoice.event_id),
            order=_order(invoice.id),
        )
    ]


def closing_commands(
    invoice: Invoice,
    cfg: AccountingSettings,
    customer: Customer | None = None,
    balance_applied: Iterable[tuple[str, int]] = (),
) -> list[Command]:
    """Close a voided or uncollectible invoice with a credit memo applied to it.

    A voided invoice that the customer's balance had paid part of gives that part back to the
    balance: the memo is that much larger, the excess its open credit, applied to the later
    invoices the balance pays (``balance_applied``, from ``balance.allocate``)."""
    if invoice.status not in ("void", "uncollectible") or not synced(
        invoice.metadata, cfg, _md(customer)
    ):
        return []
    if invoice.status == "uncollectible" and cfg.keep_unpaid_invoices_open:
        return []
    # what is still owed: Stripe's amount due is the total less its pre-payment credit notes
    # (whose credit memos are applied to the invoice already) and the customer balance applied
    remaining = max(0, invoice.amount_due - invoice.amount_paid)
    credit = remaining + invoice.balance_returned
    if credit <= 0:
        return []
    who, _ = customer_ref(invoice.customer, customer, cfg)
    if credit == invoice.total:
        lines, _ = invoice_lines(invoice, cfg)  # reverse the revenue item by item
    else:
        lines = [
            {
                "item": {"id": cfg.netsuite_global_item_id},
                "description": f"Unpaid balance of {invoice.id}",
                "amount": to_netsuite(remaining, invoice.currency),
            }
        ]
        if invoice.balance_returned:
            lines.append(
                {
                    "item": {"id": cfg.netsuite_global_item_id},
                    "description": f"Customer balance returned by the void of {invoice.id}",
                    "amount": to_netsuite(invoice.balance_returned, invoice.currency),
                }
            )
        lines = [ln for ln in lines if ln["amount"]]
    when = invoice.voided_at or invoice.marked_uncollectible_at or invoice.created
    day, note = tran_date(when, cfg)
    body = {
        "entity": who,
        "subsidiary": {"id": cfg.netsuite_subsidiary_id},
        "currency": currency_ref(invoice.currency, cfg),
        "createdFrom": ref("invoice", invoice.id),
        "tranDate": day,
        "memo": ids.memo(invoice.id, f"Invoice {invoice.status}", note),
        "item": {"items": lines},
        "apply": _applied(
            [*([(invoice.id, remaining)] if remaining else []), *balance_applied],
            invoice.currency,
        ),
    }
    return [
        Command(
            "creditMemo",
            ids.closing_memo(invoice.id),
            body,
            "invoice",
            invoice.id,
            "netsuite_credit_memo_id",
            _events(invoice.event_id),
            order=_order(invoice.id),
        )
    ]


def _order(invoice_id: str | None) -> str | None:
    """The order key of the records of one invoice (see ``Command.order``)."""
    return f"invoice/{invoice_id}" if invoice_id else None


# --------------------------------------------------------------------------- payments
def payment_commands(
    charge: Charge,
    cfg: AccountingSettings,
    customer: Customer | None = None,
    invoice: Invoice | None = None,
    applied_elsewhere: int = 0,
) -> list[Command]:
    """A succeeded charge → customerPayment applied to its invoice (or unapplied).

    ``applied_elsewhere``: what other payments already applied to that invoice (minor units);
    a payment that would overpay it is skipped, or posted unapplied when allowed.
    """
    if not charge.succeeded or not synced(charge.metadata, cfg, _md(invoice), _md(customer)):
        return []
    amount = charge.paid
    who, needs = customer_ref(charge.customer, customer, cfg)
    day, note = tran_date(charge.created, cfg)
    body: dict[str, Any] = {
        "customer": who,
        "subsidiary": {"id": cfg.netsuite_subsidiary_id},
        "currency": currency_ref(charge.currency, cfg),
        "payment": to_netsuite(amount, charge.currency),
        "tranDate": day,
        "undepFunds": True,
        "account": {"id": cfg.netsuite_undeposited_funds_account_id},
        "paymentMethod": {"id": cfg.netsuite_payment_method_id},
    }
    rate = _exchange_rate(charge, cfg)
    if rate is not None:
        body["exchangeRate"] = rate
    notes = [note]
    if charge.invoice:
        overpaid = invoice is not None and applied_elsewhere + amount > invoice.total
        if not overpaid:
            body["apply"] = {
                "items": [
                    {
                        "doc": ref("invoice", charge.invoice),
                        "apply": True,
                        "amount": to_netsuite(amount, charge.currency),
                    }
                ]
            }
        elif Controls.of(charge.metadata).allow_duplicate or cfg.post_payment_to_paid_invoice:
            notes.append(f"Invoice {charge.invoice} was already paid")
        else:
            return []
    else:
        notes.append(f"Stripe description: {charge.description or ''}".rstrip())
    body["memo"] = ids.memo(charge.id, *notes)
    return [
        *needs,
        Command(
            "customerPayment",
            charge.id,
            body,
            "charge",
            charge.id,
            "netsuite_customer_payment_id",
            _events(charge.event_id),
            order=_order(charge.invoice),
        ),
    ]


def _exchange_rate(charge: Charge, cfg: AccountingSettings) -> Decimal | None:
    """Stripe's rate, when it converts into the subsidiary's base currency."""
    if (
        charge.exchange_rate is not None
        and charge.settlement_currency
        and charge.settlement_currency.upper() == cfg.netsuite_base_currency.upper()
        and charge.currency.upper() != charge.settlement_currency.upper()
    ):
        return charge.exchange_rate
    return None


# --------------------------------------------------------------------------- refunds, disputes
def paid_in_full(invoice: Invoice, charge: Charge | None) -> bool:
    """The invoice was paid, as its own state says or as the charge that paid all of it says.

    The charge is enough: a succeeded charge of the invoice for its whole total paid it in
    full, whether or not the invoice's paid state has arrived yet (a refund's agent may run
    before it). Judged on the invoice alone, a full refund was first written as a partial one
    and rewritten when ``amount_paid`` came."""
    if invoice.amount_paid > 0:
        return True
    return (
        charge is not None
        and charge.invoice == invoice.id
        and charge.succeeded
        and charge.amount == invoice.total
    )


def refund_commands(
    refund: Refund,
    cfg: AccountingSettings,
    charge: Charge | None = None,
    invoice: Invoice | None = None,
    customer: Customer | None = None,
    credit_note: str | None = None,
) -> list[Command]:
    """A succeeded refund (or a dispute whose funds were withdrawn) → NetSuite.

    Invoiced charge: a credit memo on the invoice (its lines mirrored for a full refund, one
    generic "partial refund" line otherwise) and a customer refund applied to that memo.
    Charge without invoice: a customer refund applied to the customer payment.
    Refund of a credit note (``credit_note`` = its id): only the customer refund, applied to the
    credit note's memo, which the credit-note flow writes.
    """
    if not refund.money_moved or not synced(
        refund.metadata, cfg, _md(charge), _md(invoice), _md(customer)
    ):
        return []
    customer_id = refund.customer or (charge.customer if charge else None)
    invoice_id = refund.invoice or (charge.invoice if charge else None)
    who, needs = customer_ref(customer_id, customer, cfg)
    cur = refund.currency
    day, note = tran_date(refund.created, cfg)
    label = "dispute" if refund.kind == "dispute" else "refund"
    out: list[Command] = list(needs)
    if credit_note:
        applied_to = ref("creditMemo", ids.credit_memo(credit_note))
    elif invoice_id:
        memo_id = ids.credit_memo(refund.id)
        full = (
            invoice is not None and refund.amount == invoice.total and paid_in_full(invoice, charge)
        )
        if full and invoice is not None:
            lines, _ = invoice_lines(invoice, cfg)
        else:
            lines = [
                {
                    "item": {"id": cfg.netsuite_partial_refund_item_id},
                    "description": f"Partial {label} of {invoice_id}",
                    "amount": to_netsuite(refund.amount, cur),
                }
            ]
        memo_body = {
            "entity": who,
            "subsidiary": {"id": cfg.netsuite_subsidiary_id},
            "currency": currency_ref(cur, cfg),
            "createdFrom": ref("invoice", invoice_id),
            "tranDate": day,
            "memo": ids.memo(refund.id, f"Stripe {label} of {refund.charge}", note),
            "item": {"items": lines},
        }
        out.append(
            Command(
                "creditMemo",
                memo_id,
                memo_body,
                refund.kind,
                refund.id,
                "netsuite_credit_memo_id",
                _events(refund.event_id),
                order=_order(invoice_id),
            )
        )
        applied_to = ref("creditMemo", memo_id)
    else:
        applied_to = ref("customerPayment", refund.charge)
    body = {
        "customer": who,
        "subsidiary": {"id": cfg.netsuite_subsidiary_id},
        "currency": currency_ref(cur, cfg),
        "tranDate": day,
        "account": {"id": cfg.netsuite_undeposited_funds_account_id},
        "paymentMethod": {"id": cfg.netsuite_payment_method_id},
        "memo": ids.memo(refund.id, f"Stripe {label} of {refund.charge}", note),
        "apply": {
            "items": [{"doc": applied_to, "apply": True, "amount": to_netsuite(refund.amount, cur)}]
        },
    }
    out.append(
        Command(
            "customerRefund",
            refund.id,
            body,
            refund.kind,
            refund.id,
            "netsuite_customer_refund_id",
            _events(refund.event_id),
            order=_order(invoice_id),
        )
    )
    if refund.status == "failed":
        out.append(_refund_failure(refund, cfg, who, invoice_id))
    return out


def _refund_failure(
    refund: Refund, cfg: AccountingSettings, who: dict[str, Any], invoice_id: str | None
) -> Command:
    """A refund that failed after it was paid out: its money came back to the Stripe balance
    (a ``refund_failure`` balance transaction, deposited with a later payout). The credit
    memo and customer refund stay (the refund's own payout deposited it); an unapplied
    customer payment ``rf_re_…`` takes the money back in, which leaves the customer's credit
    open again, as it is in Stripe (the customer is still owed the refund)."""
    cur = refund.currency
    day, note = tran_date(refund.failed_at or refund.created, cfg)
    reason = f" ({refund.failure_reason})" if refund.failure_reason else ""
    body = {
        "customer": who,
        "subsidiary": {"id": cfg.netsuite_subsidiary_id},
        "currency": currency_ref(cur, cfg),
        "payment": to_netsuite(refund.amount, cur),
        "tranDate": day,
        "undepFunds": True,
        "account": {"id": cfg.netsuite_undeposited_funds_account_id},
        "paymentMethod": {"id": cfg.netsuite_payment_method_id},
        "memo": ids.memo(
            refund.id,
            f"Refund of {refund.charge} failed{reason}: the money came back, the customer's "
            "credit is open again",
            note,
        ),
    }
    return Command(
        "customerPayment",
        ids.refund_failure(refund.id),
        body,
        refund.kind,
        refund.id,
        None,
        _events(refund.event_id),
        order=_order(invoice_id),
    )


# --------------------------------------------------------------------------- credit notes
def credit_note_commands(
    note: CreditNote,
    cfg: AccountingSettings,
    invoice: Invoice | None = None,
    customer: Customer | None = None,
    balance_applied: Iterable[tuple[str, int]] = (),
) -> list[Command]:
    """An issued credit note → a credit memo, applied to the invoice while it is still open.

    A post-payment credit note neither refunded nor settled outside Stripe credits the
    customer's balance: its memo is that open credit, applied to the later invoices the balance
    pays (``balance_applied``, from ``balance.allocate``).

    A post-payment credit note that was refunded gets its customer refund from the refund
    flow (the refund names this credit note), so no record is written twice.

    A voided credit note → the same credit memo voided as NetSuite voids one (without
    reversing journals): every line at zero, applied to nothing, the memo saying so. The
    invoice it was applied to is open again for that amount, as it is in Stripe.
    """
    if note.status not in ("issued", "void") or not synced(
        note.metadata, cfg, _md(invoice), _md(customer)
    ):
        return []
    if note.type == "post_payment" and note.refund:
        # refunded: Stripe made the refund with it, and the refund's own flow books it (its
        # credit memo cm_re_… closed by the customer refund); a memo of the note as well would
        # leave the customer credited twice
        return []
    voided = note.status == "void"
    who, needs = customer_ref(
        note.customer or (invoice.customer if invoice else None), customer, cfg
    )
    cur = note.currency
    lines = [
        {
            "item": {"id": cfg.netsuite_partial_refund_item_id},
            "description": (ln.description or f"Credit note line {ln.id}")[:4000],
            "amount": to_netsuite(0 if voided else ln.amount, cur),
        }
        for ln in note.lines
    ]
    if sum(ln.amount for ln in note.lines) != note.amount or not lines:
        lines = [
            {
                "item": {"id": cfg.netsuite_partial_refund_item_id},
                "description": f"Credit note {note.id}",
                "amount": to_netsuite(0 if voided else note.amount, cur),
            }
        ]
    day, memo_note = tran_date(note.created, cfg)
    void_note = (
        f"VOIDED in Stripe (was {to_decimal(note.amount, cur)} {cur.upper()})" if voided else ""
    )
    body: dict[str, Any] = {
        "entity": who,
        "subsidiary": {"id": cfg.netsuite_subsidiary_id},
        "currency": currency_ref(cur, cfg),
        "createdFrom": ref("invoice", note.invoice),
        "tranDate": day,
        "memo": ids.memo(note.id, void_note, f"Credit note on {note.invoice}", memo_note),
        "item": {"items": lines},
    }
    if voided:
        body["apply"] = {"items": []}  # replaces the sublist: applied to nothing any more
    elif note.type == "pre_payment":
        body["apply"] = _applied([(note.invoice, note.amount)], cur)
    elif note.to_balance:
        body["apply"] = _applied(balance_applied, cur)
    return [
        *needs,
        Command(
            "creditMemo",
            ids.credit_memo(note.id),
            body,
            "credit_note",
            note.id,
            "netsuite_credit_memo_id",
            _events(note.event_id),
            order=_order(note.invoice),
        ),
    ]
