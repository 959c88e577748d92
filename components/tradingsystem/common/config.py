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
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Literal

import yaml
from pydantic import (
    AwareDatetime,
    BaseModel,
    ConfigDict,
    Field,
    SecretStr,
    ValidationError,
    ValidationInfo,
    field_validator,
    model_validator,
)
from pydantic_settings import (
    BaseSettings,
    PydanticBaseSettingsSource,
    SettingsConfigDict,
    YamlConfigSettingsSource,
)

from tradingsystem.common.services import (
    EXECUTION_ENGINE,
    MARKET_DATA,
    RISK_CONTROL_PORT,
    RISK_MANAGER,
    SIGNAL_BRIDGE,
    SIM,
    Service,
)

SYMBOL_RE = re.compile(r"^[A-Z][A-Z0-9.]{0,9}$")
LIVE_CONFIRMATION = "I-UNDERSTAND-THIS-TRADES-REAL-MONEY"


def well_formed(symbols: list[str]) -> None:
    """Raise ``ValueError`` listing the symbols that are not upper-case tickers."""
    bad = [s for s in symbols if not SYMBOL_RE.match(s)]
    if bad:
        raise ValueError(f"malformed symbol(s) {bad}: use upper-case tickers like AAPL or BRK.B")


class AccountType(enum.StrEnum):
    """The simulated account (sim/account.py applies Alpaca's buying-power rules for each)."""

    CASH = "cash"
    MARGIN = "margin"


class SessionModel(enum.StrEnum):
    """The simulator's trading session (sim/session.py): always open, or NYSE regular hours."""

    CONTINUOUS = "continuous"
    REGULAR = "regular"


class Mode(enum.StrEnum):
    SIM = "sim"  # embedded Alpaca-compatible simulator, no keys
    PAPER = "paper"  # Alpaca paper trading
    LIVE = "live"  # real money; needs live_confirmation


class _Section(BaseModel):
    model_config = ConfigDict(extra="forbid", validate_default=True)


class AlpacaSettings(_Section):
    api_key: SecretStr | None = Field(None, description="Alpaca key id; only from env ALPACA_API_KEY")
    secret_key: SecretStr | None = Field(
        None, description="Alpaca secret key; only from env ALPACA_SECRET_KEY"
    )
    feed: Literal["iex", "sip"] = Field(
        "iex", description="market data feed: iex (free) or sip (paid, all venues)"
    )
    # Explicit URL overrides (alpaca-py reads no env vars). Empty = chosen from mode.
    trading_url: str = Field("", description="REST trading API base URL; empty: chosen from mode")
    data_url: str = Field("", description="REST market data API base URL; empty: chosen from mode")
    data_stream_url: str = Field("", description="market data websocket URL; empty: chosen from mode")
    trading_stream_url: str = Field("", description="trade_updates websocket URL; empty: chosen from mode")


class CurveSettings(_Section):
    enabled: bool = Field(False, description="encrypt and authenticate the bus with CurveZMQ")
    # Directory with ZMQ cert files: <service>.key / <service>.key_secret, written by
    # `tradingsystem keys`. Env TS_BUS__CURVE__KEYS_DIR.
    keys_dir: Path | None = Field(None, description="directory of the key pairs `tradingsystem keys` wrote")


def _loopback(svc: Service) -> str:
    return f"tcp://127.0.0.1:{svc.pub_port}"


