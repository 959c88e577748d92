"""The simulated trading session: when the market is open, and when each trading day ends.

No I/O. Two models (``SessionModel``):

- ``continuous`` (default): the market never closes. A trading day is a UTC calendar day;
  it "closes" and the next one opens at 00:00 UTC. That is when ``day`` orders expire,
  ``cls`` orders execute and ``last_equity`` is taken.
- ``regular``: US equities regular hours, 09:30-16:00 America/New_York, Monday to Friday
  (exchange holidays and half days are not modelled). Orders are accepted at any time but
  only match while the market is open; ``opg`` orders execute at the first quote after the
  open, ``cls`` orders at the close.

A ``day`` order belongs to the session that is open when it is submitted, or to the next one
if the market is closed, and expires at that session's close: ``day_end_ns(model, created)``.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import UTC, date, datetime, time, timedelta, tzinfo
from zoneinfo import ZoneInfo

from tradingsystem.common.config import SessionModel  # declared with the settings that choose it

NY = ZoneInfo("America/New_York")
REGULAR_OPEN = time(9, 30)
REGULAR_CLOSE = time(16, 0)
NS = 1_000_000_000


@dataclass(frozen=True, slots=True)
class Clock:
    """What ``GET /v2/clock`` answers at one instant."""

    now_ns: int
    is_open: bool
    next_open_ns: int
    next_close_ns: int


def _ns(dt: datetime) -> int:
    return int(dt.timestamp()) * NS + dt.microsecond * 1000


def _dt(ns: int, tz: tzinfo | None = None) -> datetime:
    return datetime.fromtimestamp(ns // NS, tz or UTC).replace(microsecond=(ns // 1000) % 1_000_000)


def _regular_day(d: date) -> tuple[int, int]:
    return (
        _ns(datetime.combine(d, REGULAR_OPEN, NY)),
        _ns(datetime.combine(d, REGULAR_CLOSE, NY)),
    )


def _next_regular_session(now_ns: int) -> tuple[int, int]:
    """(open, close) of the session open at ``now_ns``, else of the next one."""
    d = _dt(now_ns, NY).date()
    while True:
        if d.weekday() < 5:
            open_ns, close_ns = _regular_day(d)
            if now_ns < close_ns:
                return open_ns, close_ns
        d += timedelta(days=1)


def _utc_midnight_after(now_ns: int) -> int:
    d = _dt(now_ns).date() + timedelta(days=1)
    return _ns(datetime.combine(d, time(0), UTC))


def clock(model: SessionModel, now_ns: int) -> Clock:
    if model is SessionModel.CONTINUOUS:
        boundary = _utc_midnight_after(now_ns)
        return Clock(now_ns, True, boundary, boundary)
    open_ns, close_ns = _next_regular_session(now_ns)
    if open_ns <= now_ns:  # open now: the next open is the following session's
        next_open, _ = _next_regular_session(close_ns)
        return Clock(now_ns, True, next_open, close_ns)
    return Clock(now_ns, False, open_ns, close_ns)


def day_end_ns(model: SessionModel, now_ns: int) -> int:
    """The close of the session a ``day`` order submitted at ``now_ns`` belongs to."""
    return clock(model, now_ns).next_close_ns


def session_open_ns(model: SessionModel, now_ns: int) -> int:
    """The open of the session an ``opg`` order submitted at ``now_ns`` is for (always the next open)."""
    return clock(model, now_ns).next_open_ns


def trading_day(model: SessionModel, now_ns: int) -> date:
    """The date of the session open at ``now_ns`` (or the next one): the day-trade bucket."""
    end = day_end_ns(model, now_ns)
    return _dt(end - 1, UTC if model is SessionModel.CONTINUOUS else NY).date()


def recent_days(model: SessionModel, today: date, n: int) -> list[date]:
    """``today`` and the ``n - 1`` trading days before it (weekdays in the regular model)."""
    out: list[date] = []
    d = today
    while len(out) < n:
        if model is SessionModel.CONTINUOUS or d.weekday() < 5:
            out.append(d)
        d -= timedelta(days=1)
    return out
