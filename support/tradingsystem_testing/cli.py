"""``tradingsystem-dev``: dev and test conveniences (control plane, kind cluster). Not shipped."""

from __future__ import annotations

import argparse
from collections.abc import Sequence

from tradingsystem_testing import kind_cli


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="tradingsystem-dev", description=__doc__)
    sub = parser.add_subparsers(dest="command", metavar="COMMAND", required=True)
    kind_cli.register(sub)
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    if hasattr(args, "func"):
        return int(args.func(args))
    raise AssertionError(f"unhandled command {args.command}")


if __name__ == "__main__":
    raise SystemExit(main())
