"""The sending socket to one peer: a DEALER configured as a CURVE client.

Rules:
- One ``CurveDealerSocket`` per remote peer, created by ``CurveDealerFactory``
  in the thread of the actor that owns it and used by that thread only.
- ``send_frames`` never blocks. ``WouldBlock`` (from ``zmq.Again``) means "not
  writable yet": right after connect, with IMMEDIATE=1, sends are refused until
  the CURVE handshake (and the server's ZAP check) completes, and again
  whenever the high-water mark is reached. ``wait_writable`` ends both waits.
- Frames go out one ``send`` call each, with plain integer flags computed once:
  pyzmq's ``send_multipart`` does enum arithmetic per frame. Only the first
  frame can raise ``Again``: libzmq queues a multipart message atomically.
- ``send_each`` sends many messages in one loop (a plan's, a chunk at a
  time) and stops, without raising, at the first it cannot send: it
  returns how many it sent and the error ``send_frames`` would have raised
  for that one.
- It never receives: a peer's replies come to our own listening socket. So
  a frame sent to it (by a peer misbehaving) may be at most
  ``CLIENT_MAX_FRAME`` bytes, enough for the CURVE handshake's commands,
  which pass the same check (``MAXMSGSIZE``); libzmq drops the connection
  on a longer one. At most RCVHWM (1,000) messages wait unread, but
  libzmq bounds frames, not messages: one message may have as many such
  frames as the peer sends (see README.md).
- The monitor reports only the events the peer state machine needs; what a
  failed handshake looks like from this side (measured on libzmq 4.3.5):
  * wrong server key: CONNECTED, HANDSHAKE_FAILED, DISCONNECTED about 1 ms
    after connect, then the same again on every reconnect (every 100-200 ms),
    forever; the socket never becomes writable;
  * our key refused by the server's ZAP handler: CONNECTED, HANDSHAKE_FAILED,
    DISCONNECTED once (about 2 ms), then nothing: libzmq does not reconnect,
    even once the server admits the key. Only a new socket can try again;
  * nobody listening: no event at all (libzmq retries the TCP connect quietly).

Socket budget (trap 3 of PERFORMANCE.md): a zmq context opens at most
``ctx.MAX_SOCKETS`` sockets (1,023 by default) whatever the file limit, and a
monitored peer costs three (the DEALER, our PAIR end of the monitor and the
PAIR libzmq creates for it): about 341 monitored peers per context. The
factory does not manage this; raise ``ctx.MAX_SOCKETS`` (and RLIMIT_NOFILE)
before connecting more peers, or pass ``monitor=False``. Running out is
reported as a ``TransportError`` that says so.
"""

from __future__ import annotations

import contextlib
import functools
import logging
import math
import operator
import time
from collections import deque
from collections.abc import Sequence
from typing import Any, Final, cast

import zmq
from zmq.utils.monitor import recv_monitor_message

from ..core.codec import MIN_MESSAGE_SIZE
from ..core.errors import ConfigurationError, SendError, UnexpectedSendError, detached
from ..core.ports import KeyPair, PeerAddress, SocketEvent
from .context import check_descriptors
from .errors import (
    ENOTSOCK,
    ETERM,
    MAX_HWM,
    check_endpoint,
    check_hwm,
    configuration_error,
    error_for_errno,
    translate,
)
from .keys import CURVE_OVERHEAD, check_key_pair, check_public_key

__all__ = ["SEND_HWM", "CurveDealerFactory", "CurveDealerSocket", "check_send_hwm"]

log = logging.getLogger("p2p0mq_actors.transport")

# Plain ints, computed once: a flag enum costs an arithmetic call per frame.
_MORE = int(zmq.SNDMORE | zmq.NOBLOCK)
_LAST = int(zmq.NOBLOCK)
_EVENTS_OPTION = int(zmq.EVENTS)
_POLLOUT = int(zmq.POLLOUT)
_NOBLOCK = int(zmq.NOBLOCK)

