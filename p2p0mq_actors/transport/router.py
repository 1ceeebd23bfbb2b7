"""The receiving socket of a node: a DEALER bound as a CURVE server, guarded
by ZAP (pyzmq's ``Authenticator``, run by ``zap.ZapThread``) and watched by
a socket monitor.

Rules:
- ZAP admits exactly the client public keys in ``AllowedKeys`` (Z85). Keys can
  be added and removed while it runs: ZAP asks on every new handshake, so an
  added key is admitted on the next connection and a removed key is refused
  from the next connection on (a connection already made stays up: CURVE
  authenticates once, at the handshake). pyzmq's ``zmq.auth`` speaks ZAP; this
  module only answers "is this key known".
- One ZAP authenticator per zmq context (it binds ``inproc://zeromq.zap.01``),
  so a ``CurveRouter`` wants a context of its own.
- ZAP only hears of clients that got through the CURVE handshake up to their
  key. A client using a wrong server key, or no CURVE at all, is stopped by
  libzmq before that; only the monitor sees it. What the server side sees
  (measured on libzmq 4.3.5), per connection attempt:
  * unknown client key: ACCEPTED, HANDSHAKE_FAILED_AUTH (value 400, ZAP's
    status code), DISCONNECTED; once (the client does not reconnect);
  * wrong server key: ACCEPTED, HANDSHAKE_FAILED_PROTOCOL (value
    PROTOCOL_ERROR_ZMTP_CRYPTOGRAPHIC), DISCONNECTED; again on every
    reconnect of the client (every 100-200 ms);
  * plaintext (NULL mechanism) client: ACCEPTED, then HANDSHAKE_FAILED_PROTOCOL
    (value PROTOCOL_ERROR_ZMTP_MECHANISM_MISMATCH) when the server notices
    first, or HANDSHAKE_FAILED_NO_DETAIL (value EPIPE or ECONNRESET) when the
    client does, then DISCONNECTED. The client reconnects until it is the one
    that notices (1 to 4 attempts seen; sometimes a single NO_DETAIL).
- Used by the creating thread only (the owning actor's); ``close`` stops the
  authenticator and closes the monitor and the socket with linger 0.
- A DEALER, not the ROUTER p2p0mq binds: a ROUTER keys its connections by
  the identity each client announces, so an admitted client announcing
  another peer's uuid took that peer's connection over (ROUTER_HANDOVER),
  or, connecting first, shut it out, libzmq dropping that peer's messages
  unseen. A DEALER keeps every connection apart. Who sent a message (the
  previous hop, which a ROUTER would prepend as the routing id) is the uuid
  its CURVE key was added for; for a key added without one, the identity
  its client announced (libzmq's ``Identity`` property, read as UTF-8).
  p2p0mq's peers see no difference: they connect with a DEALER, or a
  ROUTER, and send the same frames.
- No frame longer than ``max_message_size`` comes in: libzmq checks each as
  it comes off the wire (``MAXMSGSIZE``, set ``CURVE_OVERHEAD`` bytes
  higher: the check sees the frame encrypted) and drops the connection of
  a client that sends a longer one, before reading it; the monitor counts
  a ``disconnected`` (the client reconnects, and what it had queued on the
  way is lost). Without it one admitted peer could make the node allocate
  whatever size it names, up to 2**64 bytes.
- Unread, libzmq keeps up to ``receive_hwm`` whole messages per client
  connection (``RCVHWM``). It checks frames, not messages, and hands a
  message on only once it has all of it, so an admitted client can still
  make it hold one message of any number of frames: no option bounds
  that, only the keys admitted (README.md).
- Every frame is read with ``recv(copy=False)``, following ``.more``, and
  copied out as bytes at once. ``recv_multipart`` costs a ``getsockopt``
  per frame (trap 6 of PERFORMANCE.md), and a ``zmq.Frame`` costs about
  0.5 µs more than a small copy, but only a Frame carries ``.more``: a
  frame is read only once the one before is known not to end its message.
  Copying some frames blind (measured: 1 µs a 0.1.1 message less) would
  let a short message from one admitted peer take in the frames of the
  next message, perhaps another peer's; a malformed message must harm
  only its sender.
- Of a message longer than any valid one, only the first ``MAX_FRAMES``
  frames are kept; the rest is read to its end (a multipart message comes
  whole or not at all) and dropped. The codec refuses what is kept for its
  frame count. Without it, a message of a million 2-byte frames from an
  admitted peer became a list of a million ``bytes`` (41 MiB, measured),
  held until decoded. Reading the frames is the one cost left (about
  1.5 s a million here).
"""

