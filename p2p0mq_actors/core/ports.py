"""The interfaces the actors use to reach the outside world.

Rules:
- Actors talk to sockets and clocks only through these protocols, so that the
  real implementations (``transport/``, ``runtime/clock.py``) and the test kit
  (``testing/``) are interchangeable.
- A ``PeerSocket`` is used by exactly one thread: the actor that created it.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass
from enum import Enum
from typing import Protocol

from .errors import SendError, UnexpectedSendError, detached


class SocketEvent(Enum):
    """What a socket monitor tells about a connection, reduced to what matters."""

    CONNECTED = "connected"
    DISCONNECTED = "disconnected"
    HANDSHAKE_SUCCEEDED = "handshake-succeeded"
    HANDSHAKE_FAILED = "handshake-failed"


@dataclass(frozen=True, slots=True)
class KeyPair:
    """A CURVE key pair as Z85 text (40 bytes each). The secret never shows in a repr."""

    public: bytes
    secret: bytes

    def __repr__(self) -> str:
        return f"KeyPair(public={self.public!r}, secret=<hidden>)"


@dataclass(frozen=True, slots=True)
class PeerAddress:
    """Where and who a remote peer is: its uuid, endpoint and CURVE public key (Z85)."""

    uuid: bytes
    endpoint: str
    public_key: bytes


class PeerSocket(Protocol):
    """A connected, encrypted sending socket to one peer."""

    def send_frames(self, frames: Sequence[bytes]) -> None:
        """Send one message of several frames without blocking.

        Raises ``WouldBlock`` when the socket is not writable (nothing was
        sent) and ``TransportError`` for any other failure.
        """

    def send_each(self, messages: Sequence[Sequence[bytes]]) -> tuple[int, SendError | None]:
        """Send ``messages`` (each its frames, at least one) in order without
        blocking, until one is not taken; returns how many were taken and
        why the next was not: None when all were, ``WouldBlock`` when it
        would block (nothing of it was sent), else the error it failed with.

        Never raises: what ``send_frames`` would raise for that message is
        returned, and anything that is not a ``SendError`` (a bug below) as
        an ``UnexpectedSendError``. A message not taken was tried once; the
        caller must not send it again unless the error was ``WouldBlock``.

        This default sends each with ``send_frames``: a socket that
        subclasses ``PeerSocket`` inherits it, and defines its own only to
        be faster.
        """
        done = 0
        for frames in messages:
            try:
                self.send_frames(frames)
            except SendError as exc:
                return done, detached(exc)
            except Exception as exc:
                error = UnexpectedSendError(
                    f"sending a message raised {type(exc).__name__}: {exc}"
                )
                error.__cause__ = exc
                return done, error
            done += 1
        return done, None

    def writable(self) -> bool:
        """Whether one more message would be sent now, without waiting.

        False where ``send_frames`` would raise ``WouldBlock``; raises what
        it would raise for a closed socket or a failed transport.
        """

    def wait_writable(self, timeout: float) -> bool:
        """Wait up to ``timeout`` seconds for the socket to become writable."""

    def events(self) -> list[SocketEvent]:
        """Connection events seen since the last call, without blocking."""

    def close(self) -> None:
        """Close the socket at once (linger 0). Idempotent."""


class SocketFactory(Protocol):
    """Creates the sending socket for a peer, in the calling (actor) thread."""

    def connect(self, peer: PeerAddress) -> PeerSocket:
        """A socket connected to ``peer``; raises ``ConfigurationError`` on bad input."""


class TimerHandle(Protocol):
    """A pending ``call_later``."""

    def cancel(self) -> None:
        """Stop the callback from running, if it has not run yet."""


class Clock(Protocol):
    """Monotonic time and delayed callbacks."""

    def now(self) -> float:
        """Seconds on a monotonic clock."""

    def call_later(self, delay: float, callback: Callable[[], None]) -> TimerHandle:
        """Run ``callback`` (which must be quick and thread-safe) after ``delay`` seconds."""
