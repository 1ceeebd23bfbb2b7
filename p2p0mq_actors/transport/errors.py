"""The one place where zmq errors become library errors.

Rules:
- Every ``zmq.ZMQError`` caught anywhere in the library goes through this
  module; callers write ``raise translate(exc, peer=...) from exc``.
- ``zmq.Again`` (EAGAIN) is ``WouldBlock``: the socket is not writable *yet*
  (CURVE handshake pending, or high-water mark reached). It is never a failure.
- ETERM (the context was terminated) and ENOTSOCK (the socket was closed) are
  ``SocketClosedError``: ``retryable`` is False, since no send on that socket
  can ever succeed again.
- Any other errno is a plain, retryable ``TransportError`` carrying ``errno``.
- Messages name the peer, zmq's own text for the errno and, where a user can
  act on it, what to do. They never contain key material.
"""

from __future__ import annotations

import errno as _errno

import zmq

from ..core.errors import ConfigurationError, SendError, TransportError, WouldBlock

__all__ = [
    "EAGAIN",
    "ENOTSOCK",
    "ETERM",
    "SocketClosedError",
    "check_endpoint",
    "configuration_error",
    "error_for_errno",
    "translate",
]

EAGAIN: int = int(zmq.EAGAIN)
"""zmq's errno behind ``zmq.Again``: not writable now."""
ETERM: int = int(zmq.ETERM)
"""zmq's errno for "context was terminated", for code that cannot import zmq."""
ENOTSOCK: int = int(zmq.ENOTSOCK)
"""zmq's errno for "socket operation on non-socket" (a closed socket)."""

_CLOSED_ERRNOS = frozenset({ETERM, ENOTSOCK})

# Trap 3 of PERFORMANCE.md: a context refuses its 1,024th socket with EMFILE
# whatever the process's file limit, which reads like a leak unless explained.
_EMFILE_HINT = (
    "; a zmq context holds at most ctx.MAX_SOCKETS sockets (1,023 by default) and each "
    "monitored peer uses 3: raise ctx.MAX_SOCKETS and RLIMIT_NOFILE, or connect to fewer peers"
)


class SocketClosedError(TransportError):
    """The socket was closed or its zmq context terminated; retrying cannot help.

    Raised for ETERM and ENOTSOCK. The node is usually stopping; otherwise the
    connection to the peer must be made again with a new socket.
    """

    retryable = False
    reason = "stopped"


def translate(exc: zmq.ZMQError, *, peer: bytes | None = None) -> SendError:
    """The library error for a zmq error raised while talking to ``peer``.

    Args:
        exc: The error pyzmq raised.
        peer: The uuid of the remote peer the socket talks to, if any.

    Returns:
        ``WouldBlock`` for ``zmq.Again``; ``SocketClosedError`` for ETERM and
        ENOTSOCK; a ``TransportError`` with ``errno`` set for anything else.
        Use it as ``raise translate(exc, peer=uuid) from exc``.
    """
    code = exc.errno
    if code is None:  # pyzmq always sets it; keep the error total anyway
        return TransportError(f"zmq error with peer {_name(peer)}: {exc}", peer=peer)
    return error_for_errno(code, peer=peer)


def error_for_errno(errno: int, *, peer: bytes | None = None) -> SendError:
    """The error ``translate`` gives for a zmq error with this ``errno``.

    The test kit uses it to make a fake socket fail exactly like a real one.

    Args:
        errno: A zmq or OS error number (e.g. ``errno.EHOSTUNREACH``, ``zmq.ETERM``).
        peer: The uuid of the remote peer, named in the message.
    """
    errno = int(errno)  # a zmq.Errno member prints as its name on Python 3.10
    who = _name(peer)
    if errno == EAGAIN:
        return WouldBlock(
            f"socket to peer {who} is not writable yet (CURVE handshake pending or "
            "high-water mark reached); wait until it is writable, then send again",
            peer=peer,
        )
    text = zmq.strerror(errno)
    if errno in _CLOSED_ERRNOS:
        return SocketClosedError(
            f"socket to peer {who} is closed: {text} (errno {errno}); "
            "a new connection is needed to reach this peer",
            errno=errno,
            peer=peer,
        )
    hint = _EMFILE_HINT if errno == _errno.EMFILE else ""
    return TransportError(
        f"zmq error with peer {who}: {text} (errno {errno}){hint}", errno=errno, peer=peer
    )


