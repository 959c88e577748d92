"""The shared test helpers of ``tradingsystem_testing``: bounded waits, free ports, the dev CLI."""

from __future__ import annotations

import socket
import subprocess
import sys
from collections.abc import Iterator

import pytest
from kubernetes_asyncio.client.exceptions import ApiException

from tradingsystem_testing import WaitTimeout, eventually, eventually_async, free_port
from tradingsystem_testing.cli import build_parser
from tradingsystem_testing.k8s import not_found


def answers(*values: object) -> Iterator[object]:
    """A probe's successive results; an exception instance is raised instead of returned."""
    yield from values


def probe_of(values: Iterator[object]) -> object:
    value = next(values)
    if isinstance(value, BaseException):
        raise value
    return value


def test_eventually_returns_the_first_truthy_value_and_ticks_before_each_probe() -> None:
    values, ticks = answers(None, 0, "", 3, 4), []
    assert eventually(lambda: probe_of(values), "three", every=0, tick=lambda: ticks.append(1)) == 3
    assert len(ticks) == 4


def test_eventually_names_what_it_waited_for_and_the_last_value() -> None:
    with pytest.raises(WaitTimeout, match=r"waiting for the answer \(last: 0\); see the log"):
        eventually(lambda: 0, "the answer", timeout=0, detail=lambda: "; see the log")


def test_a_timeout_is_an_assertion_error() -> None:
    assert issubclass(WaitTimeout, AssertionError)


def test_ignored_errors_mean_not_yet_and_others_propagate() -> None:
    values = answers(ConnectionRefusedError(), True)
    assert eventually(lambda: probe_of(values), "a connection", every=0, ignore=(OSError,)) is True
    with pytest.raises(ValueError):
        eventually(lambda: probe_of(answers(ValueError())), "a value", every=0, ignore=(OSError,))


async def test_eventually_async_retries_a_404_and_propagates_other_api_errors() -> None:
    values = answers(ApiException(status=404), {"kind": "Deployment"})

    async def read() -> object:
        return probe_of(values)

    assert await eventually_async(read, "the Deployment", every=0, ignore=not_found) == {"kind": "Deployment"}
    values = answers(ApiException(status=403))
    with pytest.raises(ApiException):
        await eventually_async(read, "the Deployment", every=0, ignore=not_found)


async def test_eventually_async_times_out_naming_what() -> None:
    async def never() -> None:
        return None

    with pytest.raises(WaitTimeout, match="waiting for nothing"):
        await eventually_async(never, "nothing", timeout=0)


def test_free_port_can_be_bound_on_loopback() -> None:
    with socket.socket() as s:
        s.bind(("127.0.0.1", free_port()))


def test_free_port_never_hands_out_a_recent_port_twice() -> None:
    # The kernel's own choice repeated 142 times in 2,000 calls on the CI machine.
    ports = [free_port() for _ in range(2_000)]
    assert len(set(ports)) == len(ports)


def test_dev_cli_offers_dev_cluster() -> None:
    args = build_parser().parse_args(["dev-cluster", "--no-controller-manager"])
    assert args.no_controller_manager and not args.no_prometheus_crds
    result = subprocess.run(
        [sys.executable, "-m", "tradingsystem_testing.cli", "--help"],
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert result.returncode == 0 and "dev-cluster" in result.stdout