class BusSettings(_Section):
    bind_host: str = Field("127.0.0.1", description="address publishers bind (0.0.0.0 in a pod)")
    market_data: str = Field(_loopback(MARKET_DATA), description="market-data's PUB endpoint (ZMQ URL)")
    signals: str = Field(_loopback(SIGNAL_BRIDGE), description="signal-bridge's PUB endpoint (ZMQ URL)")
    risk: str = Field(_loopback(RISK_MANAGER), description="risk-manager's PUB endpoint (ZMQ URL)")
    execution: str = Field(
        _loopback(EXECUTION_ENGINE), description="execution-engine's PUB endpoint (ZMQ URL)"
    )
    heartbeat_interval_s: float = Field(1.0, gt=0, description="seconds between heartbeats of each publisher")
    curve: CurveSettings = Field(CurveSettings(), description="CurveZMQ encryption of the bus")

    def bind_endpoint(self, connect_endpoint: str) -> str:
        """The endpoint a publisher binds for the endpoint its subscribers connect to."""
        port = connect_endpoint.rsplit(":", 1)[1]
        return f"tcp://{self.bind_host}:{port}"


class MarketDataSettings(_Section):
    http_port: int = Field(
        MARKET_DATA.http_port, ge=1, le=65535, description="TCP port of /metrics, /healthz, /readyz"
    )
    trades: bool = Field(True, description="subscribe to trades")
    quotes: bool = Field(True, description="subscribe to quotes")
    bars: bool = Field(True, description="subscribe to minute bars")
    bar_interval_s: int = Field(
        0, ge=0, description="seconds: aggregate trades into bars of this length; 0 = off"
    )
    stale_after_s: float = Field(
        30.0, gt=0, description="seconds: a tick older than this on arrival is dropped"
    )
    max_backwards_s: float = Field(
        1.0, ge=0, description="seconds of timestamp regression tolerated per symbol"
    )
    max_future_s: float = Field(
        5.0, ge=0, description="seconds of clock skew tolerated: a tick further ahead is dropped"
    )
    reconnect_min_s: float = Field(0.5, gt=0, description="seconds: first reconnect backoff")
    reconnect_max_s: float = Field(30.0, gt=0, description="seconds: longest reconnect backoff")

    @model_validator(mode="after")
    def _consistent(self) -> MarketDataSettings:
        if not (self.trades or self.quotes or self.bars):
            raise ValueError("enable at least one of trades, quotes, bars")
        if self.reconnect_min_s > self.reconnect_max_s:
            raise ValueError("reconnect_min_s must not exceed reconnect_max_s")
        return self


class SignalSettings(_Section):
    http_port: int = Field(
        SIGNAL_BRIDGE.http_port, ge=1, le=65535, description="TCP port of /metrics, /healthz, /readyz"
    )
    strategy: str = Field("ma_crossover", description="strategy name (docs/strategies.md)")
    params: dict[str, Any] = Field({}, description="the strategy's parameters by name")
    model_path: Path | None = Field(None, description="JSON model file for the strategy, if it uses one")
    source: Literal["trades", "quotes", "bars"] = Field(
        "trades", description="which ticks feed the indicators"
    )
    warmup_bars: int = Field(0, ge=0, description="historical bars fetched at start to warm indicators")
    publish_features: bool = Field(
        False,
        description="send the common feature set (RSI, MACD, Bollinger, ATR) in every signal; "
        "always computed when a model is loaded, otherwise skipped: it is most of a tick's cost",
    )


@dataclass(frozen=True)
class AtMost:
    """A cross-field rule of the limits: ``small`` must not exceed ``large``.

    Enforced by ``RiskLimits`` here and, generated from the same table, by CEL in the CRD.
    """

    small: str
    large: str
    why: str

    def message(self, name: Callable[[str], str] = str) -> str:
        return f"{name(self.small)} must not exceed {name(self.large)}: {self.why}"


RISK_LIMIT_RULES = (
    AtMost("order_qty", "max_order_qty", "the base order size must fit in one order"),
    AtMost("max_order_qty", "max_position_qty", "one order cannot be larger than a position"),
    AtMost("max_order_notional", "max_gross_exposure", "one order cannot be larger than the whole book"),
)


