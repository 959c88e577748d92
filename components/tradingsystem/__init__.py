"""Kubernetes-native algorithmic trading platform: the trading services and the simulator."""

from importlib.metadata import PackageNotFoundError, version

try:
    __version__ = version("tradingsystem")
except PackageNotFoundError:  # running from a source tree without install
    __version__ = "0.0.0"
