"""new_context and end_context: the settings they take, and ending a context
whose sockets are not all closed.

A context left with an open socket is ended in a child process: before
``end_context`` was fixed, that case raised, hung, or made libzmq abort
the whole process, which a test must survive to report it.
"""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest
import zmq

from p2p0mq_actors.core.errors import ConfigurationError
from p2p0mq_actors.transport import context as context_module
from p2p0mq_actors.transport.context import (
    DEFAULT_MAX_SOCKETS,
    end_context,
    new_context,
    raise_file_limit,
)

ROOT = Path(__file__).resolve().parents[2]

# Ends ROUNDS contexts, each with a bound DEALER left open by its owner (this
# thread), then closes the socket and ends the context again. Prints, per
# round: what end_context returned with the socket open, whether the socket
# was still open after it, whether the warning named it, what a second call
# returned while it was still open, and what end_context returned once it
# was closed; then how many times term() ran in all, and the threads left.
LEFT_OPEN = r"""
import logging, threading, time
import zmq
from p2p0mq_actors.transport.context import end_context

ROUNDS = 5
warnings = []
handler = logging.Handler()
handler.emit = lambda record: warnings.append(record.getMessage())
logging.getLogger("p2p0mq_actors.transport").addHandler(handler)
terms = 0
for _ in range(ROUNDS):
    ctx = zmq.Context()
    real_term = ctx.term
    def counted_term(real_term=real_term):
        global terms
        terms += 1
        real_term()
    ctx.term = counted_term
    sock = ctx.socket(zmq.DEALER)
    sock.bind("tcp://127.0.0.1:*")
    warnings.clear()
    started = time.monotonic()
    first = end_context(ctx, 0.2)
    again = end_context(ctx, 0.05)
    took = time.monotonic() - started
    expected = (
        f"zmq context did not end within 0.2 s: 1 socket(s) still open: {sock!r}; "
        "it ends once they are closed"
    )
    named = warnings[:1] == [expected]
    still_open = not sock.closed
    sock.close(linger=0)
    last = end_context(ctx, 5.0)
    print(first, still_open, named, again, last, took < 2.0, flush=True)
print("terms", terms)
print("threads", sorted(t.name for t in threading.enumerate()))
"""


def run_child(code: str) -> subprocess.CompletedProcess[str]:
    env = {**os.environ, "PYTHONPATH": str(ROOT)}
    return subprocess.run(
        [sys.executable, "-c", code],
        check=False,  # the caller asserts the return code, with the child's stderr
        capture_output=True,
        text=True,
        timeout=30,
        env=env,
    )


def test_end_context_with_a_socket_left_open_returns_false_in_time_and_leaves_it_open() -> None:
    child = run_child(LEFT_OPEN)

    assert (child.returncode, child.stdout) == (
        0,
        "False True True False True True\n" * 5 + "terms 5\nthreads ['MainThread']\n",
    ), child.stderr


def test_end_context_of_a_context_whose_sockets_are_closed_is_true() -> None:
    ctx = new_context()
    ctx.socket(zmq.DEALER).close(linger=0)

    assert (end_context(ctx, 5.0), ctx.closed, end_context(ctx, 5.0)) == (True, True, True)


def test_new_context_takes_a_max_sockets_within_the_file_limit() -> None:
    ctx = new_context(max_sockets=100)
    try:
        assert ctx.MAX_SOCKETS == 100
    finally:
        assert end_context(ctx, 5.0)


@pytest.mark.parametrize("value", [True, "100", 1.5, b"7"])
def test_a_max_sockets_that_is_not_an_int_is_a_configuration_error(value: object) -> None:
    with pytest.raises(ConfigurationError) as info:
        new_context(max_sockets=value)  # type: ignore[arg-type]

    assert str(info.value) == f"max_sockets must be an int, got {value!r}"


@pytest.mark.parametrize("value", [0, -1, 10**12, 2**31, 2**31 - 1])
def test_a_max_sockets_outside_1_to_its_bound_is_a_configuration_error(value: int) -> None:
    files = raise_file_limit()
    bound = max(files, DEFAULT_MAX_SOCKETS)

    with pytest.raises(ConfigurationError) as info:
        new_context(max_sockets=value)

    assert str(info.value) == (
        f"max_sockets must be from 1 to {bound} (each socket needs a file descriptor: "
        f"RLIMIT_NOFILE is {files}), got {value!r}"
    )


def test_a_max_sockets_past_the_file_limit_is_taken_as_libzmqs_own_default_would_be(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setattr(context_module, "raise_file_limit", lambda: 512)
    ctx = new_context(max_sockets=1023)  # libzmq's own default, whatever the limit
    try:
        assert ctx.MAX_SOCKETS == 1023
    finally:
        assert end_context(ctx, 5.0)
