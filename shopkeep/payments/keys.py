"""Credentials from files, and the SHA256withRSA signatures Alipay and WeChat Pay use.

Key files are PEM: a private key as PKCS#1 (``BEGIN RSA PRIVATE KEY``) or PKCS#8 (``BEGIN
PRIVATE KEY``), a public key as X.509 SubjectPublicKeyInfo (``BEGIN PUBLIC KEY``). Alipay's
console hands out the bare base64 body of the same structures, without the armour lines, and
that is accepted too. A secret file's surrounding whitespace (the newline an editor adds) is
ignored. Whatever cannot be read raises :class:`ConfigurationError` with one line that names the
setting, never the secret.
"""

from __future__ import annotations

import base64
import binascii
import re
from pathlib import Path

from cryptography.exceptions import InvalidSignature, UnsupportedAlgorithm
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import padding, rsa

from shopkeep.payments.provider import ConfigurationError
from shopkeep.secret_files import TooLarge, read_secret_file

_PEM_BLOCK = re.compile(rb"-----BEGIN [A-Z0-9 ]+-----.*?-----END [A-Z0-9 ]+-----", re.DOTALL)
"""One armoured block of a PEM file."""


def read_secret(path: str | Path | None, setting: str) -> str:
    """The text of a secret file, stripped; ConfigurationError if missing, unreadable, empty,
    or more than one word (API keys and signing secrets are one). ``setting`` names the flag in
    the error (``--stripe-api-key-file``)."""
    data = _read(path, setting)
    try:
        text = data.decode("utf-8").strip()
    except UnicodeDecodeError:
        raise ConfigurationError(f"{setting} {path}: not UTF-8 text") from None
    if not text:
        raise ConfigurationError(f"{setting} {path}: the file is empty")
    if len(text.split()) > 1 or not text.isprintable():
        # sent in a header or used as a key: a second line made every call fail, blamed on
        # the provider ("did not answer"), after a start that said nothing
        raise ConfigurationError(
            f"{setting} {path}: holds more than one word; a secret is one line with no spaces"
        )
    return text


def load_private_key(path: str | Path | None, setting: str) -> rsa.RSAPrivateKey:
    """An RSA private key from a PEM (PKCS#1 or PKCS#8) or bare base64 file."""
    der = _der(_read(path, setting), setting, path)
    try:
        key = (
            serialization.load_pem_private_key(der, password=None)
            if der.startswith(b"-----")
            else serialization.load_der_private_key(der, password=None)
        )
    except (ValueError, TypeError, UnsupportedAlgorithm):
        raise ConfigurationError(
            f"{setting} {path}: not an unencrypted RSA private key (PEM PKCS#1 or PKCS#8)"
        ) from None
    if not isinstance(key, rsa.RSAPrivateKey):
        raise ConfigurationError(f"{setting} {path}: not an RSA key")
    return key


def load_public_key(path: str | Path | None, setting: str) -> rsa.RSAPublicKey:
    """An RSA public key from a PEM (SubjectPublicKeyInfo) or bare base64 file."""
    return _public_key(_read(path, setting), setting, path)


def load_public_keys(path: str | Path | None, setting: str) -> tuple[rsa.RSAPublicKey, ...]:
    """Every RSA public key of a file of one or more PEM blocks, one after the other (or of
    one bare base64 body): a provider's keys while it rotates them, the old and the new."""
    data = _read(path, setting)
    if not data.strip().startswith(b"-----"):
        return (_public_key(data, setting, path),)
    blocks = _PEM_BLOCK.findall(data)
    if not blocks:
        raise ConfigurationError(
            f"{setting} {path}: not an RSA public key (PEM SubjectPublicKeyInfo)"
        )
    return tuple(_public_key(block, setting, path) for block in blocks)


def _public_key(data: bytes, setting: str, path: str | Path | None) -> rsa.RSAPublicKey:
    der = _der(data, setting, path)
    try:
        key = (
            serialization.load_pem_public_key(der)
            if der.startswith(b"-----")
            else serialization.load_der_public_key(der)
        )
    except (ValueError, UnsupportedAlgorithm):
        raise ConfigurationError(
            f"{setting} {path}: not an RSA public key (PEM SubjectPublicKeyInfo)"
        ) from None
    if not isinstance(key, rsa.RSAPublicKey):
        raise ConfigurationError(f"{setting} {path}: not an RSA key")
    return key


def sign_sha256_rsa(key: rsa.RSAPrivateKey, message: bytes) -> str:
    """The base64 SHA256withRSA (PKCS#1 v1.5) signature of ``message``."""
    signature = key.sign(message, padding.PKCS1v15(), hashes.SHA256())
    return base64.b64encode(signature).decode("ascii")


def verify_sha256_rsa(key: rsa.RSAPublicKey, message: bytes, signature: str | None) -> bool:
    """Whether ``signature`` (base64) is ``key``'s SHA256withRSA signature of ``message``."""
    if not signature:
        return False
    try:
        raw = base64.b64decode(signature, validate=True)
        key.verify(raw, message, padding.PKCS1v15(), hashes.SHA256())
    except (InvalidSignature, binascii.Error, ValueError):
        return False
    return True


def private_pem(key: rsa.RSAPrivateKey) -> bytes:
    """``key`` as PKCS#8 PEM (for tests and fakes that write key files)."""
    return key.private_bytes(
        serialization.Encoding.PEM,
        serialization.PrivateFormat.PKCS8,
        serialization.NoEncryption(),
    )


def public_pem(key: rsa.RSAPublicKey) -> bytes:
    """``key`` as SubjectPublicKeyInfo PEM."""
    return key.public_bytes(
        serialization.Encoding.PEM, serialization.PublicFormat.SubjectPublicKeyInfo
    )


def _read(path: str | Path | None, setting: str) -> bytes:
    if path is None or str(path) == "":
        raise ConfigurationError(f"{setting} is required")
    try:
        return read_secret_file(path)
    except OSError as exc:
        raise ConfigurationError(f"{setting} {path}: {exc.strerror or exc}") from None
    except TooLarge as exc:
        raise ConfigurationError(f"{setting} {path}: {exc}") from None


def _der(data: bytes, setting: str, path: str | Path | None) -> bytes:
    """PEM as it is (the loaders read the armour), or the DER under a bare base64 body."""
    text = data.strip()
    if text.startswith(b"-----"):
        return text
    try:
        return base64.b64decode(b"".join(text.split()), validate=True)
    except (binascii.Error, ValueError):
        raise ConfigurationError(f"{setting} {path}: neither PEM nor base64") from None
