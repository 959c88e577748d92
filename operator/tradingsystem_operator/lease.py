"""Leader election on a ``coordination.k8s.io`` Lease: of several replicas, only one reconciles.

The protocol is kubernetes_asyncio's ``leaderelection`` (client-go's): a candidate takes the Lease
when it is free, or when it has seen the same holder record unchanged for a whole lease duration
(the holder is gone); the holder renews it every retry period and gives up once it has failed to
renew for the renew deadline. Around it this module adds what controller-runtime adds:

- the lease is **released** when the leader stops gracefully (holder cleared), so a standby takes
  over at its next retry instead of waiting for the lease to expire (a rolling update fails over
  at once);
- a **watchdog**: the leader steps down once its last successful renewal is older than the renew
  deadline, even while a renewal request hangs;
- a request that fails in transport (connection refused, reset, timeout) is a failed attempt like
  an HTTP error, retried within the renew deadline; and a standby whose election fails otherwise
  starts it again;
- a leader that loses the lease **exits at once** (non-zero; the kubelet restarts it as a
  standby), as controller-runtime does: a half-stopped old leader must not write beside the new one.

The settings and the leader's check are pure, in ``election.py``.
"""

from __future__ import annotations

import asyncio
import contextlib
import datetime
import json
import logging
import os
import time
from collections.abc import Callable, Coroutine
from typing import Any, NoReturn

import aiohttp
from kubernetes_asyncio import client
from kubernetes_asyncio.client import ApiClient
from kubernetes_asyncio.client.exceptions import ApiException
from kubernetes_asyncio.leaderelection.electionconfig import Config
from kubernetes_asyncio.leaderelection.leaderelection import LeaderElection
from kubernetes_asyncio.leaderelection.resourcelock.leaselock import LeaseLock

from tradingsystem_operator.election import EXIT_LEASE_LOST, ElectionSettings, holds_lease
from tradingsystem_operator.metrics import IS_LEADER

logger = logging.getLogger(__name__)


async def release(api: ApiClient, settings: ElectionSettings) -> bool:
    """Clear the holder of the Lease if it is still ours, as client-go's ``ReleaseOnCancel`` does:
    a standby takes it at its next retry. False (logged) if it was not ours or the write failed;
    then the standby waits for the lease to expire instead."""
    coordination = client.CoordinationV1Api(api)
    try:
        lease = await coordination.read_namespaced_lease(settings.name, settings.namespace)
        if lease.spec is None or lease.spec.holder_identity != settings.identity:
            return False
        lease.spec.holder_identity = None  # type: ignore[assignment]  # cleared: the Lease is free
        lease.spec.lease_duration_seconds = 1
        lease.spec.renew_time = datetime.datetime.now(datetime.UTC)
        # resourceVersion is kept: a replace after someone else's write is refused (409).
        await coordination.replace_namespaced_lease(settings.name, settings.namespace, lease)
    except (ApiException, *TRANSPORT_ERRORS) as exc:
        logger.warning("could not release Lease %s/%s: %s", settings.namespace, settings.name, exc)
        return False
    logger.info("released Lease %s/%s", settings.namespace, settings.name)
    return True


# A request that fails in transport (connection refused or reset, timeout), not with an HTTP answer.
TRANSPORT_ERRORS = (aiohttp.ClientError, TimeoutError)


class TolerantLeaseLock(LeaseLock):
    """``LeaseLock`` whose transport errors are failed attempts, as HTTP errors already are: the
    library lets them escape its loops, which would end a leader at one dropped connection
    instead of after the renew deadline."""

    async def get(self, name: str, namespace: str) -> Any:
        try:
            return await super().get(name, namespace)
        except TRANSPORT_ERRORS as exc:
            failed = ApiException(status=0, reason=f"{type(exc).__name__}: {exc}")
            failed.body = json.dumps({"code": 0}).encode()  # the library reads the code from the body
            return False, failed

    async def create(self, name: str, namespace: str, election_record: Any) -> bool:
        try:
            return await super().create(name, namespace, election_record)
        except TRANSPORT_ERRORS:
            return False

    async def update(self, name: str, namespace: str, updated_record: Any) -> bool:
        try:
            return await super().update(name, namespace, updated_record)
        except TRANSPORT_ERRORS:
            return False


