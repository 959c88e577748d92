"""The order-management core: which orders are open, which may still be sent. No I/O.

Fed explicit inputs (an order, a broker view, ``now_ns``), it decides; the service shell
(``execution.service.ExecutionService``) does the broker calls, the store writes and the bus.

Age rule, the one definition: an approved order whose age (since the risk manager approved
it, ``Order.age_ns``) exceeds ``max_age_ns`` when it would be sent — first submit or a
re-placement after a crash — is never sent: it ends REJECTED with ``ExecRejectReason.STALE``,
which releases the risk manager's reservation. Behind a slow broker the queue of orders not
yet submitted is bounded (``max_queued``); an intent arriving to a full queue ends REJECTED
with ``QUEUE_FULL`` at once, rather than waiting to be sent late.
"""

from __future__ import annotations

import enum
from dataclasses import dataclass, field

from tradingsystem.common.wire import ExecRejectReason, OrderStatus
from tradingsystem.execution.orders import Order


class ReconcileAction(enum.StrEnum):
    """What to do with an open order after looking it up at the broker by client_order_id."""

    APPLY = "apply"  # the broker has it: take its view
    PLACE = "place"  # never reached the broker and still young enough: place it (once)
    REJECT_STALE = "reject_stale"  # never reached the broker and too old: never place it
    KEEP_LOOKING = "keep_looking"  # the broker accepted it once (or said so by a 422): it exists


@dataclass(frozen=True, slots=True)
class EngineLimits:
    max_age_ns: int
    max_queued: int


@dataclass
class Engine:
    """Open orders (by client_order_id) and the count of orders waiting for a first submit."""

    limits: EngineLimits
    open: dict[str, Order] = field(default_factory=dict)
    queued: int = 0

    def admit(self, order: Order, now_ns: int) -> ExecRejectReason | None:
        """A new intent: None to queue it for submission, else why it must be rejected."""
        if order.age_ns(now_ns) > self.limits.max_age_ns:
            return ExecRejectReason.STALE
        if self.queued >= self.limits.max_queued:
            return ExecRejectReason.QUEUE_FULL
        self.queued += 1
        self.open[order.client_order_id] = order
        return None

    def before_submit(self, order: Order, now_ns: int) -> ExecRejectReason | None:
        """Dequeued for its first submit: None to send it now, STALE if it waited too long."""
        self.queued = max(0, self.queued - 1)
        return ExecRejectReason.STALE if order.age_ns(now_ns) > self.limits.max_age_ns else None

    def send_deadline_ns(self, order: Order) -> int:
        """No POST of ``order`` may start after this (first attempt, retries, re-placement)."""
        return (order.approved_ts or order.created_ns) + self.limits.max_age_ns

    def reconcile_action(self, order: Order, found: bool, now_ns: int) -> ReconcileAction:
        if found:
            return ReconcileAction.APPLY
        if order.status is not OrderStatus.PENDING_SUBMIT:
            return ReconcileAction.KEEP_LOOKING
        if order.age_ns(now_ns) > self.limits.max_age_ns:
            return ReconcileAction.REJECT_STALE
        return ReconcileAction.PLACE

    def track(self, order: Order) -> None:
        """Keep ``order`` open (at start-up, from the store) or forget it once terminal."""
        if order.terminal:
            self.open.pop(order.client_order_id, None)
        else:
            self.open[order.client_order_id] = order


__all__ = ["Engine", "EngineLimits", "ReconcileAction"]
