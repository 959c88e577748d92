"""The resync loop gives way to create/update/resume passes waiting for their turn."""

from __future__ import annotations

import asyncio
import contextlib

import kopf

from tradingsystem_operator import handlers

KEY = ("ns", "demo")


def memo() -> kopf.Memo:
    m = kopf.Memo()
    m.locks, m.queued, m.tasks, m.deployments = {}, set(), set(), {}
    m.passes = asyncio.Semaphore(1)
    m.known, m.last_pass = {KEY: frozenset()}, {KEY: 0.0}  # due at once
    m.resync_s, m.changes_waiting = 0.2, 0
    return m


async def test_a_change_pass_is_counted_while_it_waits_for_a_turn_and_not_after_it_is_cancelled() -> None:
    m = memo()
    body = {"metadata": {"namespace": "ns", "name": "other", "uid": "u"}}
    async with m.passes:  # every turn taken
        waiting = asyncio.create_task(handlers._run(body, m, retry=0))
        await asyncio.sleep(0.05)
        assert m.changes_waiting == 1
        waiting.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await waiting
    assert m.changes_waiting == 0


async def test_the_resync_waits_while_a_change_waits_and_resumes_after() -> None:
    m = memo()
    m.changes_waiting = 1
    loop = asyncio.create_task(handlers._resync_loop(m))
    try:
        await asyncio.sleep(0.5)  # several ticks with the object due
        assert m.last_pass[KEY] == 0.0 and not m.tasks
        m.changes_waiting = 0
        for _ in range(100):
            await asyncio.sleep(0.05)
            if m.last_pass[KEY] != 0.0:
                break
        assert m.last_pass[KEY] != 0.0  # its resync pass was started
    finally:
        loop.cancel()
        for task in [loop, *m.tasks]:
            task.cancel()
            with contextlib.suppress(BaseException):
                await task
