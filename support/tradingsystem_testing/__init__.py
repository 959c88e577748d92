"""Test, benchmark and dev harness for tradingsystem. Never installed into the image.

One definition of each helper the tests and benchmarks share:

- ``waiting``: ``eventually`` / ``eventually_async``, the bounded wait-until helper
- ``ports``: ``free_port``
- ``controlplane``: a real etcd + kube-apiserver (+ controller-manager) on loopback
- ``process``: the operator as a child process
- ``sim``: ``SimulatorThread``, the simulator on its own event loop in a thread
- ``cli``: ``tradingsystem-dev`` (``dev-cluster``)

The product packages (``tradingsystem``, ``tradingsystem_operator``) never import this one
(tests/test_layers.py).
"""

from tradingsystem_testing.ports import free_port
from tradingsystem_testing.waiting import WaitTimeout, eventually, eventually_async

__all__ = ["WaitTimeout", "eventually", "eventually_async", "free_port"]
