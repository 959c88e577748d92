"""Benchmarks: `python -m bench [NAME ...]` runs them and prints tables (see docs/benchmarks.md)."""
