"""The public fakes: FakeSocket and FakeSocketFactory behave as documented."""

from __future__ import annotations

import doctest
import errno
import threading
import time
from collections.abc import Callable, Iterator
from typing import cast

import pytest

from p2p0mq_actors.core.errors import (
    ConfigurationError,
    TransportError,
    UnexpectedSendError,
    WouldBlock,
)
from p2p0mq_actors.core.ports import PeerAddress, PeerSocket, SocketEvent, SocketFactory
from p2p0mq_actors.testing import fake_socket
from p2p0mq_actors.testing.fake_socket import FakeSocket, FakeSocketFactory
from p2p0mq_actors.transport.errors import ETERM, SocketClosedError, error_for_errno

BOB = PeerAddress(uuid=b"bob", endpoint="tcp://127.0.0.1:5555", public_key=b"k" * 40)
CAROL = PeerAddress(uuid=b"carol", endpoint="tcp://127.0.0.1:5556", public_key=b"c" * 40)


@pytest.fixture
def in_thread() -> Iterator[Callable[[Callable[[], object]], threading.Thread]]:
    """Run callables in threads that are joined (with a timeout) in teardown."""
    threads: list[threading.Thread] = []

    def start(target: Callable[[], object]) -> threading.Thread:
        thread = threading.Thread(target=target, daemon=True)
        threads.append(thread)
        thread.start()
        return thread

    yield start
    for thread in threads:
        thread.join(5.0)
    assert not any(thread.is_alive() for thread in threads)


def assert_stays_blocked(thread: threading.Thread) -> None:
    """The thread is still waiting after a short while (it cannot finish on its own)."""
    thread.join(0.05)
    assert thread.is_alive()


def test_the_fakes_satisfy_the_ports() -> None:
    sock: PeerSocket = FakeSocket(BOB)
    factory: SocketFactory = FakeSocketFactory()

    assert sock is not None and factory is not None


# -- FakeSocket: sending -------------------------------------------------------


def test_a_new_socket_accepts_and_records_copies_of_every_message() -> None:
    sock = FakeSocket(BOB)
    buffer = bytearray(b"mutable")

    sock.send_frames([b"a", cast(bytes, buffer)])  # callers may pass any buffer
    sock.send_frames((b"b",))
    buffer[:] = b"changed"

    assert sock.sent == [[b"a", b"mutable"], [b"b"]]
    assert all(type(frame) is bytes for message in sock.sent for frame in message)


def test_sent_is_a_snapshot_the_test_cannot_corrupt() -> None:
    sock = FakeSocket(BOB)
    sock.send_frames([b"a"])

    snapshot = sock.sent
    snapshot[0].append(b"extra")
    snapshot.append([b"more"])

    assert sock.sent == [[b"a"]]


def test_an_empty_message_is_a_value_error_and_is_not_recorded() -> None:
    sock = FakeSocket(BOB)

    with pytest.raises(ValueError, match="needs at least one frame"):
        sock.send_frames([])
    assert sock.sent == []


def test_the_default_peer_is_a_placeholder() -> None:
    assert FakeSocket().peer == PeerAddress(b"fake-peer", "fake://fake-peer", b"")


# -- FakeSocket: injected failures -------------------------------------------------


def test_send_each_records_messages_in_order_and_counts_them() -> None:
    sock = FakeSocket(BOB)

    assert sock.send_each([[b"a"], (b"b", b"c")]) == (2, None)
    assert sock.send_each([]) == (0, None)
    assert sock.sent == [[b"a"], [b"b", b"c"]]


@pytest.mark.parametrize(
    ("steer", "raised"),
    [
        (lambda sock: sock.fail_next(1), TransportError),
        (lambda sock: sock.block(), WouldBlock),
        (lambda sock: sock.close(), SocketClosedError),
    ],
)
def test_send_each_stops_at_what_send_frames_raises_and_returns_it(
    steer: Callable[[FakeSocket], None], raised: type[Exception]
) -> None:
    sock = FakeSocket(BOB)
    assert sock.send_each([[b"a"]]) == (1, None)
    steer(sock)

    taken, error = sock.send_each([[b"b"], [b"c"]])
    assert (taken, type(error)) == (0, raised)
    assert sock.sent == [[b"a"]]


