"""Property: no sequence of signals, quotes, fills, cancels, controls and clock moves makes the
risk manager exceed a limit, counting orders approved but not yet filled.

The test keeps its own ledger of what it sent (orders it was given, fills it reported) and
checks the limits against that ledger, not against the engine's own bookkeeping.
"""

from __future__ import annotations

from decimal import Decimal

from hypothesis import HealthCheck, settings
from hypothesis import strategies as st
from hypothesis.stateful import RuleBasedStateMachine, invariant, precondition, rule
from risk_builders import SYMBOLS, FakeClock, make_engine, quote, report, signal, terminal

from tradingsystem.common.wire import (
    Action,
    ControlAction,
    OrderIntent,
    OrderStatus,
    Rejection,
    RejectReason,
    RiskState,
    Side,
)

LIMITS = {
    "sizing": "strength",
    "order_qty": 35,  # strength 1 is over max_order_qty: that limit gets exercised too
    "max_order_qty": 30,
    "max_order_notional": 2_800,
    "max_position_qty": 50,
    "max_gross_exposure": 7_000,
    "max_open_positions": 2,
    "daily_loss_limit": 120,
    "reducing_at_loss_fraction": 0.5,
    "max_orders_per_minute": 3,
    "price_band_pct": 5,
}
D = Decimal
WINDOW_NS = 60 * 1_000_000_000


class RiskMachine(RuleBasedStateMachine):
    def __init__(self) -> None:
        super().__init__()
        self.clock = FakeClock()
        self.engine = make_engine(self.clock, **LIMITS)
        self.marks: dict[str, float] = {}
        self.position: dict[str, Decimal] = dict.fromkeys(SYMBOLS, D(0))
        self.open: dict[str, tuple[OrderIntent, Decimal]] = {}  # cid -> (order, filled)
        self.approved_at: list[int] = []
        self.reasons: set[RejectReason] = set()

    # --- what the world does ------------------------------------------------------------
    @rule(symbol=st.sampled_from(SYMBOLS), move_bp=st.integers(-300, 300))
    def market_moves(self, symbol: str, move_bp: int) -> None:
        """A random walk from 100: small steps, so the daily loss limits are reached only sometimes."""
        mid = min(max(round(self.marks.get(symbol, 100.0) * (1 + move_bp / 10_000), 2), 50.0), 200.0)
        self.marks[symbol] = mid
        self.engine.on_quote(quote(symbol, mid))

    @rule(
        symbol=st.sampled_from((*SYMBOLS, "TSLA")),
        action=st.sampled_from(Action),
        strength=st.one_of(st.sampled_from([0.2, 0.5, 0.8]), st.floats(0, 1), st.just(float("nan"))),
        off_pct=st.integers(-7, 7),
        burst=st.integers(1, 4),
    )
    def strategy_signals(
        self, symbol: str, action: Action, strength: float, off_pct: int, burst: int = 1
    ) -> None:
        """``burst`` signals alike in the same instant: what a fast strategy does to the limits."""
        for _ in range(burst):
            self.decide(symbol, action, strength, off_pct)

    def decide(self, symbol: str, action: Action, strength: float, off_pct: int) -> None:
        base = self.marks.get(symbol, 100.0)
        state_before = self.engine.state
        gross_before = self.worst_case_gross()
        worst_before = self.worst_case(symbol) if symbol in SYMBOLS else D(0)
        decision = self.engine.on_signal(
            signal(symbol, action, round(base * (1 + off_pct / 100), 2), strength)
        )
        if isinstance(decision, Rejection):
            self.reasons.add(decision.reason)
            return
        assert state_before is not RiskState.HALTED, "an order went out while HALTED"
        qty = D(str(decision.qty))
        assert qty > 0
        if state_before is RiskState.REDUCING:
            assert decision.reducing, "a non-reducing order went out while REDUCING"
        if not decision.reducing:
            assert qty <= LIMITS["max_order_qty"]
            assert qty * D(str(self.marks[symbol])) <= LIMITS["max_order_notional"]
        self.open[decision.client_order_id] = (decision, D(0))
        self.approved_at.append(self.clock())
        gross_after = self.worst_case_gross()
        assert gross_after <= max(D(LIMITS["max_gross_exposure"]), gross_before)
        if decision.reducing:
            assert gross_after <= gross_before
            assert self.worst_case(symbol) == worst_before, "a reducing order grew the worst case"

    @precondition(lambda self: self.open)
    @rule(data=st.data(), slip_pct=st.integers(-2, 2))
    def broker_fills(self, data: st.DataObject, slip_pct: int) -> None:
        cid = data.draw(st.sampled_from(sorted(self.open)))
        order, filled = self.open[cid]
        qty = data.draw(st.integers(1, int(D(str(order.qty)) - filled)))
        self.fill(cid, qty, round(self.marks[order.symbol] * (1 + slip_pct / 100), 2))

    def fill(self, cid: str, qty: int, price: float) -> None:
        order, filled = self.open[cid]
        filled += qty
        self.engine.on_report(report(order, qty, price, filled_total=float(filled)))
        self.position[order.symbol] += qty if order.side is Side.BUY else -qty
        if filled == D(str(order.qty)):
            del self.open[cid]
        else:
            self.open[cid] = (order, filled)

    @precondition(lambda self: self.open)
    @rule(
        data=st.data(),
        status=st.sampled_from([OrderStatus.CANCELED, OrderStatus.REJECTED, OrderStatus.EXPIRED]),
    )
    def broker_ends_order(self, data: st.DataObject, status: OrderStatus) -> None:
        cid = data.draw(st.sampled_from(sorted(self.open)))
        order, filled = self.open.pop(cid)
        self.engine.on_report(terminal(order, status, float(filled)))

    @rule(seconds=st.sampled_from([0.5, 5, 20, 61]))
    def time_passes(self, seconds: float) -> None:
        self.clock.advance(seconds)

    @rule(action=st.sampled_from(ControlAction))
    def operator(self, action: ControlAction) -> None:
        self.engine.control(action, "property test")
        if action in (ControlAction.HALT, ControlAction.CONFIG_HALT):
            assert self.engine.state is RiskState.HALTED

    # --- what must always hold ----------------------------------------------------------
    def worst_case(self, symbol: str) -> Decimal:
        buys = sum(
            (D(str(o.qty)) - f for o, f in self.open.values() if o.symbol == symbol and o.side is Side.BUY),
            D(0),
        )
        sells = sum(
            (D(str(o.qty)) - f for o, f in self.open.values() if o.symbol == symbol and o.side is Side.SELL),
            D(0),
        )
        pos = self.position[symbol]
        return max(abs(pos + buys), abs(pos - sells))

    def worst_case_gross(self) -> Decimal:
        return sum((self.worst_case(s) * D(str(self.marks[s])) for s in SYMBOLS if self.worst_case(s)), D(0))

    @invariant()
    def positions_within_limits(self) -> None:
        for s in SYMBOLS:
            assert self.worst_case(s) <= LIMITS["max_position_qty"]
            assert self.engine.book.qty(s) == self.position[s]  # engine tracks what was filled
        assert sum(1 for s in SYMBOLS if self.worst_case(s)) <= LIMITS["max_open_positions"]

    @invariant()
    def order_rate_within_limit(self) -> None:
        now = self.clock()
        assert sum(1 for t in self.approved_at if t > now - WINDOW_NS) <= LIMITS["max_orders_per_minute"]


