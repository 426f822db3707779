"""Customers: who signs up, with what currency, address, card, coupon and tax rate, and the
occasional later edit."""

from __future__ import annotations

from functools import partial
from typing import Any

from ledgerstream.testing.generator.common import (
    _FIRST,
    _LAST,
    _REGIONS,
    DAY,
    Obj,
    _add_months,
    _copy,
    _from_usd,
    _Region,
)
from ledgerstream.testing.generator.engine import _Customer
from ledgerstream.testing.generator.subscriptions import _Subscriptions

_COMPANIES = (
    "Acme",
    "Globex",
    "Initech",
    "Umbrella",
    "Hooli",
    "Vandelay",
    "Wonka",
    "Tyrell",
    "Cyberdyne",
    "Aperture",
    "Soylent",
    "Massive Dynamic",
    "Stark",
    "Wayne",
    "Oscorp",
    "Monarch",
)
_SUFFIXES = ("Corporation", "Inc.", "LLC", "Ltd", "GmbH", "KK", "Labs", "Group")

# Internal rates that the scenario does not expose.
_DISCOUNT_RATE = 0.25  # customers with a coupon
_TAXED_RATE = 0.5  # customers charged tax (where the region has a tax rate)
_UPDATE_RATE = 0.2  # customers edited after creation


class _Customers(_Subscriptions):
    """Signs customers up (each then subscribes) and edits some of them later."""

    def _new_customer(self) -> None:
        rng, t = self.rng, self._now
        currency = rng.choice(self.scenario.currencies)
        region = _REGIONS.get(currency) or _Region(
            currency[:2].upper(), (("Capital City", "1000", None),), ("1 High Street",), "+1 ", None
        )
        customer_id = self.ids.short("cus_")
        metadata: dict[str, str] = {}
        company = rng.choice(_COMPANIES)
        person = f"{rng.choice(_FIRST)} {rng.choice(_LAST)}"
        style = rng.random()
        name: str | None
        phone: str | None = None
        address: Obj | None = None
        shipping: Obj | None = None
        if style < 0.4:  # a company: name and billing email
            name = f"{company} {rng.choice(_SUFFIXES)}"
            email = f"billing@{company.lower().replace(' ', '')}.example"
        elif style < 0.7:  # only an email address
            name = None
            email = f"{person.lower().replace(' ', '.')}@example.com"
        else:  # fully described, with phone and a shipping address
            name = person
            email = f"{person.lower().replace(' ', '.')}@{company.lower().replace(' ', '')}.example"
            phone = f"{region.phone}{rng.randrange(100, 1000)}"
            address = self._address(region)
            shipping = {"address": dict(address), "name": name, "phone": phone}
            rate = self.scenario.individual_rate
            if rate and self.individual_rng.random() < rate:
                metadata["netsuite_customer_type"] = "individual"
        if self.scenario.blocked_rate and self.blocked_rng.random() < self.scenario.blocked_rate:
            metadata["netsuite_block_integration"] = "true"
        pm = self.ids.long("pm_", t)
        discount = None
        if rng.random() < _DISCOUNT_RATE:
            if rng.random() < 0.6:
                months = rng.choice((None, 3))
                key: tuple[Any, ...] = ("percent", rng.choice((10, 15, 20, 25)), None, months)
            else:
                key = ("amount", _from_usd(rng.choice((500, 1000, 2000)), currency), currency, None)
            coupon = _copy(self._coupon(key, t))
            months = coupon["duration_in_months"]
            discount = {
                "id": self.ids.long("di_", t),
                "object": "discount",
                "checkout_session": None,
                "coupon": coupon,
                "customer": customer_id,
                "end": _add_months(t, months) if months else None,
                "invoice": None,
                "invoice_item": None,
                "promotion_code": None,
                "start": t,
                "subscription": None,
                "subscription_item": None,
            }
        tax_rate = self._tax_rates.get(currency) if rng.random() < _TAXED_RATE else None
        obj: Obj = {
            "id": customer_id,
            "object": "customer",
            "address": address,
            "balance": 0,
            "created": t,
            "currency": None,
            "default_source": None,
            "delinquent": False,
            "description": None,
            "discount": discount,
            "email": email,
            "invoice_prefix": self.ids.code(),
            "invoice_settings": {
                "custom_fields": None,
                "default_payment_method": pm,
                "footer": None,
                "rendering_options": None,
            },
            "livemode": False,
            "metadata": metadata,
            "name": name,
            "next_invoice_sequence": 1,
            "phone": phone,
            "preferred_locales": [],
            "shipping": shipping,
            "tax_exempt": "none",
            "test_clock": None,
        }
        customer = _Customer(
            self._keep(obj), currency, region, self._card(region), pm, discount, tax_rate
        )
        self._customers.append(customer)
        self._emit("customer.created", t, obj)
        self._at(t + rng.randrange(30, 900), partial(self._subscribe, customer))
        if rng.random() < _UPDATE_RATE:
            self._at(t + self._between(2 * DAY, 30 * DAY), partial(self._edit_customer, customer))

    def _address(self, region: _Region) -> Obj:
        city, postal_code, state = self.rng.choice(region.cities)
        return {
            "city": city,
            "country": region.country,
            "line1": self.rng.choice(region.streets),
            "line2": None,
            "postal_code": postal_code,
            "state": state,
        }

    def _edit_customer(self, customer: _Customer) -> None:
        obj, t = customer.obj, self._now
        change = self.rng.choice(("email", "phone", "address"))
        previous: Obj
        if change == "email":
            previous = {"email": obj["email"]}
            local = (obj["name"] or "accounts").lower().split()[0]
            obj["email"] = f"{local}.ap@example.org"
        elif change == "phone" and obj["phone"] is None:
            previous = {"phone": None}
            obj["phone"] = f"{customer.region.phone}{self.rng.randrange(100, 1000)}"
        else:
            previous = {"address": obj["address"], "shipping": obj["shipping"]}
            address = self._address(customer.region)
            obj["address"] = address
            obj["shipping"] = {
                "address": dict(address),
                "name": obj["name"] or obj["email"],
                "phone": obj["phone"],
            }
        self._emit("customer.updated", t, obj, previous)
