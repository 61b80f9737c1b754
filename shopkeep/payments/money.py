"""Money on the wire: ISO 4217 codes, and integer minor units <-> decimal strings, exactly.

The shop counts money in integer minor units (fen, cents). Alipay writes amounts as decimal
strings in major units (``"12.34"`` yuan); converting those through ``float`` loses cents
(``0.29 * 100 == 28.999999999999996``), so they go through :class:`~decimal.Decimal` only, and
a string with more decimals than the currency has is refused rather than rounded.
"""

from __future__ import annotations

import re
from decimal import Decimal, InvalidOperation
from typing import Final

from shopkeep.payments.names import DEFAULT_CURRENCY

ZERO_DECIMAL: Final = frozenset(
    {"BIF", "CLP", "DJF", "GNF", "ISK", "JPY", "KMF", "KRW", "PYG", "RWF", "UGX", "UYI",
     "VND", "VUV", "XAF", "XOF", "XPF"}
)
"""ISO 4217 currencies without minor units (an amount in yen is a whole number of yen)."""
THREE_DECIMAL: Final = frozenset({"BHD", "IQD", "JOD", "KWD", "LYD", "OMR", "TND"})
"""ISO 4217 currencies with three decimals."""

_CURRENCY_TABLE: Final = """
    AED AFN ALL AMD ANG AOA ARS AUD AWG AZN BAM BBD BDT BGN BHD BIF BMD BND BOB BRL BSD BTN
    BWP BYN BZD CAD CDF CHF CLP CNY COP CRC CUC CUP CVE CZK DJF DKK DOP DZD EGP ERN ETB EUR
    FJD FKP GBP GEL GHS GIP GMD GNF GTQ GYD HKD HNL HRK HTG HUF IDR ILS INR IQD IRR ISK JMD
    JOD JPY KES KGS KHR KMF KPW KRW KWD KYD KZT LAK LBP LKR LRD LSL LYD MAD MDL MGA MKD MMK
    MNT MOP MRU MUR MVR MWK MXN MYR MZN NAD NGN NIO NOK NPR NZD OMR PAB PEN PGK PHP PKR PLN
    PYG QAR RON RSD RUB RWF SAR SBD SCR SDG SEK SGD SHP SLE SLL SOS SRD SSP STN SVC SYP SZL
    THB TJS TMT TND TOP TRY TTD TWD TZS UAH UGX USD UYI UYU UZS VED VES VND VUV WST XAF XCD
    XOF XPF YER ZAR ZMW ZWG ZWL
"""
CURRENCIES: Final = frozenset(_CURRENCY_TABLE.split())
"""The ISO 4217 codes of currencies goods are priced in: every active one (and a few withdrawn
lately, still in a shop's books), without the funds, metals and testing codes (XAU, XTS...)."""

# Plain decimal notation only: no sign, exponent, spaces, "NaN" or "Infinity" (all of which
# Decimal() would accept), and no leading zeros that hide a typo ("012.3").
_DECIMAL = re.compile(r"(0|[1-9][0-9]{0,17})(\.[0-9]+)?")


class AmountError(ValueError):
    """A decimal amount that is not an exact, non-negative amount of the currency."""


def check_currency(code: str) -> str:
    """``code`` if it is the ISO 4217 code of a currency (:data:`CURRENCIES`), in capitals;
    ValueError else."""
    if code not in CURRENCIES:
        raise ValueError(f"{code!r} is not the ISO 4217 code of a currency (CNY, USD, EUR...)")
    return code


def exponent(currency: str) -> int:
    """How many decimals ``currency``'s minor unit has (2 unless listed above)."""
    if currency in ZERO_DECIMAL:
        return 0
    if currency in THREE_DECIMAL:
        return 3
    return 2


def to_decimal_string(minor: int, currency: str = DEFAULT_CURRENCY) -> str:
    """Minor units as the decimal string of major units: ``1234`` fen -> ``"12.34"``."""
    if minor < 0:
        raise AmountError(f"an amount is not negative, not {minor}")
    return in_major_units(minor, exponent(currency))


def with_currency(minor: int, currency: str) -> str:
    """Minor units as a person reads them in a sentence, with the currency's code:
    ``357`` -> ``3.57 CNY``."""
    return f"{to_decimal_string(minor, currency)} {currency}"


def in_major_units(minor: int, places: int, thousands: str = "") -> str:
    """Minor units, not negative, written in major units of a currency whose minor unit has
    ``places`` decimals (:func:`exponent`), thousands set apart by ``thousands`` (the admin
    console's ``,``): ``123456`` -> ``1234.56``, in yen ``123456``."""
    if places == 0:
        return f"{minor:{thousands}}"
    whole, part = divmod(minor, 10**places)
    return f"{whole:{thousands}}.{part:0{places}d}"


def from_decimal_string(text: str, currency: str = DEFAULT_CURRENCY) -> int:
    """A decimal string of major units as minor units: ``"12.34"`` -> ``1234``, exactly.

    Refuses (:class:`AmountError`) anything but plain non-negative decimal notation, and more
    decimals than the currency has: ``"0.001"`` yuan is no amount of fen, and ``"1.230"`` is
    refused too, since a sender that writes three decimals is not writing yuan as Alipay does.
    """
    match = _DECIMAL.fullmatch(text)
    if match is None:
        raise AmountError(f"not a decimal amount: {text[:40]!r}")
    places = exponent(currency)
    decimals = len(match.group(2) or ".") - 1
    if decimals > places:
        raise AmountError(f"{text!r} has more than {places} decimals for {currency}")
    try:
        value = Decimal(text).scaleb(places)
    except InvalidOperation:  # pragma: no cover - the pattern admits only valid decimals
        raise AmountError(f"not a decimal amount: {text[:40]!r}") from None
    return int(value)
