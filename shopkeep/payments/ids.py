"""The values a provider gives the shop, checked as the command line and the settings take
them: an id (an APPID, a merchant id, a certificate's serial), an Alipay seller id, a currency
code. Each refused value is an ``argparse.ArgumentTypeError``: argparse's one line at the
command line, a ConfigurationError naming its flag in the settings."""

from __future__ import annotations

import argparse
import re
from typing import Final

from shopkeep.payments.money import check_currency

ALIPAY_SELLER_ID: Final = re.compile(r"2088[0-9]{12}")
"""An Alipay seller id (the merchant's PID): 16 ASCII digits, starting 2088."""

PROVIDER_ID: Final = re.compile(r"[!-~]+")
"""An id a provider gave the shop (an APPID, a merchant id, a certificate's serial): printable
ASCII, no spaces."""


def provider_id(text: str) -> str:
    """An id a provider gave the shop (:data:`PROVIDER_ID`), surrounding whitespace ignored.
    Anything else is refused at the start: the id is sent in every request and compared with
    every notification's, and one with a space left by an env file (``2021... ``) started a
    server whose every notification was refused (``wrong_app``)."""
    return _trimmed(text, PROVIDER_ID, "an id the provider gives: printable ASCII without spaces")


def alipay_seller_id(text: str) -> str:
    """An Alipay seller id (:data:`ALIPAY_SELLER_ID`), surrounding whitespace ignored. Anything
    else is refused at the start: a notification's ``seller_id`` is compared with it, and
    would never match, every payment's notification refused (``wrong_app``)."""
    return _trimmed(text, ALIPAY_SELLER_ID, "an Alipay seller id (PID): 16 digits starting 2088")


def _trimmed(text: str, pattern: re.Pattern[str], what: str) -> str:
    """``text`` without its surrounding whitespace when the rest is all ``pattern``; else
    refused (argparse's one-line error) as not ``what``."""
    cleaned = text.strip()
    if pattern.fullmatch(cleaned) is None:
        raise argparse.ArgumentTypeError(f"{text!r} is not {what}")
    return cleaned


def currency_code(text: str) -> str:
    """A currency's ISO 4217 code (``money.CURRENCIES``), as the shop keeps it: in capitals."""
    try:
        return check_currency(text.strip().upper())
    except ValueError:
        raise argparse.ArgumentTypeError(
            f"{text!r} is not the ISO 4217 code of a currency (CNY, USD, EUR...)"
        ) from None