from __future__ import annotations

import contextlib
import functools
import logging
import math
import operator
import threading
import time
from collections import deque
from collections.abc import Callable, Iterable, Mapping
from typing import Any, Final, cast

import zmq
from zmq.utils.monitor import recv_monitor_message

from ..core.codec import MAX_MESSAGE_SIZE, check_message_size
from ..core.errors import ConfigurationError
from ..core.ports import KeyPair
from .context import check_descriptors
from .errors import SocketClosedError, bind_error, check_endpoint, check_hwm, translate
from .keys import CURVE_OVERHEAD, check_key_pair, check_public_key
from .zap import ZAP_DOMAIN, ZapThread

__all__ = [
    "RECEIVE_HWM",
    "AllowedKeys",
    "CurveRouter",
    "check_receive_hwm",
    "describe_handshake_failure",
]

log = logging.getLogger("p2p0mq_actors.transport")

_NOBLOCK: Final = int(zmq.NOBLOCK)
_EVENTS: Final = int(zmq.EVENTS)
_POLLIN: Final = int(zmq.POLLIN)
_USER_ID: Final = b"User-Id"  # as bytes: pyzmq encodes a str name at every call
_IDENTITY: Final = b"Identity"  # the socket identity a client announced

# What the monitor counts, under these names (see ``counters``).
_EVENT_NAMES: Final[dict[int, str]] = {
    int(zmq.EVENT_ACCEPTED): "accepted",
    int(zmq.EVENT_HANDSHAKE_SUCCEEDED): "handshake_succeeded",
    int(zmq.EVENT_HANDSHAKE_FAILED_NO_DETAIL): "handshake_failed_no_detail",
    int(zmq.EVENT_HANDSHAKE_FAILED_PROTOCOL): "handshake_failed_protocol",
    int(zmq.EVENT_HANDSHAKE_FAILED_AUTH): "handshake_failed_auth",
    int(zmq.EVENT_DISCONNECTED): "disconnected",
}
_FAILURES: Final = frozenset(n for n in _EVENT_NAMES.values() if n.startswith("handshake_failed"))
# Only these events: the rest (listening, closed...) would only fill the queue.
_EVENT_MASK: Final = functools.reduce(operator.or_, _EVENT_NAMES, 0)
_PROTOCOL_PREFIX: Final = "PROTOCOL_ERROR_"
_HINTS: Final = {
    "ZMTP_CRYPTOGRAPHIC": "the client may be using a wrong server key",
    "ZMTP_MECHANISM_MISMATCH": "the client is not using CURVE (plaintext?)",
}
MAX_FRAMES: Final = 8
"""Frames of a message kept after the sender: more than any valid message
has (6 in p2p0mq 0.1.1 and 5 in 0.1.0, as sent; 1 natively), so what is
kept of a longer one (the sender and 8 frames) is still no valid shape."""
ReadSix = Callable[[bytes, bytes, bytes, bytes, bytes, bytes, bytes], object]
"""``recv_batch``'s reader of six-frame messages: (sender, frames) -> what
stands for them, or None."""
RECEIVE_HWM: Final = 1000
"""Whole messages libzmq keeps for the node per client connection before it
stops reading that connection (``RCVHWM``; libzmq's own default)."""
HANDSHAKE_MS: Final = 5_000
"""Milliseconds a client connection has to finish its CURVE handshake
(``HANDSHAKE_IVL``) before the listening socket closes it; libzmq's default
is 30,000. On loopback a handshake takes about a millisecond."""
MAX_PENDING_FAILURES = 256
"""Handshake failures kept for ``take_failures`` when nobody takes them."""
LISTENER_DESCRIPTORS = 7
"""Descriptors a ``CurveRouter`` takes, bound (measured, libzmq 4.3.5): ZAP's
REP socket and its stop pipe (two PAIRs), 3; the DEALER, 1; its monitor
(two PAIRs), 2; the listening TCP socket, 1."""


