"""Money on the wire: minor units and decimal strings convert exactly, never through floats."""

from __future__ import annotations

import pytest
from hypothesis import given
from hypothesis import strategies as st

from shopkeep.payments.money import (
    CURRENCIES,
    THREE_DECIMAL,
    ZERO_DECIMAL,
    AmountError,
    check_currency,
    exponent,
    from_decimal_string,
    to_decimal_string,
)

FEN = st.integers(min_value=0, max_value=10**17)


@given(FEN)
def test_fen_to_a_yuan_string_and_back_is_the_same_fen(fen: int) -> None:
    text = to_decimal_string(fen, "CNY")
    assert from_decimal_string(text, "CNY") == fen
    whole, _, cents = text.partition(".")
    assert len(cents) == 2 and int(whole) * 100 + int(cents) == fen


@given(st.integers(min_value=0, max_value=10**15), st.integers(min_value=0, max_value=99))
def test_a_yuan_string_with_at_most_two_decimals_is_exact_fen(yuan: int, cents: int) -> None:
    assert from_decimal_string(f"{yuan}.{cents:02d}", "CNY") == yuan * 100 + cents
    assert from_decimal_string(str(yuan), "CNY") == yuan * 100
    if cents % 10 == 0:
        assert from_decimal_string(f"{yuan}.{cents // 10}", "CNY") == yuan * 100 + cents


@given(st.integers(min_value=0, max_value=10**12), st.integers(min_value=1, max_value=9))
def test_a_third_decimal_is_refused_not_rounded(yuan: int, mills: int) -> None:
    with pytest.raises(AmountError):
        from_decimal_string(f"{yuan}.00{mills}", "CNY")


def test_amounts_that_floats_get_wrong_are_exact() -> None:
    assert int(float("0.29") * 100) == 28  # the trap
    assert from_decimal_string("0.29") == 29
    assert from_decimal_string("19.99") == 1999
    assert from_decimal_string("1.10") == 110


@pytest.mark.parametrize(
    "text", ["", "-1.00", "+1.00", "1e3", "NaN", "Infinity", " 1.00", "1.", ".5", "01.00",
             "1,00", "１.００", "1.230"],
)
def test_anything_but_plain_decimal_notation_is_refused(text: str) -> None:
    with pytest.raises(AmountError):
        from_decimal_string(text)


def test_currencies_have_their_iso_4217_decimals() -> None:
    assert (exponent("CNY"), exponent("JPY"), exponent("KWD")) == (2, 0, 3)
    assert to_decimal_string(1234, "JPY") == "1234"
    assert to_decimal_string(1234, "KWD") == "1.234"
    with pytest.raises(AmountError):
        from_decimal_string("1.5", "JPY")
    assert check_currency("USD") == "USD"
    for bad in ("usd", "US", "USDT", "U1D", "YEN", "ABC", "XAU", "XTS"):
        with pytest.raises(ValueError):
            check_currency(bad)


def test_every_currency_with_other_decimals_than_two_is_a_currency() -> None:
    assert ZERO_DECIMAL | THREE_DECIMAL <= CURRENCIES
    assert all(len(code) == 3 and code.isalpha() and code.isupper() for code in CURRENCIES)
