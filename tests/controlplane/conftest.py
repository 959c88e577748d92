"""Helpers for the control-plane tests (the fixtures themselves live in tests/conftest.py)."""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable

import pytest
from kubernetes_asyncio.client.exceptions import ApiException


async def eventually(check: Callable[[], Awaitable[bool]], *, timeout: float = 60.0, what: str = "") -> None:
    """Poll ``check`` every 0.2 s until it returns True; fail after ``timeout`` seconds."""
    loop = asyncio.get_running_loop()
    deadline = loop.time() + timeout
    while not await check():
        if loop.time() > deadline:
            pytest.fail(f"timed out after {timeout:.0f}s waiting for {what or check}")
        await asyncio.sleep(0.2)


async def is_gone(read: Awaitable[object]) -> bool:
    """True once the read answers 404 Not Found."""
    try:
        await read
    except ApiException as exc:
        if exc.status == 404:
            return True
        raise
    return False
