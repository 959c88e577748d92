"""The Lease lock against an API server that cannot be reached: a failed attempt, never an
exception out of the election loop (which would end a leader at one dropped connection)."""

from __future__ import annotations

import asyncio
import json

from kubernetes_asyncio import client
from kubernetes_asyncio.client.exceptions import ApiException
from kubernetes_asyncio.leaderelection.electionconfig import Config
from kubernetes_asyncio.leaderelection.leaderelection import LeaderElection
from kubernetes_asyncio.leaderelection.leaderelectionrecord import LeaderElectionRecord

from tradingsystem_operator.lease import TolerantLeaseLock
from tradingsystem_testing.ports import free_port


def unreachable() -> client.ApiClient:
    # A free port on loopback: nothing listens, every request is refused.
    return client.ApiClient(client.Configuration(host=f"http://127.0.0.1:{free_port()}"))


async def test_an_unreachable_api_server_is_a_failed_read_and_write_not_an_exception() -> None:
    async with unreachable() as api:
        lock = TolerantLeaseLock("ts", "ns", "me", api)
        found, error = await lock.get("ts", "ns")
        assert found is False and isinstance(error, ApiException)
        assert json.loads(error.body or b"")["code"] == 0
        record = LeaderElectionRecord("me", "15", "2026-12-01 00:00:00.000001", "2026-12-01 00:00:00.000001")
        assert await lock.create("ts", "ns", record) is False


async def test_a_candidate_keeps_trying_while_the_api_server_is_unreachable() -> None:
    async with unreachable() as api:
        lock = TolerantLeaseLock("ts", "ns", "me", api)

        async def never() -> None:
            raise AssertionError("cannot lead without an API server")

        election = LeaderElection(Config(lock, 3, 2, 1, onstarted_leading=never, onstopped_leading=never))
        task = asyncio.create_task(election.run())
        await asyncio.sleep(2.5)  # several retry periods
        assert not task.done()  # still a candidate: no exception escaped
        task.cancel()