class AllowedKeys:
    """The set of client public keys (Z85) ZAP admits. Thread-safe: ZAP asks
    from its own thread, and the node may change the set from any thread.

    Args:
        keys: The keys admitted from the start.

    Raises:
        ConfigurationError: a key is not 40 bytes of Z85.
    """

    def __init__(
        self, keys: Iterable[bytes] = (), owners: Mapping[bytes, bytes] | None = None
    ) -> None:
        self._lock = threading.Lock()
        self._keys = {check_public_key(k) for k in keys}
        self._owners: dict[bytes, bytes] = {}
        for uuid, key in (owners or {}).items():
            self.add(key, uuid)
        self.refused = 0
        """How many handshakes ZAP refused because the key was unknown."""

    def add(self, key: bytes, uuid: bytes | None = None) -> None:
        """Admit ``key`` from the next handshake on; with ``uuid``, what comes
        on a connection with this key is that uuid's (``owner``), whatever
        socket identity its client announces.

        Raises:
            ConfigurationError: ``key`` is not 40 bytes of Z85, or it is
                another uuid's already (a key has one owner: what comes with
                it could not be told apart; ``discard`` it first).
        """
        key = check_public_key(key)
        with self._lock:
            owner = self._owners.get(key)
            if uuid is not None and owner not in (None, uuid):
                raise ConfigurationError(
                    f"the public key {key!r} given for peer {uuid!r} is peer {owner!r}'s"
                    " already: a key belongs to one peer (remove the other first)"
                )
            self._keys.add(key)
            if uuid is not None:
                self._owners[key] = uuid

    def discard(self, key: bytes) -> None:
        """Refuse ``key`` from the next handshake on (no error if it was unknown)."""
        with self._lock:
            self._keys.discard(key)
            self._owners.pop(key, None)

    def owner(self, key: bytes) -> bytes | None:
        """The uuid ``key`` belongs to, if it was added with one."""
        return self._owners.get(key)

    def keys_of(self, uuid: bytes) -> list[bytes]:
        """Every admitted key that belongs to ``uuid``."""
        with self._lock:
            return [key for key, owner in self._owners.items() if owner == uuid]

    def callback(self, domain: str, key: bytes) -> bool:
        """pyzmq's credentials-provider hook: True admits ``key`` (Z85)."""
        with self._lock:
            ok = key in self._keys
            if not ok:
                self.refused += 1
        if not ok:
            # DEBUG: keys cost nothing to make, and each refusal is counted
            # (``refused``; the Receiver's own warning is throttled).
            log.debug("ZAP refused client key %r (domain %r): not an allowed key", key, domain)
        return ok

    def __contains__(self, key: object) -> bool:
        with self._lock:
            return key in self._keys

    def __len__(self) -> int:
        with self._lock:
            return len(self._keys)

    def __repr__(self) -> str:
        return f"<AllowedKeys keys={len(self)} refused={self.refused}>"


