"""A connection whose actor dies (its socket could not be made, or a bug):
the Scheduler forgets the peer, and every message for it ends with a
failure its Concern hears of, none held for a connection that is gone."""

from __future__ import annotations

import logging

import pytest
from sendpath_kit import Path

from p2p0mq_actors.core.errors import ConfigurationError, NoPeerError, UnexpectedSendError
from p2p0mq_actors.core.message import Priority
from p2p0mq_actors.core.policy import FailurePolicy
from p2p0mq_actors.core.ports import SocketEvent

FAST, MEDIUM, SLOW = Priority.FAST, Priority.MEDIUM, Priority.SLOW
ONCE = FailurePolicy(max_attempts=0)  # every failure gives up at once


@pytest.fixture(autouse=True)
def _quiet_pykka(caplog: pytest.LogCaptureFixture) -> None:
    caplog.set_level(logging.CRITICAL, logger="pykka")  # the actor's death, logged


def test_a_peer_whose_connection_could_not_start_is_an_error_and_forgotten(
    path_factory,  # type: ignore[no-untyped-def]
) -> None:
    p: Path = path_factory([b"b"], policy=ONCE)
    p.factory.fail_connect(b"a", ConfigurationError("too many open files"))
    p.sender.add_peer(b"a", "tcp://127.0.0.1:1/a", b"k" * 40)
    p.sender.add_peer(b"c", "tcp://127.0.0.1:1/c", b"k" * 40)
    with pytest.raises(ConfigurationError, match="too many open files"):
        p.sender.connect_peers()
    assert sorted(p.sender.connections()) == [b"b", b"c"]  # the others are connected
    messages = [p.msg(b"a", lane) for lane in (FAST, MEDIUM, SLOW)]
    for message in messages:  # the fast one alone: the express path
        p.sender.send_one(message)
    p.book.wait_for(lambda b: len(b.failed) == 3)
    assert sorted((m.message_id, type(e)) for m, e in p.book.failed) == sorted(
        (m.message_id, NoPeerError) for m in messages
    )
    p.factory.fail_connect(b"a", None)
    p.sender.add_peer(b"a", "tcp://127.0.0.1:1/a", b"k" * 40)
    assert p.sender.connect_peers() == [b"a"]
    p.sender.send_one(again := p.msg(b"a", FAST))
    p.book.wait_for(lambda b: again in b.sent)


def test_a_connection_that_dies_fails_what_it_and_the_scheduler_hold_for_its_peer(
    path_factory,  # type: ignore[no-untyped-def]
) -> None:
    p: Path = path_factory([b"a"], policy=ONCE, unreachable_after=1000.0)
    sock, ref = p.sock(b"a"), p.sender.connections()[b"a"]
    sock.block()
    queued = p.msg(b"a", MEDIUM)
    p.sender.enqueue_medium(queued)
    p.sender.flush()  # the connection holds it, blocked
    held = [p.msg(b"a", FAST), p.msg(b"a", SLOW)]
    p.sender.enqueue_all(requests={FAST: held[:1], SLOW: held[1:]})
    p.sender.flush()  # the Scheduler holds these
    sock.emit(SocketEvent.HANDSHAKE_FAILED)  # refused: the socket is made again...
    p.factory.fail_connect(b"a", ConfigurationError("too many open files"))  # ...and cannot be
    for _ in range(9):  # (the connection sees the clock as it polls, in real time)
        p.clock.advance(0.1)  # past the first renewal (0.1 s), never the refusal grace (1 s)
        if ref.actor_stopped.wait(0.5):
            break
    assert not ref.is_alive()
    p.book.wait_for(lambda b: len(b.failed) == 3)
    errors = {m.message_id: e for m, e in p.book.failed}
    assert isinstance(errors[queued.message_id], UnexpectedSendError)
    assert "too many open files" in str(errors[queued.message_id])
    assert all(isinstance(errors[m.message_id], UnexpectedSendError) for m in held)
    p.sender.send_one(later := p.msg(b"a", MEDIUM))
    p.book.wait_for(lambda b: len(b.failed) == 4)
    assert isinstance(p.book.failed[-1][1], NoPeerError) and p.book.failed[-1][0] == later
