"""One offline kind cluster per test session (issue #11); reusable by later cluster tests.

The session fixture engages the host guard (egress DROP rules, sysctls saved) before anything
else, starts the private dockerd (or reuses one `make kind-up` left running), builds/reuses the
cached binaries and images, creates the cluster ``ts-test`` and deletes it at the end. Where
containers cannot run at all (no root, no docker packages, no capability) the tests are skipped
with the reason in capitals; on these machines they run.
"""

from __future__ import annotations

import os
import sys
import warnings
from collections.abc import Iterator
from pathlib import Path

import pytest

from tradingsystem_testing.docker import runtime_unavailable_reason
from tradingsystem_testing.kind import KindEnvironment, KindSettings, build_product_image

sys.path.insert(0, str(Path(__file__).parent))  # kind_helpers (pytest runs in importlib mode)

CLUSTER = "ts-test"


def pytest_collection_modifyitems(items: list[pytest.Item]) -> None:
    for item in items:
        if "kind_env" in getattr(item, "fixturenames", ()):
            item.add_marker(pytest.mark.kind)


@pytest.fixture(scope="session")
def kind_env() -> Iterator[KindEnvironment]:
    reason = runtime_unavailable_reason()
    if reason:
        message = f"KIND CLUSTER TESTS SKIPPED: CONTAINERS CANNOT RUN HERE: {reason}"
        warnings.warn(message, stacklevel=1)
        pytest.skip(message)
    env = KindEnvironment(KindSettings(name=CLUSTER))
    dockerd_was_running = env.dockerd.pid() is not None
    # kind's commands without --name (the README's `kind load docker-image`) target this cluster.
    old = os.environ.get("KIND_CLUSTER_NAME")
    os.environ["KIND_CLUSTER_NAME"] = CLUSTER
    try:
        env.prepare()
        env.create_cluster()
        yield env
    finally:
        try:
            env.down(stop_dockerd=not dockerd_was_running)
        finally:
            if old is None:
                os.environ.pop("KIND_CLUSTER_NAME", None)
            else:
                os.environ["KIND_CLUSTER_NAME"] = old
        print(f"\n[kind] step timings (s): { {k: round(v) for k, v in env.timings.items()} }")


@pytest.fixture(scope="session")
def product_image(kind_env: KindEnvironment) -> str:
    """Our image, built (docker's layer cache makes a rebuild cheap) and loaded into the cluster,
    for modules that install the chart themselves rather than through the README's commands."""
    assert kind_env.images is not None
    tag = kind_env.settings.image_tag
    build_product_image(kind_env.dockerd, kind_env.images, tag)
    kind_env.cluster.load_image(tag)
    return tag
