"""``tradingsystem``: one CLI for the whole platform.

Each service subcommand loads the validated configuration and hands it to the service's
``run(settings) -> int``. Imports are lazy so ``--help`` is instant.
"""

from __future__ import annotations

import argparse
import importlib
import sys
from collections.abc import Sequence

from tradingsystem import __version__
from tradingsystem.common.config import ConfigError, Settings, load_settings
from tradingsystem.common.services import BY_NAME, PIPELINE, SIM, Service
from tradingsystem.sim.account import AccountType
from tradingsystem.sim.session import SessionModel

EPILOG = """\
configuration: --config FILE (YAML), then env TS_<SECTION>__<FIELD> (e.g. TS_RISK__MAX_ORDER_QTY=50);
credentials only from ALPACA_API_KEY / ALPACA_SECRET_KEY.

examples:
  tradingsystem run                      # everything offline on the embedded simulator
  ALPACA_API_KEY=... ALPACA_SECRET_KEY=... tradingsystem run --paper
  tradingsystem sim --port 8090          # the Alpaca-compatible simulator alone
  tradingsystem risk-manager --config prod.yaml
  tradingsystem backtest --data bars.csv --symbols SPY   # strategy + risk rules over history
"""


def _common(p: argparse.ArgumentParser) -> None:
    p.add_argument("--config", metavar="FILE", help="YAML configuration file (default: $TS_CONFIG)")
    p.add_argument("--symbols", metavar="SYM,SYM", help="override the symbols, comma-separated")
    p.add_argument("--log-level", choices=["DEBUG", "INFO", "WARNING", "ERROR"], help="override log level")


def _help(svc: Service) -> str:
    control = f", control :{svc.control_port}" if svc.control_port is not None else ""
    return f"{svc.summary} (PUB :{svc.pub_port}, HTTP :{svc.http_port}{control})"


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="tradingsystem",
        description="Kubernetes-native algorithmic trading: market data -> signals -> risk -> execution.",
        epilog=EPILOG,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    parser.add_argument("--version", action="version", version=f"%(prog)s {__version__}")
    sub = parser.add_subparsers(dest="command", metavar="COMMAND", required=True)

    run = sub.add_parser(
        "run",
        help="start the simulator (unless --paper/--live) and all four services, print a live summary",
        description="Start the whole pipeline as separate processes and print a live summary until Ctrl-C.",
    )
    _common(run)
    mode = run.add_mutually_exclusive_group()
    mode.add_argument("--paper", action="store_true", help="trade Alpaca paper (needs ALPACA_API_KEY/SECRET)")
    mode.add_argument(
        "--live", action="store_true", help="trade real money (needs live_confirmation in config)"
    )
    run.add_argument(
        "--duration", type=float, metavar="SECONDS", help="stop after this long (default: until Ctrl-C)"
    )
    run.add_argument(
        "--control-token-file",
        metavar="FILE",
        help="bearer token for the risk-manager's control port (default: a new one in the run directory)",
    )

    for svc in PIPELINE:
        p = sub.add_parser(svc.name, help=_help(svc), description=_help(svc))
        _common(p)

    sim = sub.add_parser(
        SIM.name,
        help=SIM.summary,
        description="Serve Alpaca's REST and websocket protocols on loopback for unmodified alpaca-py.",
    )
    _common(sim)
    sim.add_argument("--host", help="bind address (default 127.0.0.1)")
    sim.add_argument("--port", type=int, help=f"port (default {SIM.http_port})")
    sim.add_argument("--seed", type=int, help="random seed of the synthetic prices")
    sim.add_argument("--tick-rate", type=float, help="ticks per second per symbol")
    sim.add_argument(
        "--account-type", choices=[t.value for t in AccountType], help="cash or margin (default margin)"
    )
    sim.add_argument(
        "--multiplier", type=int, choices=[1, 2, 4], help="buying power multiple (default 1 cash, 2 margin)"
    )
    sim.add_argument("--hard-to-borrow", metavar="SYM,SYM", help="tickers a margin account may not short")
    sim.add_argument(
        "--session", choices=[m.value for m in SessionModel], help="market hours (default continuous)"
    )
    sim.add_argument(
        "--start-at",
        metavar="ISO8601",
        help="simulated start instant, e.g. 2026-12-05T15:00:00Z (default now)",
    )

    keys = sub.add_parser(
        "keys",
        help="generate CurveZMQ key pairs for the four services",
        description="Write <service>.key and <service>.key_secret for each service into DIR.",
    )
    keys.add_argument("directory", metavar="DIR")

    from tradingsystem.backtest.cli import add_parser as add_backtest

    add_backtest(sub)
    return parser


def _symbol_list(text: str | None) -> list[str] | None:
    """``"aapl, msft"`` -> ``["AAPL", "MSFT"]``; None when not given."""
    if text is None:
        return None
    return [s.strip().upper() for s in text.split(",") if s.strip()]


def _settings(args: argparse.Namespace, **extra: object) -> Settings:
    overrides: dict[str, object] = dict(extra)
    if getattr(args, "symbols", None):
        overrides["symbols"] = _symbol_list(args.symbols)
    if getattr(args, "log_level", None):
        overrides["log_level"] = args.log_level
    return load_settings(getattr(args, "config", None), **overrides)


def main(argv: Sequence[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    try:
        svc = BY_NAME.get(args.command)
        if svc is not None and svc is not SIM:
            settings = _settings(args)  # validate before importing anything heavy
            module = importlib.import_module(svc.module)
            return int(module.run(settings))
        if args.command == SIM.name:
            sim_over = {
                k: v
                for k, v in (
                    ("host", args.host),
                    ("port", args.port),
                    ("seed", args.seed),
                    ("tick_rate", args.tick_rate),
                    ("account_type", args.account_type),
                    ("multiplier", args.multiplier),
                    ("hard_to_borrow", _symbol_list(args.hard_to_borrow)),
                    ("session", args.session),
                    ("start_at", args.start_at),
                )
                if v is not None
            }
            run_sim = importlib.import_module(SIM.module).run
            return int(run_sim(_settings(args, **({"sim": sim_over} if sim_over else {}))))
        if args.command == "run":
            from tradingsystem.supervisor import run_all

            over: dict[str, object] = {}
            if args.paper or args.live:
                over["mode"] = "paper" if args.paper else "live"
            if args.control_token_file:
                over["risk"] = {"control_token_file": args.control_token_file}
            return run_all(_settings(args, **over), duration=args.duration)
        if args.command == "backtest":
            from tradingsystem.backtest.cli import main as backtest_main

            return backtest_main(args, _settings)
        if args.command == "keys":
            from pathlib import Path

            from tradingsystem.common.bus import gen_curve_keypair

            for name in (*(s.name for s in PIPELINE), "client"):
                pub, sec = gen_curve_keypair(Path(args.directory), name)
                print(f"wrote {pub} and {sec}")
            return 0
    except ConfigError as exc:
        print(f"tradingsystem: {exc}", file=sys.stderr)
        return 2
    return 1


if __name__ == "__main__":
    sys.exit(main())
