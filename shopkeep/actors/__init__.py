"""The shop: orders, stock, coupons, wallets, payments and refunds as actors.

Every actor's rules are pure functions (``decide``-style, no IO, no awaits) in a ``*_rules``
module; the actor class around them is a thin shell that loads state, calls the rules, writes
the effects into the message's unit of work, replies and sends. Business refusals are values
(:class:`shopkeep.refusals.Refusal`), never exceptions.

Kinds and who talks to whom (``protocol.py`` holds the messages of the asset kinds):

- ``user`` (one per user): name, wallet balance, points, the set of unpaid orders (the cap),
  Idempotency-Keys. Asked by the placement to begin an order and to debit the wallet; told
  durably to release wallet money, award or revoke points, forget a settled order.
- ``goods`` (one per SKU): price and stock, with a stock ledger. Asked to take stock; told
  durably to give it back.
- ``coupon`` (one per coupon): owner, value, minimum, expiry, the order holding it. Asked to be
  used; told durably to be released.
- ``assets`` (one per order): fans a ReleaseAssets message out to one durable message per kind
  of asset, so that a new kind of asset plugs in without touching the cancel code.
- ``order`` (one per order): the whole lifecycle of SPEC.md: the placement saga, payments and
  their callbacks, the deadline timer, cancels, fulfilment, returns, refunds.

The sagas' supervision (DESIGN.md's supervisors): a placement that fails after taking
something, a cancel, a timeout and an approved return end in the order's one unit that moves
its status and sends ReleaseAssets durably (the outbox) to its ``assets`` actor, the
supervisor that sends each compensation to the stock, coupon and wallet actors that own what
is given back. A saga cut by a crash or lost in a dead letter is found by ``recovery.py`` (at
start, and by its sweep) and told to the order, which finishes or undoes it the same way.
"""
