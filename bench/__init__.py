"""Benchmarks of p2p0mq-actors against raw pyzmq doing the same work.

Not part of the test suite and not shipped. Run ``python -m bench`` from the
repository root (``--quick`` for a smoke run); see ``bench/README.md``.
"""
