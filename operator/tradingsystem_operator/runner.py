"""Start the kopf operator in-process with our handlers, metrics server and scope, either alone or
behind leader election (``lease.py``): then kopf starts only once this replica holds the Lease."""

from __future__ import annotations

import asyncio
import contextlib
import logging
import signal
import urllib.parse

import aiohttp.web
import kopf
from prometheus_client import start_http_server

import tradingsystem_operator.handlers  # noqa: F401  (registers the handlers)
from tradingsystem_operator.apply import new_api_client
from tradingsystem_operator.election import ElectionSettings
from tradingsystem_operator.lease import run_elected
from tradingsystem_operator.metrics import IS_LEADER

logger = logging.getLogger(__name__)


def run_operator(
    *,
    namespaces: list[str],
    metrics_port: int,
    liveness: str | None,
    verbose: bool = False,
    election: ElectionSettings | None = None,
) -> int:
    """Namespace-scoped when ``namespaces`` is given, else cluster-wide. Blocks until stopped.

    Without ``election`` kopf runs at once (one replica). With it, the process stands by (metrics
    and liveness served, ``is_leader`` 0) until it holds the Lease.
    """
    kopf.configure(verbose=verbose, log_format=kopf.LogFormat.JSON)
    if metrics_port:
        start_http_server(metrics_port)
    if election is None:
        IS_LEADER.set(1)
        asyncio.run(_kopf(namespaces, liveness))
        code = 0
    else:
        code = asyncio.run(_elected(namespaces, liveness, election))
    logger.info("operator stopped")
    return code


async def _reclaim_signals(ready: asyncio.Event, stop: asyncio.Event) -> None:
    """Once kopf runs (and has installed its signal handlers), route SIGTERM/SIGINT to ``stop``
    again. kopf stopped by a signal leaves its stop-flag waiter task behind and then waits 5 s
    for it before it returns: 5 s more before the Lease is released and a standby takes over."""
    await ready.wait()
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGINT, signal.SIGTERM):
        loop.add_signal_handler(sig, stop.set)


async def _kopf(
    namespaces: list[str],
    liveness: str | None,
    stop: asyncio.Event | None = None,
    ready: asyncio.Event | None = None,
) -> None:
    await kopf.operator(
        # No kopf peering objects: one replica, or leader election decides who runs kopf.
        standalone=True,
        clusterwide=not namespaces,
        namespaces=namespaces,
        liveness_endpoint=liveness,
        stop_flag=stop,
        ready_flag=ready,
    )


async def _elected(namespaces: list[str], liveness: str | None, election: ElectionSettings) -> int:
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGINT, signal.SIGTERM):  # kopf installs its own once it runs
        loop.add_signal_handler(sig, stop.set)
    api = await new_api_client()
    standby = await _serve_standby_health(liveness) if liveness else None

    async def lead() -> int:
        if standby is not None:
            await standby.cleanup()  # kopf's probe server takes the port over
        if stop.is_set():
            return 0
        ready = asyncio.Event()
        reclaim = asyncio.create_task(_reclaim_signals(ready, stop))
        try:
            await _kopf(namespaces, liveness, stop, ready)
        finally:
            reclaim.cancel()
        return 0

    try:
        return await run_elected(api, election, lead, stop)
    finally:
        if standby is not None:
            with contextlib.suppress(Exception):
                await standby.cleanup()
        await api.close()


async def _serve_standby_health(url: str) -> aiohttp.web.AppRunner:
    """The liveness URL while standing by: 200 ``{"leader": false}``. A standby is live and ready,
    as in controller-runtime: restarting it would not make it lead sooner."""

    async def health(_: aiohttp.web.Request) -> aiohttp.web.Response:
        return aiohttp.web.json_response({"leader": False})

    parts = urllib.parse.urlsplit(url)
    app = aiohttp.web.Application()
    app.add_routes([aiohttp.web.get(parts.path or "/", health)])
    runner = aiohttp.web.AppRunner(app, handle_signals=False, shutdown_timeout=1.0)
    await runner.setup()
    await aiohttp.web.TCPSite(runner, parts.hostname or "127.0.0.1", parts.port or 80).start()
    return runner