class RiskLimits(_Section):
    """The risk limits: declared once, here. The operator's CRD reuses this model (camelCase)."""

    order_qty: float = Field(
        10, gt=0, description="shares: the base order size (at signal strength 1); at most the largest order"
    )
    sizing: Literal["fixed", "strength"] = Field(
        "strength",
        description="fixed: the base order size; strength: floor(base size x signal strength) shares",
    )
    max_order_qty: float = Field(100, gt=0, description="shares: largest single order")
    max_order_notional: float = Field(50_000, gt=0, description="dollars: largest single order's value")
    max_position_qty: float = Field(500, gt=0, description="shares: largest position per symbol, worst case")
    max_gross_exposure: float = Field(
        250_000, gt=0, description="dollars: largest sum of |position| x price over symbols, worst case"
    )
    max_open_positions: int = Field(10, gt=0, description="count: symbols with a position or open order")
    daily_loss_limit: float = Field(
        5_000, gt=0, description="dollars: the day's loss that halts trading (circuit breaker)"
    )
    max_orders_per_minute: int = Field(60, gt=0, description="orders approved in any 60-second window")
    price_band_pct: float = Field(
        5.0, gt=0, le=100, description="percent: largest distance of a signal's price from the last price"
    )

    @model_validator(mode="after")
    def _consistent(self) -> RiskLimits:
        broken = [r.message() for r in RISK_LIMIT_RULES if getattr(self, r.small) > getattr(self, r.large)]
        if broken:
            raise ValueError("; ".join(broken))
        return self


class RiskSettings(RiskLimits):
    http_port: int = Field(
        RISK_MANAGER.http_port,
        ge=1,
        le=65535,
        description="TCP port of /metrics, /healthz, /readyz (read-only; control has its own port)",
    )
    halted: bool = Field(False, description="start in HALT: the kill switch (no new orders)")
    reducing_at_loss_fraction: float = Field(
        0.8, gt=0, le=1, description="share of daily_loss_limit lost at which REDUCING is entered"
    )
    reconcile_on_start: bool = Field(
        True, description="seed positions and open orders from the broker at start"
    )
    state_path: Path = Field(
        Path("var/risk.sqlite"),
        description="SQLite file of the safety state (kill switch, latches, day baseline, book, "
        "open orders); keep it on a volume that survives restarts, like execution.db_path",
    )
    resync_interval_s: float = Field(
        5.0, gt=0, description="periodic resync with the execution-engine's outbox and open orders, s"
    )
    control_host: str = Field("127.0.0.1", description="bind address of the control port")
    control_port: int = Field(
        RISK_CONTROL_PORT,
        ge=1,
        le=65535,
        description="TCP port of POST /control and GET /state (bearer token only)",
    )
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
    http_port: int = Field(
        EXECUTION_ENGINE.http_port, ge=1, le=65535, description="TCP port of /metrics, /healthz, /readyz"
    )
    db_path: Path = Field(Path("var/execution.sqlite"), description="SQLite file of the order state")
    rate_limit_per_min: int = Field(200, gt=0, description="broker requests per minute, client-side limit")
    request_timeout_s: float = Field(10.0, gt=0, description="seconds: timeout of one broker request")
    max_attempts: int = Field(5, ge=1, description="tries of one broker request before giving up")
    backoff_base_s: float = Field(0.25, gt=0, description="seconds: first retry backoff")
    backoff_max_s: float = Field(10.0, gt=0, description="seconds: longest retry backoff")
    cid_prefix: str = Field(
        "ts", pattern=r"^[a-z0-9-]{1,8}$", description="prefix of every client_order_id (1-8 chars)"
    )
    reconcile_interval_s: float = Field(
        30.0, gt=0, description="seconds between REST reconciliations of open orders while any are open"
    )
    resubmit_max_age_s: float = Field(
        60.0,
        gt=0,
        description="an approved order older than this (since risk approval) when it would be "
        "sent, first time or after a crash, is rejected as stale and never sent, s",
    )
    max_queued_intents: int = Field(
        100, gt=0, description="approved orders waiting for their first submit; more are rejected"
    )


