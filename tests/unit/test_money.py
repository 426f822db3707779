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


@given(
    st.integers(min_value=-(10**12), max_value=10**12),
    st.integers(min_value=1, max_value=10**8),
    st.sampled_from(CURRENCIES),
    st.sampled_from(CURRENCIES),
)
def test_convert_matches_exact_fraction_arithmetic(
    minor: int, rate_units: int, src: str, dst: str
) -> None:
    from fractions import Fraction

    from ledgerstream.money import convert, step

    rate = Decimal(rate_units) / 10_000
    exact = Fraction(minor) * Fraction(rate) * Fraction(10) ** (exponent(dst) - exponent(src))
    got = convert(minor, rate, src, dst)
    unit = step(dst)
    assert got % unit == 0
    assert abs(Fraction(got) - exact) <= Fraction(unit, 2)


def test_round_half_even() -> None:
    from ledgerstream.money import round_half_even

    assert [round_half_even(n, 2) for n in (1, 3, 5, -1, -3)] == [0, 2, 2, 0, -2]
    assert round_half_even(7, 3) == 2 and round_half_even(-7, 3) == -2


def test_isk_and_three_decimal_rules() -> None:
    from ledgerstream.money import check_amount, to_netsuite

    check_amount(12340, "kwd")
    with pytest.raises(ValueError):
        check_amount(12345, "kwd")
    with pytest.raises(ValueError):
        check_amount(150, "isk")
    check_amount(150, "huf")
    with pytest.raises(ValueError):
        check_amount(150, "huf", payout=True)
    assert str(to_netsuite(50000, "isk")) == "500"
    assert str(to_netsuite(12340, "kwd")) == "12.340"
