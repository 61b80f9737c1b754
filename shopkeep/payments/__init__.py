"""Payment providers (SPEC 10): the interface the shop uses, and the sandbox, Alipay, WeChat Pay
and Stripe behind it.

:mod:`~shopkeep.payments.provider` holds the interface and the values that cross it;
each provider is one module (:mod:`~shopkeep.payments.sandbox`,
:mod:`~shopkeep.payments.alipay`, :mod:`~shopkeep.payments.wechatpay`,
:mod:`~shopkeep.payments.stripe_provider`); :mod:`~shopkeep.payments.fakes` has a local fake of
each provider's HTTP API for tests and the proof harness.
"""
