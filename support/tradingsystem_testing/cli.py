"""``tradingsystem-dev``: dev and test conveniences (control plane, kind cluster). Not shipped."""

from __future__ import annotations

import argparse
from collections.abc import Sequence

from tradingsystem_testing import kind_cli


def _dev_cluster(args: argparse.Namespace) -> int:
    from tradingsystem_testing.controlplane import run_dev_cluster  # lazy: --help stays instant

    return run_dev_cluster(
        controller_manager=not args.no_controller_manager, prometheus_crds=not args.no_prometheus_crds
    )


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="tradingsystem-dev", description=__doc__)
    sub = parser.add_subparsers(dest="command", metavar="COMMAND", required=True)
    # One subparser per command; each sets ``run``, the function main() calls with the parsed args.
    dev = sub.add_parser(
        "dev-cluster",
        help="start etcd + kube-apiserver + kube-controller-manager on 127.0.0.1 until Ctrl-C",
        description="Start a real control plane on free 127.0.0.1 ports, print `export KUBECONFIG=...`, "
        "and run until Ctrl-C or SIGTERM, which stop every component and remove its data.",
    )
    dev.add_argument("--no-controller-manager", action="store_true", help="etcd + kube-apiserver only")
    dev.add_argument("--no-prometheus-crds", action="store_true", help="skip the ServiceMonitor/... CRDs")
    dev.set_defaults(run=_dev_cluster)
    kind_cli.register(sub)
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    return int(args.run(args))


if __name__ == "__main__":
    raise SystemExit(main())