def _elector(api: ApiClient, settings: ElectionSettings, leading: asyncio.Event) -> LeaderElection:
    async def started() -> None:
        leading.set()

    async def stopped() -> None:
        pass  # run() returning is the signal; see run_elected

    lock = TolerantLeaseLock(settings.name, settings.namespace, settings.identity, api)
    return LeaderElection(
        Config(
            lock,
            settings.lease_duration,
            settings.renew_deadline,
            settings.retry_period,
            onstarted_leading=started,
            onstopped_leading=stopped,
        )
    )


async def _watchdog(elector: LeaderElection, settings: ElectionSettings) -> None:
    """Returns once this replica may no longer act as leader (see ``holds_lease``)."""
    while True:
        await asyncio.sleep(settings.retry_period / 2)
        record = elector.observed_record
        holder = record.holder_identity if record is not None else None
        now_ms = int(time.time() * 1000)
        if not holds_lease(
            holder, settings.identity, elector.observed_time_milliseconds, now_ms, settings.renew_deadline
        ):
            return


def _exit_now(code: int) -> NoReturn:
    logging.shutdown()
    os._exit(code)


async def run_elected(
    api: ApiClient,
    settings: ElectionSettings,
    lead: Callable[[], Coroutine[Any, Any, int]],
    stop: asyncio.Event,
    *,
    on_lost: Callable[[int], NoReturn] = _exit_now,
) -> int:
    """Stand by until the Lease is ours (or ``stop`` is set: 0), then run ``lead()`` while it is.

    When ``lead()`` ends (a graceful stop), the Lease is released and its code returned. When the
    Lease is lost first, ``on_lost(EXIT_LEASE_LOST)`` ends the process at once.
    """
    IS_LEADER.set(0)
    stopping = asyncio.create_task(stop.wait(), name="leader-election-stop")
    try:
        while True:
            leading = asyncio.Event()
            elector = _elector(api, settings, leading)
            election = asyncio.create_task(elector.run(), name="leader-election")
            got = asyncio.create_task(leading.wait(), name="leader-election-acquired")
            await asyncio.wait({election, got, stopping}, return_when=asyncio.FIRST_COMPLETED)
            got.cancel()
            if leading.is_set():
                break
            if stopping.done():
                election.cancel()
                with contextlib.suppress(asyncio.CancelledError, Exception):
                    await election
                await release(api, settings)  # in case the lease was taken in that very moment
                return 0
            # The election ended without leading: an API error (e.g. the server is unreachable).
            logger.warning(
                "leader election for Lease %s/%s failed, retrying: %r",
                settings.namespace,
                settings.name,
                election.exception(),
            )
            await asyncio.sleep(settings.retry_period)
    finally:
        stopping.cancel()

    logger.info("leading: acquired Lease %s/%s as %s", settings.namespace, settings.name, settings.identity)
    IS_LEADER.set(1)
    acting = asyncio.create_task(lead(), name="leader")
    watchdog = asyncio.create_task(_watchdog(elector, settings), name="leader-election-watchdog")
    await asyncio.wait({acting, election, watchdog}, return_when=asyncio.FIRST_COMPLETED)
    if not acting.done():
        IS_LEADER.set(0)
        record = elector.observed_record
        logger.error(
            "lost Lease %s/%s (holder now %r; renewals fail after %s s): exiting so that another "
            "replica leads",
            settings.namespace,
            settings.name,
            record.holder_identity if record is not None else None,
            settings.renew_deadline,
        )
        on_lost(EXIT_LEASE_LOST)
    for task in (election, watchdog):
        task.cancel()
        with contextlib.suppress(asyncio.CancelledError, Exception):
            await task
    IS_LEADER.set(0)
    await release(api, settings)
    return acting.result()