class CurveRouter:
    """The receiving socket (a DEALER; see the rules above) bound as a CURVE
    server, admitting only ``allowed`` keys.

    Create it in the thread that will use it; it starts pyzmq's ZAP
    authenticator (a thread) on ``context`` and a monitor on the socket.

    Args:
        context: A zmq context of its own: one ZAP authenticator per context.
        keys: The server's key pair.
        allowed: The client public keys ZAP admits; change it at any time.
        max_message_size: The longest frame a client may send, in bytes
            (None: no limit); one that sends a longer one is disconnected.
        receive_hwm: The most whole messages libzmq keeps per client
            connection, read off the wire and not yet by ``recv_batch``;
            then it reads no more of that connection (TCP carries the
            pressure back). With ``max_message_size`` it bounds what a
            client's well-formed messages can make the node hold unread on
            one connection.

    Raises:
        ConfigurationError: a malformed key pair or limit, or ``context``
            already has a ZAP authenticator.
        TransportError: too few file descriptors are free (RLIMIT_NOFILE);
            checked before anything starts.

    Example:
        >>> router = CurveRouter(new_context(), keys, AllowedKeys([alice_public]))
        >>> endpoint = router.bind("tcp://127.0.0.1:*")
        >>> if router.poll(0.05):
        ...     for user_id, frames in router.recv_batch(256):
        ...         message = decode(frames, my_uuid, now=clock.now())
    """

    def __init__(
        self,
        context: zmq.Context[Any],
        keys: KeyPair,
        allowed: AllowedKeys,
        *,
        max_message_size: int | None = MAX_MESSAGE_SIZE,
        receive_hwm: int = RECEIVE_HWM,
    ) -> None:
        check_key_pair(keys)
        limit = check_message_size(max_message_size)
        hwm = check_receive_hwm(receive_hwm)
        self.allowed = allowed
        self.endpoint = ""
        self._counts = dict.fromkeys(_EVENT_NAMES.values(), 0)
        self._failures: deque[tuple[str, str]] = deque(maxlen=MAX_PENDING_FAILURES)
        # Before ZAP starts: out of descriptors, say so by name, not as the
        # EMFILE of whichever socket comes first.
        check_descriptors(LISTENER_DESCRIPTORS, "a listening socket with its monitor and ZAP")
        self._auth = _start_authenticator(context, allowed)
        self._closed = False
        try:
            self._socket = _server_socket(context, keys, limit, hwm)
        except BaseException:
            self._auth.stop()
            raise
        try:
            self._monitor = self._socket.get_monitor_socket(_EVENT_MASK)
        except BaseException as exc:
            self._socket.close(linger=0)
            self._auth.stop()
            if isinstance(exc, zmq.ZMQError):
                raise translate(exc) from exc
            raise
        self._poller = zmq.Poller()
        self._poller.register(self._socket, zmq.POLLIN)
        self._poller.register(self._monitor, zmq.POLLIN)
        self._recv = self._socket.recv

    @property
    def receive_hwm(self) -> int:
        """The socket's ``RCVHWM`` as libzmq reports it (call it from the
        thread that uses the socket)."""
        try:
            return cast(int, self._live().get(zmq.RCVHWM))
        except zmq.ZMQError as exc:
            raise _listening_error(exc) from exc

    @property
    def closed(self) -> bool:
        """True once ``close`` was called."""
        return self._closed

    def bind(self, endpoint: str) -> str:
        """Bind and return the real endpoint (``tcp://127.0.0.1:*`` picks a free port).

        A failed bind leaves the socket open, so another endpoint can be tried.

        Raises:
            ConfigurationError: zmq cannot bind ``endpoint`` (port taken, bad address).
        """
        sock = self._live()
        check_endpoint(endpoint, "cannot listen on", bind=True)
        try:
            sock.bind(endpoint)
            self.endpoint = sock.getsockopt_string(zmq.LAST_ENDPOINT)
        except zmq.ZMQError as exc:
            raise bind_error(exc, endpoint=endpoint) from exc
        log.debug("listening on %s (CURVE, ZAP)", self.endpoint)
        return self.endpoint

    def poll(self, timeout: float) -> bool:
        """Wait up to ``timeout`` seconds for a message; True when one is waiting.

        Monitor events that arrive meanwhile are counted and the wait goes on,
        so an idle caller wakes once per ``timeout``, not per event.

        Raises:
            SocketClosedError: the socket was closed or its context terminated.
            TransportError: any other zmq failure.
        """
        sock = self._live()
        deadline = time.monotonic() + timeout
        while True:
            remaining = deadline - time.monotonic()
            try:
                ready = dict(self._poller.poll(max(0, math.ceil(remaining * 1000))))
                if self._monitor in ready:
                    self._drain_monitor()
            except zmq.ZMQError as exc:
                raise _listening_error(exc) from exc
            if sock in ready:
                return True
            if remaining <= 0:
                return False

    def readable(self) -> bool:
        """Whether a message waits now (POLLIN), without waiting.

        Raises:
            SocketClosedError: the socket was closed or its context terminated.
            TransportError: any other zmq failure.
        """
        self._live()
        try:
            return bool(cast(int, self._socket.get(_EVENTS)) & _POLLIN)
        except zmq.ZMQError as exc:
            raise _listening_error(exc) from exc

    def recv_batch(  # noqa: PLR0915 - one loop: a call a message would cost more
        self, max_messages: int, read_six: ReadSix | None = None
    ) -> list[tuple[str | None, Any]]:
        """Up to ``max_messages`` whole messages that are waiting, without blocking.

        Each message is ``(user_id, frames)``: ZAP's User-Id of the
        connection it came on (the client's public key in Z85; None if the
        connection has none), and its frames as ``bytes``, the sender first
        (what a ROUTER's routing id would be; ``codec.decode`` takes them as
        they are): the uuid that owns the key, or, for a key added without
        one, the socket identity the client announced (empty if it has none,
        or one that is not UTF-8 text: libzmq gives it as a C string).

        ``read_six``, if given, is handed the sender and the frames of each
        message of exactly six frames (p2p0mq 0.1.1's shape), read into
        its arguments rather than a list (``codec.p2p0mq_reader``); what it
        returns stands for the frames, unless it is None (or it raises):
        then the frames are given as for any other message. Only messages
        from a key added with its owner's uuid (the sender) are handed to
        it: a key added without one may be revoked meanwhile, which the
        caller checks before it reads what came (``AllowedKeys.discard``
        forgets a key's owner).

        Frames are copied out of their ``zmq.Frame`` at once: keeping the
        seven Frame objects of a p2p0mq message alive until the batch is
        decoded costs about 2 µs a message more (measured). Of a message of
        more than ``MAX_FRAMES`` frames, the first ``MAX_FRAMES`` are kept,
        the rest read and dropped. Every frame's more flag is read before
        the next frame is: a message's frames are never taken for
        another's.

        Raises:
            SocketClosedError: the socket was closed or its context terminated.
            TransportError: any other zmq failure.
        """
        self._live()
        recv, owner = self._recv, self.allowed.owner
        batch: list[tuple[str | None, Any]] = []
        known: tuple[str | None, bytes] = (None, b"")  # the last key and its owner
        try:
            while len(batch) < max_messages:
                # After one message, ask whether another waits: a lone
                # message (the usual case at low rates, as in a round trip)
                # then ends the drain without a zmq.Again, which costs twice
                # as much as the question (measured: 3.2 against 1.4 µs).
                if len(batch) == 1 and not cast(int, self._socket.get(_EVENTS)) & _POLLIN:
                    break
                try:
                    frame = recv(_NOBLOCK, copy=False)
                except zmq.Again:
                    break
                # ZAP's User-Id of the connection it came on, read here and
                # not in a function, the name as bytes: 0.25 -> 0.15 µs a
                # message (measured in process), on the Receiver's busiest path.
                try:
                    user: str | None = frame.get(_USER_ID)
                except zmq.ZMQError:  # no such property: not a ZAP-checked connection
                    user = None
                if user is not None and user == known[0]:
                    sender, six = known[1], read_six
                else:
                    uuid = owner(user.encode()) if user is not None else None
                    if uuid is None:  # no owner: the Receiver checks the key first
                        sender, six = _announced(frame), None
                    else:
                        sender, known, six = uuid, (user, uuid), read_six
                first = frame.bytes
                if six is not None and frame.more:
                    # Six frames in straight-line code, each more flag read
                    # before the next frame; a frame not read stays None.
                    f2 = f3 = f4 = f5 = f6 = None
                    f2 = (frame := recv(_NOBLOCK, copy=False)).bytes
                    if frame.more:
                        f3 = (frame := recv(_NOBLOCK, copy=False)).bytes
                        if frame.more:
                            f4 = (frame := recv(_NOBLOCK, copy=False)).bytes
                            if frame.more:
                                f5 = (frame := recv(_NOBLOCK, copy=False)).bytes
                                if frame.more:
                                    f6 = (frame := recv(_NOBLOCK, copy=False)).bytes
                                    if not frame.more:
                                        try:
                                            item = six(sender, first, f2, f3, f4, f5, f6)
                                        except Exception:  # the frames' own decoding names it
                                            item = None
                                        if item is not None:
                                            batch.append((user, item))
                                            continue
                    frames = [sender, first]
                    frames.extend(f for f in (f2, f3, f4, f5, f6) if f is not None)
                else:
                    frames = [sender, first]
                batch.append((user, frames))
                if frame.more:
                    # Up to MAX_FRAMES frames kept, in a for loop: a count in
                    # a while loop cost twice as much (measured in process,
                    # on 3.7 us a 0.1.1 message: 0.07 against 0.14 us); a
                    # native message does not get here.
                    for _ in range(MAX_FRAMES + 1 - len(frames)):
                        frame = recv(_NOBLOCK, copy=False)
                        frames.append(frame.bytes)
                        if not frame.more:
                            break
                    else:  # longer than any valid message: the rest is read, not kept
                        while frame.more:
                            frame = recv(_NOBLOCK, copy=False)
        except zmq.ZMQError as exc:
            raise _listening_error(exc) from exc
        return batch

    def counters(self) -> dict[str, int]:
        """Connection events seen so far, and ZAP refusals.

        Keys: ``accepted``, ``handshake_succeeded``, ``handshake_failed_no_detail``,
        ``handshake_failed_protocol``, ``handshake_failed_auth``, ``disconnected``,
        ``zap_refused`` (unknown client keys), and one
        ``protocol_error_<name>`` per kind of protocol failure seen (e.g.
        ``protocol_error_zmtp_cryptographic``: a wrong server key).
        """
        if not self._closed:
            with contextlib.suppress(zmq.ZMQError):
                self._drain_monitor()
        return {**self._counts, "zap_refused": self.allowed.refused}

    def take_failures(self) -> list[tuple[str, str]]:
        """Handshake failures since the last call, oldest first, as (counter
        name, description); at most ``MAX_PENDING_FAILURES`` are kept."""
        taken = list(self._failures)
        self._failures.clear()
        return taken

    def close(self) -> None:
        """Stop ZAP, close the monitor and the socket (linger 0). Idempotent."""
        if self._closed:
            return
        self._closed = True
        # A terminating context refuses disable_monitor; libzmq then stops the
        # monitor together with the socket.
        with contextlib.suppress(zmq.ZMQError):
            self._socket.disable_monitor()
        self._monitor.close(linger=0)
        self._socket.close(linger=0)
        self._auth.stop()

    def _live(self) -> zmq.Socket[Any]:
        if self._closed:
            raise RuntimeError(f"{self!r} is closed")
        return self._socket

    def _drain_monitor(self) -> None:
        while True:
            try:
                message = recv_monitor_message(self._monitor, _NOBLOCK)
            except zmq.Again:
                return
            self._count(int(message["event"]), int(message["value"]))

    def _count(self, event: int, value: int) -> None:
        name = _EVENT_NAMES.get(event)
        if name is None:
            return
        self._counts[name] += 1
        if name not in _FAILURES:
            return
        if name == "handshake_failed_protocol":
            detail = _protocol_error_name(value)
            key = f"protocol_error_{detail.lower()}"
            self._counts[key] = self._counts.get(key, 0) + 1
        self._failures.append((name, describe_handshake_failure(event, value)))
        log.debug("%s: %s", self, self._failures[-1][1])

    def __repr__(self) -> str:
        state = "closed" if self._closed else "open"
        c = self._counts
        failed = sum(c[name] for name in _FAILURES)
        return (
            f"<CurveRouter {self.endpoint or 'unbound'} {state} accepted={c['accepted']} "
            f"handshake_failed={failed} zap_refused={self.allowed.refused}>"
        )


