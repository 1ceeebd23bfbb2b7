"""In-memory stand-ins for the transport: ``FakeSocket`` and ``FakeSocketFactory``.

Use them to unit-test actors that send through a ``PeerSocket`` without zmq,
threads of zmq's own or ports. The fakes behave like the real CURVE socket
where an actor can tell the difference: sends that cannot go out raise
``WouldBlock`` and record nothing, injected failures are the very errors the
real socket raises for the same errno, and a closed socket raises
``SocketClosedError``.

Rules:
- Thread-safe: the actor under test calls the socket from its own thread while
  the test inspects and steers it from another. Each object guards its state
  with one ``threading.Condition``; every wait takes a timeout in real seconds.
- What a fake records is a copy (frames as ``bytes``), so later changes to the
  caller's buffers never change what the test sees.
"""

from __future__ import annotations

import errno as _errno
import threading
from collections import deque
from collections.abc import Sequence

from ..core.errors import SendError
from ..core.ports import PeerAddress, PeerSocket, SocketEvent
from ..transport.errors import EAGAIN, ENOTSOCK, error_for_errno

__all__ = ["FakeSocket", "FakeSocketFactory"]

_DEFAULT_PEER = PeerAddress(uuid=b"fake-peer", endpoint="fake://fake-peer", public_key=b"")


