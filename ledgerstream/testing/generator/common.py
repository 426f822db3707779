"""Reference data and small pure helpers shared by the concerns: the API version and time
units, what each currency is worth, regions and their tax rates, people's names, Stripe-looking
ids, money rounding and conversion, dates."""

from __future__ import annotations

import calendar
import marshal
import math
import random
from dataclasses import dataclass
from datetime import UTC, datetime
from decimal import Decimal
from fractions import Fraction
from typing import Any

from ledgerstream.money import exponent, round_half_even, step, to_decimal

API_VERSION = "2024-06-20"
DAY = 86_400
HOUR = 3_600
# An invoice embeds its first lines only (``lines.has_more``); GET /v1/invoices/{id}/lines gives
# them all. Stripe says "the first handful"; the list endpoint's default page size is taken.
EMBEDDED_LINES = 10
MAX_INVOICE_ITEMS = 250  # Stripe refuses more invoice items on one invoice (since 2016-02-22)

Obj = dict[str, Any]

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

_FIRST = ("Jenny", "Ali", "Yuki", "Hans", "Fatima", "Liam", "Chloé", "Sven", "Aiko", "Omar")
_LAST = ("Rosen", "Khan", "Tanaka", "Müller", "Haddad", "Smith", "Martin", "Berg", "Sato", "Nasser")

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
