"""The control port's bearer token: the check, the token files, and where the token must never be."""

from __future__ import annotations

import stat
from pathlib import Path

import pytest
from pydantic import SecretStr

from tradingsystem.common.config import ConfigError, RiskSettings, load_settings
from tradingsystem.common.control import (
    REFUSAL_STATUS,
    ControlClient,
    Refusal,
    check_bearer,
    read_token,
    token_from_settings,
    write_token,
)

TOKEN = SecretStr("s3cret-token-value")


@pytest.mark.parametrize(
    ("header", "expected"),
    [
        (None, Refusal.MISSING),
        ("", Refusal.MISSING),
        ("s3cret-token-value", Refusal.MALFORMED),
        ("Basic s3cret-token-value", Refusal.MALFORMED),
        ("Bearer ", Refusal.MALFORMED),
        ("Bearer s3cret-token-valuE", Refusal.WRONG_TOKEN),
        ("Bearer s3cret-token-value-and-more", Refusal.WRONG_TOKEN),
        ("Bearer s3cret", Refusal.WRONG_TOKEN),
        ("Bearer s3cret-token-value", None),
        ("bearer  s3cret-token-value ", None),
    ],
)
def test_an_authorization_header_is_judged_against_the_token(header: str | None, expected: object) -> None:
    assert check_bearer(TOKEN, header) == expected


def test_missing_credentials_are_401_and_a_wrong_token_is_403() -> None:
    assert {r: REFUSAL_STATUS[r] for r in Refusal} == {
        Refusal.MISSING: 401,
        Refusal.MALFORMED: 401,
        Refusal.WRONG_TOKEN: 403,
    }


def test_a_written_token_file_is_private_and_reads_back(tmp_path: Path) -> None:
    path = tmp_path / "token"
    path.write_text("old")
    path.chmod(0o644)  # an existing, world-readable file is tightened, not trusted
    token = write_token(path)
    assert stat.S_IMODE(path.stat().st_mode) == 0o600
    assert read_token(path).get_secret_value() == token.get_secret_value()
    assert len(token.get_secret_value()) >= 43


def test_two_generated_tokens_differ(tmp_path: Path) -> None:
    a, b = write_token(tmp_path / "a"), write_token(tmp_path / "b")
    assert a.get_secret_value() != b.get_secret_value()


def test_an_empty_or_missing_token_file_fails_naming_the_field(tmp_path: Path) -> None:
    (tmp_path / "empty").write_text("\n")
    with pytest.raises(ConfigError, match=r"risk\.control_token_file: .* is empty"):
        read_token(tmp_path / "empty")
    with pytest.raises(ConfigError, match=r"risk\.control_token_file: cannot read"):
        token_from_settings(RiskSettings(control_token_file=tmp_path / "absent"))


def test_no_token_configured_means_control_off() -> None:
    assert token_from_settings(RiskSettings()) is None


def test_the_token_comes_from_the_environment_and_never_prints(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("TS_RISK__CONTROL_TOKEN", "env-token-123")
    settings = load_settings()
    token = token_from_settings(settings.risk)
    assert token is not None and token.get_secret_value() == "env-token-123"
    assert "env-token-123" not in repr(settings) + str(settings) + settings.model_dump_json()


def test_a_token_file_and_an_inline_token_together_are_refused(tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match="control_token_file or control_token, not both"):
        load_settings(risk={"control_token_file": str(tmp_path / "t"), "control_token": "x"})


def test_the_client_hides_its_token_and_reports_an_unreachable_port_as_0() -> None:
    client = ControlClient("http://127.0.0.1:9", TOKEN, timeout=1)
    assert "s3cret" not in repr(client)
    assert client.control("halt") == (0, None)


def test_run_control_token_file_flag_keeps_the_rest_of_the_risk_section(tmp_path: Path) -> None:
    from tradingsystem.cli import build_parser

    (tmp_path / "c.yaml").write_text("risk: {max_order_qty: 70}\n")
    args = build_parser().parse_args(["run", "--control-token-file", str(tmp_path / "t")])
    settings = load_settings(tmp_path / "c.yaml", risk={"control_token_file": args.control_token_file})
    assert (settings.risk.max_order_qty, settings.risk.control_token_file) == (70, tmp_path / "t")