_EVENTS: dict[int, SocketEvent] = {
    int(zmq.EVENT_CONNECTED): SocketEvent.CONNECTED,
    int(zmq.EVENT_DISCONNECTED): SocketEvent.DISCONNECTED,
    int(zmq.EVENT_HANDSHAKE_SUCCEEDED): SocketEvent.HANDSHAKE_SUCCEEDED,
    int(zmq.EVENT_HANDSHAKE_FAILED_NO_DETAIL): SocketEvent.HANDSHAKE_FAILED,
    int(zmq.EVENT_HANDSHAKE_FAILED_PROTOCOL): SocketEvent.HANDSHAKE_FAILED,
    int(zmq.EVENT_HANDSHAKE_FAILED_AUTH): SocketEvent.HANDSHAKE_FAILED,
}
# Ask libzmq for these only: the others (connect delayed/retried, closed...)
# would fill the monitor queue with nothing we use.
_EVENT_MASK = functools.reduce(operator.or_, _EVENTS, 0)

MAX_BUFFERED_EVENTS = 1024
"""Events kept between two ``events()`` calls; the oldest go first beyond that."""

PEER_DESCRIPTORS = 4
"""Descriptors a connection to a peer takes (measured, libzmq 4.3.5): the
DEALER, 1; its monitor (two PAIRs), 2; the TCP connection, 1."""

SEND_HWM: Final = 10_000
"""Whole messages libzmq queues for one peer before a send to it would
block (``SNDHWM``; libzmq's own default is 1,000): on the native wire a
zmq message is a batch frame of up to 64 of ours."""

MAX_IDENTITY_LEN = 255
CLIENT_MAX_FRAME = MIN_MESSAGE_SIZE
"""The longest frame a peer may send to one of our connecting sockets."""

_Socket = zmq.Socket[Any]
_Context = zmq.Context[Any]


