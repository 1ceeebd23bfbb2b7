"""The library's one error tree.

Rules:
- Every error the library raises on purpose derives from ``P2P0MQError``.
- zmq errors are translated into ``TransportError`` subclasses in one place
  (``transport/errors.py``), always ``raise ... from exc``.
- A ``SendError`` says whether a retry can help (``retryable``) and names the
  reason a Concern's default policy gives when it gives up (``reason``).
"""

from __future__ import annotations


class P2P0MQError(Exception):
    """Base class of every error raised by p2p0mq-actors."""


class ConfigurationError(P2P0MQError, ValueError):
    """A setting, argument or key is wrong; the message says which and why."""


class MessageError(P2P0MQError, ValueError):
    """A message field is invalid; raised when the message is built."""

    def __init__(self, field: str, value: object, why: str) -> None:
        self.field = field
        self.value = value
        super().__init__(f"invalid message field {field}={_short(value)}: {why}")


class ProtocolError(P2P0MQError):
    """Frames that are not a valid p2p0mq or native message."""


class EncodeError(ProtocolError):
    """A message that cannot be put on the wire (e.g. an unserialisable payload)."""


class PeerError(P2P0MQError):
    """Something about a remote peer: unknown, unreachable, refusing us."""


class UnknownPeerError(PeerError, KeyError):
    """No connection to the named peer exists."""

    def __str__(self) -> str:  # KeyError would quote the whole message
        return str(self.args[0]) if self.args else ""


class SendError(P2P0MQError):
    """A message could not be sent. ``retryable`` says whether trying again may help."""

    retryable: bool = True
    reason: str = "send-failed"

    def __init__(self, message: str, *, peer: bytes | None = None) -> None:
        self.peer = peer
        super().__init__(message)


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


class PeerUnreachableError(SendError):
    """The peer's socket stayed unwritable longer than the configured limit."""

    reason = "unreachable"


class PeerRefusedError(SendError):
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


class NoPeerError(SendError):
    """The message's next hop is not a known peer; retrying may help once it is added."""

    reason = "unknown-peer"


class NodeStoppedError(SendError):
    """The send path was stopped before the message could be sent."""

    retryable = False
    reason = "stopped"


def _short(value: object, limit: int = 80) -> str:
    text = repr(value)
    return text if len(text) <= limit else text[: limit - 3] + "..."


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
