"""The library's one error tree.

Rules:
- Every error the library raises on purpose derives from ``P2P0MQError``.
- zmq errors are translated into ``TransportError`` subclasses in one place
  (``transport/errors.py``), always ``raise ... from exc``.
- A ``SendError`` says whether a retry can help (``retryable``) and names the
  reason a Concern's default policy gives when it gives up (``reason``).
- An error message quotes a value with ``short_repr``, never ``repr``: the
  value may be what a peer sent, 16 MiB long or nested 1000 deep.
"""

from __future__ import annotations

from typing import Any, Final, TypeVar

_E = TypeVar("_E", bound=BaseException)


APPLICATION_ERRORS: Final = (Exception, SystemExit)
"""What the library catches from the application's own code (a Concern's
hooks, a failure policy, a future's done callbacks), logs and counts: any
``Exception``, and ``SystemExit``, which in an actor's thread would
otherwise stop every actor of the process without a word (Pykka's rule)."""


class P2P0MQError(Exception):
    """Base class of every error raised by p2p0mq-actors."""


class ConfigurationError(P2P0MQError, ValueError):
    """A setting, argument or key is wrong; the message says which and why."""


class MessageError(P2P0MQError, ValueError):
    """A message field is invalid; raised when the message is built."""

    def __init__(self, field: str, value: object, why: str) -> None:
        self.field = field
        self.value = value
        super().__init__(f"invalid message field {field}={short_repr(value)}: {why}")


class ProtocolError(P2P0MQError):
    """Frames that are not a valid p2p0mq or native message."""


class EncodeError(ProtocolError):
    """A message that cannot be put on the wire (e.g. an unserialisable payload)."""


class PeerError(P2P0MQError):
    """A send failed because of the remote peer itself: it is not known
    (``NoPeerError``), not reachable, or refuses us. Each is a ``SendError``
    too."""


class SendError(P2P0MQError):
    """A message could not be sent. ``retryable`` says whether trying again may help."""

    retryable: bool = True
    reason: str = "send-failed"

    def __init__(self, message: str, *, peer: bytes | None = None) -> None:
        self.peer = peer
        super().__init__(message)


def detached(error: _E) -> _E:
    """``error`` without its traceback, nor the errors it was raised from
    theirs (its ``__cause__``, in turn), to be kept or passed on (a failed
    message's error goes to its Concern, and may stay as a request's cause).

    A traceback keeps every frame it passed through alive, with their locals
    (and, by ``f_back``, their callers'): a plan and its encoded messages,
    for as long as the error lives, and in a reference cycle that only the
    cyclic collector frees wherever one of those frames holds the error
    (a runner's list of failures). A ``SendError`` says what went wrong in
    its message; where the error is a bug's, whose traceback is the clue,
    the code keeps it. ``__context__`` is left alone: it may be an error
    that the caller is handling (an error raised in its ``except`` block),
    whose traceback is the caller's.
    """
    seen: set[int] = set()  # (a chain may loop)
    link: BaseException | None = error
    while link is not None and id(link) not in seen:
        seen.add(id(link))
        link.__traceback__ = None
        link = link.__cause__
    return error


class WouldBlock(SendError):
    """The socket is not writable right now (handshake pending or high-water mark).

    Never reported as a failed message: the peer connection waits for the
    socket to become writable and resumes in order.
    """

    reason = "would-block"


class TransportError(SendError):
    """A zmq operation failed; ``errno`` is zmq's error number."""

    def __init__(
        self, message: str, *, errno: int | None = None, peer: bytes | None = None
    ) -> None:
        self.errno = errno
        super().__init__(message, peer=peer)


class PeerUnreachableError(SendError, PeerError):
    """The peer's socket stayed unwritable longer than the configured limit."""

    reason = "unreachable"


class PeerRefusedError(SendError, PeerError):
    """The CURVE handshake with the peer failed: wrong key, or our key refused."""

    reason = "refused"


class UnencodableError(SendError):
    """The message cannot be encoded; retrying cannot help."""

    retryable = False
    reason = "unencodable"


class UnexpectedSendError(SendError):
    """Sending raised something that is not a send failure (a bug); the
    message fails with reason ``"error"`` and the rest goes on."""

    retryable = False
    reason = "error"


