"""Alpaca-compatible market and broker simulator (see ``tradingsystem.sim.server`` and docs/simulator.md).

Modules: ``prices`` (synthetic GBM and CSV replay), ``ledger`` (account, matching, fills),
``faults`` (fault injection, rate limit), ``auth`` (key check), ``rest`` (REST and control
routes), ``streams`` (market-data and trade_updates websockets), ``server`` (app assembly,
``Simulator``, ``run``); ``tradingsystem_testing.sim.SimulatorThread`` runs one in a thread for tests.
"""
