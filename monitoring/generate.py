#!/usr/bin/env python3
"""Writes the Grafana dashboards and the generated parts of the monitoring docs.

From the dashboards in ``dashboard_panels.py`` (rendered by ``grafana_json.py``), the metric
catalogue and the rule file (tables by ``doc_tables.py``), writes:

- ``monitoring/dashboards/<uid>.json``: Grafana dashboards (datasource chosen by the
  ``${datasource}`` template variable). The Helm chart ships copies (``make chart-sync``) and
  is the one producer of their ConfigMaps for Grafana's sidecar;
- ``docs/dashboards.md``: every panel described for humans;
- the catalogue and alert tables in ``docs/metrics.md`` (between the ``generated`` markers).

    python monitoring/generate.py           # rewrite the files
    python monitoring/generate.py --check   # exit 1 if a file is out of date (run by the tests)
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

from dashboard_panels import ALL
from doc_tables import alerts_table, catalogue_table, dashboards_doc, fill_markers
from grafana_json import dashboard_json

REPO = Path(__file__).resolve().parents[1]
DASHBOARDS = REPO / "monitoring" / "dashboards"
METRICS_DOC = REPO / "docs" / "metrics.md"
DASHBOARDS_DOC = REPO / "docs" / "dashboards.md"


def outputs() -> dict[Path, str]:
    files = {DASHBOARDS / f"{b.uid}.json": json.dumps(dashboard_json(b), indent=2) + "\n" for b in ALL}
    files[DASHBOARDS_DOC] = dashboards_doc()
    doc = fill_markers(METRICS_DOC.read_text(), "catalogue", catalogue_table())
    files[METRICS_DOC] = fill_markers(doc, "alerts", alerts_table())
    return files


def stale_files() -> list[Path]:
    return [p for p, body in outputs().items() if not p.is_file() or p.read_text() != body]


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--check", action="store_true", help="only report out-of-date files")
    args = parser.parse_args(argv)
    if args.check:
        stale = stale_files()
        for path in stale:
            print(f"out of date: {path.relative_to(REPO)} (run python monitoring/generate.py)")
        return 1 if stale else 0
    for path, body in outputs().items():
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(body)
        print(f"wrote {path.relative_to(REPO)}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