class NoPeerError(SendError, PeerError):
    """The message's next hop is not a known peer; retrying may help once it is added."""

    reason = "unknown-peer"


class NodeStoppedError(SendError):
    """The send path was stopped before the message could be sent."""

    retryable = False
    reason = "stopped"


def short_repr(value: object, limit: int = 80) -> str:
    """``repr(value)`` cut to ``limit`` characters (the last three ``...``
    when cut): how an error message quotes a value.

    The same text as the whole repr cut, but built only as far as the cut:
    a value as received may be megabytes long, or nested as deep as msgpack
    goes (1024), where ``repr`` raises ``RecursionError``, and an error must
    cost neither. Lists, tuples, dicts, str and bytes are written here, so
    far; anything else gives its own repr (or, if that raises, its type).
    """
    pieces: list[str] = []
    _put(value, pieces, limit + 1)
    text = "".join(pieces)
    return text if len(text) <= limit else text[: limit - 3] + "..."


def _put(value: object, pieces: list[str], room: int) -> int:
    """Append ``repr(value)`` to ``pieces`` until ``room`` characters are
    spent; the room left (none or less: stop). Every call that recurses
    spends a character first, so the depth is bounded by the room."""
    if room <= 0:
        return room
    if type(value) is list or type(value) is tuple:
        return _put_items(value, pieces, room)
    if type(value) is dict:
        return _put_map(value, pieces, room)
    if isinstance(value, tuple) and hasattr(value, "_fields"):  # msgpack's ExtType, say
        return _put_named(value, pieces, room)
    if type(value) is str or type(value) is bytes:
        text = _head_repr(value, room)
    else:
        text = _own_repr(value)
    pieces.append(text)
    return room - len(text)


def _put_items(items: list[Any] | tuple[Any, ...], pieces: list[str], room: int) -> int:
    is_list = type(items) is list
    pieces.append("[" if is_list else "(")
    room -= 1
    for index, item in enumerate(items):
        if index:
            pieces.append(", ")
            room -= 2
        room = _put(item, pieces, room)
        if room <= 0:
            return room
    closing = "]" if is_list else ",)" if len(items) == 1 else ")"
    pieces.append(closing)
    return room - len(closing)


def _put_named(value: tuple[Any, ...], pieces: list[str], room: int) -> int:
    """A named tuple, as its repr writes it: ``Name(field=value, ...)``."""
    head = f"{type(value).__name__}("
    pieces.append(head)
    room -= len(head)
    for index, (name, item) in enumerate(zip(value._fields, value, strict=False)):  # type: ignore[attr-defined]
        text = f"{', ' if index else ''}{name}="
        pieces.append(text)
        room = _put(item, pieces, room - len(text))
        if room <= 0:
            return room
    pieces.append(")")
    return room - 1


def _put_map(mapping: dict[Any, Any], pieces: list[str], room: int) -> int:
    pieces.append("{")
    room -= 1
    for index, (key, item) in enumerate(mapping.items()):
        if index:
            pieces.append(", ")
            room -= 2
        room = _put(key, pieces, room)
        pieces.append(": ")
        room = _put(item, pieces, room - 2)
        if room <= 0:
            return room
    pieces.append("}")
    return room - 1


def _head_repr(text: str | bytes, room: int) -> str:
    """``repr(text)``, or for a text longer than ``room``, the repr of its
    first ``room`` characters, which is the whole one's up to there if
    quoted alike: repr quotes with ``"`` a text holding ``'`` but no ``"``,
    so the quotes the whole text holds go along, after the cut."""
    if len(text) <= room:
        return repr(text)
    if isinstance(text, str):
        return repr(text[:room] + "".join(q for q in "'\"" if q in text))
    return repr(text[:room] + bytes(q for q in b"'\"" if q in text))


def _own_repr(value: object) -> str:
    try:
        return repr(value)
    except Exception:  # a __repr__ that raises; an int past str's digit limit
        return f"<{type(value).__name__} object>"


class RequestError(P2P0MQError):
    """A ``Node.request`` that got no reply; ``reason`` says why."""

    reason: str = "error"

    def __init__(self, message: str, *, reason: str | None = None) -> None:
        if reason is not None:
            self.reason = reason
        super().__init__(message)


class RequestTimeoutError(RequestError, TimeoutError):
    """No reply came within the request's timeout."""

    reason = "timeout"