def test_send_each_spends_an_injected_failure_on_the_message_it_fails() -> None:
    sock = FakeSocket(BOB)
    sock.fail_next(1)

    taken, error = sock.send_each([[b"a"], [b"b"]])
    assert (taken, type(error)) == (0, TransportError)
    assert sock.send_each([[b"b"]]) == (1, None)  # the failure is not met twice
    assert sock.sent == [[b"b"]]


def test_send_each_takes_what_accept_allows_and_stops_at_an_empty_message() -> None:
    sock = FakeSocket(BOB)
    sock.block()
    sock.accept(2)

    taken, error = sock.send_each([[b"a"], [b"b"], [b"c"]])
    assert (taken, type(error)) == (2, WouldBlock)
    sock.unblock()
    taken, error = sock.send_each([[b"d"], [], [b"e"]])
    assert (taken, type(error), str(error)) == (
        1,
        UnexpectedSendError,
        "sending a message raised ValueError: a message to peer b'bob' needs at least one frame",
    )
    assert sock.sent == [[b"a"], [b"b"], [b"d"]]


def test_send_each_goes_through_a_send_frames_replaced_on_the_object() -> None:
    """A test that wraps ``send_frames`` (to log, or to fail on cue) sees
    what ``send_each`` sends too."""
    sock = FakeSocket(BOB)
    seen: list[list[bytes]] = []
    original = sock.send_frames

    def logged(frames: list[bytes]) -> None:
        seen.append(list(frames))
        original(frames)

    sock.send_frames = logged  # type: ignore[method-assign]
    assert sock.send_each([[b"a"], [b"b"]]) == (2, None)
    assert seen == [[b"a"], [b"b"]] == sock.sent


def test_send_each_returns_what_a_replaced_send_frames_raised_having_called_it_once() -> None:
    """A failure a test injects by replacing ``send_frames`` is that
    message's, and nothing calls ``send_frames`` for it again."""
    sock = FakeSocket(BOB)
    calls: list[bytes] = []
    original = sock.send_frames
    injected = error_for_errno(errno.EHOSTUNREACH, peer=b"bob")

    def fails_b(frames: list[bytes]) -> None:
        calls.append(frames[0])
        if frames[0] == b"b":
            raise injected
        original(frames)

    sock.send_frames = fails_b  # type: ignore[method-assign]
    assert sock.send_each([[b"a"], [b"b"], [b"c"]]) == (1, injected)
    assert calls == [b"a", b"b"]
    assert sock.sent == [[b"a"]]


def test_send_each_returns_a_bug_in_send_frames_as_an_unexpected_send_error() -> None:
    sock = FakeSocket(BOB)
    bug = RuntimeError("a bug, not a send failure")

    def explodes(frames: list[bytes]) -> None:
        raise bug

    sock.send_frames = explodes  # type: ignore[method-assign]
    taken, error = sock.send_each([[b"a"], [b"b"]])
    assert (taken, type(error), str(error)) == (
        0,
        UnexpectedSendError,
        "sending a message raised RuntimeError: a bug, not a send failure",
    )
    assert error is not None and error.__cause__ is bug


def test_fail_next_fails_that_many_sends_like_a_real_socket_then_recovers() -> None:
    sock = FakeSocket(BOB)
    sock.fail_next(2)

    for _ in range(2):
        with pytest.raises(TransportError) as info:
            sock.send_frames([b"x"])
        expected = error_for_errno(errno.EHOSTUNREACH, peer=b"bob")
        assert (type(info.value), str(info.value)) == (type(expected), str(expected))
        assert (info.value.errno, info.value.peer) == (errno.EHOSTUNREACH, b"bob")
    sock.send_frames([b"y"])

    assert sock.sent == [[b"y"]]


