"""Leader-election settings, the leader's own check and the CLI flags (pure)."""

from __future__ import annotations

import os

import pytest

from tradingsystem_operator.election import ElectionSettings, holds_lease
from tradingsystem_operator.main import build_parser, election_settings, main


def settings(**changes: object) -> ElectionSettings:
    base: dict[str, object] = {"namespace": "ops", "identity": "pod-a_1"}
    return ElectionSettings(**{**base, **changes})  # type: ignore[arg-type]


def test_the_defaults_are_controller_runtimes_and_valid() -> None:
    s = settings()
    assert (s.lease_duration, s.renew_deadline, s.retry_period) == (15, 10, 2)
    assert s.problems() == []


@pytest.mark.parametrize(
    ("changes", "flag"),
    [
        ({"namespace": ""}, "--leader-election-namespace"),
        ({"name": ""}, "--leader-election-id"),
        ({"retry_period": 0}, "--retry-period"),
        ({"renew_deadline": 2}, "--renew-deadline"),  # not above 1.2 x the 2 s retry period
        ({"lease_duration": 10}, "--lease-duration"),  # not above the 10 s renew deadline
    ],
)
def test_each_bad_setting_is_named_by_its_flag(changes: dict[str, object], flag: str) -> None:
    [problem] = settings(**changes).problems()
    assert problem.startswith(flag)


def test_the_leader_acts_only_while_it_holds_the_lease_and_renewed_within_the_deadline() -> None:
    assert holds_lease("me", "me", renewed_ms=0, now_ms=9_999, renew_deadline_s=10)
    assert not holds_lease("me", "me", renewed_ms=0, now_ms=10_000, renew_deadline_s=10)
    assert not holds_lease("other", "me", renewed_ms=0, now_ms=1, renew_deadline_s=10)
    assert not holds_lease(None, "me", renewed_ms=0, now_ms=1, renew_deadline_s=10)


def test_without_leader_elect_there_is_no_election() -> None:
    assert election_settings(build_parser().parse_args(["run"])) is None


def test_leader_election_flags_reach_the_settings_with_a_unique_identity() -> None:
    argv = ["run", "--leader-elect", "--leader-election-namespace", "ops", "--leader-election-id", "ts"]
    argv += ["--lease-duration", "30", "--renew-deadline", "20", "--retry-period", "4"]
    a, b = (election_settings(build_parser().parse_args(argv)) for _ in range(2))
    assert a is not None and b is not None
    assert (a.namespace, a.name, a.lease_duration, a.renew_deadline, a.retry_period) == (
        "ops",
        "ts",
        30,
        20,
        4,
    )
    assert a.identity != b.identity and a.identity.startswith(os.uname().nodename)


def test_the_lease_namespace_defaults_to_the_pods_own(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("POD_NAMESPACE", "tradingsystem-system")
    s = election_settings(build_parser().parse_args(["run", "--leader-elect"]))
    assert s is not None and s.namespace == "tradingsystem-system"


def test_bad_timings_stop_the_operator_at_start_naming_the_flag(capsys: pytest.CaptureFixture[str]) -> None:
    with pytest.raises(SystemExit) as exit_:
        main(["run", "--leader-elect", "--leader-election-namespace", "ops", "--lease-duration", "5"])
    assert exit_.value.code == 2
    assert "--lease-duration (5) must exceed --renew-deadline (10)" in capsys.readouterr().err
