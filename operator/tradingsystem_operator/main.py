"""``tradingsystem-operator``: the operator's CLI."""

from __future__ import annotations

import argparse
import os
from collections.abc import Sequence

from tradingsystem_operator import election


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="tradingsystem-operator", description=__doc__)
    sub = parser.add_subparsers(dest="command", metavar="COMMAND", required=True)
    run = sub.add_parser("run", help="reconcile TradingSystem resources (kopf)")
    scope = run.add_mutually_exclusive_group()
    scope.add_argument("--namespace", action="append", metavar="NS", help="watch this namespace (repeatable)")
    scope.add_argument("--all-namespaces", "-A", action="store_true", help="watch every namespace (default)")
    run.add_argument("--metrics-port", type=int, default=8080, help="Prometheus /metrics port (0 = off)")
    run.add_argument(
        "--liveness",
        metavar="URL",
        default="http://0.0.0.0:8081/healthz",
        help="kopf liveness endpoint ('' = off)",
    )
    run.add_argument("--verbose", action="store_true", help="debug logging")
    ha = run.add_argument_group(
        "leader election",
        "With --leader-elect, of several replicas only the holder of a coordination.k8s.io Lease "
        "reconciles; the others stand by (live, ready, is_leader 0) and one takes over when it "
        "goes: at once on a graceful stop (the Lease is released), else after the lease duration.",
    )
    ha.add_argument("--leader-elect", action="store_true", help="run behind leader election (replicas > 1)")
    ha.add_argument(
        "--leader-election-namespace",
        metavar="NS",
        default=os.environ.get("POD_NAMESPACE", ""),
        help="namespace of the Lease (default: $POD_NAMESPACE, the operator's own)",
    )
    ha.add_argument(
        "--leader-election-id",
        metavar="NAME",
        default=election.DEFAULT_LEASE_NAME,
        help="name of the Lease (default: %(default)s)",
    )
    ha.add_argument(
        "--lease-duration",
        type=int,
        metavar="S",
        default=election.DEFAULT_LEASE_DURATION_S,
        help="seconds a standby waits on an unrenewed Lease before taking it (default: %(default)s)",
    )
    ha.add_argument(
        "--renew-deadline",
        type=int,
        metavar="S",
        default=election.DEFAULT_RENEW_DEADLINE_S,
        help="seconds the leader keeps failing to renew before it exits (default: %(default)s)",
    )
    ha.add_argument(
        "--retry-period",
        type=int,
        metavar="S",
        default=election.DEFAULT_RETRY_PERIOD_S,
        help="seconds between renewals and between a standby's tries (default: %(default)s)",
    )
    return parser


def election_settings(args: argparse.Namespace) -> election.ElectionSettings | None:
    """The leader-election settings of ``run``'s arguments; None without --leader-elect."""
    if not args.leader_elect:
        return None
    return election.ElectionSettings(
        namespace=args.leader_election_namespace,
        name=args.leader_election_id,
        identity=election.default_identity(),
        lease_duration=args.lease_duration,
        renew_deadline=args.renew_deadline,
        retry_period=args.retry_period,
    )


def main(argv: Sequence[str] | None = None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    if args.command == "run":
        settings = election_settings(args)
        if settings is not None and settings.problems():
            parser.error("; ".join(settings.problems()))
        from tradingsystem_operator.runner import run_operator  # lazy: --help stays instant

        return run_operator(
            namespaces=args.namespace or [],
            metrics_port=args.metrics_port,
            liveness=args.liveness or None,
            verbose=args.verbose,
            election=settings,
        )
    raise AssertionError(f"unhandled command {args.command}")


if __name__ == "__main__":
    raise SystemExit(main())