def describe_handshake_failure(event: int, value: int) -> str:
    """A sentence for a failed-handshake monitor event, with the likely cause."""
    if event == int(zmq.EVENT_HANDSHAKE_FAILED_AUTH):
        return f"ZAP refused the client's key (status {value}): not an allowed key"
    if event == int(zmq.EVENT_HANDSHAKE_FAILED_PROTOCOL):
        detail = _protocol_error_name(value)
        hint = _HINTS.get(detail, "the client broke the ZMTP/CURVE protocol")
        return f"handshake protocol error {detail}: {hint}"
    reason = zmq.strerror(value) if value > 0 else "no detail"
    return f"handshake failed ({reason}): the client went away during the handshake"


def _protocol_error_name(value: int) -> str:
    try:
        name = zmq.Event(value).name or ""
    except ValueError:
        return f"0x{value:08x}"
    if not name.startswith(_PROTOCOL_PREFIX) or "|" in name:  # not one known code
        return f"0x{value:08x}"
    return name[len(_PROTOCOL_PREFIX) :]


def _listening_error(exc: zmq.ZMQError) -> Exception:
    """``translate(exc)``, in the listening socket's words when it is closed
    (``translate`` speaks of a peer's socket)."""
    error = translate(exc)
    if isinstance(error, SocketClosedError) and exc.errno is not None:
        return SocketClosedError(
            f"the listening socket is closed: {zmq.strerror(exc.errno)} (errno {exc.errno}); "
            "its zmq context was terminated, or the socket closed",
            errno=exc.errno,
        )
    return error


