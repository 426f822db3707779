"""A seeded generator of one merchant's Stripe history, in the API's own JSON shapes.

Objects look exactly like Stripe API version ``2024-06-20`` returns them (the last version where
``charge.invoice``, ``invoice.charge``, ``invoice.tax`` and line ``price``/``plan`` exist), and each
state change comes as the Event Stripe would deliver for it. The history is internally
consistent, so the pipeline can be tested on realistic data flows that stripe-mock (stateless)
cannot give:

- invoice arithmetic: ``subtotal`` = Σ line ``amount``; ``total`` = subtotal − discounts + tax +
  shipping; ``amount_due`` = total − pre-payment credit notes;
- every amount is an integer in minor units that :func:`ledgerstream.money.check_amount` accepts,
  in the presentment currency and (with the payout step) in the settlement currency;
- every balance transaction has ``net == amount - fee`` and ``fee == Σ fee_details.amount``;
- every payout's ``amount`` equals the sum of ``net`` of the transactions it pays out, which are
  listed in :attr:`History.payout_transactions` as ``GET /v1/balance_transactions?payout=`` would;
- the events of one object come in causal order, each carrying a copy of the object's state at
  that moment.

Guarantee: pure and deterministic. No I/O, no clock, no global random state: the same
:class:`Scenario` gives byte-identical events. :func:`iter_events` streams a history of any length
in ``(created, id)`` order while holding only what is still open (open invoices, charges that will
still be refunded or disputed, balance transactions not yet paid out): its memory grows with the
number of customers, not with the number of months or events.

The story: customers sign up during the first 20 days and subscribe minutes later; each then gets
one subscription invoice per month, and customers also get one-off invoices and bare charges
(plus charges from guests). The simulation then runs until everything has settled: retries,
refunds, disputes and credit notes run their course, and daily payouts continue until no
balance transaction that could still be paid out is left.

Deliberate simplifications (each one keeps the data valid for the API version):

- only the objects the pipeline reads are generated; subscriptions, payment intents, payment
  methods, invoice items, shipping rates and application fees are referenced by id only;
- ``charge.refunds`` is absent, as it is since API version 2022-11-15 unless expanded; refunds
  come as ``refund.created`` events and in :attr:`History.objects`;
- proration lines (upgrades only, so no invoice is negative) are not discounted;
- each customer's currency is fixed by its first invoice, announced by a ``customer.updated``
  whose ``previous_attributes`` is ``{"currency": null}`` as Stripe does; other edits are rare;
- fixed fees and the dispute fee are US amounts converted by a reference rate (30 US cents;
  USD 15 rounded to whole units), so they have a sensible size in JPY or KWD;
- a dispute's withdrawal and reinstatement are converted at the rate of their own day, not the
  charge's, so converted disputes carry a currency difference, as they do at Stripe.
"""

from __future__ import annotations

import calendar
import heapq
import marshal
import math
import random
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from datetime import UTC, datetime
from decimal import Decimal
from fractions import Fraction
from functools import partial
from typing import Any

from ledgerstream.money import exponent, round_half_even, step, to_decimal

API_VERSION = "2024-06-20"
DAY = 86_400
HOUR = 3_600

Obj = dict[str, Any]


@dataclass(frozen=True)
class Scenario:
    """What to simulate. Rates are probabilities per invoice/charge (see the module docs)."""

    seed: int = 1
    customers: int = 5
    months: int = 3
    start: int = 1_735_689_600  # unix seconds, 2025-01-01T00:00:00Z
    currencies: tuple[str, ...] = ("usd", "eur", "gbp", "jpy", "kwd")  # presentment currencies
    settlement_currencies: tuple[str, ...] = ("usd",)  # the first is the default one
    guest_charge_rate: float = 0.05  # share of one-off charges with no customer
    refund_rate: float = 0.08
    dispute_rate: float = 0.03
    failure_rate: float = 0.06
    credit_note_rate: float = 0.04
    # share of pre-payment credit notes the merchant voids while the invoice is still open
    # (0: no random draw for it, so histories without voids stay as they were)
    credit_note_void_rate: float = 0.0

    def __post_init__(self) -> None:
        if self.customers < 1 or self.months < 1:
            raise ValueError("a scenario needs at least one customer and one month")
        if not self.currencies or not self.settlement_currencies:
            raise ValueError("currencies and settlement_currencies must not be empty")
        for currency in (*self.currencies, *self.settlement_currencies):
            if currency != currency.lower():
                raise ValueError(f"Stripe currency codes are lower case, got {currency!r}")
            if currency not in _USD_VALUE:
                raise ValueError(f"no reference exchange rate for {currency!r}")
        rates = (
            self.guest_charge_rate,
            self.refund_rate,
            self.dispute_rate,
            self.failure_rate,
            self.credit_note_rate,
            self.credit_note_void_rate,
        )
        if not all(0.0 <= rate <= 1.0 for rate in rates):
            raise ValueError("rates must lie between 0 and 1")
        if self.refund_rate + self.dispute_rate > 1.0:
            raise ValueError("refund_rate + dispute_rate must not exceed 1")


