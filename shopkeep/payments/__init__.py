"""Payment providers (SPEC 10): the interface the shop uses, and the sandbox, Alipay, WeChat Pay
and Stripe behind it.

:mod:`~shopkeep.payments.provider` holds the interface and the values that cross it;
:mod:`~shopkeep.payments.gateway` the in-process sandbox gateway (its books in
:mod:`~shopkeep.payments.sandbox_books`); each provider is one module
(:mod:`~shopkeep.payments.sandbox`, :mod:`~shopkeep.payments.alipay`,
:mod:`~shopkeep.payments.wechatpay`, :mod:`~shopkeep.payments.stripe_provider`);
:mod:`~shopkeep.payments.fakes` has a local fake of each provider's HTTP API for tests and the
proof harness.

The package stands below the actors: it names the shop's codes and checks
(:mod:`shopkeep.refusals`, :mod:`shopkeep.requests`) but nothing of the actors that use it.
"""
