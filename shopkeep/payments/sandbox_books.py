"""The sandbox gateway's books: what it collected and refunded, per payment and in all.

A real gateway keeps its books forever, in its own database. The sandbox lives in the shop's
process, so its books are memory the shop pays for: kept whole, a server taking sixty payments
a second grew by about 530 bytes a payment (a transaction, a refund, the last callback body)
for as long as it ran. So the books remember the most recent ``remember`` payments and
refunds, and forget older ones the way a restart of the sandbox forgets everything: the totals
stay exact (running sums), a refund of a payment no longer remembered is done on trust (as
after a restart), and a transaction of a forgotten payment reported again would be counted
again. ``remember=None`` keeps everything: the proofs and tests that compare the books
payment by payment with the shop's ledger run a bounded number of payments and use that.
"""

from __future__ import annotations

from collections.abc import Mapping
from types import MappingProxyType
from typing import TypeVar

V = TypeVar("V")

PAYMENTS_REMEMBERED = 4_096
"""How many of the most recent payments (and refunds) the sandbox's books keep by default:
about 2 MiB, and far more than a payment's retried callbacks or refunds are ever apart."""


class PaymentBook:
    """One payment: its transactions, what was refunded of it, the last callback body."""

    __slots__ = ("last_body", "refunded", "txns")

    def __init__(self) -> None:
        self.txns: dict[str | None, int] = {}
        self.refunded = 0
        self.last_body: bytes | None = None

    @property
    def collected(self) -> int:
        """Everything collected for this payment."""
        return sum(self.txns.values())


class SandboxBooks:
    """Per-payment books of the most recent ``remember`` payments, and exact totals of all."""

    def __init__(self, remember: int | None = PAYMENTS_REMEMBERED) -> None:
        if remember is not None and remember < 1:
            raise ValueError(f"remember must be at least 1 (or None), not {remember}")
        self._remember = remember
        self._payments: dict[int, PaymentBook] = {}  # oldest first (insertion order)
        self._refunds: dict[int, tuple[int | None, int]] = {}
        self.total_collected = 0
        self.total_refunded = 0

    def payment(self, payment_id: int) -> PaymentBook:
        """The book of ``payment_id``, opened (and the oldest beyond the bound forgotten)."""
        book = self._payments.get(payment_id)
        if book is None:
            book = self._payments[payment_id] = PaymentBook()
            _forget_oldest(self._payments, self._remember)
        return book

    def remembers(self, payment_id: int | None) -> bool:
        """Whether the books still hold ``payment_id``."""
        return payment_id is not None and payment_id in self._payments

    def transactions(self, payment_id: int) -> Mapping[str | None, int]:
        """Transaction id -> amount collected for ``payment_id``, first first (empty when
        not remembered): one payment's, without walking every book as :attr:`collected`."""
        book = self._payments.get(payment_id)
        return MappingProxyType({} if book is None else book.txns)

    def last_body(self, payment_id: int) -> bytes | None:
        """The last callback body sent for ``payment_id``, if remembered."""
        book = self._payments.get(payment_id)
        return None if book is None else book.last_body

    def collect(self, payment_id: int, txn_id: str | None, amount: int) -> bool:
        """Record ``amount`` collected in transaction ``txn_id``; whether it was new."""
        book = self.payment(payment_id)
        if txn_id in book.txns:
            return False
        book.txns[txn_id] = amount
        self.total_collected += amount
        return True

    def uncollect(self, payment_id: int, txn_id: str | None) -> None:
        """Take back what :meth:`collect` recorded in ``txn_id``: a payment that never was (the
        shop refused its callback for good)."""
        book = self._payments.get(payment_id)
        if book is not None and txn_id in book.txns:
            self.total_collected -= book.txns.pop(txn_id)

    def refundable(self, payment_id: int | None) -> int:
        """What was collected for ``payment_id`` and not refunded yet (0 when not remembered)."""
        book = self._payments.get(payment_id) if payment_id is not None else None
        return 0 if book is None else book.collected - book.refunded

    def has_refund(self, refund_id: int) -> bool:
        """Whether refund ``refund_id`` was done (and is still remembered)."""
        return refund_id in self._refunds

    def refund(self, refund_id: int, payment_id: int | None, amount: int) -> None:
        """Record refund ``refund_id`` of ``amount`` for ``payment_id``."""
        self._refunds[refund_id] = (payment_id, amount)
        _forget_oldest(self._refunds, self._remember)
        self.total_refunded += amount
        book = self._payments.get(payment_id) if payment_id is not None else None
        if book is not None:
            book.refunded += amount

    @property
    def collected(self) -> Mapping[tuple[int, str | None], int]:
        """(payment id, transaction id) -> amount, of the payments remembered."""
        return MappingProxyType(
            {
                (payment_id, txn_id): amount
                for payment_id, book in self._payments.items()
                for txn_id, amount in book.txns.items()
            }
        )

    @property
    def refunded(self) -> Mapping[int, tuple[int | None, int]]:
        """Refund id -> (payment id, amount), of the refunds remembered."""
        return MappingProxyType(self._refunds)


def _forget_oldest(books: dict[int, V], remember: int | None) -> None:
    """Drop the oldest entry of ``books`` when it holds more than ``remember``."""
    if remember is not None and len(books) > remember:
        del books[next(iter(books))]
