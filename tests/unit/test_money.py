from decimal import Decimal

import pytest
from hypothesis import given
from hypothesis import strategies as st

from ledgerstream.money import THREE_DECIMAL, ZERO_DECIMAL, exponent, to_decimal, to_minor

CURRENCIES = sorted(ZERO_DECIMAL | THREE_DECIMAL | {"USD", "EUR", "GBP", "ISK", "HUF", "TWD"})


def test_exponents() -> None:
    assert exponent("jpy") == 0 and exponent("KRW") == 0
    assert exponent("kwd") == 3 and exponent("BHD") == 3
    assert exponent("usd") == 2 and exponent("EUR") == 2


def test_examples() -> None:
    assert to_decimal(4900, "usd") == Decimal("49.00")
    assert str(to_decimal(4900, "usd")) == "49.00"
    assert str(to_decimal(4900, "jpy")) == "4900"
    assert str(to_decimal(12340, "kwd")) == "12.340"
    assert str(to_decimal(-5, "eur")) == "-0.05"


@given(st.integers(min_value=-(10**15), max_value=10**15), st.sampled_from(CURRENCIES))
def test_round_trip_never_loses_a_unit(minor: int, currency: str) -> None:
    assert to_minor(to_decimal(minor, currency), currency) == minor


def test_too_precise_amount_is_refused() -> None:
    with pytest.raises(ValueError):
        to_minor(Decimal("1.5"), "JPY")
    with pytest.raises(TypeError):
        to_decimal(1.5, "USD")  # type: ignore[arg-type]
