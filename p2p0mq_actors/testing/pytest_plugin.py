"""pytest fixtures for code built on p2p0mq-actors.

Installing p2p0mq-actors registers this module as a pytest plugin (the
``pytest11`` entry point ``p2p0mq_actors``), so these fixtures are available
in every test without an import:

- ``manual_clock``: a fresh ``ManualClock`` (time moves only when the test says).
- ``actor_cleanup``: after the test, stops every Pykka actor it left running.
- ``no_thread_leak``: fails the test if it leaves a thread running.
- ``actor_test``: both, in the right order (stop the actors, then look for
  threads), and first any ``Node`` the test left running: it is stopped,
  and the test fails naming it. A node that was running before the test
  (a fixture's of a wider scope) is left alone, with every actor and
  thread it has, also those the test made it start.

To guard every test of a suite, add to its root ``conftest.py``::

    @pytest.fixture(autouse=True)
    def _no_leftovers(actor_test: None) -> None:
        pass

When the package is installed, do not also list this module in
``pytest_plugins`` nor pass ``-p p2p0mq_actors.testing.pytest_plugin``:
pytest refuses to register one plugin under two names (``-p
p2p0mq_actors`` names the entry point). Without the entry point (e.g.
``PYTEST_DISABLE_PLUGIN_AUTOLOAD=1``), load it with ``-p
p2p0mq_actors.testing.pytest_plugin``.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Iterator
from typing import Any

import pykka
import pytest

from .clock import ManualClock

ACTOR_STOP_TIMEOUT = 5.0
"""Seconds each leftover actor gets to stop."""

THREAD_LEAK_TIMEOUT = 2.0
"""Seconds the threads a test started get, all together, to end after it."""


@pytest.fixture
def manual_clock() -> ManualClock:
    """A ``ManualClock`` starting at 1000.0; move it with ``advance`` or ``set``."""
    return ManualClock()


@pytest.fixture
def actor_cleanup() -> Iterator[None]:
    """After the test, stop every Pykka actor it started and left running,
    last started first. Those running before it are left alone, and so is
    every actor of a ``Node`` that was running before it (a fixture's of a
    wider scope), even one the test made it start (a peer's connection)."""
    before = _Before()
    yield
    before.stop_new_actors()


@pytest.fixture
def no_thread_leak() -> Iterator[None]:
    """Fail the test if a thread it started is still running shortly after it.

    The threads alive before the test are remembered; after the test, every
    new thread is joined for up to ``THREAD_LEAK_TIMEOUT`` seconds in all, and
    the test errors in teardown naming those still running.
    """
    before = set(threading.enumerate())
    yield
    check_no_new_threads(before)


@pytest.fixture
def actor_test() -> Iterator[None]:
    """``actor_cleanup`` then ``no_thread_leak``: stop leftover actors, then check threads.

    The order matters: a leftover actor's thread is only gone once the actor
    has been stopped. Before both, a ``Node`` the test started and left
    running is stopped (its zmq contexts too, which stopping its actors
    alone would leave open), and the test then fails naming it.
    """
    before = _Before()
    yield
    left = before.new_nodes()
    for node in left:
        node.stop()
    before.stop_new_actors()
    check_no_new_threads(before.threads | before.spared_threads())
    if left:
        names = ", ".join(sorted(repr(node.uuid) for node in left))
        pytest.fail(
            f"the test left {len(left)} Node(s) running: {names} (stopped now). Stop "
            "every node it starts: node.stop(), or `with Node(...) as node:`.",
            pytrace=False,
        )


def stop_actors_except(spared: set[str], timeout: float = ACTOR_STOP_TIMEOUT) -> None:
    """Stop every running Pykka actor whose urn is not in ``spared``, last
    started first, each within ``timeout`` s."""
    for ref in reversed(pykka.ActorRegistry.get_all()):
        if ref.actor_urn not in spared:
            ref.stop(timeout=timeout)


class _Before:
    """What ran before a test: its actors, threads and nodes. A node running
    before it (a fixture's, of a wider scope) keeps what the test made it
    start (its timer thread, a peer's connection)."""

    def __init__(self) -> None:
        from ..node import running_nodes  # noqa: PLC0415 - loading the plugin loads no zmq

        self._running_nodes = running_nodes
        self.threads = set(threading.enumerate())
        self.actors = {ref.actor_urn for ref in pykka.ActorRegistry.get_all()}
        self.nodes = set(running_nodes())

    def new_nodes(self) -> list[Any]:
        return [node for node in self._running_nodes() if node not in self.nodes]

    def stop_new_actors(self) -> None:
        spared = set(self.actors)
        for node in self.nodes:
            spared.update(ref.actor_urn for ref in node.parts()[0])
        stop_actors_except(spared)

    def spared_threads(self) -> set[threading.Thread]:
        idents = {ident for node in self.nodes for ident in node.parts()[1]}
        return {thread for thread in threading.enumerate() if thread.ident in idents}


def check_no_new_threads(
    before: set[threading.Thread], timeout: float = THREAD_LEAK_TIMEOUT
) -> None:
    """Fail the current test if threads not in ``before`` outlive ``timeout`` seconds.

    New threads are joined (not polled) until the shared deadline. Dummy
    threads (foreign threads that once called into Python) are skipped: they
    can be neither joined nor told apart from finished ones.
    """
    deadline = time.monotonic() + timeout
    left: list[threading.Thread] = []
    for thread in threading.enumerate():
        if thread in before or thread is threading.current_thread():
            continue
        if isinstance(thread, threading._DummyThread):
            continue
        thread.join(max(0.0, deadline - time.monotonic()))
        if thread.is_alive():
            left.append(thread)
    if left:
        names = ", ".join(sorted(repr(thread.name) for thread in left))
        count = f"{len(left)} thread{'s' if len(left) > 1 else ''}"
        pytest.fail(
            f"the test left {count} running {timeout:g} s after it ended: {names}. "
            "Stop every actor, close every clock and socket, and join every thread "
            "the test starts.",
            pytrace=False,
        )
