"""Choosing and building a provider from SPEC 10's settings: each provider from its files,
and a one-line refusal for whatever is missing."""

from __future__ import annotations

from pathlib import Path

import pytest
from cryptography.hazmat.primitives.asymmetric import rsa

from shopkeep.payments.alipay import AlipayProvider
from shopkeep.payments.gateway import SandboxGateway
from shopkeep.payments.keys import read_secret
from shopkeep.payments.provider import ConfigurationError, PaymentProvider
from shopkeep.payments.sandbox import SandboxProvider
from shopkeep.payments.settings import ProviderSettings, build_provider
from shopkeep.payments.stripe_provider import StripeProvider
from shopkeep.payments.wechatpay import WeChatPayProvider
from shopkeep.runtime import VirtualClock
from tests.payments.conftest import write_keys


def sandbox() -> PaymentProvider:
    return SandboxProvider(SandboxGateway("secret", VirtualClock()), "secret")


@pytest.fixture
def files(tmp_path: Path, merchant_key: rsa.RSAPrivateKey) -> dict[str, str]:
    private_file, public_file = write_keys(tmp_path, merchant_key, merchant_key)
    (tmp_path / "apiv3").write_text("0123456789abcdef0123456789abcdef\n")
    (tmp_path / "secret").write_text("sk_test_x\n")
    (tmp_path / "whsec").write_text("whsec_x\n")
    return {"private": private_file, "public": public_file, "apiv3": str(tmp_path / "apiv3"),
            "secret": str(tmp_path / "secret"), "whsec": str(tmp_path / "whsec")}


async def test_each_gateway_builds_its_provider(files: dict[str, str]) -> None:
    built = [
        build_provider(ProviderSettings(gateway="sandbox"), sandbox),
        build_provider(ProviderSettings(
            gateway="alipay", public_url="https://shop.example/", alipay_app_id="2021",
            alipay_private_key_file=files["private"],
            alipay_public_key_file=files["public"]), sandbox),
        build_provider(ProviderSettings(
            gateway="wechatpay", public_url="https://shop.example", wechatpay_mch_id="19",
            wechatpay_app_id="wx1", wechatpay_private_key_file=files["private"],
            wechatpay_cert_serial="5157", wechatpay_apiv3_key_file=files["apiv3"],
            wechatpay_platform_public_key_file=files["public"]), sandbox),
        build_provider(ProviderSettings(
            gateway="stripe", currency="USD", stripe_api_key_file=files["secret"],
            stripe_webhook_secret_file=files["whsec"]), sandbox),
    ]
    kinds = [SandboxProvider, AlipayProvider, WeChatPayProvider, StripeProvider]
    assert [type(p) for p in built] == kinds
    assert [p.name for p in built] == ["sandbox", "alipay", "wechatpay", "stripe"]
    for provider in built[1:]:
        await provider.close()


@pytest.mark.parametrize(
    ("settings", "says"),
    [
        (ProviderSettings(), "--gateway is required: one of sandbox, alipay, wechatpay, stripe"),
        (ProviderSettings(gateway="paypal"), "--gateway 'paypal'"),
        (ProviderSettings(gateway="sandbox", currency="usd"), "--currency"),
        (ProviderSettings(gateway="alipay", currency="USD"), "takes --currency CNY"),
        # every setting a provider lacks, in one refusal
        (ProviderSettings(gateway="alipay"), "the alipay gateway needs --public-url, "
         "--alipay-app-id, --alipay-private-key-file and --alipay-public-key-file: not given"),
        (ProviderSettings(gateway="alipay", public_url="https://s", alipay_app_id="1"),
         "the alipay gateway needs --alipay-private-key-file and --alipay-public-key-file"),
        (ProviderSettings(gateway="wechatpay", public_url="https://s"),
         "--wechatpay-mch-id, --wechatpay-app-id, --wechatpay-private-key-file, "
         "--wechatpay-cert-serial, --wechatpay-apiv3-key-file and "
         "--wechatpay-platform-public-key-file: not given"),
        (ProviderSettings(gateway="stripe"), "the stripe gateway needs --stripe-api-key-file and "
         "--stripe-webhook-secret-file: not given"),
        (ProviderSettings(gateway="stripe", stripe_api_key_file="k"),
         "--stripe-webhook-secret-file is required: the stripe gateway needs it"),
        (ProviderSettings(gateway="alipay", alipay_app_id="1", alipay_private_key_file="k",
                          alipay_public_key_file="p"), "--public-url is required: alipay calls"),
        # Stripe's own units: amounts it could not take once the order was placed
        (ProviderSettings(gateway="stripe", currency="KWD"),
         "--gateway stripe cannot take --currency KWD: Stripe takes only amounts whose last "
         "digit is 0"),
        (ProviderSettings(gateway="stripe", currency="MGA"), "Stripe counts ariary whole"),
    ],
)
def test_a_gateway_without_its_settings_refuses_in_one_line(
    settings: ProviderSettings, says: str
) -> None:
    with pytest.raises(ConfigurationError) as error:
        build_provider(settings, sandbox)
    assert says in str(error.value) and "\n" not in str(error.value)


def test_notify_urls_are_the_public_url_and_the_providers_route(files: dict[str, str]) -> None:
    alipay = build_provider(ProviderSettings(
        gateway="alipay", public_url="https://shop.example/", alipay_app_id="2021",
        alipay_private_key_file=files["private"], alipay_public_key_file=files["public"]),
        sandbox)
    assert isinstance(alipay, AlipayProvider)
    assert alipay.notify_url == "https://shop.example/v1/payments/alipay/notify"


