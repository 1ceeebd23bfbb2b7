"""The translation table from zmq errors to the library's error tree."""

from __future__ import annotations

import errno

import pytest
import zmq

from p2p0mq_actors.core.errors import (
    ConfigurationError,
    P2P0MQError,
    SendError,
    TransportError,
    WouldBlock,
)
from p2p0mq_actors.transport.errors import (
    EAGAIN,
    ENOTSOCK,
    ETERM,
    SocketClosedError,
    configuration_error,
    error_for_errno,
    translate,
)


def test_again_becomes_a_retryable_would_block_naming_the_peer() -> None:
    error = translate(zmq.Again(), peer=b"bob")

    assert type(error) is WouldBlock
    assert (error.peer, error.retryable, error.reason) == (b"bob", True, "would-block")
    assert str(error) == (
        "socket to peer b'bob' is not writable yet (CURVE handshake pending or "
        "high-water mark reached); wait until it is writable, then send again"
    )


def test_host_unreachable_becomes_a_retryable_transport_error_with_errno() -> None:
    error = translate(zmq.ZMQError(errno.EHOSTUNREACH), peer=b"bob")

    assert type(error) is TransportError
    assert (error.errno, error.peer, error.retryable, error.reason) == (
        errno.EHOSTUNREACH,
        b"bob",
        True,
        "send-failed",
    )
    assert str(error) == (
        f"zmq error with peer b'bob': Host unreachable (errno {errno.EHOSTUNREACH})"
    )


@pytest.mark.parametrize(
    ("code", "text"),
    [(zmq.ETERM, "Context was terminated"), (zmq.ENOTSOCK, "Socket operation on non-socket")],
)
def test_terminated_context_and_closed_socket_are_not_retryable(code: int, text: str) -> None:
    error = translate(zmq.ZMQError(code), peer=b"bob")

    assert type(error) is SocketClosedError
    assert isinstance(error, TransportError)
    assert (error.errno, error.retryable, error.reason) == (int(code), False, "stopped")
    assert str(error) == (
        f"socket to peer b'bob' is closed: {text} (errno {int(code)}); "
        "a new connection is needed to reach this peer"
    )


def test_context_terminated_subclass_of_zmq_error_is_translated_the_same() -> None:
    assert type(translate(zmq.ContextTerminated(), peer=b"bob")) is SocketClosedError


def test_invalid_argument_is_a_plain_transport_error() -> None:
    error = translate(zmq.ZMQError(errno.EINVAL))

    assert type(error) is TransportError
    assert (error.errno, error.peer) == (errno.EINVAL, None)
    assert str(error) == f"zmq error with peer <unnamed>: Invalid argument (errno {errno.EINVAL})"


def test_a_zmq_specific_errno_keeps_its_number_and_text() -> None:
    error = translate(zmq.ZMQError(zmq.EFSM), peer=b"bob")

    assert type(error) is TransportError
    assert error.errno == int(zmq.EFSM)
    assert str(error) == (
        f"zmq error with peer b'bob': Operation cannot be accomplished in current state "
        f"(errno {int(zmq.EFSM)})"
    )


def test_too_many_sockets_says_how_to_raise_the_context_limit() -> None:
    error = translate(zmq.ZMQError(errno.EMFILE), peer=b"bob")

    assert type(error) is TransportError
    assert str(error) == (
        f"zmq error with peer b'bob': Too many open files (errno {errno.EMFILE}); "
        "a zmq context holds at most ctx.MAX_SOCKETS sockets (1,023 by default) and each "
        "monitored peer uses 3: raise ctx.MAX_SOCKETS and RLIMIT_NOFILE, or connect to "
        "fewer peers"
    )


@pytest.mark.parametrize(
    ("code", "kind"),
    [
        (errno.EAGAIN, WouldBlock),
        (errno.EHOSTUNREACH, TransportError),
        (errno.EINVAL, TransportError),
        (zmq.ETERM, SocketClosedError),
        (zmq.ENOTSOCK, SocketClosedError),
    ],
)
def test_error_for_errno_builds_the_same_error_as_translate(code: int, kind: type) -> None:
    built = error_for_errno(code, peer=b"bob")
    translated = translate(zmq.ZMQError(code), peer=b"bob")

    assert type(built) is kind
    assert type(translated) is kind
    assert str(built) == str(translated)
    assert built.peer == translated.peer == b"bob"
    assert getattr(built, "errno", None) == getattr(translated, "errno", None)


def test_every_translation_is_a_send_error_of_the_library_tree() -> None:
    for code in (errno.EAGAIN, errno.EHOSTUNREACH, zmq.ETERM, zmq.ENOTSOCK, errno.EMFILE):
        error = error_for_errno(code)
        assert isinstance(error, SendError)
        assert isinstance(error, P2P0MQError)


def test_exported_errnos_are_plain_ints_matching_zmq() -> None:
    assert (int(zmq.EAGAIN), int(zmq.ETERM), int(zmq.ENOTSOCK)) == (EAGAIN, ETERM, ENOTSOCK)
    assert {type(EAGAIN), type(ETERM), type(ENOTSOCK)} == {int}


def test_a_zmq_errno_enum_member_prints_as_its_number() -> None:
    assert str(error_for_errno(zmq.Errno.ETERM)) == str(error_for_errno(int(zmq.ETERM)))


def test_configuration_error_names_the_peer_the_endpoint_and_zmqs_reason() -> None:
    exc = zmq.ZMQError(errno.EINVAL)

    error = configuration_error(exc, peer=b"bob", endpoint="nonsense", what="endpoint")

    assert type(error) is ConfigurationError
    assert str(error) == (
        "cannot connect to peer b'bob' at 'nonsense': zmq refused the endpoint:"
        " Invalid argument (errno 22)"
    )


def test_callers_chain_the_zmq_error() -> None:
    exc = zmq.ZMQError(errno.EHOSTUNREACH)

    with pytest.raises(TransportError) as info:
        try:
            raise exc
        except zmq.ZMQError as caught:
            raise translate(caught, peer=b"bob") from caught

    assert info.value.__cause__ is exc