@dataclass
class History:
    """A whole generated history, as the Events API and the retrieve/list endpoints give it."""

    events: list[Obj]  # every Event, sorted by (created, id)
    objects: dict[str, Obj]  # id -> latest state, as GET /v1/<type>/<id> returns it
    balance_transactions: dict[str, Obj]  # txn id -> balance transaction
    payout_transactions: dict[str, list[str]]  # po id -> txn ids, newest first, its own included


def generate(scenario: Scenario) -> History:
    """Simulate ``scenario`` and keep everything: events, latest objects, payout contents."""
    sim = _Simulation(scenario, collect=True)
    events = list(sim.run())
    # GET returns a transaction's status as of now; "now" is the end of the history.
    now = events[-1]["created"] if events else scenario.start
    for txn in sim.balance_transactions.values():
        if txn["available_on"] <= now:
            txn["status"] = "available"
    for obj in sim.objects.values():
        if obj["object"] == "dispute":  # its own copies, not the dicts of balance_transactions
            obj["balance_transactions"] = _copy(obj["balance_transactions"])
    return History(events, sim.objects, sim.balance_transactions, sim.payout_transactions)


def iter_events(scenario: Scenario) -> Iterator[Obj]:
    """The events of ``generate(scenario)``, streamed in (created, id) order in bounded memory."""
    return _Simulation(scenario, collect=False).run()


# --- reference data ---------------------------------------------------------------------------

# What one major unit is worth in USD. It sizes prices, fixed fees and the dispute fee in every
# currency (so a JPY or KWD amount has a realistic magnitude) and anchors the exchange rates.
_USD_VALUE: dict[str, Decimal] = {
    code: Decimal(value)
    for code, value in {
        "usd": "1",
        "eur": "1.08",
        "gbp": "1.27",
        "jpy": "0.0067",
        "kwd": "3.25",
        "bhd": "2.65",
        "jod": "1.41",
        "omr": "2.6",
        "tnd": "0.32",
        "cad": "0.74",
        "aud": "0.66",
        "nzd": "0.6",
        "chf": "1.12",
        "sek": "0.095",
        "nok": "0.093",
        "dkk": "0.145",
        "pln": "0.25",
        "czk": "0.043",
        "huf": "0.0028",
        "isk": "0.0072",
        "twd": "0.031",
        "krw": "0.00075",
        "clp": "0.00105",
        "mxn": "0.058",
        "brl": "0.2",
        "inr": "0.012",
        "sgd": "0.74",
        "hkd": "0.128",
    }.items()
}

_SYMBOL = {"usd": "$", "eur": "€", "gbp": "£", "jpy": "¥"}
_MONTHS = "Jan Feb Mar Apr May Jun Jul Aug Sep Oct Nov Dec".split()


@dataclass(frozen=True)
class _TaxRate:
    display_name: str
    description: str
    jurisdiction: str
    percentage: str  # decimal text, so the arithmetic stays exact
    state: str | None
    tax_type: str


@dataclass(frozen=True)
class _Region:
    country: str
    cities: tuple[tuple[str, str, str | None], ...]  # (city, postal code, state)
    streets: tuple[str, ...]
    phone: str
    tax: _TaxRate | None


