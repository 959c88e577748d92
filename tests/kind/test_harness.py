"""The kind harness's pure parts: firewall rules, dockerd flags, cluster config, CoreDNS, README."""

from __future__ import annotations

from pathlib import Path

from kind_helpers import REPO, localize, readme_install_commands

from tradingsystem_testing.docker import DockerdPaths, dockerd_argv, egress_rules
from tradingsystem_testing.kind import corefile_without_upstream, kind_config, parse_key_values

KUBEADM_COREFILE = """.:53 {
    errors
    health {
       lameduck 5s
    }
    ready
    kubernetes cluster.local in-addr.arpa ip6.arpa {
       pods insecure
       fallthrough in-addr.arpa ip6.arpa
       ttl 30
    }
    prometheus :9153
    forward . /etc/resolv.conf {
       max_concurrent 1000
    }
    cache 30
    loop
    reload
    loadbalance
}
"""


def test_every_docker_bridge_is_dropped_towards_the_outside_for_ipv4_and_ipv6() -> None:
    rules = egress_rules("eth0")
    for bridge in ("br-+", "docker0"):
        for tool, chain in (("iptables", "DOCKER-USER"), ("ip6tables", "FORWARD")):
            [rule] = [r for r in rules if r.tool == tool and r.spec[1] == bridge]
            assert rule.chain == chain
            assert rule.spec[rule.spec.index("-o") + 1] == "eth0" and rule.spec[-2:] == ("-j", "DROP")


def test_dockerd_is_private_and_runs_the_capability_filter_by_default(tmp_path: Path) -> None:
    paths = DockerdPaths(
        tmp_path / "data",
        tmp_path / "exec",
        tmp_path / "pid",
        tmp_path / "sock",
        tmp_path / "log",
        tmp_path / "rt",
    )
    argv = dockerd_argv(paths)
    assert f"--data-root={tmp_path / 'data'}" in argv and f"--host=unix://{tmp_path / 'sock'}" in argv
    assert f"--add-runtime=ts-runc={tmp_path / 'rt'}" in argv and "--default-runtime=ts-runc" in argv


def test_the_offline_node_image_replaces_kindnet_by_its_static_cni() -> None:
    assert "disableDefaultCNI: true" in kind_config(static_cni=True)
    assert "disableDefaultCNI" not in kind_config(static_cni=False)


def test_coredns_loses_only_its_upstream() -> None:
    patched = corefile_without_upstream(KUBEADM_COREFILE)
    assert "forward" not in patched and "max_concurrent" not in patched
    assert patched.replace(" ", "").count("{") == patched.replace(" ", "").count("}")
    assert "kubernetes cluster.local" in patched and "cache 30" in patched


def test_image_names_are_read_from_the_build_scripts_output() -> None:
    assert parse_key_values("python=a:1\nnode=b:2\n") == {"python": "a:1", "node": "b:2"}


def test_the_readme_install_block_is_five_commands_and_only_docker_build_is_localized() -> None:
    commands = readme_install_commands((REPO / "README.md").read_text())
    assert [c.split()[0] for c in commands] == ["docker", "kind", "kubectl", "helm", "kubectl"]
    assert localize(commands[0], "local/py:1") == (
        "docker build --network host --build-arg PYTHON_IMAGE=local/py:1 -t tradingsystem:0.1.0 ."
    )
    assert [localize(c, "x") for c in commands[1:]] == commands[1:]
