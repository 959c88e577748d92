"""common/services.py: the service catalogue and what is derived from it."""

from __future__ import annotations

import argparse

from tradingsystem.cli import build_parser
from tradingsystem.common import wire
from tradingsystem.common.config import BusSettings, Settings
from tradingsystem.common.services import (
    ALL,
    BY_NAME,
    PIPELINE,
    RISK_MANAGER,
    SIM,
    START_ORDER,
    start_order,
    subscribers,
)
from tradingsystem_operator.models import TradingSystemSpec

# Messages whose loss leaves state behind: an unheard signal is a missed trade, an unheard
# order stays reserved at the risk-manager.
TRADING_PATH = (wire.TOPIC_SIGNAL, wire.TOPIC_ORDER)


def test_names_sections_conditions_and_ports_are_unique() -> None:
    for field in ("name", "section", "condition", "http_port", "module"):
        values = [getattr(s, field) for s in ALL]
        assert len(set(values)) == len(values), field
    ports = [s.pub_port for s in PIPELINE] + [s.http_port for s in ALL]
    ports += [s.control_port for s in ALL if s.control_port is not None]
    assert len(set(ports)) == len(ports)


def test_subscriptions_name_catalogue_services() -> None:
    assert {n for s in ALL for n in s.subscribes} <= set(BY_NAME) - {SIM.name}


def test_a_trading_message_has_its_consumer_started_before_its_producer() -> None:
    order = [s.name for s in START_ORDER]
    for producer in START_ORDER:
        if set(producer.publishes) & set(TRADING_PATH):
            for consumer in subscribers(producer):
                assert order.index(consumer.name) < order.index(producer.name), (producer.name, consumer.name)


def test_the_start_order_is_every_pipeline_service_once_after_the_simulator() -> None:
    assert sorted(s.name for s in START_ORDER) == sorted(s.name for s in PIPELINE)
    assert start_order(with_sim=True) == (SIM, *START_ORDER)


def test_the_simulator_is_reachable_by_every_service_that_uses_the_broker() -> None:
    assert {s.name for s in subscribers(SIM)} == {s.name for s in PIPELINE}


def test_default_configuration_uses_the_catalogue_ports() -> None:
    settings = Settings()
    for svc in PIPELINE:
        assert getattr(settings.bus, svc.section).endswith(f":{svc.pub_port}"), svc.name
        assert getattr(settings, svc.section).http_port == svc.http_port, svc.name
    assert settings.risk.control_port == RISK_MANAGER.control_port
    assert settings.sim.port == SIM.http_port


def test_every_section_names_a_settings_and_bus_field_and_every_service_a_spec_field() -> None:
    assert {s.section for s in PIPELINE} <= set(BusSettings.model_fields)
    assert {s.section for s in ALL} <= set(Settings.model_fields)
    assert {s.spec_field for s in ALL} <= set(TradingSystemSpec.model_fields)


def test_the_cli_has_a_subcommand_per_catalogue_service() -> None:
    sub = next(a for a in build_parser()._actions if isinstance(a, argparse._SubParsersAction))
    assert {s.name for s in ALL} <= set(sub.choices)
