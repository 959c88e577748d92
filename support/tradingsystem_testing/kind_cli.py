"""``tradingsystem-dev kind-up`` / ``kind-down``: an offline kind cluster with our image loaded."""

from __future__ import annotations

import argparse
import sys
from typing import Any

from tradingsystem_testing.docker import CommandFailed, ContainerRuntimeUnavailable
from tradingsystem_testing.kind import KindEnvironment, KindSettings


def register(sub: Any) -> None:
    up = sub.add_parser(
        "kind-up",
        help="start a private dockerd and a kind cluster with the tradingsystem image loaded",
        description="Build (once, cached in ~/.cache/tradingsystem) kind, the Kubernetes binaries, a "
        "local Python base and a kind node image, all offline; start a private dockerd behind egress "
        "DROP rules; create the kind cluster; build and load our image; print what to type next. "
        "Idempotent: a second run reuses everything. Undo with kind-down.",
    )
    up.add_argument("--name", default="kind", help="cluster name (default: %(default)s)")
    up.add_argument("--no-image", action="store_true", help="do not build/load the tradingsystem image")
    up.add_argument(
        "--monitoring",
        action="store_true",
        help="also install the Prometheus operator and a Prometheus (built from their Go modules; "
        "docs/kind.md, Monitoring) selecting ServiceMonitors labelled release=kube-prometheus-stack",
    )
    up.set_defaults(run=_up)
    down = sub.add_parser(
        "kind-down",
        help="delete the kind cluster, stop the private dockerd, restore host sysctls and firewall",
        description="Delete the cluster, stop the private dockerd, remove the egress rules and restore "
        "the host sysctls recorded by kind-up. Cached binaries and images stay.",
    )
    down.add_argument("--name", default="kind", help="cluster name (default: %(default)s)")
    down.set_defaults(run=_down)


def _up(args: argparse.Namespace) -> int:
    env = KindEnvironment(KindSettings(name=args.name))
    try:
        env.up(load_product_image=not args.no_image)
        if args.monitoring:
            from tradingsystem_testing.prometheus_operator import (
                PrometheusStack,
                StackSettings,
                ensure_monitoring_images,
                next_steps,
            )

            settings = StackSettings()
            stack = PrometheusStack(env.cluster, ensure_monitoring_images(env.dockerd), settings)
            if not env.cluster.kubectl(
                "get", "namespace", settings.namespace, "--ignore-not-found", quiet=True
            ).stdout:
                stack.install()
    except (ContainerRuntimeUnavailable, CommandFailed) as e:
        print(f"kind-up failed: {e}\nUndo partial state with: tradingsystem-dev kind-down", file=sys.stderr)
        return 1
    print(env.next_steps())
    if args.monitoring:
        print(next_steps(settings))
    return 0


def _down(args: argparse.Namespace) -> int:
    KindEnvironment(KindSettings(name=args.name)).down()
    print("kind cluster deleted, dockerd stopped, host restored")
    return 0
