"""One validated configuration for every service (pydantic).

Sources, later wins: defaults < YAML file (``--config`` or ``TS_CONFIG``) < environment
(``TS_<SECTION>__<FIELD>``, e.g. ``TS_RISK__MAX_ORDER_QTY=50``). Credentials come only from
``ALPACA_API_KEY`` / ``ALPACA_SECRET_KEY`` and are ``SecretStr`` so they never print.
A bad field fails at start with its dotted name (``ConfigError``).
"""

from __future__ import annotations

import enum
import os
import re
from pathlib import Path
from typing import Any, Literal

import yaml
from pydantic import (
    BaseModel,
    ConfigDict,
    Field,
    SecretStr,
    ValidationError,
    field_validator,
    model_validator,
)
from pydantic_settings import (
    BaseSettings,
    PydanticBaseSettingsSource,
    SettingsConfigDict,
    YamlConfigSettingsSource,
)

SYMBOL_RE = re.compile(r"^[A-Z][A-Z0-9.]{0,9}$")
LIVE_CONFIRMATION = "I-UNDERSTAND-THIS-TRADES-REAL-MONEY"
# The risk-manager's authenticated control port (POST /control, GET /state), apart from the
# read-only metrics/probe port so a NetworkPolicy can open each to different peers.
CONTROL_PORT = 8093


class Mode(enum.StrEnum):
    SIM = "sim"  # embedded Alpaca-compatible simulator, no keys
    PAPER = "paper"  # Alpaca paper trading
    LIVE = "live"  # real money; needs live_confirmation


class _Section(BaseModel):
    model_config = ConfigDict(extra="forbid", validate_default=True)


class AlpacaSettings(_Section):
    api_key: SecretStr | None = None
    secret_key: SecretStr | None = None
    feed: Literal["iex", "sip"] = "iex"
    # Explicit URL overrides (alpaca-py reads no env vars). Empty = chosen from mode.
    trading_url: str = ""
    data_url: str = ""
    data_stream_url: str = ""
    trading_stream_url: str = ""


class CurveSettings(_Section):
    enabled: bool = False
    # Directory with ZMQ cert files: <service>.key / <service>.key_secret, written by
    # `tradingsystem keys`. Env TS_BUS__CURVE__KEYS_DIR.
    keys_dir: Path | None = None


class BusSettings(_Section):
    bind_host: str = "127.0.0.1"
    market_data: str = "tcp://127.0.0.1:5555"
    signals: str = "tcp://127.0.0.1:5556"
    risk: str = "tcp://127.0.0.1:5557"
    execution: str = "tcp://127.0.0.1:5558"
    heartbeat_interval_s: float = Field(1.0, gt=0)
    curve: CurveSettings = CurveSettings()

    def bind_endpoint(self, connect_endpoint: str) -> str:
        """The endpoint a publisher binds for the endpoint its subscribers connect to."""
        port = connect_endpoint.rsplit(":", 1)[1]
        return f"tcp://{self.bind_host}:{port}"


class MarketDataSettings(_Section):
    http_port: int = Field(8081, ge=1, le=65535)
    trades: bool = True
    quotes: bool = True
    bars: bool = True
    bar_interval_s: int = Field(0, ge=0, description="aggregate trades into bars of this length; 0 = off")
    stale_after_s: float = Field(30.0, gt=0, description="a tick older than this on arrival is dropped")
    max_backwards_s: float = Field(1.0, ge=0, description="tolerated timestamp regression per symbol")
    max_future_s: float = Field(
        5.0, ge=0, description="tolerated clock skew: a tick further ahead is dropped"
    )
    reconnect_min_s: float = Field(0.5, gt=0)
    reconnect_max_s: float = Field(30.0, gt=0)

    @model_validator(mode="after")
    def _consistent(self) -> MarketDataSettings:
        if not (self.trades or self.quotes or self.bars):
            raise ValueError("enable at least one of trades, quotes, bars")
        if self.reconnect_min_s > self.reconnect_max_s:
            raise ValueError("reconnect_min_s must not exceed reconnect_max_s")
        return self


class SignalSettings(_Section):
    http_port: int = Field(8082, ge=1, le=65535)
    strategy: str = "ma_crossover"
    params: dict[str, Any] = {}
    model_path: Path | None = None
    source: Literal["trades", "quotes", "bars"] = "trades"
    warmup_bars: int = Field(0, ge=0, description="historical bars fetched at start to warm indicators")


class RiskSettings(_Section):
    http_port: int = Field(8083, ge=1, le=65535)
    halted: bool = False
    order_qty: float = Field(10, gt=0, description="shares per signal at strength 1 (sizing rule)")
    sizing: Literal["fixed", "strength"] = "strength"
    max_order_qty: float = Field(100, gt=0)
    max_order_notional: float = Field(50_000, gt=0)
    max_position_qty: float = Field(500, gt=0)
    max_gross_exposure: float = Field(250_000, gt=0)
    max_open_positions: int = Field(10, gt=0)
    daily_loss_limit: float = Field(5_000, gt=0)
    reducing_at_loss_fraction: float = Field(
        0.8, gt=0, le=1, description="enter REDUCING at this share of the daily loss limit"
    )
    max_orders_per_minute: int = Field(60, gt=0)
    price_band_pct: float = Field(
        5.0, gt=0, le=100, description="max distance of order price from last quote, %"
    )
    reconcile_on_start: bool = Field(True, description="seed positions from the broker at start")
    control_host: str = Field("127.0.0.1", description="bind address of the control port")
    control_port: int = Field(CONTROL_PORT, ge=1, le=65535, description="POST /control, GET /state")
    control_token_file: Path | None = Field(
        None, description="file holding the control bearer token; no token = control port off"
    )
    control_token: SecretStr | None = Field(
        None, description="the control bearer token itself (env TS_RISK__CONTROL_TOKEN)"
    )

    @model_validator(mode="after")
    def _one_token_source(self) -> RiskSettings:
        if self.control_token_file is not None and self.control_token is not None:
            raise ValueError("set control_token_file or control_token, not both")
        return self


