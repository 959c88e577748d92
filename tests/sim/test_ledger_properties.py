"""Property: no sequence of orders, replaces, cancels, quotes and session closes breaks the
ledger: the books stay exact (Decimal), no order fills past its qty, a cash account never goes
short or below zero cash, an oco/bracket never fills both exits, and no day order outlives its close."""

from __future__ import annotations

from decimal import Decimal as D
from typing import Any

from hypothesis import HealthCheck, settings
from hypothesis import strategies as st
from hypothesis.stateful import RuleBasedStateMachine, initialize, invariant, rule

from tradingsystem.sim.account import AccountConfig, AccountType
from tradingsystem.sim.ledger import Ledger, Quote, SimError
from tradingsystem.sim.prices import CENT

from .test_ledger_orders import HOUR, FakeClock, assert_books_exact

CASH = AccountConfig(type=AccountType.CASH, multiplier=1)
prices = st.integers(min_value=9_000, max_value=11_000).map(lambda c: D(c) / 100)


class LedgerMachine(RuleBasedStateMachine):
    @initialize(cash_account=st.booleans(), partial=st.booleans())
    def start(self, cash_account: bool, partial: bool) -> None:
        self.clock = FakeClock()
        self.cash_account = cash_account
        self.ledger = Ledger(
            ["AAPL"],
            D("100000"),
            {"AAPL": "asset-aapl"},
            partial_fills=partial,
            now_ns=self.clock,
            account=CASH if cash_account else AccountConfig(),
        )
        self.ledger.on_quote("AAPL", Quote(D("100.00"), 300, D("100.02"), 300))

    def _open(self) -> list[Any]:
        return sorted((o for o in self.ledger.orders.values() if o.is_open), key=lambda o: o.created_ns)

    @rule(bid=prices, spread=st.integers(1, 5), bs=st.integers(1, 5), asz=st.integers(1, 5))
    def quote(self, bid: D, spread: int, bs: int, asz: int) -> None:
        self.ledger.on_quote("AAPL", Quote(bid, bs * 100, bid + spread * CENT, asz * 100))

    @rule(
        side=st.sampled_from(["buy", "sell"]),
        kind=st.sampled_from(["market", "limit", "stop", "stop_limit", "trailing_stop"]),
        qty=st.integers(1, 400),
        price=prices,
        tif=st.sampled_from(["day", "gtc", "ioc", "fok", "cls"]),
        order_class=st.sampled_from(["simple", "simple", "bracket", "oco", "oto"]),
    )
    def submit(self, side: str, kind: str, qty: int, price: D, tif: str, order_class: str) -> None:
        if self.cash_account and kind not in ("market", "limit"):
            kind = "limit"  # stops may gap past their reservation; cash >= 0 is checked without them
        body: dict[str, Any] = {
            "symbol": "AAPL",
            "qty": qty,
            "side": side,
            "type": kind,
            "time_in_force": tif,
        }
        if kind in ("limit", "stop_limit"):
            body["limit_price"] = str(price)
        if kind in ("stop", "stop_limit"):
            body["stop_price"] = str(price)
        if kind == "trailing_stop":
            body["trail_price"] = "1.50"
        if order_class != "simple":
            up, down = str(price + 5), str(price - 5)
            body.update(
                order_class=order_class,
                take_profit={"limit_price": up if side == "buy" else down},
                stop_loss={"stop_price": down if side == "buy" else up},
            )
            if order_class == "oto":
                del body["take_profit"]
            if order_class == "oco":
                body.update(type="limit", limit_price=None, stop_price=None, trail_price=None)
        try:
            self.ledger.submit(body)
        except SimError as exc:
            assert exc.status in (403, 422)

    @rule(pick=st.integers(0, 50), qty=st.integers(1, 400), price=prices)
    def replace(self, pick: int, qty: int, price: D) -> None:
        open_orders = self._open()
        if not open_orders:
            return
        o = open_orders[pick % len(open_orders)]
        body: dict[str, Any] = {"qty": qty}
        if o.type in ("limit", "stop_limit"):
            body["limit_price"] = str(price)
        try:
            self.ledger.replace(o.id, body)
        except SimError as exc:
            assert exc.status in (403, 422)

    @rule(pick=st.integers(0, 50))
    def cancel(self, pick: int) -> None:
        open_orders = self._open()
        if open_orders:
            self.ledger.cancel(open_orders[pick % len(open_orders)].id)

    @rule(hours=st.integers(1, 30))
    def advance(self, hours: int) -> None:
        self.clock.advance(hours * HOUR)
        self.ledger.on_clock(self.clock())

    @invariant()
    def books_are_exact(self) -> None:
        assert_books_exact(self.ledger)
        for o in self.ledger.orders.values():
            assert (o.status == "filled") == (o.filled_qty == o.qty)
            assert o.status != "held" or o.filled_qty == 0

    @invariant()
    def a_cash_account_never_goes_short_or_below_zero(self) -> None:
        if self.cash_account:
            pos = self.ledger.positions.get("AAPL")
            assert pos is None or pos.qty >= 0
            assert self.ledger.cash >= 0

    @invariant()
    def one_exit_per_group(self) -> None:
        for parent in self.ledger.orders.values():
            exits = [self.ledger.orders[i] for i in parent.legs]
            if parent.order_class == "oco":
                exits.append(parent)
            assert sum(1 for o in exits if o.filled_qty > 0) <= 1

    @invariant()
    def no_day_order_outlives_its_close(self) -> None:
        now = self.clock.now
        for o in self.ledger.orders.values():
            assert not (o.is_open and o.expires_ns is not None and o.expires_ns <= now - 1_000_000)


LedgerMachine.TestCase.settings = settings(
    max_examples=60, stateful_step_count=40, deadline=None, suppress_health_check=[HealthCheck.too_slow]
)
TestLedgerProperties = LedgerMachine.TestCase
