"""SPEC 10's payment configuration, and the one place a provider is built from it.

One field per flag: ``--alipay-app-id`` is ``alipay_app_id``, read from
``SHOPKEEP_ALIPAY_APP_ID`` when the flag is not given (SPEC 8's rule; the command line does
that mapping). Secrets are only ever file paths here. :func:`build_provider` turns the settings
into a provider, or raises :class:`ConfigurationError` with one line naming what is missing.
"""

from __future__ import annotations

import argparse
from collections.abc import Callable
from typing import Final

import msgspec

from shopkeep.payments import alipay_wire, wechatpay_wire
from shopkeep.payments.alipay import AlipayProvider
from shopkeep.payments.ids import alipay_seller_id, provider_id
from shopkeep.payments.money import check_currency
from shopkeep.payments.names import DEFAULT_CURRENCY, GATEWAYS
from shopkeep.payments.provider import ConfigurationError, PaymentProvider
from shopkeep.payments.stripe_provider import NOT_TAKEN as NOT_TAKEN_BY_STRIPE
from shopkeep.payments.stripe_provider import PRODUCTION_URL as STRIPE_URL
from shopkeep.payments.stripe_provider import StripeProvider
from shopkeep.payments.transport import CALL_TIMEOUT_S
from shopkeep.payments.wechatpay import WeChatPayProvider

__all__ = ["DEFAULT_CURRENCY", "GATEWAYS", "ProviderSettings", "build_provider", "check_gateway"]

CNY_ONLY: Final = frozenset({"alipay", "wechatpay"})
"""Providers whose domestic APIs take yuan only."""


class ProviderSettings(msgspec.Struct, frozen=True, kw_only=True):
    """Everything SPEC 10 configures (None: not given)."""

    gateway: str | None = None
    currency: str = DEFAULT_CURRENCY
    public_url: str = ""
    alipay_app_id: str | None = None
    alipay_private_key_file: str | None = None
    alipay_public_key_file: str | None = None
    alipay_url: str = alipay_wire.PRODUCTION_URL
    alipay_seller_id: str | None = None
    wechatpay_mch_id: str | None = None
    wechatpay_app_id: str | None = None
    wechatpay_private_key_file: str | None = None
    wechatpay_cert_serial: str | None = None
    wechatpay_apiv3_key_file: str | None = None
    wechatpay_platform_public_key_file: str | None = None
    wechatpay_url: str = wechatpay_wire.PRODUCTION_URL
    stripe_api_key_file: str | None = None
    stripe_webhook_secret_file: str | None = None
    stripe_api_base: str = STRIPE_URL


def check_gateway(settings: ProviderSettings) -> str:
    """The chosen gateway's name, once it and the currency are valid for each other."""
    gateway = settings.gateway
    if not gateway:
        raise ConfigurationError(
            f"--gateway is required: one of {', '.join(GATEWAYS)} (--sandbox means sandbox)"
        )
    if gateway not in GATEWAYS:
        raise ConfigurationError(f"--gateway {gateway!r}: one of {', '.join(GATEWAYS)}")
    try:
        currency = check_currency(settings.currency)
    except ValueError as exc:
        raise ConfigurationError(f"--currency: {exc}") from None
    if gateway in CNY_ONLY and currency != "CNY":
        raise ConfigurationError(f"--gateway {gateway} takes --currency CNY, not {currency}")
    if gateway == "stripe" and currency in NOT_TAKEN_BY_STRIPE:
        raise ConfigurationError(
            f"--gateway stripe cannot take --currency {currency}: "
            f"{NOT_TAKEN_BY_STRIPE[currency]}"
        )
    return gateway


def build_provider(
    settings: ProviderSettings,
    sandbox: Callable[[], PaymentProvider],
    *,
    timeout_s: float = CALL_TIMEOUT_S,
) -> PaymentProvider:
    """The provider ``settings`` choose; ``sandbox`` builds the sandbox (its gateway belongs
    to the composition root). ConfigurationError, in one line, when anything is missing."""
    gateway = check_gateway(settings)
    if gateway == "sandbox":
        return sandbox()
    check_given(settings, gateway)
    if gateway == "stripe":
        return StripeProvider.from_files(
            api_key_file=settings.stripe_api_key_file,
            webhook_secret_file=settings.stripe_webhook_secret_file,
            api_base=settings.stripe_api_base,
            timeout_s=timeout_s,
        )
    if not settings.public_url:
        raise ConfigurationError(f"--public-url is required: {gateway} calls the shop back there")
    base = settings.public_url.rstrip("/")
    if gateway == "alipay":
        seller_id = _checked(settings.alipay_seller_id, "--alipay-seller-id", alipay_seller_id)
        return AlipayProvider.from_files(
            app_id=_checked(settings.alipay_app_id, "--alipay-app-id"),
            private_key_file=settings.alipay_private_key_file,
            public_key_file=settings.alipay_public_key_file,
            notify_url=base + AlipayProvider.callback_path,
            url=settings.alipay_url,
            seller_id=seller_id,
            timeout_s=timeout_s,
        )
    return WeChatPayProvider.from_files(
        mch_id=_checked(settings.wechatpay_mch_id, "--wechatpay-mch-id"),
        app_id=_checked(settings.wechatpay_app_id, "--wechatpay-app-id"),
        private_key_file=settings.wechatpay_private_key_file,
        cert_serial=_checked(settings.wechatpay_cert_serial, "--wechatpay-cert-serial"),
        apiv3_key_file=settings.wechatpay_apiv3_key_file,
        platform_public_key_file=settings.wechatpay_platform_public_key_file,
        notify_url=base + WeChatPayProvider.callback_path,
        url=settings.wechatpay_url,
        timeout_s=timeout_s,
    )


NEEDED: Final = {
    "alipay": ("public_url", "alipay_app_id", "alipay_private_key_file", "alipay_public_key_file"),
    "wechatpay": (
        "public_url", "wechatpay_mch_id", "wechatpay_app_id", "wechatpay_private_key_file",
        "wechatpay_cert_serial", "wechatpay_apiv3_key_file", "wechatpay_platform_public_key_file",
    ),
    "stripe": ("stripe_api_key_file", "stripe_webhook_secret_file"),
}
"""What each real provider needs given, by :class:`ProviderSettings`' field (whose flag is the
field's name with dashes: ``--alipay-app-id``)."""


def check_given(settings: ProviderSettings, gateway: str) -> None:
    """ConfigurationError naming every setting ``gateway`` needs that ``settings`` lack, at
    once: an operator setting up a provider learns them all from one refusal."""
    missing = ["--" + name.replace("_", "-") for name in NEEDED[gateway]
               if not getattr(settings, name)]
    if not missing:
        return
    if missing == ["--public-url"]:
        raise ConfigurationError(f"--public-url is required: {gateway} calls the shop back there")
    if len(missing) == 1:
        raise ConfigurationError(f"{missing[0]} is required: the {gateway} gateway needs it")
    raise ConfigurationError(
        f"the {gateway} gateway needs {', '.join(missing[:-1])} and {missing[-1]}: not given"
    )


def _checked(
    value: str | None, option: str, convert: Callable[[str], str] = provider_id
) -> str | None:
    """``value`` as its flag's check makes it (the command line checked it already; the
    embedded API may not have); ConfigurationError naming ``option`` when it refuses it."""
    if value is None:
        return None
    try:
        return convert(value)
    except argparse.ArgumentTypeError as exc:
        raise ConfigurationError(f"{option}: {exc}") from None
