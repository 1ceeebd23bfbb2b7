"""Near the open-file limit: a context, a listening socket and a connection
are refused with a TransportError naming RLIMIT_NOFILE before libzmq runs
out, and nothing is left running.

Each case runs in a child process with RLIMIT_NOFILE lowered to 64 (soft
and hard, so ``raise_file_limit`` cannot lift it), holding ``/dev/null``
open until exactly ``free`` descriptors are left: lowering the limit of the
pytest process would starve the rest of the suite, and before the checks
libzmq aborted the process it ran out in.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest

ROOT = Path(__file__).resolve().parents[2]
LIMIT = 64
ADVICE = "raise the open-file limit (ulimit -n) or close files, sockets or peers"

# The common part of every child: the limit, a way to leave exactly `free`
# descriptors free, and the report printed as one JSON line: the error
# raised (type and message, or None), the Python threads left, and how many
# descriptors are open afterwards beyond those open before the case.
PRELUDE = f"""
import json, os, resource, sys, threading, tempfile
resource.setrlimit(resource.RLIMIT_NOFILE, ({LIMIT}, {LIMIT}))
import zmq
from p2p0mq_actors.core.ports import PeerAddress
from p2p0mq_actors.transport.context import end_context, new_context
from p2p0mq_actors.transport.keys import generate_keypair
from p2p0mq_actors.transport.router import AllowedKeys, CurveRouter
from p2p0mq_actors.transport.sockets import CurveDealerFactory

FREE = int(sys.argv[1])
KEYS = generate_keypair()

def opened():
    return len(os.listdir("/proc/self/fd")) - 1  # less listdir's own

def leave_free(free):
    held = []
    while {LIMIT} - opened() > free:
        held.append(os.open("/dev/null", os.O_RDONLY))
    return held

def finish(error, before, held, ctx=None):  # free what was held, end ctx, report
    for fd in held:
        os.close(fd)
    if ctx is not None:
        assert end_context(ctx, 5.0)
    print(json.dumps({{
        "error": None if error is None else [type(error).__name__, str(error)],
        "threads": sorted(t.name for t in threading.enumerate()),
        "left_open": opened() - before,
    }}))
"""

CONTEXT = """
before = opened()
held, error, ctx = leave_free(FREE), None, None
try:
    ctx = new_context()
    ctx.socket(zmq.PAIR).close(linger=0)  # its first socket: it starts
except Exception as exc:
    error = exc
finish(error, before, held, ctx)
"""

LISTENER = """
before = opened()
ctx = new_context()
held, error = leave_free(FREE), None
try:
    router = CurveRouter(ctx, KEYS, AllowedKeys())
    router.bind("tcp://127.0.0.1:*")
    router.close()
except Exception as exc:
    error = exc
finish(error, before, held, ctx)
"""

CONNECTION = """
before = opened()
ctx = new_context()  # not started: its first socket starts it
factory = CurveDealerFactory(ctx, b"me", KEYS)
held, error = leave_free(FREE), None
try:
    factory.connect(PeerAddress(b"peer", "tcp://127.0.0.1:9", KEYS.public)).close()
except Exception as exc:
    error = exc
finish(error, before, held, ctx)
"""

NODE = """
from p2p0mq_actors.node import Node
from p2p0mq_actors.transport.keystore import KeyStore
store = KeyStore(tempfile.mkdtemp())
store.ensure(b"a")
before = opened()
held, error = leave_free(FREE), None
try:
    Node(b"a", keys=store, timeout=2).stop()
except Exception as exc:
    error = exc
finish(error, before, held)
"""


def run_case(case: str, free: int) -> dict[str, Any]:
    env = {**os.environ, "PYTHONPATH": str(ROOT)}
    child = subprocess.run(
        [sys.executable, "-c", PRELUDE + case, str(free)],
        check=False,  # asserted below, with the child's stderr
        capture_output=True,
        text=True,
        timeout=30,
        env=env,
    )
    assert child.returncode == 0, child.stderr
    return dict(json.loads(child.stdout))


def refused(what: str, needed: int, free: int) -> dict[str, Any]:
    return {
        "error": [
            "TransportError",
            f"cannot make {what}: it needs up to {needed} file descriptors and {free} are "
            f"free ({LIMIT - free} open, RLIMIT_NOFILE {LIMIT}); {ADVICE}",
        ],
        "threads": ["MainThread"],
        "left_open": 0,
    }


MADE = {"error": None, "threads": ["MainThread"], "left_open": 0}


@pytest.mark.parametrize("free", [1, 2, 4])
def test_a_context_with_too_few_descriptors_free_is_refused_before_libzmq_aborts(
    free: int,
) -> None:
    assert run_case(CONTEXT, free) == refused("a zmq context", 5, free)


def test_a_context_with_just_enough_descriptors_free_starts() -> None:
    assert run_case(CONTEXT, 5 + 1) == MADE  # its first socket takes one more


@pytest.mark.parametrize("free", [1, 7, 10])
def test_a_listening_socket_with_too_few_descriptors_free_is_refused_and_starts_no_zap(
    free: int,
) -> None:
    assert run_case(LISTENER, free) == refused(
        "a listening socket with its monitor and ZAP", 11, free
    )


def test_a_listening_socket_with_just_enough_descriptors_free_binds() -> None:
    assert run_case(LISTENER, 11) == MADE


@pytest.mark.parametrize("free", [1, 7])
def test_a_connection_with_too_few_descriptors_free_is_refused_naming_the_peer(
    free: int,
) -> None:
    assert run_case(CONNECTION, free) == refused("a socket to peer b'peer'", 8, free)


def test_a_connection_with_just_enough_descriptors_free_connects() -> None:
    assert run_case(CONNECTION, 8) == MADE


def test_a_node_with_too_few_descriptors_free_is_refused_instead_of_aborting() -> None:
    assert run_case(NODE, 2) == refused("a zmq context", 5, 2)
