"""The catalogue: products with a price (and plan) per currency, tax rates, coupons."""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from ledgerstream.testing.generator.common import _REGIONS, Obj, _list_price, _money_text, _Region
from ledgerstream.testing.generator.engine import _Engine

if TYPE_CHECKING:
    from ledgerstream.testing.generator.scenario import Scenario

# (key, name, list price in whole USD, recurring, shippable)
_PRODUCTS = (
    ("starter", "Starter plan", 19, True, False),
    ("pro", "Pro plan", 49, True, False),
    ("business", "Business plan", 199, True, False),
    ("seat", "Additional seat", 12, True, False),
    ("onboarding", "Onboarding package", 500, False, False),
    ("hardware", "Hardware kit", 129, False, True),
    ("consulting", "Consulting hour", 150, False, False),
)
_PLANS = ("starter", "pro", "business")
_ONE_TIME = ("onboarding", "hardware", "consulting")


class _Catalogue(_Engine):
    """Creates the catalogue at the start; customers' coupons are made on first use."""

    def __init__(self, scenario: Scenario, collect: bool) -> None:
        super().__init__(scenario, collect)
        self._prices: dict[tuple[str, str], Obj] = {}
        self._plans: dict[tuple[str, str], Obj] = {}
        self._names: dict[str, str] = {key: name for key, name, *_ in _PRODUCTS}
        self._shippable = {key for key, *_, shippable in _PRODUCTS if shippable}
        self._tax_rates: dict[str, Obj] = {}
        self._coupons: dict[tuple[Any, ...], Obj] = {}

    def _catalog(self) -> None:
        t = self._now
        for offset, (key, name, usd, recurring, shippable) in enumerate(_PRODUCTS):
            product_id = self.ids.short("prod_")
            prices = []
            for currency in self.scenario.currencies:
                price = self._price(
                    t + 1 + offset, product_id, currency, _list_price(usd, currency)
                )
                if not recurring:
                    price["recurring"] = None
                    price["type"] = "one_time"
                prices.append(price)
                self._prices[key, currency] = price
                if recurring:
                    self._plans[key, currency] = self._plan(price)
            default = next((p for p in prices if p["currency"] == "usd"), prices[0])
            product = {
                "id": product_id,
                "object": "product",
                "active": True,
                "created": t + offset,
                "default_price": default["id"],
                "description": None,
                "images": [],
                "livemode": False,
                "marketing_features": [],
                "metadata": {},
                "name": name,
                "package_dimensions": None,
                "shippable": None if recurring else shippable,
                "statement_descriptor": None,
                "tax_code": None,
                "type": "service" if recurring else "good",
                "unit_label": "seat" if key == "seat" else None,
                "updated": t + offset,
                "url": None,
            }
            self._emit("product.created", t + offset, self._keep(product))
            for price in prices:
                self._emit("price.created", price["created"], self._keep(price))
        for currency in self.scenario.currencies:
            region = _REGIONS.get(currency)
            if region is not None and region.tax is not None:
                self._tax_rates[currency] = self._keep(self._tax_rate(t, region))

    def _price(self, t: int, product: str, currency: str, amount: int) -> Obj:
        return {
            "id": self.ids.long("price_", t),
            "object": "price",
            "active": True,
            "billing_scheme": "per_unit",
            "created": t,
            "currency": currency,
            "custom_unit_amount": None,
            "livemode": False,
            "lookup_key": None,
            "metadata": {},
            "nickname": None,
            "product": product,
            "recurring": {
                "aggregate_usage": None,
                "interval": "month",
                "interval_count": 1,
                "meter": None,
                "trial_period_days": None,
                "usage_type": "licensed",
            },
            "tax_behavior": "exclusive",
            "tiers_mode": None,
            "transform_quantity": None,
            "type": "recurring",
            "unit_amount": amount,
            "unit_amount_decimal": str(amount),
        }

    @staticmethod
    def _plan(price: Obj) -> Obj:
        return {
            "id": price["id"],
            "object": "plan",
            "active": True,
            "aggregate_usage": None,
            "amount": price["unit_amount"],
            "amount_decimal": price["unit_amount_decimal"],
            "billing_scheme": "per_unit",
            "created": price["created"],
            "currency": price["currency"],
            "interval": "month",
            "interval_count": 1,
            "livemode": False,
            "metadata": {},
            "meter": None,
            "nickname": None,
            "product": price["product"],
            "tiers_mode": None,
            "transform_usage": None,
            "trial_period_days": None,
            "usage_type": "licensed",
        }

    def _tax_rate(self, t: int, region: _Region) -> Obj:
        tax = region.tax
        assert tax is not None
        return {
            "id": self.ids.long("txr_", t),
            "object": "tax_rate",
            "active": True,
            "country": region.country,
            "created": t,
            "description": tax.description,
            "display_name": tax.display_name,
            "effective_percentage": float(tax.percentage),
            "inclusive": False,
            "jurisdiction": tax.jurisdiction,
            "jurisdiction_level": "state" if tax.state else "country",
            "livemode": False,
            "metadata": {},
            "percentage": float(tax.percentage),
            "state": tax.state,
            "tax_type": tax.tax_type,
        }

    def _coupon(self, key: tuple[Any, ...], t: int) -> Obj:
        coupon = self._coupons.get(key)
        if coupon is None:
            kind, value, currency, months = key
            percent = kind == "percent"
            coupon = {
                "id": self.ids.code(),
                "object": "coupon",
                "amount_off": None if percent else value,
                "created": t,
                "currency": None if percent else currency,
                "duration": "repeating" if months else "forever",
                "duration_in_months": months,
                "livemode": False,
                "max_redemptions": None,
                "metadata": {},
                "name": f"{value}% off" if percent else f"{_money_text(value, currency)} off",
                "percent_off": float(value) if percent else None,
                "redeem_by": None,
                "times_redeemed": 0,
                "valid": True,
            }
            self._coupons[key] = self._keep(coupon)
        coupon["times_redeemed"] += 1
        return coupon
