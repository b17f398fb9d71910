"""Benchmarks for the order pipeline (``python -m bench.load``)."""
