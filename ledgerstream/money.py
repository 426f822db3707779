"""Money: integer minor units plus an ISO 4217 code, and the one currency-exponent table.

NetSuite takes decimal amounts; Stripe sends integers in the currency's minor unit. The exponent
of each currency comes from this table only, so a conversion can neither lose nor invent a unit.

Stripe's special cases (https://docs.stripe.com/currencies):
- zero-decimal currencies: the amount is in whole units (``JPY 500`` is ``500``);
- three-decimal currencies (BHD JOD KWD OMR TND): amounts carry three decimals, and Stripe
  requires the last digit to be ``0``;
- ISK is zero-decimal for the customer but the API still takes it with two decimals: the amount
  is ×100 and must be a multiple of 100 (so ``to_decimal`` gives whole krónur);
- HUF and TWD are two-decimal in the API, but payouts must be whole units (multiples of 100).
"""

from __future__ import annotations

from decimal import Decimal

# Stripe's zero-decimal currencies (amounts are whole units).
ZERO_DECIMAL = frozenset("BIF CLP DJF GNF JPY KMF KRW MGA PYG RWF UGX VND VUV XAF XOF XPF".split())
# Three-decimal currencies (Stripe requires the last digit to be 0).
THREE_DECIMAL = frozenset("BHD JOD KWD OMR TND".split())
# Two decimals in the API, whole units in practice: ISK always, HUF and TWD for payouts.
WHOLE_UNITS_IN_API = frozenset({"ISK"})
WHOLE_UNITS_FOR_PAYOUTS = frozenset({"ISK", "HUF", "TWD"})


def exponent(currency: str) -> int:
    """Number of decimals of Stripe's integer amounts in ``currency``."""
    code = currency.upper()
    if code in ZERO_DECIMAL:
        return 0
    if code in THREE_DECIMAL:
        return 3
    return 2


def to_decimal(minor: int, currency: str) -> Decimal:
    """Minor units → exact decimal amount in the currency's major unit."""
    if not isinstance(minor, int) or isinstance(minor, bool):
        raise TypeError(f"amount must be an integer number of minor units, got {minor!r}")
    return Decimal(minor).scaleb(-exponent(currency))


def to_minor(amount: Decimal | int | str, currency: str) -> int:
    """Exact decimal → minor units; raises if the amount has more precision than the currency."""
    scaled = Decimal(amount).scaleb(exponent(currency))
    if scaled != scaled.to_integral_value():
        raise ValueError(f"{amount} has more decimals than {currency.upper()} allows")
    return int(scaled)


def step(currency: str, payout: bool = False) -> int:
    """The smallest amount (in minor units) Stripe accepts in ``currency``."""
    code = currency.upper()
    if code in THREE_DECIMAL:
        return 10
    if code in WHOLE_UNITS_IN_API or (payout and code in WHOLE_UNITS_FOR_PAYOUTS):
        return 100
    return 1


def check_amount(minor: int, currency: str, payout: bool = False) -> None:
    """Raise ValueError for an amount Stripe would not accept in ``currency``."""
    unit = step(currency, payout)
    if minor % unit:
        kind = "payout" if payout else "amount"
        raise ValueError(f"{currency.upper()} {kind} {minor} is not a multiple of {unit}")


def round_half_even(numerator: int, denominator: int) -> int:
    """``numerator / denominator`` rounded to the nearest integer, ties to even (exact)."""
    if denominator <= 0:
        raise ValueError("denominator must be positive")
    quotient, remainder = divmod(numerator, denominator)
    twice = 2 * remainder
    if twice > denominator or (twice == denominator and quotient % 2):
        quotient += 1
    return quotient


def to_netsuite(minor: int, currency: str) -> Decimal:
    """The decimal NetSuite takes: like ``to_decimal``, but whole units where NetSuite keeps
    none although Stripe's API carries two decimals (ISK; the amount must be a multiple of 100).
    """
    value = to_decimal(minor, currency)
    if currency.upper() in WHOLE_UNITS_IN_API:
        if minor % 100:
            raise ValueError(f"{currency.upper()} amount {minor} is not a multiple of 100")
        return value.quantize(Decimal(1))
    return value


def convert(minor: int, rate: Decimal, from_currency: str, to_currency: str) -> int:
    """``minor`` units of one currency at ``rate`` into minor units of another, rounded half
    to even once, on exact arithmetic (the exponents of both currencies are respected), to the
    smallest amount the target currency takes (``step``: whole krónur for ISK)."""
    rate_n, rate_d = Decimal(rate).as_integer_ratio()
    shift = exponent(to_currency) - exponent(from_currency)
    numerator = minor * rate_n * (10**shift if shift > 0 else 1)
    denominator = rate_d * (10**-shift if shift < 0 else 1)
    if denominator < 0:
        numerator, denominator = -numerator, -denominator
    unit = step(to_currency)
    return round_half_even(numerator, denominator * unit) * unit
