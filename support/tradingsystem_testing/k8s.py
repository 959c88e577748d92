"""Small probes for tests against the Kubernetes API (kubernetes_asyncio)."""

from __future__ import annotations

from collections.abc import Awaitable

from kubernetes_asyncio.client.exceptions import ApiException


def not_found(exc: BaseException) -> bool:
    """The API answered 404 Not Found (for ``eventually(..., ignore=not_found)``)."""
    return isinstance(exc, ApiException) and exc.status == 404


async def is_gone(read: Awaitable[object]) -> bool:
    """True once the read answers 404 Not Found; any other error propagates."""
    try:
        await read
    except ApiException as exc:
        if exc.status == 404:
            return True
        raise
    return False
