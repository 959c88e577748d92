"""Soak: random SIGKILLs of random services during simulated trading, each process restarted
as Kubernetes would (same config, same state files), bounded to a few minutes.

At the end, trading is halted and settled, then: no client_order_id reached the broker twice,
risk positions == broker positions == execution store, no position ever exceeded its limit at
the broker (replayed from the simulator's fills), nothing was sent past the age limit, and a
halt set through /control was never lost across the risk-manager restarts that happened
while it was set. The counts are printed.
"""

from __future__ import annotations

import os
import random
import signal
import time
from collections import Counter
from pathlib import Path

import pytest
from e2e_helpers import control, metric, pipeline_settings, running_pipeline

from tradingsystem_testing import eventually
from tradingsystem_testing.durability import risk_state, settle_and_check

pytestmark = [pytest.mark.e2e, pytest.mark.soak]

SERVICES = ("market-data", "signal-bridge", "risk-manager", "execution-engine")
KILLS = 20
BUDGET_S = 200.0  # the kill loop's bound; settling and checks come after
MAX_POSITION = 40
MAX_AGE_S = 8.0


def test_random_sigkills_lose_and_duplicate_nothing(tmp_path: Path) -> None:
    seed = int(os.environ.get("TS_SOAK_SEED", time.time_ns() % 100_000))
    rng = random.Random(seed)
    print(f"soak seed {seed} (again: TS_SOAK_SEED={seed})")  # shown with a failure
    settings = pipeline_settings(
        tmp_path,
        symbols=["AAPL", "MSFT"],
        signals={"strategy": "ma_crossover", "params": {"fast": 3, "slow": 12}, "source": "trades"},
        risk={
            "sizing": "fixed",
            "order_qty": 5,
            "max_order_qty": MAX_POSITION,  # at most a position (RISK_LIMIT_RULES); orders are 5
            "max_position_qty": MAX_POSITION,
            "max_orders_per_minute": 120,
            "resync_interval_s": 1.0,
        },
        execution={"resubmit_max_age_s": MAX_AGE_S, "request_timeout_s": 5},
        sim={"seed": seed, "tick_rate": 10},
    )
    killed: Counter[str] = Counter()
    halt_checks = 0
    with running_pipeline(settings, tmp_path) as p:
        eventually(lambda: metric(p, "execution-engine", "tradingsystem_fills_total") >= 1, "first fills")
        end = time.monotonic() + BUDGET_S
        kills = 0
        while kills < KILLS and time.monotonic() < end:
            if kills == KILLS // 2:
                control(p, "halt", "soak: latch under fire")
            if kills == KILLS // 2 + 4:
                control(p, "resume", "soak")
            time.sleep(rng.uniform(0.2, 2.5))
            # The first kill under the halt is always the risk manager's: the latch must hold.
            name = "risk-manager" if kills == KILLS // 2 else rng.choice(SERVICES)
            p.stop_process(name, signal.SIGKILL)
            p.start_process(name)
            p.wait_ready(name, timeout=90)
            kills += 1
            killed[name] += 1
            if name == "risk-manager" and KILLS // 2 <= kills - 1 < KILLS // 2 + 4:
                state = risk_state(p) or {}
                assert (state.get("state"), state.get("kill_switch")) == ("HALTED", True), state
                halt_checks += 1
        assert kills >= KILLS, f"only {kills} kills in {BUDGET_S:.0f}s"
        report = settle_and_check(
            p, Path(p.settings.execution.db_path), max_age_s=MAX_AGE_S, max_position=MAX_POSITION
        )
        resyncs = metric(p, "risk-manager", "tradingsystem_risk_resyncs_total")
        replays = metric(p, "risk-manager", "tradingsystem_risk_intent_replays_total")
    print(
        f"\nsoak seed {seed}: {kills} SIGKILLs {dict(killed)}; {report.orders} orders, {report.fills} fills, "
        f"0 duplicate cids, max |position| {dict(report.max_abs_position)} <= {MAX_POSITION}; "
        f"halt survived {halt_checks} risk-manager kill(s); last risk process: {resyncs:.0f} resync "
        f"requests, {replays:.0f} intent replays"
    )
    assert report.orders > 0
    assert halt_checks >= 1