_REGIONS: dict[str, _Region] = {
    "usd": _Region(
        "US",
        (("New York", "10001", "NY"), ("Brooklyn", "11201", "NY"), ("Buffalo", "14202", "NY")),
        ("350 5th Ave", "1 Main St", "77 Water St"),
        "+1 212 555 0",
        _TaxRate("Sales Tax", "New York sales tax", "US - NY", "8.875", "NY", "sales_tax"),
    ),
    "eur": _Region(
        "DE",
        (("Berlin", "10115", None), ("München", "80331", None), ("Hamburg", "20095", None)),
        ("Unter den Linden 1", "Marienplatz 8", "Jungfernstieg 12"),
        "+49 30 9010 ",
        _TaxRate("VAT", "VAT Germany", "DE", "19", None, "vat"),
    ),
    "gbp": _Region(
        "GB",
        (("London", "EC1A 1BB", None), ("Manchester", "M1 1AE", None)),
        ("10 Finsbury Sq", "1 Piccadilly"),
        "+44 20 7946 0",
        _TaxRate("VAT", "VAT United Kingdom", "GB", "20", None, "vat"),
    ),
    "jpy": _Region(
        "JP",
        (("Tokyo", "100-0001", None), ("Osaka", "530-0001", None)),
        ("1-1 Chiyoda", "2-4 Umeda"),
        "+81 3 5555 0",
        _TaxRate("JCT", "Japan consumption tax", "JP", "10", None, "jct"),
    ),
    "kwd": _Region(
        "KW", (("Kuwait City", "13001", None),), ("Block 3, Street 14",), "+965 2 55", None
    ),
}

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
_FIRST = ("Jenny", "Ali", "Yuki", "Hans", "Fatima", "Liam", "Chloé", "Sven", "Aiko", "Omar")
_LAST = ("Rosen", "Khan", "Tanaka", "Müller", "Haddad", "Smith", "Martin", "Berg", "Sato", "Nasser")

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
_DISPUTE_FEE_USD = 15  # whole units, so the fee is a round amount in any currency
_FEE_TAX_RATE = Fraction(1, 5)
_APPLICATION_FEE_RATE = Fraction(5, 100)

# Internal rates that the scenario does not expose.
_PRORATION_RATE = 0.12  # cycle invoices carrying an upgrade's proration pair
_DISCOUNT_RATE = 0.25  # customers with a coupon
_TAXED_RATE = 0.5  # customers charged tax (where the region has a tax rate)
_UPDATE_RATE = 0.2  # customers edited after creation
_ONE_OFF_CHARGE_RATE = 0.3  # per customer and month
_ONE_OFF_INVOICE_RATE = 0.08  # per customer and month
_FEE_TAX_SHARE = 0.1  # charges whose fee carries a tax fee detail
_APPLICATION_FEE_SHARE = 0.03  # charges with a Connect application fee

# decline reason → (charge.failure_code, charge.failure_message)
_DECLINES: dict[str, tuple[str | None, str | None]] = {
    "generic_decline": ("card_declined", "Your card was declined."),
    "insufficient_funds": ("card_declined", "Your card has insufficient funds."),
    "expired_card": ("expired_card", "Your card has expired."),
}

_B62 = "0123456789ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz"


# --- small pure helpers -----------------------------------------------------------------------


_B62_PAIRS = [a + b for a in _B62 for b in _B62]  # two digits per step: ids are made often