def _start_authenticator(context: zmq.Context[Any], allowed: AllowedKeys) -> ZapThread:
    auth = ZapThread(context, allowed)
    try:
        auth.start()
    except zmq.ZMQError as exc:
        if exc.errno == zmq.EADDRINUSE:
            raise ConfigurationError(
                "this zmq context already has a ZAP authenticator: give each receiving "
                "socket a context of its own"
            ) from exc
        raise translate(exc) from exc
    return auth


def _announced(frame: zmq.Frame) -> bytes:
    """The socket identity a client announced (libzmq's ``Identity``
    property), as bytes; empty if it announced none, or one that is not
    UTF-8 text."""
    try:
        return frame.get(_IDENTITY).encode()
    except (zmq.ZMQError, UnicodeError):
        return b""


def check_receive_hwm(value: object) -> int:
    """``value`` if it is a valid ``receive_hwm`` (``errors.check_hwm``), 2 at
    least: a listening socket with ZAP and an ``RCVHWM`` of 1 delivers no
    message at all (libzmq 4.3.5, measured: the connection's one slot stays
    taken), while its peers' sends succeed.

    Raises:
        ConfigurationError: not an int from 2 to 2**31 - 1.
    """
    hwm = check_hwm("receive_hwm", value, "messages")
    if hwm < MIN_RECEIVE_HWM:
        raise ConfigurationError(
            f"receive_hwm must be at least {MIN_RECEIVE_HWM}, not {value!r}: with ZAP, libzmq"
            " delivers nothing from a connection whose high-water mark is 1"
        )
    return hwm


