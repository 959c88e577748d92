"""Request limiter: never more than its limit in any 60 s window, whatever the call pattern."""

from __future__ import annotations

from bisect import bisect_left

from hypothesis import given
from hypothesis import strategies as st

from tradingsystem.execution.ratelimit import WINDOW_S, RequestLimiter


class FakeClock:
    def __init__(self, start: float = 0.0) -> None:
        self.now = start

    def __call__(self) -> float:
        return self.now

    def sleep(self, s: float) -> None:
        self.now += s


def most_in_any_window(times: list[float]) -> int:
    """The largest number of ``times`` (sorted) inside one half-open window [t, t + 60 s)."""
    return max((bisect_left(times, t + WINDOW_S) - i for i, t in enumerate(times)), default=0)


def test_a_full_budget_passes_at_once_then_the_next_request_waits_for_the_oldest_to_leave() -> None:
    clock = FakeClock()
    limiter = RequestLimiter(120, clock=clock, sleep=clock.sleep)
    assert all(limiter.acquire() == 0 for _ in range(120))
    clock.now = 10.0
    assert limiter.acquire() == 50.0


def test_a_burst_straddling_the_old_refill_point_is_not_admitted() -> None:
    # The old token bucket (burst 120, refill 2/s) admitted 120 at t=0 and 119 more before t=60.
    clock = FakeClock()
    limiter = RequestLimiter(120, clock=clock, sleep=clock.sleep)
    admitted = []
    for _ in range(240):
        limiter.acquire()
        admitted.append(clock.now)
    assert most_in_any_window(admitted) == 120 and admitted[120] == WINDOW_S


def test_requests_spread_over_the_window_are_never_delayed() -> None:
    clock = FakeClock()
    limiter = RequestLimiter(60, clock=clock, sleep=clock.sleep)
    waits = []
    for _ in range(300):
        waits.append(limiter.acquire())
        clock.now += 1.0
    assert set(waits) == {0}


# Each step advances the fake clock, then makes a few calls back to back.
steps = st.lists(
    st.tuples(st.floats(min_value=0, max_value=90, allow_nan=False), st.integers(0, 12)),
    max_size=60,
)


@given(
    limit=st.integers(1, 10),
    start=st.floats(min_value=0, max_value=1e6, allow_nan=False),
    steps=steps,
)
def test_no_sequence_of_calls_admits_more_than_the_limit_in_any_60_s_window(
    limit: int, start: float, steps: list[tuple[float, int]]
) -> None:
    clock = FakeClock(start)
    limiter = RequestLimiter(limit, clock=clock, sleep=clock.sleep)
    admitted: list[float] = []
    for advance, calls in steps:
        clock.now += advance
        for _ in range(calls):
            limiter.acquire()
            admitted.append(clock.now)
    assert most_in_any_window(admitted) <= limit
