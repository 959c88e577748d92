"""``tradingsystem-operator``: the operator's CLI."""

from __future__ import annotations

import argparse
from collections.abc import Sequence


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
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    if args.command == "run":
        from tradingsystem_operator.runner import run_operator  # lazy: --help stays instant

        return run_operator(
            namespaces=args.namespace or [],
            metrics_port=args.metrics_port,
            liveness=args.liveness or None,
            verbose=args.verbose,
        )
    raise AssertionError(f"unhandled command {args.command}")


if __name__ == "__main__":
    raise SystemExit(main())
