"""WeChat Pay API v3's wire format: pure functions, shared by the provider and its fake.

- A request carries ``Authorization: WECHATPAY2-SHA256-RSA2048 mchid="…",nonce_str="…",
  signature="…",timestamp="…",serial_no="…"``, the signature being SHA256withRSA with the
  merchant's private key over ``METHOD\\nPATH?QUERY\\ntimestamp\\nnonce\\nbody\\n``.
- A response or notification carries ``Wechatpay-Timestamp``, ``Wechatpay-Nonce``,
  ``Wechatpay-Signature`` and ``Wechatpay-Serial``: SHA256withRSA with the platform key over
  ``timestamp\\nnonce\\nbody\\n``, body the raw bytes (never re-serialised JSON).
- A notification's ``resource`` is AEAD_AES_256_GCM with the 32-byte API v3 key: base64
  ``ciphertext`` (tag appended), a 12-character ``nonce``, and ``associated_data``.
"""

from __future__ import annotations

import base64
import re
import secrets
from collections.abc import Mapping, Sequence
from typing import Final

from cryptography.hazmat.primitives.asymmetric import rsa
from cryptography.hazmat.primitives.ciphers.aead import AESGCM

from shopkeep.payments.keys import sign_sha256_rsa, verify_sha256_rsa

PRODUCTION_URL: Final = "https://api.mch.weixin.qq.com"
"""WeChat Pay's production API (``--wechatpay-url`` defaults to it)."""
SCHEME: Final = "WECHATPAY2-SHA256-RSA2048"
TIMESTAMP: Final = "Wechatpay-Timestamp"
NONCE: Final = "Wechatpay-Nonce"
SIGNATURE: Final = "Wechatpay-Signature"
SERIAL: Final = "Wechatpay-Serial"
SIGNATURE_TYPE: Final = "Wechatpay-Signature-Type"
"""Sent by the platform beside its signature, naming its algorithm (:data:`SCHEME`)."""

_FIELD = re.compile(r'\s*([a-z_]+)="([^"]*)"\s*')


def new_nonce() -> str:
    """A random 32-character nonce."""
    return secrets.token_hex(16)


def request_message(method: str, path: str, timestamp: str, nonce: str, body: bytes) -> bytes:
    """What a request's signature covers (``path`` with its query string)."""
    return f"{method}\n{path}\n{timestamp}\n{nonce}\n".encode() + body + b"\n"


def response_message(timestamp: str, nonce: str, body: bytes) -> bytes:
    """What a response's or a notification's signature covers."""
    return f"{timestamp}\n{nonce}\n".encode() + body + b"\n"


def authorization(
    *, mch_id: str, serial: str, key: rsa.RSAPrivateKey, method: str, path: str, body: bytes,
    timestamp: str, nonce: str,
) -> str:
    """The ``Authorization`` header of a request."""
    signature = sign_sha256_rsa(key, request_message(method, path, timestamp, nonce, body))
    return (
        f'{SCHEME} mchid="{mch_id}",nonce_str="{nonce}",signature="{signature}",'
        f'timestamp="{timestamp}",serial_no="{serial}"'
    )


def parse_authorization(header: str | None) -> dict[str, str] | None:
    """The fields of an ``Authorization`` header, or None if it is not this scheme's."""
    if not header or not header.startswith(SCHEME + " "):
        return None
    fields: dict[str, str] = {}
    for part in header[len(SCHEME) + 1 :].split(","):
        match = _FIELD.fullmatch(part)
        if match is None:
            return None
        fields[match.group(1)] = match.group(2)
    return fields


def signed_headers(
    key: rsa.RSAPrivateKey, serial: str, body: bytes, timestamp: str, nonce: str | None = None
) -> dict[str, str]:
    """The ``Wechatpay-*`` headers that sign ``body`` (what the platform sends)."""
    nonce = nonce or new_nonce()
    signature = sign_sha256_rsa(key, response_message(timestamp, nonce, body))
    return {TIMESTAMP: timestamp, NONCE: nonce, SIGNATURE: signature, SERIAL: serial,
            SIGNATURE_TYPE: SCHEME}


def verify_signed(
    keys: Sequence[rsa.RSAPublicKey], timestamp: str | None, nonce: str | None,
    signature: str | None, body: bytes,
) -> bool:
    """Whether the ``Wechatpay-*`` headers sign ``body`` with one of the platform keys (the
    old one and the new while WeChat Pay rotates them). Headers that are not ASCII sign
    nothing: WeChat Pay writes digits, letters and base64 there, and a byte that is not UTF-8
    reaches us as a surrogate (aiohttp decodes headers with ``surrogateescape``), which no
    encoding of the signed message would take."""
    if timestamp is None or nonce is None or signature is None:
        return False
    if not (timestamp.isascii() and nonce.isascii() and signature.isascii()):
        return False
    message = response_message(timestamp, nonce, body)
    return any(verify_sha256_rsa(key, message, signature) for key in keys)


def decrypt_resource(apiv3_key: bytes, resource: Mapping[str, object]) -> bytes:
    """The plaintext of a notification's ``resource`` (ValueError if it is not one, or it does
    not decrypt: another key, or altered bytes)."""
    if resource.get("algorithm") != "AEAD_AES_256_GCM":
        raise ValueError(f"unknown algorithm {str(resource.get('algorithm'))[:40]!r}")
    ciphertext, nonce = resource.get("ciphertext"), resource.get("nonce")
    associated = resource.get("associated_data") or ""
    if not (isinstance(ciphertext, str) and isinstance(nonce, str) and isinstance(associated, str)):
        raise ValueError("resource fields are not strings")
    try:
        return AESGCM(apiv3_key).decrypt(
            nonce.encode(), base64.b64decode(ciphertext, validate=True), associated.encode()
        )
    except Exception as exc:  # InvalidTag, a bad nonce length, bad base64: all one refusal
        raise ValueError(f"the resource does not decrypt ({type(exc).__name__})") from None


def encrypt_resource(
    apiv3_key: bytes, plaintext: bytes, original_type: str, associated: str = "transaction"
) -> dict[str, str]:
    """A ``resource`` as the platform sends it (for the fake)."""
    nonce = secrets.token_hex(6)
    ciphertext = AESGCM(apiv3_key).encrypt(nonce.encode(), plaintext, associated.encode())
    return {
        "algorithm": "AEAD_AES_256_GCM",
        "ciphertext": base64.b64encode(ciphertext).decode(),
        "associated_data": associated,
        "original_type": original_type,
        "nonce": nonce,
    }
