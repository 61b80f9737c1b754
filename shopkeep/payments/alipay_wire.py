"""Alipay's open-API wire format (RSA2): pure functions, shared by the provider and its fake.

- A request is a set of string parameters (``app_id``, ``method``, ``charset``, ``sign_type``,
  ``timestamp``, ``version``, ``biz_content`` as JSON, ...) signed with the app's private key:
  SHA256withRSA over ``k=v`` pairs sorted by key and joined with ``&``, leaving out ``sign`` and
  empty values (``sign_type`` is signed in a request).
- A response is JSON, ``{"<method with _ for .>_response": {...}, "sign": "..."}``, signed by
  Alipay over the exact bytes of the ``..._response`` value as they appear in the body.
- A notification is form-encoded parameters signed by Alipay over the sorted pairs leaving out
  ``sign`` *and* ``sign_type``, values URL-decoded.
"""

from __future__ import annotations

import json
from collections.abc import Mapping
from datetime import UTC, datetime, timedelta, timezone
from typing import Any, Final

from cryptography.hazmat.primitives.asymmetric import rsa

from shopkeep.payments.keys import sign_sha256_rsa, verify_sha256_rsa

PRODUCTION_URL: Final = "https://openapi.alipay.com/gateway.do"
"""Alipay's production open-API gateway (``--alipay-url`` defaults to it)."""
SUCCESS_CODE: Final = "10000"
"""A response's ``code`` when the call succeeded."""
APP_REFUSED_CODE: Final = "40002"
"""A response's ``code`` when a request's argument is refused; the one Alipay answers unsigned
when the refused argument is the app itself (its ``app_id`` or its signature)."""
BEIJING: Final = timezone(timedelta(hours=8), "Asia/Shanghai")
"""Alipay's times are written in China Standard Time, without a zone."""

REQUEST_UNSIGNED: Final = frozenset({"sign"})
NOTIFICATION_UNSIGNED: Final = frozenset({"sign", "sign_type"})


def signing_string(
    params: Mapping[str, str], unsigned: frozenset[str], *, empty: bool = False
) -> bytes:
    """The bytes signed: sorted ``k=v`` pairs joined by ``&``, ``unsigned`` keys left out, and
    empty values too unless ``empty``, UTF-8."""
    pairs = (
        f"{k}={v}" for k, v in sorted(params.items()) if k not in unsigned and (empty or v != "")
    )
    return "&".join(pairs).encode("utf-8")


def sign_params(
    params: Mapping[str, str],
    key: rsa.RSAPrivateKey,
    unsigned: frozenset[str],
    *,
    empty: bool = False,
) -> dict[str, str]:
    """``params`` with ``sign`` added (over their empty values too, when ``empty``)."""
    signed = signing_string(params, unsigned, empty=empty)
    return {**params, "sign": sign_sha256_rsa(key, signed)}


def verify_params(
    params: Mapping[str, str], key: rsa.RSAPublicKey, unsigned: frozenset[str]
) -> bool:
    """Whether ``params['sign']`` is ``key``'s signature of the other parameters: with empty
    values left out, as a request's are signed, or kept (``key=``), as Alipay's SDKs check a
    notification's (``getSignCheckContentV1``; some versions leave them out)."""
    sign = params.get("sign")
    if verify_sha256_rsa(key, signing_string(params, unsigned), sign):
        return True
    return "" in params.values() and verify_sha256_rsa(
        key, signing_string(params, unsigned, empty=True), sign
    )


def beijing_time(unix_s: float) -> str:
    """``yyyy-MM-dd HH:mm:ss`` in China Standard Time, as Alipay writes times."""
    return datetime.fromtimestamp(unix_s, BEIJING).strftime("%Y-%m-%d %H:%M:%S")


def parse_beijing_time(text: str) -> float:
    """The Unix seconds of a ``yyyy-MM-dd HH:mm:ss`` China Standard Time."""
    moment = datetime.strptime(text, "%Y-%m-%d %H:%M:%S").replace(tzinfo=BEIJING)
    return moment.astimezone(UTC).timestamp()


def biz_content(fields: Mapping[str, Any]) -> str:
    """``biz_content``: compact JSON, non-ASCII kept (Alipay reads UTF-8)."""
    return json.dumps(fields, ensure_ascii=False, separators=(",", ":"))


def response_key(method: str) -> str:
    """``alipay.trade.query`` -> ``alipay_trade_query_response``."""
    return method.replace(".", "_") + "_response"


def signed_section(body: str, key: str) -> tuple[dict[str, Any], str] | None:
    """The value of ``key`` in the response ``body``, and its exact text (what Alipay signed).

    The text is cut from the body as it came, not re-serialised: re-encoding would change
    spacing or escapes and the signature would no longer match.
    """
    decoder = json.JSONDecoder()
    marker = json.dumps(key) + ":"
    start = body.find(marker)
    if start < 0:
        return None
    start += len(marker)
    while start < len(body) and body[start] in " \t\r\n":
        start += 1
    try:
        value, end = decoder.raw_decode(body, start)
    except json.JSONDecodeError:
        return None
    if not isinstance(value, dict):
        return None
    return value, body[start:end]


def signed_response(
    method: str, section: Mapping[str, Any], key: rsa.RSAPrivateKey
) -> bytes:
    """A response body as Alipay sends it (for the fake): the section and its signature."""
    text = json.dumps(section, ensure_ascii=False, separators=(",", ":"))
    signature = sign_sha256_rsa(key, text.encode("utf-8"))
    return f'{{"{response_key(method)}":{text},"sign":"{signature}"}}'.encode()


def unsigned_refusal(method: str, sub_code: str) -> bytes:
    """Alipay's refusal of a request it cannot take as the app's (for the fake), unsigned as
    Alipay sends it: an unknown ``app_id`` (``isv.invalid-app-id``) in the method's own
    section with no ``sign``; a request whose signature fails (``isv.invalid-signature``) in
    ``error_response`` with ``sign`` empty."""
    section = {"code": APP_REFUSED_CODE, "msg": "Invalid Arguments", "sub_code": sub_code,
               "sub_msg": sub_code}
    text = json.dumps(section, ensure_ascii=False, separators=(",", ":"))
    if sub_code == "isv.invalid-app-id":
        return f'{{"{response_key(method)}":{text}}}'.encode()
    return f'{{"error_response":{text},"sign":""}}'.encode()
