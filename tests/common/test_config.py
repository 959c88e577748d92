"""Configuration: file < env precedence, field-named errors, live-mode guard, no secret leaks."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from pydantic import BaseModel
from pydantic.alias_generators import to_camel

from tradingsystem.common.config import (
    LIVE_CONFIRMATION,
    RISK_LIMIT_RULES,
    AtMost,
    ConfigError,
    Mode,
    RiskLimits,
    RiskSettings,
    Settings,
    SimSettings,
    load_settings,
)

SECRET = "sk-very-secret-value-123"


@pytest.fixture(autouse=True)
def _clean_env(monkeypatch: pytest.MonkeyPatch) -> None:
    for var in ("ALPACA_API_KEY", "ALPACA_SECRET_KEY", "TS_CONFIG"):
        monkeypatch.delenv(var, raising=False)


def test_defaults_run_offline_on_the_simulator() -> None:
    s = load_settings()
    assert s.mode is Mode.SIM
    assert s.alpaca.api_key is None


def test_env_overrides_file(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    cfg = tmp_path / "c.yaml"
    cfg.write_text("risk:\n  order_qty: 5\n  max_order_qty: 7\n  max_position_qty: 70\nsymbols: [SPY]\n")
    assert load_settings(cfg).risk.max_order_qty == 7
    monkeypatch.setenv("TS_RISK__MAX_ORDER_QTY", "9")
    s = load_settings(cfg)
    assert (s.risk.max_order_qty, s.risk.max_position_qty, s.symbols) == (9, 70, ["SPY"])


@pytest.mark.parametrize(
    ("yaml_text", "field"),
    [
        ("risk: {max_order_qty: -1}", "risk.max_order_qty"),
        ("symbols: [aapl]", "symbols"),
        ("symbols: []", "symbols"),
        ("market_data: {http_port: 70000}", "market_data.http_port"),
        ("risk: {no_such_limit: 1}", "risk.no_such_limit"),
        ("mode: moon", "mode"),
        ("sim: {account_type: cash, multiplier: 2}", "sim.multiplier"),
        ("sim: {multiplier: 3}", "sim.multiplier"),
        ("sim: {account_type: savings}", "sim.account_type"),
        ("sim: {session: overnight}", "sim.session"),
        ("sim: {start_at: '2026-12-05T15:00:00'}", "sim.start_at"),  # no UTC offset
        ("sim: {hard_to_borrow: [gme]}", "sim.hard_to_borrow"),
    ],
)
def test_bad_field_fails_naming_the_field(tmp_path: Path, yaml_text: str, field: str) -> None:
    cfg = tmp_path / "c.yaml"
    cfg.write_text(yaml_text)
    with pytest.raises(ConfigError) as err:
        load_settings(cfg)
    assert field in str(err.value)


def test_paper_needs_credentials_and_live_needs_confirmation(monkeypatch: pytest.MonkeyPatch) -> None:
    with pytest.raises(ConfigError, match="ALPACA_API_KEY"):
        load_settings(mode="paper")
    monkeypatch.setenv("ALPACA_API_KEY", "AKID")
    monkeypatch.setenv("ALPACA_SECRET_KEY", SECRET)
    assert load_settings(mode="paper").mode is Mode.PAPER
    with pytest.raises(ConfigError, match="live_confirmation"):
        load_settings(mode="live")
    assert load_settings(mode="live", live_confirmation=LIVE_CONFIRMATION).mode is Mode.LIVE


def test_secrets_never_render(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("ALPACA_API_KEY", "AKID")
    monkeypatch.setenv("ALPACA_SECRET_KEY", SECRET)
    s = load_settings(mode="paper")
    assert s.alpaca.secret_key is not None and s.alpaca.secret_key.get_secret_value() == SECRET
    assert SECRET not in repr(s) and SECRET not in str(s) and SECRET not in s.model_dump_json()
    with pytest.raises(ConfigError) as err:
        load_settings(mode="paper", risk={"max_order_qty": "x"})
    assert SECRET not in str(err.value)


def test_missing_file_is_a_clear_error(tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match="not found"):
        load_settings(tmp_path / "nope.yaml")


def test_cli_reports_config_errors_with_exit_2(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    from tradingsystem.cli import main

    cfg = tmp_path / "c.yaml"
    cfg.write_text("risk: {max_order_qty: 0}")
    assert main(["risk-manager", "--config", str(cfg)]) == 2
    assert "risk.max_order_qty" in capsys.readouterr().err


def _fields(model: type[BaseModel], prefix: str = "") -> list[tuple[str, str | None]]:
    out = []
    for name, info in model.model_fields.items():
        out.append((prefix + name, info.description))
        if isinstance(info.annotation, type) and issubclass(info.annotation, BaseModel):
            out += _fields(info.annotation, f"{prefix}{name}.")
    return out


def test_every_setting_is_described() -> None:
    fields = _fields(Settings)
    assert len(fields) > 50 and "risk.max_gross_exposure" in dict(fields)
    assert [name for name, description in fields if not description] == []


@pytest.mark.parametrize("rule", RISK_LIMIT_RULES, ids=lambda r: f"{r.small}<={r.large}")
def test_a_limit_over_the_one_it_must_fit_in_fails_at_start_naming_both(tmp_path: Path, rule: AtMost) -> None:
    small, large = rule.small, rule.large
    cfg = tmp_path / "c.yaml"
    cfg.write_text(json.dumps({"risk": {"order_qty": 1, large: 5, small: 6}}))  # JSON is YAML
    with pytest.raises(ConfigError) as err:
        load_settings(cfg)
    assert "risk:" in str(err.value) and f"{small} must not exceed {large}" in str(err.value)
    cfg.write_text(json.dumps({"risk": {"order_qty": 1, large: 6, small: 6}}))  # equal is fine
    assert getattr(load_settings(cfg).risk, small) == 6


def test_defaults_keep_the_limit_rules() -> None:
    limits = RiskSettings()
    assert all(getattr(limits, r.small) <= getattr(limits, r.large) for r in RISK_LIMIT_RULES)


def test_docs_list_every_limit_with_its_default_and_unit() -> None:
    doc = (Path(__file__).resolve().parents[2] / "docs" / "risk.md").read_text()
    for name, f in RiskLimits.model_fields.items():
        description = str(f.description).replace("|", "\\|")
        row = f"| `{name}` | `{to_camel(name)}` | `{f.default}` | {description} |"
        assert row in doc, f"docs/risk.md, ## Limits: expected the row {row}"
    for rule in RISK_LIMIT_RULES:
        assert f"- `{rule.small}` ≤ `{rule.large}`: {rule.why}." in doc


def test_docs_list_every_simulator_setting_with_its_default() -> None:
    doc = (Path(__file__).resolve().parents[2] / "docs" / "simulator.md").read_text()
    for name, f in SimSettings.model_fields.items():
        default = "(unset)" if f.default is None else str(f.default)
        row = f"| `{name}` | `{default}` | {str(f.description).replace('|', chr(92) + '|')} |"
        assert row in doc, f"docs/simulator.md, ## Running it: expected the row {row}"