def test_fail_next_calls_add_up_in_order() -> None:
    sock = FakeSocket(BOB)
    sock.fail_next(1, errno.ECONNREFUSED)
    sock.fail_next(1, ETERM)

    with pytest.raises(TransportError) as first:
        sock.send_frames([b"x"])
    with pytest.raises(SocketClosedError) as second:
        sock.send_frames([b"x"])

    assert first.value.errno == errno.ECONNREFUSED
    assert (second.value.errno, second.value.retryable) == (ETERM, False)
    sock.send_frames([b"ok"])
    assert sock.sent == [[b"ok"]]


def test_fail_next_with_eagain_is_a_would_block() -> None:
    sock = FakeSocket(BOB)
    sock.fail_next(1, errno.EAGAIN)

    with pytest.raises(WouldBlock):
        sock.send_frames([b"x"])


def test_fail_next_zero_does_nothing_and_negative_is_refused() -> None:
    sock = FakeSocket(BOB)
    sock.fail_next(0)
    sock.send_frames([b"x"])

    with pytest.raises(ValueError, match="fail_next needs n >= 0, got -1"):
        sock.fail_next(-1)
    assert sock.sent == [[b"x"]]


def test_failures_come_before_blocking() -> None:
    sock = FakeSocket(BOB)
    sock.block()
    sock.fail_next(1)

    with pytest.raises(TransportError) as info:
        sock.send_frames([b"x"])
    assert type(info.value) is TransportError
    with pytest.raises(WouldBlock):
        sock.send_frames([b"x"])


# -- FakeSocket: blocking ----------------------------------------------------------


def test_a_blocked_socket_raises_would_block_and_records_nothing_until_unblocked() -> None:
    sock = FakeSocket(BOB)
    sock.block()

    with pytest.raises(WouldBlock) as info:
        sock.send_frames([b"x"])
    assert (info.value.peer, info.value.retryable) == (b"bob", True)
    assert str(info.value) == str(error_for_errno(errno.EAGAIN, peer=b"bob"))
    assert sock.sent == []

    sock.unblock()
    sock.send_frames([b"y"])
    assert sock.sent == [[b"y"]]


def test_accept_lets_n_messages_through_then_blocks() -> None:
    sock = FakeSocket(BOB)
    sock.accept(2)

    sock.send_frames([b"1"])
    sock.send_frames([b"2"])
    with pytest.raises(WouldBlock):
        sock.send_frames([b"3"])

    assert sock.sent == [[b"1"], [b"2"]]


def test_accept_adds_to_what_a_blocked_socket_has_left() -> None:
    sock = FakeSocket(BOB)
    sock.block()
    sock.accept(1)
    sock.accept(1)

    sock.send_frames([b"1"])
    sock.send_frames([b"2"])
    with pytest.raises(WouldBlock):
        sock.send_frames([b"3"])


def test_accept_refuses_a_negative_count() -> None:
    with pytest.raises(ValueError, match="accept needs n >= 0, got -2"):
        FakeSocket(BOB).accept(-2)


def test_wait_writable_is_immediate_when_not_blocked() -> None:
    sock = FakeSocket(BOB)

    started = time.monotonic()
    assert sock.wait_writable(10.0) is True
    assert time.monotonic() - started < 1.0


def test_wait_writable_times_out_while_blocked() -> None:
    sock = FakeSocket(BOB)
    sock.block()

    started = time.monotonic()
    assert sock.wait_writable(0.05) is False
    assert time.monotonic() - started >= 0.05


def test_wait_writable_is_woken_by_unblock_from_another_thread(
    in_thread: Callable[[Callable[[], object]], threading.Thread],
) -> None:
    sock = FakeSocket(BOB)
    sock.block()
    results: list[bool] = []
    waiting = in_thread(lambda: results.append(sock.wait_writable(10.0)))
    assert_stays_blocked(waiting)

    sock.unblock()
    waiting.join(5.0)

    assert results == [True]