def _b62(number: int, width: int) -> str:
    """``number`` in ``width`` base-62 digits (``width`` even; the number must fit)."""
    pairs = []
    for _ in range(width // 2):
        number, pair = divmod(number, 3844)
        pairs.append(_B62_PAIRS[pair])
    return "".join(reversed(pairs))


def _copy(value: Any) -> Any:
    # marshal round-trips plain JSON data several times faster than copy.deepcopy; version 2
    # writes no back-references, so shared sub-dicts become independent copies.
    return marshal.loads(marshal.dumps(value, 2))


def _midnight(t: int) -> int:
    return t - t % DAY


def _add_months(t: int, months: int) -> int:
    """Stripe's monthly billing: same day of month and time, clamped to the month's last day."""
    moment = datetime.fromtimestamp(t, tz=UTC)
    years, month0 = divmod(moment.month - 1 + months, 12)
    year, month = moment.year + years, month0 + 1
    day = min(moment.day, calendar.monthrange(year, month)[1])
    return int(moment.replace(year=year, month=month, day=day).timestamp())


def _date_text(t: int) -> str:
    moment = datetime.fromtimestamp(t, tz=UTC)
    return f"{moment.day} {_MONTHS[moment.month - 1]} {moment.year}"


def _unit(currency: str) -> int:
    # Every amount is a multiple of the payout step: then sums of them can always be paid out
    # (HUF/TWD/ISK payouts must be whole units) and each amount also passes the plain step.
    return step(currency, payout=True)


def _round_to(numerator: int, denominator: int, unit: int) -> int:
    """numerator / denominator rounded half-even to a multiple of ``unit`` (exact)."""
    return round_half_even(numerator, denominator * unit) * unit


def _share(amount: int, rate: Fraction, currency: str) -> int:
    return _round_to(amount * rate.numerator, rate.denominator, _unit(currency))


def _from_usd(cents: int, currency: str) -> int:
    value = Fraction(cents, 100) / Fraction(_USD_VALUE[currency]) * 10 ** exponent(currency)
    return _round_to(value.numerator, value.denominator, _unit(currency))


def _list_price(usd: int, currency: str) -> int:
    """A round list price: whole major units (tens for zero-decimal currencies)."""
    places = exponent(currency)
    granularity = 10**places if places else 10
    value = Fraction(usd) / Fraction(_USD_VALUE[currency]) * 10**places
    return max(granularity, _round_to(value.numerator, value.denominator, granularity))


def _convert(amount: int, source: str, target: str, rate: Fraction) -> int:
    """Presentment minor units × rate → settlement minor units, rounded once, half-even."""
    numerator = amount * rate.numerator * 10 ** exponent(target)
    denominator = rate.denominator * 10 ** exponent(source)
    return _round_to(numerator, denominator, _unit(target))


def _money_text(amount: int, currency: str) -> str:
    symbol = _SYMBOL.get(currency, currency.upper() + " ")
    return f"{symbol}{to_decimal(amount, currency):,}"


def _unit_amount_text(amount: int, quantity: int) -> str:
    value = Decimal(amount) / Decimal(quantity)
    text = f"{value.quantize(Decimal('1e-10')).normalize():f}"
    return text


def _empty_address(country: str | None = None) -> Obj:
    return {
        "city": None,
        "country": country,
        "line1": None,
        "line2": None,
        "postal_code": None,
        "state": None,
    }


# --- simulation state -------------------------------------------------------------------------


class _Ids:
    """Stripe-looking ids that are unique by construction, not by luck.

    A running counter goes through a bijection (× a multiplier coprime to the modulus, plus a
    seeded offset, modulo base**width): suffixes look random, differ per seed and can never
    repeat. Long ids imitate Stripe's ``<time><account><random>`` layout.
    """

    def __init__(self, rng: random.Random) -> None:
        self.account = "".join(rng.choice(_B62) for _ in range(10))
        self._offset = rng.randrange(62**32)
        self._count = 0
        self._multipliers: dict[tuple[int, int], int] = {}

    def _bijective(self, base: int, width: int) -> int:
        number = self._count
        self._count += 1
        modulus = base**width
        multiplier = self._multipliers.get((base, width))
        if multiplier is None:
            # Near modulus / golden ratio, so consecutive counters land far apart; coprime to
            # the base (hence invertible modulo base**width).
            multiplier = modulus * 1_000_000 // 1_618_034
            while math.gcd(multiplier, base) != 1:
                multiplier += 1
            self._multipliers[base, width] = multiplier
        return (number * multiplier + self._offset) % modulus

    def long(self, prefix: str, created: int) -> str:
        return f"{prefix}{_b62(created, 6)}{self.account}{_b62(self._bijective(62, 8), 8)}"

    def short(self, prefix: str, width: int = 14) -> str:
        return prefix + _b62(self._bijective(62, width), width)

    def code(self, width: int = 8) -> str:
        """Upper-case letters and digits, like invoice prefixes and coupon codes."""
        number = self._bijective(36, width)
        digits = []
        for _ in range(width):
            number, digit = divmod(number, 36)
            digits.append(_B62[digit])
        return "".join(reversed(digits))


@dataclass
class _Item:
    price: Obj
    plan: Obj
    product_name: str
    si: str
    quantity: int
    last_line: str | None = None


@dataclass
class _Subscription:
    id: str
    anchor: int
    items: list[_Item]
    last_invoice: str | None = None


@dataclass
class _Customer:
    obj: Obj
    currency: str
    region: _Region
    card: Obj
    pm: str
    discount: Obj | None
    tax_rate: Obj | None
    sub: _Subscription | None = None


@dataclass
class _Charge:
    obj: Obj
    settlement: str
    rate: Fraction | None  # presentment → settlement, exact; None when no conversion
    rate_float: float | None
    refunded_settled: int = 0  # settlement amount refunded so far (for exact full refunds)


@dataclass
class _Bill:
    obj: Obj
    customer: _Customer
    fate: str = "pay"  # pay | recover | uncollectible | void
    failures_left: int = 0
    wants_credit_note: bool = False
    credit_notes: int = 0
    charge: _Charge | None = None


# (time, sequence, is a daily payout tick, what to run): plain tuples keep the heap fast, and the
# unique sequence number means the callable is never compared.
_Action = tuple[int, int, bool, Callable[[], None]]


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


class _Simulation:
    """Discrete-event simulation: actions run in time order and emit events at or after their
    own time, so every event older than the next action is final and can be streamed out."""

    def __init__(self, scenario: Scenario, collect: bool) -> None:
        self.scenario = scenario
        self.rng = random.Random(scenario.seed)
        self.ids = _Ids(self.rng)
        self.collect = collect
        self.objects: dict[str, Obj] = {}
        self.balance_transactions: dict[str, Obj] = {}
        self.payout_transactions: dict[str, list[str]] = {}

        self._actions: list[_Action] = []
        self._out: list[tuple[int, str, Obj]] = []
        self._seq = 0
        self._active = 0
        self._now = scenario.start
        self._account = f"acct_{_b62(scenario.start - 400 * DAY, 6)}{self.ids.account}"
        self._customers: list[_Customer] = []
        self._prices: dict[tuple[str, str], Obj] = {}
        self._plans: dict[tuple[str, str], Obj] = {}
        self._names: dict[str, str] = {key: name for key, name, *_ in _PRODUCTS}
        self._shippable = {key for key, *_, shippable in _PRODUCTS if shippable}
        self._tax_rates: dict[str, Obj] = {}
        self._coupons: dict[tuple[Any, ...], Obj] = {}
        self._pools: dict[str, list[Obj]] = {c: [] for c in scenario.settlement_currencies}
        self._banks = {c: self.ids.long("ba_", scenario.start) for c in self._pools}
        self._fx: dict[tuple[str, str, int], tuple[float, Fraction]] = {}

        self._at(scenario.start, self._catalog)
        joined = sorted(
            scenario.start + 60 + self.rng.randrange(20 * DAY) for _ in range(scenario.customers)
        )
        self._first_customer_at = joined[0]
        for t in joined:
            self._at(t, self._new_customer)
        for month in range(scenario.months):
            self._at(_add_months(scenario.start, month), partial(self._month, month))
        for currency in self._pools:
            self._at(_midnight(scenario.start) + DAY, partial(self._payout_tick, currency), True)

    # -- engine --------------------------------------------------------------------------------

    def run(self) -> Iterator[Obj]:
        actions, out = self._actions, self._out
        while actions:
            at, _, tick, action = heapq.heappop(actions)
            while out and out[0][0] < at:
                yield heapq.heappop(out)[2]
            if not tick:
                self._active -= 1
            self._now = at
            action()
        while out:
            yield heapq.heappop(out)[2]

    def _at(self, t: int, run: Callable[[], None], tick: bool = False) -> None:
        assert t >= self._now, "an action cannot be scheduled in the past"
        self._seq += 1
        if not tick:
            self._active += 1
        heapq.heappush(self._actions, (t, self._seq, tick, run))

    def _emit(self, kind: str, created: int, obj: Obj, previous: Obj | None = None) -> None:
        # Emitting at or after the running action's time is what makes streaming safe.
        assert created >= self._now, "an event cannot be emitted in the past"
        data: Obj = {"object": _copy(obj)}
        if previous is not None:
            data["previous_attributes"] = _copy(previous)
        event_id = self.ids.long("evt_", created)
        event = {
            "id": event_id,
            "object": "event",
            "api_version": API_VERSION,
            "created": created,
            "data": data,
            "livemode": False,
            "pending_webhooks": 1,
            "request": {"id": None, "idempotency_key": None},
            "type": kind,
        }
        heapq.heappush(self._out, (created, event_id, event))

    def _keep(self, obj: Obj) -> Obj:
        if self.collect:
            self.objects[obj["id"]] = obj
        return obj

    def _between(self, low: int, high: int) -> int:
        return low + self.rng.randrange(max(1, high - low))

    # -- catalog -------------------------------------------------------------------------------

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

    # -- customers -----------------------------------------------------------------------------

    def _new_customer(self) -> None:
        rng, t = self.rng, self._now
        currency = rng.choice(self.scenario.currencies)
        region = _REGIONS.get(currency) or _Region(
            currency[:2].upper(), (("Capital City", "1000", None),), ("1 High Street",), "+1 ", None
        )
        customer_id = self.ids.short("cus_")
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
            "metadata": {},
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

    def _fix_currency(self, customer: _Customer) -> None:
        # Stripe fixes a customer's currency with its first invoice and says so.
        if customer.obj["currency"] is None:
            customer.obj["currency"] = customer.currency
            self._emit("customer.updated", self._now, customer.obj, {"currency": None})

    # -- subscription invoices -----------------------------------------------------------------

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
        bill = _Bill(invoice, customer)
        self._emit("invoice.created", t, invoice)
        # A subscription's first invoice is finalized at once; renewals stay draft for an hour.
        self._at(t + (1 if first else HOUR), partial(self._finalize, bill))
        if k + 1 < self.scenario.months:
            self._at(end, partial(self._bill_period, customer, k + 1))

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
        t, currency, cus = self._now, customer.currency, customer.obj
        discount = customer.discount
        if discount is not None and discount["end"] is not None and discount["end"] <= t:
            discount = None
        discount_total = self._apply_discount(lines, discount, currency) if discount else 0
        tax_total, taxable_total = self._apply_tax(lines, customer.tax_rate, currency)
        subtotal = sum(line["amount"] for line in lines)
        total = subtotal - discount_total + tax_total + shipping
        tax_rate = customer.tax_rate
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
                    "data": lines,
                    "has_more": False,
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

    # -- one-off invoices and charges ----------------------------------------------------------

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
            lines.append(
                self._line(
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
            )
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
        self._at(t + self._between(60, 2 * HOUR), partial(self._finalize, _Bill(invoice, customer)))

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
        charge = self._charge(
            customer,
            currency,
            amount,
            invoice=None,
            description=description,
            payment_intent=self.ids.long("pi_", t),
            succeeded=succeeded,
        )
        self._emit("charge.succeeded" if succeeded else "charge.failed", t, charge.obj)
        if succeeded:
            self._follow_up(charge)

    # -- invoice life cycle --------------------------------------------------------------------

    def _finalize(self, bill: _Bill) -> None:
        rng, t, invoice = self.rng, self._now, bill.obj
        cus = bill.customer.obj
        invoice["number"] = f"{cus['invoice_prefix']}-{cus['next_invoice_sequence']:04d}"
        cus["next_invoice_sequence"] += 1
        invoice["status"] = "open"
        invoice["status_transitions"]["finalized_at"] = t
        invoice["effective_at"] = t
        invoice["ending_balance"] = 0
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
        else:  # paid on the hosted invoice page
            self._at(t + self._between(2 * DAY, 20 * DAY), partial(self._pay, bill))

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
        if bill.wants_credit_note and bill.credit_notes == 0:
            self._at(
                t + self._between(DAY, 25 * DAY), partial(self._credit_note, bill, "post_payment")
            )

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

    def _credit_note(self, bill: _Bill, kind: str) -> None:
        rng, t, invoice = self.rng, self._now, bill.obj
        currency = invoice["currency"]
        candidates = [line for line in invoice["lines"]["data"] if not line["proration"]]
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
        if kind == "post_payment":
            assert charge is not None
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
                "customer_balance_transaction": None,
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

    # -- charges, refunds, disputes ------------------------------------------------------------

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
        if succeeded:
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
        return charge

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
        self._refund(charge, amount, reason)
        if amount < left and may_repeat and rng.random() < 0.35:
            self._at(
                self._now + self._between(DAY, 10 * DAY),
                partial(self._refund_later, charge, False),
            )

    def _refund(self, charge: _Charge, amount: int, reason: str | None) -> Obj:
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
        return refund

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

    # -- payouts -------------------------------------------------------------------------------

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
        self._at(self._now + self._between(60, HOUR), partial(self._payout_reconciled, payout))

    def _payout_reconciled(self, payout: Obj) -> None:
        payout["reconciliation_status"] = "completed"
        self._emit("payout.reconciliation_completed", self._now, payout)


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
