"""Start the kopf operator in-process with our handlers, metrics server and scope."""

from __future__ import annotations

import asyncio
import logging

import kopf
from prometheus_client import start_http_server

import tradingsystem_operator.handlers  # noqa: F401  (registers the handlers)


def run_operator(
    *, namespaces: list[str], metrics_port: int, liveness: str | None, verbose: bool = False
) -> int:
    """Namespace-scoped when ``namespaces`` is given, else cluster-wide. Blocks until stopped."""
    kopf.configure(verbose=verbose, log_format=kopf.LogFormat.JSON)
    if metrics_port:
        start_http_server(metrics_port)
    asyncio.run(
        kopf.operator(
            standalone=True,  # one replica (Recreate): no peering objects to install or RBAC to grant
            clusterwide=not namespaces,
            namespaces=namespaces,
            liveness_endpoint=liveness,
        )
    )
    logging.getLogger(__name__).info("operator stopped")
    return 0