def configuration_error(
    exc: zmq.ZMQError, *, peer: bytes, endpoint: str, what: str
) -> ConfigurationError:
    """The ``ConfigurationError`` for a zmq call rejecting a setting for ``peer``.

    Args:
        exc: The error pyzmq raised (e.g. EINVAL from ``connect``).
        peer: The uuid of the peer being connected.
        endpoint: The peer's endpoint, named in the message.
        what: The setting zmq refused, e.g. ``"endpoint"``.
    """
    return ConfigurationError(
        f"cannot connect to peer {peer!r} at {endpoint!r}: zmq refused the {what}:"
        f" {_errno_text(exc)}"
    )


def _name(peer: bytes | None) -> str:
    return "<unnamed>" if peer is None else repr(peer)


def bind_error(exc: zmq.ZMQError, *, endpoint: str) -> ConfigurationError:
    """The ``ConfigurationError`` for a listen endpoint zmq cannot bind."""
    text = _errno_text(exc)
    hint = ""
    if exc.errno == _errno.EADDRINUSE:
        hint = " (the port is taken: use tcp://127.0.0.1:* for any free port)"
    return ConfigurationError(f"cannot listen on {endpoint!r}: {text}{hint}")


def _errno_text(exc: zmq.ZMQError) -> str:
    """zmq's text for ``exc`` and its errno, e.g. ``Address already in use (errno 98)``."""
    if exc.errno is None:
        return str(exc)
    return f"{zmq.strerror(exc.errno)} (errno {exc.errno})"


def check_endpoint(endpoint: object, what: str, *, bind: bool = False) -> str:
    """``endpoint`` if zmq may be given it, else a ``ConfigurationError``
    whose message starts with ``what`` (e.g. ``"cannot listen on"``).

    zmq takes the text up to a NUL and a TCP port modulo 65,536 (``:99999``
    binds port 34,463), so both are refused here (port 0, any free port,
    only to ``bind``); the rest is zmq's to judge.
    """
    if not isinstance(endpoint, str) or not endpoint:
        raise ConfigurationError(f"{what} {endpoint!r}: an endpoint is a non-empty str")
    if "\x00" in endpoint:
        raise ConfigurationError(f"{what} {endpoint!r}: an endpoint has no NUL character")
    if endpoint.startswith("tcp://"):
        port = endpoint.rpartition(":")[2]
        if port.isascii() and port.isdecimal() and not (0 if bind else 1) <= int(port) <= MAX_PORT:
            raise ConfigurationError(
                f"{what} {endpoint!r}: a TCP port is from 1 to {MAX_PORT}"
                + (" (or * for any free port)" if bind else "")
            )
    return endpoint


MAX_PORT = 65_535
"""The highest TCP port."""


MAX_HWM = 2**31 - 1
"""The highest high-water mark libzmq takes (its options are C ints)."""


def check_hwm(name: str, value: object, unit: str) -> int:
    """``value`` if it is a valid high-water mark for a node's setting
    ``name`` (``unit`` says what it counts, in the message).

    Raises:
        ConfigurationError: not an int from 1 to ``MAX_HWM``. libzmq's 0,
            no limit at all, is refused: it would leave what a peer can
            make the node hold unbounded.
    """
    if type(value) is int and 1 <= value <= MAX_HWM:
        return value
    raise ConfigurationError(f"{name} must be an int from 1 to 2**31 - 1 ({unit}), not {value!r}")
