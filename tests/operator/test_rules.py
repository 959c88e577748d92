"""rules.py: PrometheusRule groups from monitoring/rules/*.yaml."""

from __future__ import annotations

from pathlib import Path

from tradingsystem_operator.rules import load_rule_groups

GROUP = "- name: g1\n  rules:\n  - alert: Down\n    expr: up == 0\n"


def test_reads_rule_files_and_prometheusrule_manifests(tmp_path: Path) -> None:
    (tmp_path / "rules").mkdir()
    (tmp_path / "rules" / "a.yaml").write_text("groups:\n" + GROUP)
    (tmp_path / "rules" / "b.yml").write_text(
        "apiVersion: monitoring.coreos.com/v1\nkind: PrometheusRule\nspec:\n  groups:\n"
        "  - name: g2\n    rules:\n    - record: x\n      expr: sum(up)\n"
    )
    (tmp_path / "rules" / "empty.yaml").write_text("")
    groups = load_rule_groups(tmp_path)
    assert [g["name"] for g in groups] == ["g1", "g2"]
    assert groups[0]["rules"][0]["alert"] == "Down"


def test_no_rules_dir_means_no_groups(tmp_path: Path) -> None:
    assert load_rule_groups(tmp_path) == ()
