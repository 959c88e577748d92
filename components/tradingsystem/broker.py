"""The broker layer: Alpaca credentials, URLs and safe alpaca-py clients, for every service.

One place answers "which account, at which address, with which transport":

* **Credentials** come from the settings (``ALPACA_API_KEY`` / ``ALPACA_SECRET_KEY``, held as
  ``SecretStr``); in ``sim`` mode without keys, the simulator's default keys below.
* **URLs**, one rule for all four endpoints (trading REST, market-data REST, market-data
  stream, trade-updates stream): an explicit ``alpaca.*_url`` override wins; else the
  simulator's address in ``sim`` mode; else ``None``, which lets alpaca-py pick Alpaca's own
  (paper or live by ``paper=``).
* **REST clients** are built timeout-safe: alpaca-py passes no timeout to ``requests`` (a call
  can hang forever) and retries 429/504 itself, ``POST /v2/orders`` included, with fixed 3 s
  sleeps. Here its retries are off and a timeout adapter is mounted on its session, so the
  caller's own policy alone decides what is retried.

The simulator imports its default keys from here; nothing here imports a service or the
simulator. alpaca-py is imported lazily, so importing the constants costs nothing.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from requests.adapters import HTTPAdapter

from tradingsystem.common.config import Mode, Settings

if TYPE_CHECKING:
    from alpaca.data.historical.stock import StockHistoricalDataClient
    from alpaca.trading.client import TradingClient

# The simulator accepts these when it runs without ALPACA_* keys, and the services send them
# in sim mode: nobody needs a key offline.
SIM_KEY_ID = "SIMKEY"
SIM_SECRET = "SIMSECRET"


class MissingCredentials(ValueError):
    """Outside sim mode without keys; configuration validation normally stops this earlier."""


def credentials(settings: Settings) -> tuple[str, str]:
    """(key id, secret) for alpaca-py. Never log the result."""
    a = settings.alpaca
    if a.api_key is not None and a.secret_key is not None:
        return a.api_key.get_secret_value(), a.secret_key.get_secret_value()
    if settings.mode is Mode.SIM:
        return SIM_KEY_ID, SIM_SECRET
    raise MissingCredentials(f"mode={settings.mode.value} needs ALPACA_API_KEY and ALPACA_SECRET_KEY")


def paper(settings: Settings) -> bool:
    """alpaca-py's ``paper=``: chooses only the default URLs; the keys decide the account."""
    return settings.mode is not Mode.LIVE


def _url(settings: Settings, override: str, sim_path: str, scheme: str = "http") -> str | None:
    if override:
        return override
    if settings.mode is Mode.SIM:
        return f"{scheme}://{settings.sim.host}:{settings.sim.port}{sim_path}"
    return None


def trading_url(settings: Settings) -> str | None:
    """Trading REST base URL (``TradingClient(url_override=)``)."""
    return _url(settings, settings.alpaca.trading_url, "")


def data_url(settings: Settings) -> str | None:
    """Market-data REST base URL (``StockHistoricalDataClient(url_override=)``)."""
    return _url(settings, settings.alpaca.data_url, "")


def data_stream_url(settings: Settings) -> str | None:
    """Full market-data websocket URL, feed included (``StockDataStream(url_override=)``)."""
    return _url(settings, settings.alpaca.data_stream_url, f"/v2/{settings.alpaca.feed}", "ws")


def trading_stream_url(settings: Settings) -> str | None:
    """Full trade-updates websocket URL (``TradingStream(url_override=)``)."""
    return _url(settings, settings.alpaca.trading_stream_url, "/stream", "ws")


class TimeoutAdapter(HTTPAdapter):
    """Applies a default timeout to every request that has none, and never retries."""

    def __init__(self, timeout_s: float) -> None:
        super().__init__(max_retries=0)
        self._timeout = timeout_s

    def send(self, request: Any, **kwargs: Any) -> Any:  # type: ignore[override]
        if kwargs.get("timeout") is None:
            kwargs["timeout"] = self._timeout
        return super().send(request, **kwargs)


def _make_safe(client: Any, timeout_s: float) -> None:
    client._retry = 0  # the SDK must not retry (a POST above all) behind the caller's back
    adapter = TimeoutAdapter(timeout_s)
    client._session.mount("http://", adapter)
    client._session.mount("https://", adapter)


def trading_client(settings: Settings, timeout_s: float) -> TradingClient:
    """Trading REST client (raw dicts): the simulator, paper or live by mode."""
    from alpaca.trading.client import TradingClient

    key, secret = credentials(settings)
    client = TradingClient(
        key, secret, paper=paper(settings), raw_data=True, url_override=trading_url(settings)
    )
    _make_safe(client, timeout_s)
    return client


def historical_data_client(settings: Settings, timeout_s: float) -> StockHistoricalDataClient:
    """Market-data REST client (raw dicts) for historical bars."""
    from alpaca.data.historical.stock import StockHistoricalDataClient

    key, secret = credentials(settings)
    client = StockHistoricalDataClient(key, secret, raw_data=True, url_override=data_url(settings))
    _make_safe(client, timeout_s)
    return client
