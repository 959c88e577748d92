"""Plain-text tables for benchmark output."""

from __future__ import annotations

from collections.abc import Sequence


def render(headers: Sequence[str], rows: Sequence[Sequence[object]], title: str = "") -> str:
    cells = [[str(h) for h in headers], *[[_fmt(c) for c in r] for r in rows]]
    widths = [max(len(r[i]) for r in cells) for i in range(len(headers))]
    line = "-+-".join("-" * w for w in widths)
    out = [title] if title else []
    out.append(" | ".join(h.rjust(w) for h, w in zip(cells[0], widths, strict=True)))
    out.append(line)
    out += [" | ".join(c.rjust(w) for c, w in zip(r, widths, strict=True)) for r in cells[1:]]
    return "\n".join(out)


def _fmt(c: object) -> str:
    if isinstance(c, float):
        return f"{c:,.3f}" if abs(c) < 100 else f"{c:,.0f}"
    if isinstance(c, int):
        return f"{c:,}"
    return str(c)