class SimSettings(_Section):
    host: str = Field("127.0.0.1", description="address the simulator listens on and services reach it at")
    port: int = Field(
        SIM.http_port, ge=0, le=65535, description="TCP port of the simulator's REST and websockets"
    )
    seed: int = Field(42, description="random seed of the simulated prices")
    tick_rate: float = Field(20.0, gt=0, description="ticks per second per symbol")
    initial_cash: float = Field(100_000, gt=0, description="dollars in the simulated account at start")
    replay_path: Path | None = Field(None, description="CSV of ticks to replay instead of simulated prices")
    account_type: AccountType = Field(
        AccountType.MARGIN, description="cash (long only, no shorting) or margin (shorting allowed)"
    )
    multiplier: int | None = Field(
        None,
        description="buying power as a multiple of equity: 1, 2 (Reg-T margin) or 4 (day-trading "
        "margin); a cash account must use 1; unset = 1 for cash, 2 for margin",
    )
    hard_to_borrow: list[str] = Field(
        [], description="upper-case tickers a margin account may not sell short (not easy to borrow)"
    )
    session: SessionModel = Field(
        SessionModel.CONTINUOUS,
        description="continuous (always open; the trading day ends at 00:00 UTC) or regular "
        "(09:30-16:00 America/New_York, Monday to Friday)",
    )
    start_at: AwareDatetime | None = Field(
        None,
        description="ISO 8601 instant with a UTC offset the simulated clock starts at, "
        "e.g. 2026-12-05T15:00:00Z; unset = now",
    )

    @field_validator("multiplier")
    @classmethod
    def _multiplier(cls, v: int | None, info: ValidationInfo) -> int | None:
        if v not in (None, 1, 2, 4):
            raise ValueError(f"must be 1, 2 or 4, not {v}")
        if info.data.get("account_type") is AccountType.CASH and v not in (None, 1):
            raise ValueError(f"a cash account's multiplier must be 1, not {v}")
        return v

    @field_validator("hard_to_borrow")
    @classmethod
    def _hard_to_borrow(cls, v: list[str]) -> list[str]:
        well_formed(v)
        return v

    @property
    def effective_multiplier(self) -> int:
        """``multiplier``, or the account type's usual one when unset."""
        if self.multiplier is not None:
            return self.multiplier
        return 1 if self.account_type is AccountType.CASH else 2


class Settings(BaseSettings):
    model_config = SettingsConfigDict(
        env_prefix="TS_", env_nested_delimiter="__", extra="forbid", validate_default=True
    )

    mode: Mode = Field(Mode.SIM, description="sim (embedded simulator), paper or live (real money)")
    live_confirmation: str = Field("", description=f"must be {LIVE_CONFIRMATION} for mode live")
    symbols: list[str] = Field(["AAPL", "MSFT"], description="upper-case tickers to trade, e.g. AAPL, BRK.B")
    log_level: Literal["DEBUG", "INFO", "WARNING", "ERROR"] = Field("INFO", description="log threshold")
    log_format: Literal["json", "text"] = Field(
        "json", description="one JSON object or one text line per record"
    )
    alpaca: AlpacaSettings = Field(AlpacaSettings(), description="broker credentials and endpoints")
    bus: BusSettings = Field(BusSettings(), description="ZeroMQ endpoints of the four publishers")
    market_data: MarketDataSettings = Field(MarketDataSettings(), description="the market-data service")
    signals: SignalSettings = Field(SignalSettings(), description="the signal-bridge service")
    risk: RiskSettings = Field(RiskSettings(), description="the risk-manager service and its limits")
    execution: ExecutionSettings = Field(ExecutionSettings(), description="the execution-engine service")
    sim: SimSettings = Field(SimSettings(), description="the embedded Alpaca-compatible simulator")

    @field_validator("symbols")
    @classmethod
    def _symbols(cls, v: list[str]) -> list[str]:
        if not v:
            raise ValueError("at least one symbol is required")
        well_formed(v)
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
