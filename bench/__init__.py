"""Benchmarks of p2p0mq-actors against raw pyzmq doing the same work.

Not part of the test suite. Run ``python -m bench`` from the repository
root, or ``p2p0mq-actors bench`` where the package is installed (it ships
as ``p2p0mq_actors.bench``); ``--quick`` for a smoke run. See
``bench/README.md``.
"""
