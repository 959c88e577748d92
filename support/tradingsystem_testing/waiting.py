"""Bounded waits: poll a condition until it holds or a generous deadline passes.

The one wait-until helper of the tests and benchmarks, sync and async. A loaded machine makes a
wait longer, never a test red: deadlines are there to end a broken run, not to measure speed.

    pods = eventually(lambda: list_pods() or None, "the pods", timeout=60)
    await eventually_async(lambda: phase_is("Running"), "phase Running")
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Awaitable, Callable
from typing import TypeVar

T = TypeVar("T")
# Exceptions a probe may raise that mean "not yet": exception types, or a predicate
# (e.g. ``tradingsystem_testing.k8s.not_found`` for a 404 from the Kubernetes API).
Ignore = tuple[type[BaseException], ...] | Callable[[BaseException], bool]

DEFAULT_TIMEOUT_S = 60.0  # reached only when something is broken
DEFAULT_EVERY_S = 0.05
DEFAULT_EVERY_ASYNC_S = 0.2  # async probes are API round trips


class WaitTimeout(AssertionError):
    """A condition did not hold within its deadline (an AssertionError: pytest reports it as a failure)."""


def _not_yet(exc: Exception, ignore: Ignore) -> bool:
    return isinstance(exc, ignore) if isinstance(ignore, tuple) else ignore(exc)


def _timed_out(what: str, timeout: float, last: object, detail: Callable[[], str] | None) -> WaitTimeout:
    extra = detail() if detail is not None else ""
    return WaitTimeout(f"timed out after {timeout:g}s waiting for {what} (last: {last!r}){extra}")


def eventually(
    probe: Callable[[], T | None],
    what: str,
    *,
    timeout: float = DEFAULT_TIMEOUT_S,
    every: float = DEFAULT_EVERY_S,
    tick: Callable[[], object] | None = None,
    ignore: Ignore = (),
    detail: Callable[[], str] | None = None,
) -> T:
    """Call ``probe`` until it returns something truthy, and return that.

    ``tick`` runs before every probe (e.g. publish a heartbeat so a subscriber connects). An
    exception ``ignore`` matches counts as "not yet"; any other propagates. The probe runs at least
    once, the last time after the deadline; then ``WaitTimeout`` names ``what``, the last value and
    ``detail()`` (e.g. a log tail).
    """
    deadline = time.monotonic() + timeout
    last: object = None
    while True:
        if tick is not None:
            tick()
        try:
            value = probe()
        except Exception as exc:
            if not _not_yet(exc, ignore):
                raise
            value, last = None, exc
        else:
            last = value
        if value:
            return value
        if time.monotonic() > deadline:
            raise _timed_out(what, timeout, last, detail)
        time.sleep(every)


async def eventually_async(
    probe: Callable[[], Awaitable[T | None]],
    what: str,
    *,
    timeout: float = DEFAULT_TIMEOUT_S,
    every: float = DEFAULT_EVERY_ASYNC_S,
    ignore: Ignore = (),
    detail: Callable[[], str] | None = None,
) -> T:
    """``eventually`` for an async probe (e.g. a kubernetes_asyncio read); sleeps without blocking the loop."""
    deadline = time.monotonic() + timeout
    last: object = None
    while True:
        try:
            value = await probe()
        except Exception as exc:
            if not _not_yet(exc, ignore):
                raise
            value, last = None, exc
        else:
            last = value
        if value:
            return value
        if time.monotonic() > deadline:
            raise _timed_out(what, timeout, last, detail)
        await asyncio.sleep(every)
