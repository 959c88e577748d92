"""The cost of CurveZMQ on one bus hop: the same Publisher -> Subscriber hop (subscriber in another
process, decode + gap check) with and without Curve, as the services run it (keys from files
written by ``tradingsystem keys``, the ZAP allow-list on the publisher). Latency is measured at a
paced rate, throughput unpaced; each Curve row is also given as a ratio to the plain row of the
same round, measured moments apart, so host load moves both alike.
"""

from __future__ import annotations

import os
import tempfile
from dataclasses import dataclass
from pathlib import Path

from bench.hop import CLIENT, SERVER, RawHop, raw_hop
from bench.table import render
from tradingsystem.common.bus import gen_curve_keypair


@dataclass(frozen=True)
class Config:
    rate: int = 5_000  # paced rate for the latency figures (the pipeline's latency target rate)
    paced: int = 25_000
    unpaced: int = 200_000
    rounds: int = 3


QUICK = Config(paced=5_000, unpaced=50_000, rounds=1)


def hop(n: int, rate: int | None, keys_dir: Path | None) -> RawHop:
    """The pipeline bench's raw hop (``bench.hop``), plain or over Curve."""
    return raw_hop(n, rate, keys_dir)


def _ratio(curve: float | str, plain: float | str) -> str:
    if isinstance(curve, str) or isinstance(plain, str) or not plain:
        return "-"
    return f"{curve / plain:.2f}x"


def table(rounds: list[tuple[RawHop, RawHop, RawHop, RawHop]], rate: int) -> str:
    """Per round: (plain paced, curve paced, plain unpaced, curve unpaced)."""
    rows = []
    for i, (pp, cp, pu, cu) in enumerate(rounds, 1):
        for paced, unpaced, base_p, base_u in ((pp, pu, pp, pu), (cp, cu, pp, pu)):
            rows.append(
                (
                    i,
                    "curve" if paced.curve else "plain",
                    *paced.latency_us[:2],
                    _ratio(paced.latency_us[0], base_p.latency_us[0]),
                    _ratio(paced.latency_us[1], base_p.latency_us[1]),
                    f"{unpaced.decode_per_s:,.0f}",
                    _ratio(unpaced.decode_per_s, base_u.decode_per_s),
                    f"{unpaced.received:,}/{unpaced.sent:,}",
                )
            )
    return render(
        ("round", "bus", "p50 us", "p99 us", "p50 ratio", "p99 ratio", "decode/s", "thru ratio", "received"),
        rows,
        f"one ZeroMQ hop, plain vs CurveZMQ: latency at {rate:,}/s paced, throughput unpaced "
        "(ratios to the plain row of the same round)",
    )


def main(quick: bool = False, cfg: Config | None = None) -> None:
    cfg = cfg or (QUICK if quick else Config())
    print("load average before: {:.2f} {:.2f} {:.2f}".format(*os.getloadavg()))
    with tempfile.TemporaryDirectory(prefix="bench-curve-") as tmp:
        keys = Path(tmp)
        for name in (SERVER, CLIENT):
            gen_curve_keypair(keys, name)
        rounds = [
            (
                hop(cfg.paced, cfg.rate, None),
                hop(cfg.paced, cfg.rate, keys),
                hop(cfg.unpaced, None, None),
                hop(cfg.unpaced, None, keys),
            )
            for _ in range(cfg.rounds)
        ]
    print(table(rounds, cfg.rate))
    print("load average after: {:.2f} {:.2f} {:.2f}".format(*os.getloadavg()))


if __name__ == "__main__":
    main()