def test_wait_writable_is_woken_by_accept_from_another_thread(
    in_thread: Callable[[Callable[[], object]], threading.Thread],
) -> None:
    sock = FakeSocket(BOB)
    sock.block()
    results: list[bool] = []
    waiting = in_thread(lambda: results.append(sock.wait_writable(10.0)))
    assert_stays_blocked(waiting)

    sock.accept(1)
    waiting.join(5.0)

    assert results == [True]


def test_wait_writable_is_false_once_closed_even_while_waiting(
    in_thread: Callable[[Callable[[], object]], threading.Thread],
) -> None:
    sock = FakeSocket(BOB)
    sock.block()
    results: list[bool] = []
    waiting = in_thread(lambda: results.append(sock.wait_writable(10.0)))
    assert_stays_blocked(waiting)

    sock.close()
    waiting.join(5.0)

    assert results == [False]
    assert sock.wait_writable(10.0) is False


# -- FakeSocket: events, waiting, closing -----------------------------------------


def test_emitted_events_are_returned_once_in_order() -> None:
    sock = FakeSocket(BOB)
    sock.emit(SocketEvent.CONNECTED)
    sock.emit(SocketEvent.HANDSHAKE_FAILED, SocketEvent.DISCONNECTED)

    assert sock.events() == [
        SocketEvent.CONNECTED,
        SocketEvent.HANDSHAKE_FAILED,
        SocketEvent.DISCONNECTED,
    ]
    assert sock.events() == []


def test_wait_for_sent_returns_all_messages_once_enough_arrived(
    in_thread: Callable[[Callable[[], object]], threading.Thread],
) -> None:
    sock = FakeSocket(BOB)

    def actor() -> None:
        for frame in (b"1", b"2", b"3"):
            sock.send_frames([frame])

    in_thread(actor)

    assert sock.wait_for_sent(3, timeout=5.0) == [[b"1"], [b"2"], [b"3"]]


def test_wait_for_sent_returns_at_once_when_enough_were_sent() -> None:
    sock = FakeSocket(BOB)
    sock.send_frames([b"1"])
    sock.send_frames([b"2"])

    assert sock.wait_for_sent(1, timeout=0.0) == [[b"1"], [b"2"]]


def test_wait_for_sent_times_out_saying_how_many_it_saw() -> None:
    sock = FakeSocket(BOB)
    sock.send_frames([b"1"])

    with pytest.raises(TimeoutError) as info:
        sock.wait_for_sent(3, timeout=0.05)

    assert str(info.value) == (
        "FakeSocket for peer b'bob': expected at least 3 sent messages within 0.05 s, saw 1"
    )


def test_close_is_idempotent_and_later_sends_fail_as_on_a_closed_zmq_socket() -> None:
    sock = FakeSocket(BOB)
    assert sock.closed is False

    sock.close()
    sock.close()

    assert sock.closed is True
    with pytest.raises(SocketClosedError) as info:
        sock.send_frames([b"x"])
    assert (info.value.retryable, info.value.peer) == (False, b"bob")
    assert sock.sent == []


@pytest.mark.parametrize(
    ("steer", "expected"),
    [
        (lambda s: None, "<FakeSocket b'bob' open sent=1>"),
        (lambda s: s.block(), "<FakeSocket b'bob' blocked sent=1>"),
        (lambda s: s.accept(3), "<FakeSocket b'bob' accepting 3 sent=1>"),
        (lambda s: s.fail_next(2), "<FakeSocket b'bob' open sent=1 failing=2>"),
        (lambda s: s.close(), "<FakeSocket b'bob' closed sent=1>"),
    ],
)
def test_the_repr_shows_the_live_state(steer: Callable[[FakeSocket], None], expected: str) -> None:
    sock = FakeSocket(BOB)
    sock.send_frames([b"x"])

    steer(sock)

    assert repr(sock) == expected


# -- FakeSocketFactory --------------------------------------------------------------


