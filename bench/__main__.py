"""Run benchmarks: `python -m bench` (all) or `python -m bench wire_codec pipeline`."""

from __future__ import annotations

import argparse
import importlib
import platform
import sys
import time

BENCHES = ("wire_codec", "sim_throughput", "pipeline", "curve_hop", "operator_apply", "backtest")


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m bench", description=__doc__)
    parser.add_argument(
        "names",
        nargs="*",
        choices=[[], *BENCHES],
        metavar="NAME",
        help=f"benchmarks to run (default: all): {', '.join(BENCHES)}",
    )
    parser.add_argument("--quick", action="store_true", help="fewer iterations (smoke run)")
    args = parser.parse_args(argv)
    print(
        f"# machine: {platform.machine()} {platform.processor() or ''} cores={_cores()} "
        f"python={platform.python_version()} {time.strftime('%Y-%m-%d')}"
    )
    for name in args.names or BENCHES:
        try:
            module = importlib.import_module(f"bench.{name}")
        except ModuleNotFoundError as exc:
            print(f"\n## {name}: not available ({exc})")
            continue
        print(f"\n## {name}")
        module.main(quick=args.quick)
    return 0


def _cores() -> int:
    import os

    return len(os.sched_getaffinity(0))


if __name__ == "__main__":
    sys.exit(main())
