"""signal-bridge: SUB market data -> strategy (+ optional model) -> PUB signals.

``SignalService`` runs the loop in one thread (it owns both sockets) until stopped; ``run``
adds logging, signal handling and the HTTP port. Configuration errors (unknown strategy,
bad parameter, bad model file) fail at construction, naming the field.
"""

from __future__ import annotations

import logging
import threading
import time
from typing import Any

import zmq

from tradingsystem.common import wire
from tradingsystem.common.bus import Publisher, Subscriber, WireError, load_curve
from tradingsystem.common.config import ConfigError, Settings
from tradingsystem.common.metrics import (
    HOP_LATENCY,
    MESSAGES_DROPPED,
    MESSAGES_IN,
    MESSAGES_OUT,
    PUBLISHER_RESTARTS,
    SEQUENCE_GAPS,
    SIGNALS,
)
from tradingsystem.common.runtime import (
    BackgroundLoop,
    Health,
    HttpEndpoint,
    install_signal_handlers,
    setup_logging,
)
from tradingsystem.common.services import MARKET_DATA, SIGNAL_BRIDGE
from tradingsystem.signals.engine import SignalEngine, available_features
from tradingsystem.signals.model import LinearModel, ModelError
from tradingsystem.signals.strategies import StrategyConfigError, StrategyFactory
from tradingsystem.signals.warmup import warm

SERVICE = SIGNAL_BRIDGE.name
_SOURCE_PREFIX = {"trades": wire.TOPIC_TRADE, "quotes": wire.TOPIC_QUOTE, "bars": wire.TOPIC_BAR}
_POLL_MS = 100  # bounds the reaction time to stop and the heartbeat jitter
_BATCH = 512  # messages handled per wakeup, bounding the delay of heartbeats and readiness
_TICK = (wire.Trade, wire.Quote, wire.Bar)  # built once: ``A | B | C`` is a new object per call

log = logging.getLogger(__name__)


def build_engine(settings: Settings, *, features: bool | None = None) -> SignalEngine:
    """The engine of ``settings``; ``features`` (default: ``signals.publish_features``) asks
    for the common feature set even without a model."""
    s = settings.signals
    if features is None:
        features = s.publish_features
    try:
        factory = StrategyFactory(s.strategy, s.params)
        model = LinearModel.load(s.model_path, available_features(factory)) if s.model_path else None
    except (StrategyConfigError, ModelError) as exc:
        raise ConfigError(str(exc)) from None
    return SignalEngine(settings.symbols, factory, model, features=features)