MIN_RECEIVE_HWM: Final = 2
"""The least ``receive_hwm`` (see ``check_receive_hwm``)."""


def _server_socket(
    context: zmq.Context[Any], keys: KeyPair, max_message_size: int | None, receive_hwm: int
) -> zmq.Socket[Any]:
    # A DEALER, not a ROUTER: see the rules at the top. It only receives.
    try:
        sock: zmq.Socket[Any] = context.socket(zmq.DEALER)
    except zmq.ZMQError as exc:
        raise translate(exc) from exc
    try:
        sock.setsockopt(zmq.LINGER, 0)
        sock.setsockopt(zmq.RCVHWM, receive_hwm)  # before bind: each pipe takes it then
        sock.setsockopt(zmq.CURVE_SERVER, 1)
        sock.setsockopt(zmq.CURVE_SECRETKEY, keys.secret)
        sock.setsockopt(zmq.CURVE_PUBLICKEY, keys.public)
        # ZAP always, even with no handler bound (libzmq would admit anyone):
        # zap.py's rules.
        sock.setsockopt_string(zmq.ZAP_DOMAIN, ZAP_DOMAIN)
        sock.setsockopt(zmq.ZAP_ENFORCE_DOMAIN, 1)
        if max_message_size is not None:
            sock.setsockopt(zmq.MAXMSGSIZE, max_message_size + CURVE_OVERHEAD)
        # A connection that has not finished its handshake by then is closed:
        # libzmq's default (30 s) lets anyone, with no key, hold descriptors.
        sock.setsockopt(zmq.HANDSHAKE_IVL, HANDSHAKE_MS)
    except zmq.ZMQError as exc:
        sock.close(linger=0)
        raise translate(exc) from exc
    return sock
