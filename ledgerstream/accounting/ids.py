"""External ids and memo conventions: the one place they are decided.

NetSuite REST addresses a record by ``eid:<externalId>``, and an external id there may contain
only letters, digits, ``_`` and ``-``. Stripe's object ids (``cus_…``, ``in_…``, ``ch_…``) are
already of that alphabet, so a record that stands for one Stripe object uses its id unchanged.
Records derived from another object get a prefix ending in ``_`` (never ``:``, which the
existing connector uses and REST rejects):

======================  ===========================  =========================================
record                  externalId                   why
======================  ===========================  =========================================
customer                ``cus_…``                    the Stripe customer
customer (global mode)  ``stripe_unallocated``       one customer for everything / guests
invoice                 ``in_…``
customerPayment         ``ch_…``                     the charge that paid
creditMemo (refund)     ``cm_re_…``                  connector: ``ns_memo:re_…``
creditMemo (dispute)    ``cm_dp_…``
creditMemo (credit n.)  ``cm_cn_…``
creditMemo (closing)    ``cm_close_in_…``            void / uncollectible: one per invoice
creditMemo (balance)    ``cm_bal_in_…``              negative invoice → customer credit
creditMemo (balance)    ``cm_balpay_in_…``           paid from a balance credit not booked here
customerRefund          ``re_…`` / ``dp_…`` / ``cn_…``
deposit                 ``po_…``                     the payout
serviceSaleItem         ``price_…``                  per-price item mode
discountItem            ``disc_<coupon>``            coupon ids are merchant-chosen: sanitised
======================  ===========================  =========================================

Memos start ``Stripe: <id>``; extra notes follow: ``Original transaction date: YYYY-MM-DD``
when the date was moved into an open period, ``Stripe description: …`` for a payment without
an invoice.
"""

from __future__ import annotations

import hashlib
import re

# whole-string match (fullmatch): with ``^…$`` and ``match``, "$" also matched before a final
# newline, so a coupon id "x\n" passed as safe and put a newline into a REST path
SAFE = re.compile(r"[A-Za-z0-9_-]+")
MAX_LEN = 255  # NetSuite's externalId field length

GLOBAL_CUSTOMER = "stripe_unallocated"


def safe(value: str, prefix: str = "") -> str:
    """``prefix + value`` if REST-safe, else a readable, collision-free safe form."""
    candidate = prefix + value
    if SAFE.fullmatch(candidate) and len(candidate) <= MAX_LEN:
        return candidate
    digest = hashlib.sha256(value.encode()).hexdigest()[:12]
    cleaned = re.sub(r"[^A-Za-z0-9_-]+", "-", value).strip("-")[: MAX_LEN - len(prefix) - 14]
    return f"{prefix}{cleaned}_h{digest}" if cleaned else f"{prefix}h{digest}"


def credit_memo(source_id: str) -> str:
    return f"cm_{source_id}"


def closing_memo(invoice_id: str) -> str:
    return f"cm_close_{invoice_id}"


def out_of_band_payment(invoice_id: str) -> str:
    return f"oob_{invoice_id}"


def out_of_band_memo(invoice_id: str) -> str:
    return f"cm_oob_{invoice_id}"


def refund_failure(refund_id: str) -> str:
    """The customer payment that takes back the money of a refund that failed."""
    return f"rf_{refund_id}"


def balance_memo(invoice_id: str) -> str:
    return f"cm_bal_{invoice_id}"


def balance_payment_memo(invoice_id: str) -> str:
    """The part of an invoice paid from a customer balance whose credit was not booked here."""
    return f"cm_balpay_{invoice_id}"


def discount_item(coupon_id: str) -> str:
    return safe(coupon_id, "disc_")


def memo(stripe_id: str, *notes: str) -> str:
    return " ".join([f"Stripe: {stripe_id}", *[n for n in notes if n]])[:999]
