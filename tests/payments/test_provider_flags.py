"""SPEC 10's flags as ``serve`` parses them (:mod:`shopkeep.cli.provider_flags`): each provider's
value checked at the start, its one-line error naming the flag and its variable."""

from __future__ import annotations

import argparse
from pathlib import Path

import pytest
from cryptography.hazmat.primitives.asymmetric import rsa

from shopkeep.cli import build_parser
from shopkeep.payments.alipay import AlipayProvider
from shopkeep.payments.provider import ConfigurationError
from shopkeep.payments.settings import ProviderSettings, build_provider
from tests.payments.conftest import write_keys

NOT_SELLER_IDS = ("abc", "2088", "208800000000000", "20880000000000011", "1088000000000001",
                  "2088 000000000001", "２088000000000001", "")
"""Not an Alipay seller id (16 ASCII digits starting 2088): short, long, another start,
spaced, full-width, empty."""


def parse_serve(*argv: str) -> argparse.Namespace:
    return build_parser().parse_args(["serve", "--gateway", "alipay", *argv])


def refused_line(capsys: pytest.CaptureFixture[str], *argv: str) -> str:
    """The one line ``serve`` refuses ``argv`` with (exit status 2)."""
    with pytest.raises(SystemExit) as exited:
        parse_serve(*argv)
    assert exited.value.code == 2
    (line,) = capsys.readouterr().err.splitlines()
    return line


@pytest.fixture(autouse=True)
def no_seller_id_variable(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("SHOPKEEP_ALIPAY_SELLER_ID", raising=False)


@pytest.mark.parametrize("seller_id", [s for s in NOT_SELLER_IDS if s])
def test_a_seller_id_that_is_no_alipay_pid_refuses_the_start_naming_the_flag_and_variable(
    capsys: pytest.CaptureFixture[str], seller_id: str
) -> None:
    # it was taken silently, and every notification then refused as another seller's
    line = refused_line(capsys, "--alipay-seller-id", seller_id)

    assert "argument --alipay-seller-id (env SHOPKEEP_ALIPAY_SELLER_ID): " in line
    assert "16 digits starting 2088" in line


def test_a_seller_id_variable_that_is_no_alipay_pid_is_refused_under_its_name(
    capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("SHOPKEEP_ALIPAY_SELLER_ID", "abc")

    line = refused_line(capsys)

    assert "SHOPKEEP_ALIPAY_SELLER_ID: 'abc' is not an Alipay seller id" in line
    assert "argument --" not in line  # the operator typed no flag


def test_an_alipay_pid_is_taken_surrounding_whitespace_ignored(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    assert parse_serve("--alipay-seller-id", "2088000000000001").alipay_seller_id == (
        "2088000000000001"
    )
    monkeypatch.setenv("SHOPKEEP_ALIPAY_SELLER_ID", " 2088000000000002\n")
    assert parse_serve().alipay_seller_id == "2088000000000002"


@pytest.mark.parametrize("seller_id", NOT_SELLER_IDS)
def test_settings_with_a_seller_id_that_is_no_alipay_pid_build_no_provider(
    tmp_path: Path, merchant_key: rsa.RSAPrivateKey, seller_id: str
) -> None:
    # the embedded API builds its provider from settings no command line checked
    private_file, public_file = write_keys(tmp_path, merchant_key, merchant_key)
    settings = ProviderSettings(
        gateway="alipay", public_url="https://shop.example", alipay_app_id="2021",
        alipay_private_key_file=private_file, alipay_public_key_file=public_file,
        alipay_seller_id=seller_id,
    )
    with pytest.raises(ConfigurationError) as error:
        build_provider(settings, lambda: pytest.fail("not the sandbox"))
    said = str(error.value)
    assert said.startswith("--alipay-seller-id: ") and "\n" not in said


async def test_settings_with_an_alipay_pid_build_the_provider(
    tmp_path: Path, merchant_key: rsa.RSAPrivateKey
) -> None:
    private_file, public_file = write_keys(tmp_path, merchant_key, merchant_key)
    provider = build_provider(ProviderSettings(
        gateway="alipay", public_url="https://shop.example", alipay_app_id="2021",
        alipay_private_key_file=private_file, alipay_public_key_file=public_file,
        alipay_seller_id="2088000000000001"), lambda: pytest.fail("not the sandbox"))
    assert isinstance(provider, AlipayProvider)
    await provider.close()


@pytest.mark.parametrize("option", ["--alipay-app-id", "--wechatpay-mch-id",
                                    "--wechatpay-app-id", "--wechatpay-cert-serial"])
def test_a_providers_id_is_trimmed_and_a_blank_one_refuses_the_start(
    capsys: pytest.CaptureFixture[str], option: str
) -> None:
    dest = option.removeprefix("--").replace("-", "_")
    assert getattr(parse_serve(option, " 2021000000000001 "), dest) == "2021000000000001"

    line = refused_line(capsys, option, "  ")

    assert f"argument {option} (env SHOPKEEP_{dest.upper()}): '  ' is not an id" in line
