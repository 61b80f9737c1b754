"""SPEC 10's command-line flags: their declarations, their checks, and the ProviderSettings.

``serve`` (:mod:`shopkeep.cli.serve`) calls :func:`add_provider_flags` on its parser,
:func:`check_provider_flags` among its usage checks, and :func:`provider_settings` to build
the server's options. Every flag falls back to its ``SHOPKEEP_*`` variable (SPEC 8:
``--stripe-api-key-file`` -> ``SHOPKEEP_STRIPE_API_KEY_FILE``). Secrets are file paths only,
never values on the command line (visible in ``ps``). Light on imports: ``--help`` must stay
fast.
"""

from __future__ import annotations

import argparse
import ipaddress
import urllib.parse
from collections.abc import Callable
from typing import TYPE_CHECKING, Final

from shopkeep.actors.config import LEAST_S
from shopkeep.cli.flags import argument_named, flag, flag_over_variable, given_as
from shopkeep.cli.values import base_url, choice, duration, metavar_of, refuse
from shopkeep.payments.ids import alipay_seller_id, currency_code, provider_id
from shopkeep.payments.names import CALLBACK_PATHS, DEFAULT_CURRENCY, GATEWAYS

if TYPE_CHECKING:
    from shopkeep.payments.settings import ProviderSettings

DEFAULT_REFUND_QUERY_AFTER: Final = "1m"

PROVIDER_FLAGS: Final = (
    # (flag, metavar, help): each read from SHOPKEEP_<FLAG> when not given
    ("--alipay-app-id", "ID", "Alipay: the app's APPID (the notification's app_id must match)"),
    ("--alipay-private-key-file", "PATH",
     "Alipay: the app's RSA private key (PEM, PKCS#1 or PKCS#8), which signs the requests"),
    ("--alipay-public-key-file", "PATH",
     "Alipay: Alipay's public key (PEM, or the console's bare base64), which checks the "
     "notifications and answers"),
    ("--alipay-url", "URL", "Alipay: the gateway (default: the production openapi.alipay.com)"),
    ("--alipay-seller-id", "ID",
     "Alipay: the merchant's seller id (PID: 16 digits, 2088...), which a notification's "
     "seller_id must then match (Alipay's own list of checks; default: not checked)"),
    ("--wechatpay-mch-id", "ID", "WeChat Pay: the merchant id (mchid)"),
    ("--wechatpay-app-id", "ID", "WeChat Pay: the appid payments are made for"),
    ("--wechatpay-private-key-file", "PATH",
     "WeChat Pay: the merchant API private key (PEM), which signs the requests"),
    ("--wechatpay-cert-serial", "SERIAL", "WeChat Pay: the merchant API certificate's serial"),
    ("--wechatpay-apiv3-key-file", "PATH",
     "WeChat Pay: the API v3 key (32 bytes), which decrypts the notifications"),
    ("--wechatpay-platform-public-key-file", "PATH",
     "WeChat Pay: the platform public key (PEM), which checks the notifications and answers; "
     "several, one after the other, while WeChat Pay rotates it"),
    ("--wechatpay-url", "URL",
     "WeChat Pay: the API (default: the production api.mch.weixin.qq.com)"),
    ("--stripe-api-key-file", "PATH", "Stripe: a file holding the secret API key (sk_...)"),
    ("--stripe-webhook-secret-file", "PATH",
     "Stripe: a file holding the webhook's signing secret (whsec_...)"),
    ("--stripe-api-base", "URL", "Stripe: the API (default: the production api.stripe.com)"),
)