@pytest.mark.parametrize("app_id", ["2021000000000001 ", " 2021000000000001\n"])
async def test_a_providers_id_is_taken_surrounding_whitespace_ignored(
    files: dict[str, str], app_id: str
) -> None:
    # a space an env file left was sent in every request, and every notification's app_id
    # refused as another app's
    provider = build_provider(ProviderSettings(
        gateway="alipay", public_url="https://shop.example", alipay_app_id=app_id,
        alipay_private_key_file=files["private"], alipay_public_key_file=files["public"],
    ), sandbox)
    assert isinstance(provider, AlipayProvider) and provider.app_id == "2021000000000001"
    await provider.close()


@pytest.mark.parametrize(
    ("settings", "says"),
    [
        ({"gateway": "alipay", "alipay_app_id": " "}, "--alipay-app-id: ' ' is not an id"),
        ({"gateway": "alipay", "alipay_app_id": "20 21"}, "--alipay-app-id: '20 21' is not an"),
        ({"gateway": "wechatpay", "wechatpay_mch_id": "\t", "wechatpay_cert_serial": "5157"},
         "--wechatpay-mch-id: "),
        ({"gateway": "wechatpay", "wechatpay_mch_id": "1900", "wechatpay_app_id": "wx1",
          "wechatpay_cert_serial": "  "}, "--wechatpay-cert-serial: "),
    ],
)
def test_a_blank_or_spaced_providers_id_refuses_the_start_naming_its_flag(
    files: dict[str, str], settings: dict[str, str], says: str
) -> None:
    keys = {"alipay_private_key_file": files["private"], "alipay_public_key_file": files["public"],
            "wechatpay_private_key_file": files["private"], "wechatpay_app_id": "wx1",
            "wechatpay_apiv3_key_file": files["apiv3"],
            "wechatpay_platform_public_key_file": files["public"]}
    with pytest.raises(ConfigurationError) as error:
        build_provider(ProviderSettings(
            public_url="https://shop.example", **{**keys, **settings}
        ), sandbox)
    assert says in str(error.value) and "\n" not in str(error.value)


def test_a_stripe_key_file_of_two_lines_refuses_the_start(
    files: dict[str, str], tmp_path: Path
) -> None:
    # it started, and every payment was then a 503 blaming the provider
    (tmp_path / "two").write_text("sk_test_x\nsk_test_y\n")
    with pytest.raises(ConfigurationError) as error:
        build_provider(ProviderSettings(
            gateway="stripe", stripe_api_key_file=str(tmp_path / "two"),
            stripe_webhook_secret_file=files["whsec"],
        ), sandbox)
    assert "--stripe-api-key-file" in str(error.value) and "one line" in str(error.value)


@pytest.mark.parametrize(
    ("api_key", "webhook_secret", "says"),
    [
        ("pk_test_browser", "whsec_x", "--stripe-api-key-file: holds a publishable key"),
        ("whsec_x", "sk_test_x", "--stripe-api-key-file: holds a webhook signing secret "
         "(whsec_...), not a secret key (sk_...) or a restricted key (rk_...); "
         "--stripe-webhook-secret-file: holds a secret key (sk_...)"),
        ("sk_test_x", "sk_test_y", "--stripe-webhook-secret-file: holds a secret key"),
        ("sk_test_x", "not-a-key", "--stripe-webhook-secret-file: holds no Stripe key"),
    ],
)
def test_a_stripe_file_holding_another_kind_of_key_refuses_the_start_without_showing_it(
    tmp_path: Path, api_key: str, webhook_secret: str, says: str
) -> None:
    (tmp_path / "key").write_text(api_key)
    (tmp_path / "hook").write_text(webhook_secret)
    with pytest.raises(ConfigurationError) as error:
        build_provider(ProviderSettings(
            gateway="stripe", stripe_api_key_file=str(tmp_path / "key"),
            stripe_webhook_secret_file=str(tmp_path / "hook"),
        ), sandbox)
    assert str(error.value).startswith(says)
    assert api_key not in str(error.value) and webhook_secret not in str(error.value)


async def test_a_restricted_stripe_key_is_taken(tmp_path: Path) -> None:
    (tmp_path / "key").write_text("rk_live_limited")
    (tmp_path / "hook").write_text("whsec_x")
    provider = build_provider(ProviderSettings(
        gateway="stripe", stripe_api_key_file=str(tmp_path / "key"),
        stripe_webhook_secret_file=str(tmp_path / "hook"),
    ), sandbox)
    assert provider.name == "stripe"
    await provider.close()


async def test_key_and_secret_files_that_begin_with_a_byte_order_mark_are_read(
    files: dict[str, str], tmp_path: Path
) -> None:
    for name in ("public", "private", "secret"):
        marked = tmp_path / f"{name}.bom"
        marked.write_bytes(b"\xef\xbb\xbf" + Path(files[name]).read_bytes())
        files[name] = str(marked)
    alipay = build_provider(ProviderSettings(
        gateway="alipay", public_url="https://shop.example", alipay_app_id="2021",
        alipay_private_key_file=files["private"], alipay_public_key_file=files["public"],
    ), sandbox)
    assert isinstance(alipay, AlipayProvider)
    assert read_secret(files["secret"], "--stripe-api-key-file") == "sk_test_x"
    await alipay.close()