RiskMachine.TestCase.settings = settings(
    max_examples=150, stateful_step_count=60, deadline=None, suppress_health_check=[HealthCheck.too_slow]
)
TestRiskLimits = RiskMachine.TestCase


def test_property_run_exercises_every_limit() -> None:
    """Guard against a vacuous property: a long random run must hit each limit at least once."""
    import random

    rng = random.Random(7)
    machine = RiskMachine()
    for _ in range(4000):
        pick = rng.random()
        if pick < 0.3:
            machine.market_moves(rng.choice(SYMBOLS), rng.randint(-300, 300))
        elif pick < 0.75:
            machine.strategy_signals(
                rng.choice((*SYMBOLS, "TSLA")), rng.choice(list(Action)), rng.random(), rng.randint(-7, 7)
            )
        elif pick < 0.85 and machine.open:
            cid = rng.choice(sorted(machine.open))
            order, filled = machine.open[cid]
            machine.fill(cid, int(order.qty - float(filled)), machine.marks[order.symbol])
        elif pick < 0.99:
            machine.time_passes(rng.choice([5, 20, 61]))
        else:
            # The seeded mix of controls (a config halt halts like a halt: the rule above).
            machine.operator(rng.choice([a for a in ControlAction if a is not ControlAction.CONFIG_HALT]))
        machine.positions_within_limits()
        machine.order_rate_within_limit()
    every_limit = {
        RejectReason.MAX_ORDER_QTY,
        RejectReason.MAX_ORDER_NOTIONAL,
        RejectReason.MAX_POSITION,
        RejectReason.MAX_OPEN_POSITIONS,
        RejectReason.MAX_GROSS_EXPOSURE,
        RejectReason.ORDER_RATE,
        RejectReason.PRICE_BAND,
        RejectReason.HALTED,
        RejectReason.REDUCING_ONLY,
        RejectReason.DAILY_LOSS_LIMIT,
    }
    assert every_limit <= machine.reasons, every_limit - machine.reasons