class ExecutionSettings(_Section):
    http_port: int = Field(8084, ge=1, le=65535)
    db_path: Path = Path("var/execution.sqlite")
    rate_limit_per_min: int = Field(200, gt=0)
    request_timeout_s: float = Field(10.0, gt=0)
    max_attempts: int = Field(5, ge=1)
    backoff_base_s: float = Field(0.25, gt=0)
    backoff_max_s: float = Field(10.0, gt=0)
    cid_prefix: str = Field("ts", pattern=r"^[a-z0-9-]{1,8}$")
    reconcile_interval_s: float = Field(
        30.0, gt=0, description="REST reconciliation of open orders while any are open"
    )
    resubmit_max_age_s: float = Field(
        60.0, gt=0, description="an unplaced order older than this is rejected, not resubmitted"
    )


class SimSettings(_Section):
    host: str = "127.0.0.1"
    port: int = Field(8090, ge=0, le=65535)
    seed: int = 42
    tick_rate: float = Field(20.0, gt=0, description="ticks per second per symbol")
    initial_cash: float = Field(100_000, gt=0)
    replay_path: Path | None = None


class Settings(BaseSettings):
    model_config = SettingsConfigDict(
        env_prefix="TS_", env_nested_delimiter="__", extra="forbid", validate_default=True
    )

    mode: Mode = Mode.SIM
    live_confirmation: str = ""
    symbols: list[str] = ["AAPL", "MSFT"]
    log_level: Literal["DEBUG", "INFO", "WARNING", "ERROR"] = "INFO"
    log_format: Literal["json", "text"] = "json"
    alpaca: AlpacaSettings = AlpacaSettings()
    bus: BusSettings = BusSettings()
    market_data: MarketDataSettings = MarketDataSettings()
    signals: SignalSettings = SignalSettings()
    risk: RiskSettings = RiskSettings()
    execution: ExecutionSettings = ExecutionSettings()
    sim: SimSettings = SimSettings()

    @field_validator("symbols")
    @classmethod
    def _symbols(cls, v: list[str]) -> list[str]:
        if not v:
            raise ValueError("at least one symbol is required")
        bad = [s for s in v if not SYMBOL_RE.match(s)]
        if bad:
            raise ValueError(f"malformed symbol(s) {bad}: use upper-case tickers like AAPL or BRK.B")
        if len(set(v)) != len(v):
            raise ValueError("symbols must be unique")
        return v

    @model_validator(mode="after")
    def _mode_rules(self) -> Settings:
        if self.mode is Mode.LIVE and self.live_confirmation != LIVE_CONFIRMATION:
            raise ValueError(f"mode=live requires live_confirmation={LIVE_CONFIRMATION!r}")
        if self.mode is not Mode.SIM and (self.alpaca.api_key is None or self.alpaca.secret_key is None):
            raise ValueError(f"mode={self.mode.value} requires ALPACA_API_KEY and ALPACA_SECRET_KEY")
        return self

    @classmethod
    def settings_customise_sources(
        cls,
        settings_cls: type[BaseSettings],
        init_settings: PydanticBaseSettingsSource,
        env_settings: PydanticBaseSettingsSource,
        dotenv_settings: PydanticBaseSettingsSource,
        file_secret_settings: PydanticBaseSettingsSource,
    ) -> tuple[PydanticBaseSettingsSource, ...]:
        # Precedence: explicit overrides > environment > YAML file (``yaml_file`` in model_config).
        return (init_settings, env_settings, YamlConfigSettingsSource(settings_cls))

    def sim_base_url(self) -> str:
        return f"http://{self.sim.host}:{self.sim.port}"


class ConfigError(Exception):
    """Configuration is invalid; the message names every bad field."""


def load_settings(path: str | Path | None = None, **overrides: Any) -> Settings:
    """Load and validate; raise ``ConfigError`` naming each bad field (never echoing secrets).

    ``overrides`` (e.g. from CLI flags) win over everything else.
    """
    path = path or os.environ.get("TS_CONFIG") or None
    if path is not None and not Path(path).is_file():
        raise ConfigError(f"config file not found: {path}")
    creds = {
        k: v
        for k, v in (
            ("api_key", os.environ.get("ALPACA_API_KEY")),
            ("secret_key", os.environ.get("ALPACA_SECRET_KEY")),
        )
        if v
    }
    if creds:
        overrides = {**overrides, "alpaca": {**creds, **overrides.get("alpaca", {})}}

    class _FromFile(Settings):
        model_config = SettingsConfigDict(**{**Settings.model_config, "yaml_file": path})

    try:
        return _FromFile(**overrides)
    except ValidationError as exc:
        raise ConfigError(format_validation_error(exc)) from None
    except yaml.YAMLError as exc:
        raise ConfigError(f"cannot parse config file {path}: {exc}") from None


def format_validation_error(exc: ValidationError) -> str:
    lines = ["invalid configuration:"]
    for err in exc.errors(include_input=False, include_url=False):
        loc = ".".join(str(p) for p in err["loc"]) or "(top level)"
        lines.append(f"  {loc}: {err['msg']}")
    return "\n".join(lines)