def test_connect_hands_out_a_new_socket_and_records_it() -> None:
    factory = FakeSocketFactory()

    bob = factory.connect(BOB)
    carol = factory.connect(CAROL)

    assert bob.peer == BOB and carol.peer == CAROL
    assert factory.sockets == {b"bob": bob, b"carol": carol}
    assert factory.connected == [b"bob", b"carol"]


def test_a_prepared_socket_is_the_one_connect_hands_out() -> None:
    factory = FakeSocketFactory()
    prepared = factory.prepare(b"bob")
    prepared.block()

    assert factory.prepare(b"bob") is prepared
    assert factory.connected == []
    sock = factory.connect(BOB)

    assert sock is prepared
    assert sock.peer == BOB
    with pytest.raises(WouldBlock):
        sock.send_frames([b"x"])


def test_a_prepared_socket_is_handed_out_once() -> None:
    factory = FakeSocketFactory()
    prepared = factory.prepare(b"bob")

    first = factory.connect(BOB)
    second = factory.connect(BOB)

    assert first is prepared
    assert second is not prepared
    assert factory.sockets == {b"bob": second}
    assert factory.connected == [b"bob", b"bob"]


def test_fail_connect_makes_connect_raise_until_cleared() -> None:
    factory = FakeSocketFactory()
    error = ConfigurationError("bad endpoint")
    factory.fail_connect(b"bob", error)

    for _ in range(2):
        with pytest.raises(ConfigurationError) as info:
            factory.connect(BOB)
        assert info.value is error
    assert factory.connected == []
    assert factory.sockets == {}
    factory.connect(CAROL)

    factory.fail_connect(b"bob", None)
    sock = factory.connect(BOB)

    assert factory.connected == [b"carol", b"bob"]
    assert factory.sockets[b"bob"] is sock


def test_wait_for_socket_returns_the_socket_once_an_actor_connects(
    in_thread: Callable[[Callable[[], object]], threading.Thread],
) -> None:
    factory = FakeSocketFactory()
    handed: list[FakeSocket] = []

    in_thread(lambda: handed.append(factory.connect(BOB)))
    sock = factory.wait_for_socket(b"bob", timeout=5.0)

    assert sock.peer == BOB
    assert factory.sockets[b"bob"] is sock


def test_wait_for_socket_times_out_naming_who_did_connect() -> None:
    factory = FakeSocketFactory()
    factory.connect(CAROL)

    with pytest.raises(TimeoutError) as info:
        factory.wait_for_socket(b"bob", timeout=0.05)

    assert str(info.value) == (
        "FakeSocketFactory: no connect to peer b'bob' within 0.05 s; connected so far: [b'carol']"
    )


def test_factory_snapshots_cannot_be_changed_from_outside() -> None:
    factory = FakeSocketFactory()
    factory.connect(BOB)

    factory.sockets.clear()
    factory.connected.clear()

    assert list(factory.sockets) == [b"bob"]
    assert factory.connected == [b"bob"]


def test_the_factory_repr_shows_connects_and_prepared_peers() -> None:
    factory = FakeSocketFactory()
    factory.prepare(b"dave")
    factory.connect(BOB)

    assert repr(factory) == "<FakeSocketFactory connected=[b'bob'] prepared=[b'dave']>"


def test_writable_follows_blocking_and_credit_and_raises_once_closed() -> None:
    sock = FakeSocket()
    assert sock.writable() is True
    sock.block()
    assert sock.writable() is False
    sock.accept(1)
    assert sock.writable() is True
    sock.send_frames([b"a"])
    assert sock.writable() is False
    sock.unblock()
    sock.fail_next(1)
    assert sock.writable() is True  # a probe does not foresee a failure
    sock.close()
    with pytest.raises(SocketClosedError):
        sock.writable()


def test_the_fake_sockets_docstring_example_runs_as_written() -> None:
    flags = doctest.ELLIPSIS | doctest.IGNORE_EXCEPTION_DETAIL
    failed, tried = doctest.testmod(fake_socket, optionflags=flags, verbose=False)
    assert (failed, tried > 0) == (0, True)