class CurveDealerSocket:
    """A connected DEALER sending to one peer over CURVE (implements ``PeerSocket``).

    Made by ``CurveDealerFactory.connect``; use it from the creating thread only.
    """

    def __init__(self, peer: PeerAddress, socket: _Socket, monitor: _Socket | None) -> None:
        """Wrap a socket already configured and connected to ``peer``.

        Args:
            peer: The peer the socket is connected to.
            socket: The connected DEALER; this object owns it from now on.
            monitor: The PAIR socket from ``socket.get_monitor_socket()``, or
                None when not monitoring.
        """
        self.peer = peer
        self._uuid = peer.uuid
        self._sock = socket
        self._monitor = monitor
        self._poller = zmq.Poller()
        self._poller.register(socket, zmq.POLLOUT)
        if monitor is not None:
            self._poller.register(monitor, zmq.POLLIN)
        self._pending: deque[SocketEvent] = deque(maxlen=MAX_BUFFERED_EVENTS)
        self._last_event: SocketEvent | None = None
        self._closed = False
        # The backend's send, bound once: pyzmq's Python-level Socket.send only
        # adds DRAFT routing_id/group handling on top of it, and skipping that
        # frame roughly doubles the Python-side send rate (measured, 6 frames).
        self._send = super(zmq.Socket, socket).send

    @property
    def closed(self) -> bool:
        """True once ``close`` was called."""
        return self._closed

    def send_frames(self, frames: Sequence[bytes]) -> None:
        """Send one message of ``frames`` (at least one) without blocking.

        Raises:
            WouldBlock: not writable now (handshake pending or high-water mark);
                nothing was sent. Call ``wait_writable`` and send again.
            SocketClosedError: the socket or its context was closed.
            TransportError: any other zmq failure.
            ValueError: ``frames`` is empty.
        """
        if not frames:
            raise ValueError(f"a message to peer {self._uuid!r} needs at least one frame")
        send = self._send
        try:
            for frame in frames[:-1]:
                send(frame, _MORE)
            send(frames[-1], _LAST)
        except zmq.ZMQError as exc:
            raise translate(exc, peer=self._uuid) from exc
        except BaseException:  # an interrupt between two frames, say
            if len(frames) > 1:
                self._end_partial()
            raise

    def send_each(self, messages: Sequence[Sequence[bytes]]) -> tuple[int, SendError | None]:
        """Send ``messages`` (each its frames, at least one) in order without
        blocking, until one is not taken; returns how many were taken and
        why the next was not (None when all were), as ``send_frames``
        would raise it: ``WouldBlock`` (nothing of it was sent),
        ``SocketClosedError``, ``TransportError``; a message of no frames
        is an ``UnexpectedSendError``. Never raises.

        One loop for a plan's messages, not a ``send_frames`` call each.
        Only the first frame can block; a failure after it (the socket is
        gone) leaves a part of that message queued, on a socket that sends
        nothing more.
        """
        if self._closed:
            return 0, error_for_errno(ENOTSOCK, peer=self._uuid)
        send, done = self._send, 0
        try:
            for frames in messages:
                for frame in frames[:-1]:
                    send(frame, _MORE)
                send(frames[-1], _LAST)
                done += 1
        except zmq.ZMQError as exc:
            # zmq's error is the cause, detached from its traceback (pyzmq's
            # internals), which would tie this call stack (the plan, its
            # encoded messages) in a cycle with ``error`` (``detached``).
            error = translate(exc, peer=self._uuid)
            error.__cause__ = detached(exc)
            return done, error
        except IndexError:  # (frames[-1] of a message of no frames)
            return done, UnexpectedSendError(
                f"a message to peer {self._uuid!r} needs at least one frame", peer=self._uuid
            )
        except BaseException:  # an interrupt between two frames, say
            if done < len(messages) and len(messages[done]) > 1:
                self._end_partial()
            raise
        return done, None

    def _end_partial(self) -> None:
        """End a message that may have been left part sent (an interrupt
        between its frames), so that the next is not read as its rest: one
        empty frame. The peer refuses what it ends (or the empty message, if
        nothing of it had gone), and reads the next message whole."""
        with contextlib.suppress(zmq.ZMQError):
            self._send(b"", _LAST)

    def writable(self) -> bool:
        """Whether the socket would take one more message now (POLLOUT).

        Raises:
            SocketClosedError: the socket or its context was closed.
            TransportError: any other zmq failure.
        """
        if self._closed:
            raise error_for_errno(ENOTSOCK, peer=self._uuid)
        try:
            return bool(cast(int, self._sock.get(_EVENTS_OPTION)) & _POLLOUT)
        except zmq.ZMQError as exc:
            raise translate(exc, peer=self._uuid) from exc

    def wait_writable(self, timeout: float) -> bool:
        """Wait up to ``timeout`` seconds for the socket to accept a message.

        Monitor events that arrive meanwhile are kept for ``events()``, so the
        monitor queue never fills while an actor waits.

        Returns:
            True as soon as a send would not block; False after ``timeout``, or
            at once if the socket is closed.

        Raises:
            SocketClosedError: the zmq context was terminated.
        """
        if self._closed:
            return False
        deadline = time.monotonic() + timeout
        sock = self._sock
        while True:
            remaining = deadline - time.monotonic()
            try:
                ready = dict(self._poller.poll(max(0, math.ceil(remaining * 1000))))
                if self._monitor is not None and self._monitor in ready:
                    self._drain_monitor()
            except zmq.ZMQError as exc:
                raise translate(exc, peer=self._uuid) from exc
            if ready.get(sock, 0) & _POLLOUT:
                return True
            if remaining <= 0:
                return False

    def events(self) -> list[SocketEvent]:
        """Connection events seen since the last call, oldest first, without blocking.

        Always empty when the factory was made with ``monitor=False``.

        Raises:
            SocketClosedError: the zmq context was terminated.
        """
        if self._monitor is not None and not self._closed:
            try:
                self._drain_monitor()
            except zmq.ZMQError as exc:
                raise translate(exc, peer=self._uuid) from exc
        seen = list(self._pending)
        self._pending.clear()
        return seen

    def close(self) -> None:
        """Close the monitor and the socket at once (linger 0).

        Idempotent, and safe after the zmq context was terminated.
        """
        if self._closed:
            return
        self._closed = True
        _close_quietly(self._sock, self._monitor)
        log.debug("closed socket to peer %r at %s", self._uuid, self.peer.endpoint)

    def _drain_monitor(self) -> None:
        monitor = self._monitor
        assert monitor is not None
        while True:
            try:
                message = recv_monitor_message(monitor, _NOBLOCK)
            except zmq.Again:
                return
            event = _EVENTS.get(int(message["event"]))
            if event is None:
                continue
            if event is SocketEvent.HANDSHAKE_FAILED:
                log.debug(
                    "CURVE handshake with peer %r at %s failed: %s (value %s)",
                    self._uuid,
                    self.peer.endpoint,
                    zmq.Event(message["event"]).name,
                    int(message["value"]),
                )
            self._pending.append(event)
            self._last_event = event

    def __repr__(self) -> str:
        state = "closed" if self._closed else "open"
        last = "none" if self._last_event is None else self._last_event.value
        return f"<CurveDealerSocket {self._uuid!r} {self.peer.endpoint} {state} last_event={last}>"