class FakeSocket:
    """A ``PeerSocket`` that records what is sent and fails or blocks on request.

    By default every message is accepted and recorded in ``sent``. Steer it
    from the test: ``block()``/``unblock()``/``accept(n)`` for writability,
    ``fail_next(n)`` for errors, ``emit(...)`` for monitor events.

    Example (run by the test suite):
        >>> sock = FakeSocket()
        >>> sock.block()
        >>> sock.send_frames([b"a"])  # records nothing
        Traceback (most recent call last):
        p2p0mq_actors.core.errors.WouldBlock: fake socket is blocked
        >>> sock.unblock()
        >>> sock.send_frames([b"a", b"b"])
        >>> sock.sent
        [[b'a', b'b']]

    Attributes:
        peer: The peer this socket talks to. ``FakeSocketFactory.connect``
            sets it to the address the actor asked for.
    """

    def __init__(self, peer: PeerAddress | None = None) -> None:
        """Make an open, writable socket.

        Args:
            peer: The peer address; a placeholder (uuid ``b"fake-peer"``) if omitted.
        """
        self.peer = _DEFAULT_PEER if peer is None else peer
        self._cond = threading.Condition()
        self._sent: list[list[bytes]] = []
        self._failures: deque[int] = deque()
        self._credit: int | None = None  # None: accept everything; n: n more, then block
        self._events: list[SocketEvent] = []
        self._closed = False

    # -- what the actor calls (PeerSocket) ----------------------------------

    def send_frames(self, frames: Sequence[bytes]) -> None:
        """Record one message, or raise as a real socket would.

        Checked in this order: a closed socket raises ``SocketClosedError``; a
        pending ``fail_next`` failure raises its error; a blocked socket raises
        ``WouldBlock``. In all three cases nothing is recorded.

        Raises:
            ValueError: ``frames`` is empty.
        """
        if not frames:
            raise ValueError(f"a message to peer {self.peer.uuid!r} needs at least one frame")
        with self._cond:
            if self._closed:
                raise error_for_errno(ENOTSOCK, peer=self.peer.uuid)
            if self._failures:
                raise error_for_errno(self._failures.popleft(), peer=self.peer.uuid)
            if self._credit == 0:
                raise error_for_errno(EAGAIN, peer=self.peer.uuid)
            if self._credit is not None:
                self._credit -= 1
            self._sent.append([bytes(frame) for frame in frames])
            self._cond.notify_all()

    def send_each(self, messages: Sequence[Sequence[bytes]]) -> tuple[int, SendError | None]:
        """``send_frames`` once for each message in order (as replaced on the
        object, if it was: a test that wraps it sees these messages, and
        what it raises fails that message), up to the first it raises for;
        returns how many were taken and that error, as
        ``PeerSocket.send_each`` says. Never raises, and never tries a
        message twice."""
        return PeerSocket.send_each(self, messages)

    def writable(self) -> bool:
        """False while blocked (as ``send_frames`` would raise ``WouldBlock``).

        Raises:
            SocketClosedError: the socket was closed (what ``send_frames``
                raises then). A pending ``fail_next`` failure is left for
                ``send_frames``: a real socket's probe does not foresee it.
        """
        with self._cond:
            if self._closed:
                raise error_for_errno(ENOTSOCK, peer=self.peer.uuid)
            return self._credit != 0

    def wait_writable(self, timeout: float) -> bool:
        """True at once unless blocked; else wait up to ``timeout`` real seconds.

        Returns:
            True when a send would be accepted (now, or after ``unblock`` or
            ``accept`` from another thread within ``timeout``); False on
            timeout, and always False once closed.
        """
        with self._cond:
            self._cond.wait_for(lambda: self._closed or self._credit != 0, timeout)
            return not self._closed and self._credit != 0

    def events(self) -> list[SocketEvent]:
        """The events queued with ``emit`` since the last call, oldest first."""
        with self._cond:
            events, self._events = self._events, []
            return events

    def close(self) -> None:
        """Mark the socket closed and wake any ``wait_writable``. Idempotent."""
        with self._cond:
            self._closed = True
            self._cond.notify_all()

    # -- what the test calls -------------------------------------------------

    @property
    def sent(self) -> list[list[bytes]]:
        """A snapshot of the messages accepted so far, each a list of frames."""
        with self._cond:
            return [list(message) for message in self._sent]

    @property
    def closed(self) -> bool:
        """True once ``close`` was called."""
        with self._cond:
            return self._closed

    def fail_next(self, n: int, errno: int = _errno.EHOSTUNREACH) -> None:
        """Make the next ``n`` calls to ``send_frames`` raise, recording nothing.

        Each raises ``error_for_errno(errno, peer=...)``: exactly what the real
        socket raises for a zmq error with that number (a ``TransportError``;
        ``SocketClosedError`` for ``ETERM``/``ENOTSOCK``; ``WouldBlock`` for
        EAGAIN). Calls add up: ``fail_next(1, A); fail_next(1, B)`` fails with
        A, then B. Failures come before blocking (see ``send_frames``).

        Args:
            n: How many sends fail (0 or more).
            errno: The zmq error number to fail with.
        """
        if n < 0:
            raise ValueError(f"fail_next needs n >= 0, got {n}")
        with self._cond:
            self._failures.extend([errno] * n)

    def block(self) -> None:
        """Accept nothing: ``send_frames`` raises ``WouldBlock`` until ``unblock``.

        This is how a real socket behaves during the CURVE handshake or at its
        high-water mark.
        """
        with self._cond:
            self._credit = 0

    def unblock(self) -> None:
        """Accept every message again, and wake threads in ``wait_writable``."""
        with self._cond:
            self._credit = None
            self._cond.notify_all()

    def accept(self, n: int) -> None:
        """Accept ``n`` more messages, then behave as blocked.

        On an unblocked socket this sets the allowance to ``n``; on a blocked or
        partly blocked one it adds ``n`` to what is left. Wakes ``wait_writable``.
        """
        if n < 0:
            raise ValueError(f"accept needs n >= 0, got {n}")
        with self._cond:
            self._credit = n if self._credit is None else self._credit + n
            self._cond.notify_all()

    def emit(self, *events: SocketEvent) -> None:
        """Queue monitor events for the next ``events()`` call."""
        with self._cond:
            self._events.extend(events)

    def wait_for_sent(self, count: int, timeout: float = 5.0) -> list[list[bytes]]:
        """Wait until at least ``count`` messages were accepted.

        Returns:
            A snapshot of all messages accepted so far (``count`` or more).

        Raises:
            TimeoutError: fewer than ``count`` after ``timeout`` real seconds;
                the message says how many were seen.
        """
        with self._cond:
            if not self._cond.wait_for(lambda: len(self._sent) >= count, timeout):
                raise TimeoutError(
                    f"FakeSocket for peer {self.peer.uuid!r}: expected at least {count} "
                    f"sent messages within {timeout} s, saw {len(self._sent)}"
                )
            return [list(message) for message in self._sent]

    def __repr__(self) -> str:
        with self._cond:
            if self._closed:
                state = "closed"
            elif self._credit is None:
                state = "open"
            elif self._credit == 0:
                state = "blocked"
            else:
                state = f"accepting {self._credit}"
            failing = f" failing={len(self._failures)}" if self._failures else ""
            return f"<FakeSocket {self.peer.uuid!r} {state} sent={len(self._sent)}{failing}>"


