"""`tradingsystem-operator run` arguments."""

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