def add_provider_flags(parser: argparse.ArgumentParser) -> None:
    """Declare ``--gateway``, ``--currency``, ``--public-url``, ``--refund-query-after`` and
    each provider's flags, each with its variable (:func:`shopkeep.cli.flags.flag`)."""
    group = parser.add_argument_group(
        "payment provider (SPEC 10)",
        "Secrets are read from files (or the variables naming those files), never from the "
        "command line. The provider calls back at --public-url followed by its route: "
        f"{CALLBACK_PATHS['alipay']}, {CALLBACK_PATHS['wechatpay']}, "
        f"{CALLBACK_PATHS['stripe']} (set in Stripe's dashboard).",
    )
    flag(
        parser, "--gateway", group=group, convert=choice(*GATEWAYS),
        metavar=metavar_of(*GATEWAYS),
        help="the payment provider; required: serve never falls back to the sandbox "
        "(--sandbox means --gateway sandbox)",
    )  # fmt: skip
    add_currency_flag(parser, group)
    flag(
        parser, "--public-url", group=group, convert=base_url, metavar="URL",
        help="the base URL the provider calls back, and of the sandbox's payment links "
        "(default: the listening address, which a provider on the internet cannot reach)",
    )  # fmt: skip
    flag(
        parser, "--refund-query-after", group=group,
        convert=duration(minimum=LEAST_S["refund_query_after_s"]),
        metavar="DURATION", default=DEFAULT_REFUND_QUERY_AFTER,
        help="a refund the provider took and has not finished is asked about after this, "
        "then after 5, 10, 20 and every 30 minutes while it is still processing",
    )  # fmt: skip
    for option, metavar, text in PROVIDER_FLAGS:
        convert: Callable[[str], str] = str
        if metavar == "URL":
            convert = provider_url
        elif option == "--alipay-seller-id":
            convert = alipay_seller_id
        elif metavar in ("ID", "SERIAL"):
            convert = provider_id
        flag(parser, option, group=group, metavar=metavar, help=text, convert=convert)


def provider_url(text: str) -> str:
    """A provider's address (``--stripe-api-base``...): https, which its requests' keys and
    signatures travel over, or plain http to this machine alone (a local fake, as the tests
    run one): sent in clear elsewhere, ``Authorization: Bearer sk_...`` would be anyone's on
    the way."""
    url = base_url(text)
    parts = urllib.parse.urlsplit(url)
    if parts.scheme == "https" or _is_loopback(parts.hostname or ""):
        return url
    raise refuse(
        f"{text!r}: a provider is reached over https (plain http only to this machine, "
        "127.0.0.1 or localhost, for a local fake)"
    )


def _is_loopback(host: str) -> bool:
    if host == "localhost":
        return True
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        return False


def add_currency_flag(
    parser: argparse.ArgumentParser, group: argparse._ArgumentGroup | None = None
) -> None:
    """Declare ``--currency`` (``SHOPKEEP_CURRENCY``): the shop's one currency, which a
    database keeps from its first opening (``serve``'s, or ``demo``'s)."""
    flag(
        parser, "--currency", group=group, convert=currency_code, metavar="CODE",
        default=DEFAULT_CURRENCY, help="the shop's currency, ISO 4217",
    )  # fmt: skip


def check_provider_flags(parser: argparse.ArgumentParser, args: argparse.Namespace) -> None:
    """Usage errors, one line each: no gateway chosen (naming the choices), ``--sandbox`` with
    another gateway. Sets ``args.sandbox`` for ``--gateway sandbox`` and ``args.gateway`` for
    ``--sandbox``."""
    choices = ",".join(GATEWAYS)
    if args.sandbox and args.gateway not in (None, "sandbox"):
        wins = flag_over_variable(args, "sandbox", "gateway")
        if wins is None:
            parser.error(
                f"{argument_named(args, 'sandbox')}: not allowed with "
                f"{given_as(args, 'gateway')} {args.gateway}"
            )
        if wins == "sandbox":
            args.gateway = None
        else:
            args.sandbox = False
    if args.sandbox:
        args.gateway = "sandbox"
    if args.gateway is None:
        parser.error(
            f"a payment gateway is required: --gateway {{{choices}}} (env "
            "SHOPKEEP_GATEWAY), or --sandbox to try the shop out"
        )
    args.sandbox = args.gateway == "sandbox"


def provider_settings(args: argparse.Namespace) -> ProviderSettings:
    """The ProviderSettings the checked ``args`` say (the providers' defaults where a flag
    was not given)."""
    from shopkeep.payments.settings import ProviderSettings

    given = {
        flag.lstrip("-").replace("-", "_"): getattr(args, flag.lstrip("-").replace("-", "_"))
        for flag, _, _ in PROVIDER_FLAGS
    }
    return ProviderSettings(
        gateway=args.gateway,
        currency=args.currency,
        public_url=args.public_url or "",
        **{name: value for name, value in given.items() if value is not None},
    )
