"""Money: integer minor units plus an ISO 4217 code, and the one currency-exponent table.

NetSuite takes decimal amounts; Stripe sends integers in the currency's minor unit. The exponent
of each currency comes from this table only, so a conversion can neither lose nor invent a unit.
"""

from __future__ import annotations

from decimal import Decimal

# Stripe's zero-decimal currencies (amounts are whole units).
ZERO_DECIMAL = frozenset("BIF CLP DJF GNF JPY KMF KRW MGA PYG RWF UGX VND VUV XAF XOF XPF".split())
# Three-decimal currencies (Stripe requires the last digit to be 0).
THREE_DECIMAL = frozenset("BHD JOD KWD OMR TND".split())


def exponent(currency: str) -> int:
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


def to_minor(amount: Decimal, currency: str) -> int:
    """Exact decimal → minor units; raises if the amount has more precision than the currency."""
    scaled = Decimal(amount).scaleb(exponent(currency))
    if scaled != scaled.to_integral_value():
        raise ValueError(f"{amount} has more decimals than {currency.upper()} allows")
    return int(scaled)