class CurveDealerFactory:
    """Connects CURVE DEALER sockets to peers (implements ``SocketFactory``).

    Example:
        >>> factory = CurveDealerFactory(ctx, b"my-uuid", generate_keypair())
        >>> sock = factory.connect(PeerAddress(b"peer", "tcp://10.0.0.2:5555", key))
        >>> if sock.wait_writable(5.0):
        ...     sock.send_frames([b"hello"])
    """

    def __init__(
        self,
        context: _Context,
        identity: bytes,
        keys: KeyPair,
        *,
        sndhwm: int = SEND_HWM,
        monitor: bool = True,
    ) -> None:
        """Check the settings every socket will share.

        Args:
            context: The zmq context that will hold the sockets (see the module
                note on its socket limit).
            identity: Our uuid, sent to peers as the DEALER's IDENTITY (1 to
                255 bytes, not starting with a zero byte).
            keys: Our CURVE key pair, in Z85.
            sndhwm: Messages queued per peer before sends raise ``WouldBlock``
                (0: no limit; a ``Node`` refuses 0, see ``check_send_hwm``).
            monitor: Attach a socket monitor so ``events()`` reports connection
                events; costs two more sockets per peer.

        Raises:
            ConfigurationError: a malformed identity, key pair or ``sndhwm``.
        """
        if not isinstance(identity, bytes) or not 0 < len(identity) <= MAX_IDENTITY_LEN:
            raise ConfigurationError(
                f"identity must be 1..{MAX_IDENTITY_LEN} bytes, got {identity!r}"
            )
        if identity[0] == 0:
            raise ConfigurationError(
                f"identity {identity!r} must not start with a zero byte (zmq reserves it)"
            )
        if type(sndhwm) is not int or not 0 <= sndhwm <= MAX_HWM:
            raise ConfigurationError(
                f"sndhwm must be an int from 0 (no limit) to 2**31 - 1, got {sndhwm!r}"
            )
        self._context = context
        self._identity = identity
        self._keys = check_key_pair(keys)
        self._sndhwm = sndhwm
        self._monitor = monitor
        self._descriptors = PEER_DESCRIPTORS if monitor else PEER_DESCRIPTORS - 2

    @property
    def sndhwm(self) -> int:
        """The ``SNDHWM`` every socket it makes gets (0: no limit)."""
        return self._sndhwm

    def connect(self, peer: PeerAddress) -> CurveDealerSocket:
        """A DEALER connected to ``peer`` as a CURVE client.

        The connection completes in the background: sends raise ``WouldBlock``
        until the handshake succeeds (use ``wait_writable``).

        Raises:
            ConfigurationError: the peer's public key or endpoint is malformed;
                the message names the peer and the endpoint.
            TransportError: too few file descriptors are free (RLIMIT_NOFILE;
                checked first), or zmq could not make a socket (e.g. the context's
                socket limit); ``SocketClosedError`` if the context was terminated.
        """
        try:
            server_key = check_public_key(peer.public_key)
        except ConfigurationError as exc:
            raise ConfigurationError(
                f"cannot connect to peer {peer.uuid!r} at {peer.endpoint!r}: {exc}"
            ) from exc
        check_endpoint(peer.endpoint, f"cannot connect to peer {peer.uuid!r} at")
        if self._context.closed:  # pyzmq would say ENOTSUP, which hides the cause
            raise error_for_errno(ETERM, peer=peer.uuid)
        check_descriptors(self._descriptors, f"a socket to peer {peer.uuid!r}", peer=peer.uuid)
        try:
            sock: _Socket = self._context.socket(zmq.DEALER)
        except zmq.ZMQError as exc:
            raise translate(exc, peer=peer.uuid) from exc
        monitor: _Socket | None = None
        try:
            self._configure(sock, server_key)
            if self._monitor:  # before connect, so CONNECTED is not missed
                monitor = sock.get_monitor_socket(_EVENT_MASK)
        except zmq.ZMQError as exc:
            _close_quietly(sock, monitor)
            raise translate(exc, peer=peer.uuid) from exc
        try:
            sock.connect(peer.endpoint)
        except zmq.ZMQError as exc:
            _close_quietly(sock, monitor)
            raise configuration_error(
                exc, peer=peer.uuid, endpoint=peer.endpoint, what="endpoint"
            ) from exc
        log.debug("connecting to peer %r at %s", peer.uuid, peer.endpoint)
        return CurveDealerSocket(peer, sock, monitor)

    def _configure(self, sock: _Socket, server_key: bytes) -> None:
        sock.setsockopt(zmq.LINGER, 0)
        sock.setsockopt(zmq.IMMEDIATE, 1)
        sock.setsockopt(zmq.SNDHWM, self._sndhwm)
        sock.setsockopt(zmq.IDENTITY, self._identity)
        sock.setsockopt(zmq.CURVE_PUBLICKEY, self._keys.public)
        sock.setsockopt(zmq.CURVE_SECRETKEY, self._keys.secret)
        sock.setsockopt(zmq.CURVE_SERVERKEY, server_key)
        sock.setsockopt(zmq.MAXMSGSIZE, CLIENT_MAX_FRAME + CURVE_OVERHEAD)

    def __repr__(self) -> str:
        return (
            f"<CurveDealerFactory identity={self._identity!r} public_key={self._keys.public!r} "
            f"sndhwm={self._sndhwm} monitor={self._monitor}>"
        )


def _close_quietly(sock: _Socket, monitor: _Socket | None) -> None:
    """Close ``monitor`` and ``sock`` with linger 0, whatever state the context is in."""
    if monitor is not None:
        if not sock.closed:
            # A terminating context refuses this; libzmq then stops the
            # monitor together with the socket.
            with contextlib.suppress(zmq.ZMQError):
                sock.disable_monitor()
        monitor.close(linger=0)
    sock.close(linger=0)


def check_send_hwm(value: object) -> int:
    """``value`` if it is a valid ``send_hwm`` for a node (``errors.check_hwm``).

    Raises:
        ConfigurationError: not an int from 1 to 2**31 - 1.
    """
    return check_hwm("send_hwm", value, "messages a peer")