class SignalService(BackgroundLoop):
    name = SERVICE

    def __init__(self, settings: Settings, health: Health | None = None) -> None:
        self.settings = settings
        self.health = health or Health(SERVICE)
        self.engine = build_engine(settings)
        self._kind = _SOURCE_PREFIX[settings.signals.source].decode()
        # Upstream counts as connected while its messages (ticks or heartbeats) keep coming.
        self._upstream_timeout_s = max(3 * settings.bus.heartbeat_interval_s, 1.0)
        super().__init__()

    def run(self, stop: threading.Event | None = None) -> None:
        if stop is not None:
            self._stop = stop
        s = self.settings
        if s.signals.warmup_bars:
            warm(self.engine, s)
        curve = s.bus.curve
        sub = Subscriber(
            s.bus.market_data,
            (_SOURCE_PREFIX[s.signals.source] + b".", wire.TOPIC_HEARTBEAT),
            curve=load_curve(curve.keys_dir, SERVICE, server=MARKET_DATA.name) if curve.enabled else None,
        )
        pub = Publisher(
            s.bus.bind_endpoint(s.bus.signals),
            service=SERVICE,
            curve=load_curve(curve.keys_dir, SERVICE) if curve.enabled else None,
        )
        try:
            self._loop(sub, pub)
        finally:
            self.health.set_ready(False, upstream="stopped")
            sub.close()
            pub.close()

    def _loop(self, sub: Subscriber, pub: Publisher) -> None:
        kind = self._kind
        m_in = MESSAGES_IN.labels(SERVICE, kind)
        m_hb = MESSAGES_IN.labels(SERVICE, "hb")
        restarts = PUBLISHER_RESTARTS.labels(SERVICE, MARKET_DATA.name)
        gaps = SEQUENCE_GAPS.labels(SERVICE, kind)
        hop = HOP_LATENCY.labels(SERVICE, kind)
        malformed = MESSAGES_DROPPED.labels(SERVICE, "malformed")
        unknown = MESSAGES_DROPPED.labels(SERVICE, "unknown_symbol")
        out = MESSAGES_OUT.labels(SERVICE, "signal")
        signals: dict[tuple[str, wire.Action], Any] = {}  # (strategy, action) -> its counter
        hb_every = self.settings.bus.heartbeat_interval_s
        last_upstream = float("-inf")
        engine = self.engine
        log_signals = log.isEnabledFor(logging.INFO)
        poller = zmq.Poller()  # one for the loop: ``Socket.poll`` builds a new one per call
        poller.register(sub.sock, zmq.POLLIN)
        while not self._stop.is_set():
            if poller.poll(_POLL_MS):
                # Drain what is queued before the per-wakeup housekeeping below: one poll
                # per message would cap throughput well under what one hop can carry.
                ticks = 0  # added to the counter once per wakeup, not once per tick
                for _ in range(_BATCH):
                    try:
                        r = sub.recv(zmq.NOBLOCK)
                    except zmq.Again:
                        break
                    except WireError:
                        malformed.inc()
                        continue
                    msg = r.msg
                    if r.restarted:  # a replaced market-data pod: counted like every subscriber does
                        restarts.inc()
                        log.warning("%s restarted (new epoch)", MARKET_DATA.name)
                    if isinstance(msg, wire.Heartbeat):
                        m_hb.inc()
                        continue
                    ticks += 1
                    hop.observe((wire.now_ns() - msg.ts) / 1e9)
                    if r.gap:
                        gaps.inc(r.gap)
                    if not isinstance(msg, _TICK):
                        continue
                    if not engine.knows(msg.symbol):
                        unknown.inc()
                        continue
                    sig = engine.on_tick(msg)
                    if sig is not None:
                        pub.publish(sig)
                        out.inc()
                        key = (sig.strategy, sig.action)
                        counter = signals.get(key)
                        if counter is None:  # bound once per label pair: no label lookup per signal
                            counter = signals[key] = SIGNALS.labels(sig.strategy, sig.action.value)
                        counter.inc()
                        if log_signals:  # the record's dict is not built when INFO is off
                            log.info(
                                "signal",
                                extra={
                                    "fields": {
                                        "symbol": sig.symbol,
                                        "action": sig.action.value,
                                        "strength": round(sig.strength, 3),
                                    }
                                },
                            )
                if ticks:
                    m_in.inc(ticks)
                last_upstream = time.monotonic()
            connected = time.monotonic() - last_upstream < self._upstream_timeout_s
            if connected != self.health.ready:
                self.health.set_ready(connected, upstream="connected" if connected else "silent")
            pub.heartbeat("ready" if connected else "waiting", hb_every)


def run(settings: Settings) -> int:
    setup_logging(settings.log_level, settings.log_format, SERVICE)
    stop = threading.Event()
    install_signal_handlers(stop)
    health = Health(SERVICE)
    service = SignalService(settings, health)  # config errors surface here, before binding
    http = HttpEndpoint(settings.bus.bind_host, settings.signals.http_port, health).start()
    log.info(
        "signal-bridge starting",
        extra={
            "fields": {
                "strategy": settings.signals.strategy,
                "source": settings.signals.source,
                "model": str(settings.signals.model_path or ""),
            }
        },
    )
    try:
        service.run(stop)
    finally:
        http.stop()
    log.info("signal-bridge stopped")
    return 0
