"""The names SPEC 10 configures by, in a module light enough for ``--help`` to import."""

from __future__ import annotations

from typing import Final, Literal, get_args

SANDBOX: Final = "sandbox"
"""The gateway that takes no real money, and keeps its books in its process's memory."""
GATEWAYS: Final = (SANDBOX, "alipay", "wechatpay", "stripe")
"""The names ``--gateway`` takes."""
CALLBACK_PATHS: Final = {
    SANDBOX: "/v1/payments/callback",
    "alipay": "/v1/payments/alipay/notify",
    "wechatpay": "/v1/payments/wechatpay/notify",
    "stripe": "/v1/payments/stripe/webhook",
}
"""Each gateway's callback route (SPEC 7 and 10): where its provider's notifications arrive,
public (each verified by its provider's scheme), and taken while the server stops."""
CALLED_BACK_AT_PUBLIC_URL: Final = frozenset({"alipay", "wechatpay"})
"""The gateways told where to call back with each payment (``--public-url`` and their route):
Stripe's webhook is set in its dashboard, the sandbox's is its own."""
QR_GATEWAYS: Final = frozenset({"alipay"})
"""The gateways whose customer pays a page (``gateway_url``) or a QR code (``qr_code``, the
``qr`` channel), as asked: the others have one way to pay."""
Channel = Literal["page", "qr"]
"""How a customer of a QR gateway pays: a page (``gateway_url``) or a QR code (``qr_code``)."""
CHANNELS: Final = get_args(Channel)
DEFAULT_CURRENCY: Final = "CNY"
"""The shop's currency unless ``--currency`` says another (ISO 4217)."""
SUCCEEDED: Final = "succeeded"
FAILED: Final = "failed"
OUTCOMES: Final = (SUCCEEDED, FAILED)
"""What a payment's callback says of it (SPEC 7's ``status``)."""
