"""`tradingsystem-operator` arguments."""

from __future__ import annotations

import pytest

from tradingsystem_operator.main import build_parser


def test_run_is_namespace_scoped_by_flag() -> None:
    args = build_parser().parse_args(["run", "--namespace", "a", "--namespace", "b", "--metrics-port", "0"])
    assert args.namespace == ["a", "b"] and args.metrics_port == 0 and not args.all_namespaces


def test_run_defaults_to_cluster_wide_with_metrics_and_liveness() -> None:
    args = build_parser().parse_args(["run"])
    assert args.namespace is None and args.metrics_port == 8080
    assert args.liveness == "http://0.0.0.0:8081/healthz"


def test_namespace_and_all_namespaces_exclude_each_other() -> None:
    with pytest.raises(SystemExit):
        build_parser().parse_args(["run", "--namespace", "a", "--all-namespaces"])


def test_help_lists_only_what_the_image_can_run() -> None:
    # dev-cluster needs the test harness, which the image does not hold: it is `tradingsystem-dev`'s.
    help_text = build_parser().format_help()
    assert "dev-cluster" not in help_text
    with pytest.raises(SystemExit):
        build_parser().parse_args(["dev-cluster"])