class FakeSocketFactory:
    """A ``SocketFactory`` handing out ``FakeSocket``s and recording every connect.

    Prepare a peer's socket before the actor starts to control it from the
    first send, or wait for the actor to connect and steer it then.

    Example::

        factory = FakeSocketFactory()
        factory.prepare(b"bob").block()  # bob's socket starts unwritable
        actor = PeerConnection.start(
            PeerAddress(b"bob", "tcp://127.0.0.1:1", bob_public),
            scheduler=scheduler, concerns=concerns, sockets=factory, clock=clock,
        )
        sock = factory.wait_for_socket(b"bob")
        sock.unblock()
        sock.wait_for_sent(1)
    """

    def __init__(self) -> None:
        self._cond = threading.Condition()
        self._prepared: dict[bytes, FakeSocket] = {}
        self._sockets: dict[bytes, FakeSocket] = {}
        self._connected: list[bytes] = []
        self._connect_errors: dict[bytes, Exception] = {}

    def connect(self, peer: PeerAddress) -> FakeSocket:
        """Hand out the socket prepared for ``peer.uuid``, or a new one.

        A prepared socket is handed out once; a later connect to the same peer
        gets a fresh socket (unless prepared again). The socket's ``peer``
        becomes ``peer``.

        Raises:
            Exception: the error given to ``fail_connect`` for this uuid.
        """
        with self._cond:
            error = self._connect_errors.get(peer.uuid)
            if error is not None:
                raise error
            sock = self._prepared.pop(peer.uuid, None)
            if sock is None:
                sock = FakeSocket(peer)
            sock.peer = peer
            self._sockets[peer.uuid] = sock
            self._connected.append(peer.uuid)
            self._cond.notify_all()
            return sock

    def prepare(self, uuid: bytes) -> FakeSocket:
        """The socket the next ``connect`` to ``uuid`` will hand out.

        Calling it again before that connect returns the same socket.
        """
        with self._cond:
            sock = self._prepared.get(uuid)
            if sock is None:
                placeholder = PeerAddress(uuid=uuid, endpoint="fake://prepared", public_key=b"")
                sock = self._prepared[uuid] = FakeSocket(placeholder)
            return sock

    def fail_connect(self, uuid: bytes, error: Exception | None) -> None:
        """Make every ``connect`` to ``uuid`` raise ``error``; None allows it again.

        Failed connects are not recorded in ``connected`` or ``sockets``.
        Typically ``error`` is a ``ConfigurationError``, as the real factory
        raises for a bad endpoint or key.
        """
        with self._cond:
            if error is None:
                self._connect_errors.pop(uuid, None)
            else:
                self._connect_errors[uuid] = error

    @property
    def sockets(self) -> dict[bytes, FakeSocket]:
        """A snapshot: the latest socket handed out for each peer uuid."""
        with self._cond:
            return dict(self._sockets)

    @property
    def connected(self) -> list[bytes]:
        """A snapshot: the uuid of every successful ``connect``, in order."""
        with self._cond:
            return list(self._connected)

    def wait_for_socket(self, uuid: bytes, timeout: float = 5.0) -> FakeSocket:
        """Wait until ``uuid`` was connected, and return its latest socket.

        Raises:
            TimeoutError: no connect to ``uuid`` within ``timeout`` real seconds;
                the message lists the peers that were connected.
        """
        with self._cond:
            if not self._cond.wait_for(lambda: uuid in self._sockets, timeout):
                raise TimeoutError(
                    f"FakeSocketFactory: no connect to peer {uuid!r} within {timeout} s; "
                    f"connected so far: {self._connected!r}"
                )
            return self._sockets[uuid]

    def __repr__(self) -> str:
        with self._cond:
            return (
                f"<FakeSocketFactory connected={self._connected!r} "
                f"prepared={sorted(self._prepared)!r}>"
            )
