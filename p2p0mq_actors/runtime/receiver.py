"""Receiver: the actor that owns a node's listening socket.

Rules:
- The socket (a DEALER bound as a CURVE server, guarded by ZAP:
  ``transport.router.CurveRouter``) lives in this actor's thread, from
  ``on_start`` until ``on_stop`` / ``on_failure``, in a zmq context of its own
  (one ZAP authenticator per context), which it ends when it stops.
- A pykka actor blocks on its inbox, so the Receiver works in steps: each
  is up to ``POLLS_PER_STEP`` rounds of a ``poll(poll_interval)`` and a
  non-blocking drain of up to ``batch`` zmq messages (fewer after a drain
  of native batch frames: about ``DRAIN_MESSAGES`` messages' worth),
  ending early as soon as anything waits in its inbox; then it tells
  itself to take the next step.
  Other messages (stop, ``stats``, ``Bind``) are handled between two steps,
  so ``stop`` waits at most one poll (trap 4 of PERFORMANCE.md: keep
  ``poll_interval`` short). The poll's timeout
  is the idle wait: an idle Receiver wakes once per ``poll_interval``.
- One tell per Concern per drain: the messages of a drain that are for us go
  to their Concerns as one ``Received`` each, in arrival order; replies are
  first offered to ``on_reply`` (pending ``Node.request`` futures). While
  polls bring one message each (round trips), a poll's first message is
  handed on before the rest is drained, so a burst after lone messages costs
  one tell more (see ``_poll_once``), and the Receiver then yields its CPU
  once (``sched_yield``), so that the thread it just woke runs at once if it
  shares that CPU.
- What the Concerns were handed and have not handled yet is bounded
  (``backlog`` messages, plus one drain of p2p0mq's messages or one native
  batch frame): a drain stops decoding once its native batch frames
  (up to ``MAX_BATCH`` messages each) filled the backlog, and the rest of
  it waits, read but not decoded, for the next step that finds room. At
  the bound the Receiver reads
  no more until they are down to half, waiting ``poll_interval`` at a time,
  so peers' sends wait in the socket and in their own queues rather than
  in a Concern's inbox (see ``backlog.py``). It says so at WARNING (at most
  once per ``warn_every``), and ``stats()`` counts the waits.
- Nothing that arrives stops the Receiver: frames that do not decode are
  counted by reason and logged at WARNING, at most one line per reason per
  ``warn_every`` seconds (with the number left out since); anything
  unexpected is logged and counted, and the next step runs.
"""

from __future__ import annotations

import contextlib
import logging
import os
from collections.abc import Callable, Sequence
from functools import partial
from typing import Any, Final

import pykka

from ..core.checks import check_count, check_seconds
from ..core.codec import (
    MAX_MESSAGE_SIZE,
    check_message_size,
    decode_many,
    decode_p2p0mq,
    p2p0mq_reader,
)
from ..core.errors import ConfigurationError, MessageError, ProtocolError, TransportError
from ..core.message import MAX_UUID_LEN, Kind, Message
from ..core.ports import Clock, KeyPair
from ..transport.context import end_context, new_context
from ..transport.errors import SocketClosedError
from ..transport.keys import check_key_pair
from ..transport.router import RECEIVE_HWM, AllowedKeys, CurveRouter, check_receive_hwm
from .actor import Actor
from .backlog import Backlog
from .inline import InlineHandle, handle_of
from .messages import FLUSH, Bind, Flush, Received
from .outcomes import ConcernRegistry
from .turns import TURNS

log = logging.getLogger("p2p0mq_actors.runtime.receiver")

REJECT_REASONS: Final = (
    "frames",
    "address",
    "identity",  # a known key used under another peer's uuid
    "revoked",  # on a connection whose key was revoked since its handshake
    "kind",
    "command",
    "id",
    "payload",
    "other",
)
"""How refused messages are counted in ``stats()["rejected"]``."""

DROP_REASONS: Final = ("no-route", "route-failed", "concern-stopped")
"""How decoded messages that reached no one are counted in ``stats()["dropped"]``."""

_COUNTERS: Final = (
    "received", "dispatched", "replies_consumed", "routed", "unknown_command", "errors",
    "backlog_waits", "inline",
)  # fmt: skip

BACKLOG: Final = 16_384
"""Received messages the Concerns may hold unhandled before the Receiver
stops reading (``Receiver(backlog=...)``, ``Node(receive_backlog=...)``)."""


def _no_yield() -> None:
    """Where the platform has no ``sched_yield``."""


_yield_cpu: Callable[[], None] = getattr(os, "sched_yield", _no_yield)
"""Called once after a lone message was handed on (``_poll_once``)."""

CONTEXT_END_TIMEOUT = 5.0
"""Seconds the Receiver's zmq context gets to end when it stops."""

# The codec names the frame at fault in its error text ("frame 3 (kind): ...").
_REASON_MARKERS: Final = (
    ("(kind)", "kind"),
    ("(message id)", "id"),
    ("(payload)", "payload"),
    ("(command)", "command"),
    ("(previous hop)", "address"),
    ("(source)", "address"),
    ("(destination)", "address"),
    ("bytes-like", "frames"),
)


_FIELD_REASONS: Final = {
    "source": "address",
    "destination": "address",
    "previous_hop": "address",
    "next_hop": "address",
    "command": "command",
    "payload": "payload",
    "message_id": "id",
    "kind": "kind",
}


def reject_reason(frames: object, error: ProtocolError) -> str:
    """The class (one of ``REJECT_REASONS``) of frames ``decode`` refused with ``error``."""
    if isinstance(frames, (list, tuple)) and len(frames) == 2:
        return _native_reason(error)
    if not isinstance(frames, (list, tuple)) or len(frames) not in (6, 7):
        return "frames"
    text = str(error)
    for marker, reason in _REASON_MARKERS:
        if marker in text:
            return reason
    return "other"


def _native_reason(error: ProtocolError) -> str:
    """A native envelope's: the field ``Message`` refused, the kind or id
    the envelope got wrong, else the frame as a whole (version, shape)."""
    cause = error.__cause__
    if isinstance(cause, MessageError):
        return _FIELD_REASONS.get(cause.field, "other")
    text = str(error)
    if text.startswith("native envelope: kind"):
        return "kind"
    if text.startswith("native envelope: message id"):
        return "id"
    if text.startswith(
        ("native envelope: ttl_ms", "native envelope: hops", "native envelope: trace")
    ):
        return "other"
    return "frames"


class _Step:
    """Self-message: poll, drain, dispatch, once."""


_STEP = _Step()
_UNSEEN: Final[Any] = object()  # a command not looked up yet in this step
POLLS_PER_STEP: Final = 64
DRAIN_MESSAGES: Final = 1024
"""About how many messages a drain reads once the last one's zmq messages
carried more than one each (native batch frames, up to ``MAX_BATCH``): it
reads that many messages' worth of zmq messages, at the last drain's
messages a zmq message (at least 2, so that big frames are not taken for
the lone messages of a round trip; at most ``batch``). A drain of
``batch`` native frames of 64 held up to 16,384 messages decoded at once,
alive until their Concern's thread got the GIL, and the cyclic collector
walked them in the meanwhile (bench.cpu, 2b's work: the receiving
process's collector 0.52-0.56 -> 0.30-0.33 us of CPU a message, at 1,000
messages a drain against 8,500-9,700). A drain of p2p0mq's messages, one
a zmq message, stays at ``batch``: a shorter one costs more a message."""


class _Throttle:
    """WARNING lines, at most one per key per ``every`` seconds; counts the rest."""

    def __init__(self, clock: Clock, every: float) -> None:
        self._clock = clock
        self._every = every
        self._last: dict[str, float] = {}
        self._left_out: dict[str, int] = {}

    def warning(self, key: str, text: str, *args: object, exc_info: bool = False) -> None:
        now = self._clock.now()
        last = self._last.get(key)
        if last is not None and now - last < self._every:
            self._left_out[key] = self._left_out.get(key, 0) + 1
            return
        self._last[key] = now
        left_out = self._left_out.pop(key, 0)
        if left_out:
            text += " (%d more like it since the last such line)"
            args = (*args, left_out)
        log.warning(text, *args, exc_info=exc_info)


class Receiver(Actor):
    """Receives what peers send to this node and hands it on in batches.

    Start it, then ask it to listen; ask ``stats()`` through a proxy::

        receiver = Receiver.start(uuid=b"bob", keys=keys, allowed=AllowedKeys([alice]),
                                  concerns=registry, clock=MonotonicClock())
        endpoint = receiver.ask(Bind("tcp://127.0.0.1:*"), timeout=5)
        receiver.proxy().stats().get(timeout=5)

    Args:
        uuid: This node's uuid: messages whose destination it is are ours.
        keys: The node's CURVE key pair (the server's, for CURVE).
        allowed: The client keys ZAP admits. It is thread-safe and read on
            every handshake: change it directly, or through ``allow`` / ``deny``
            (ordered with the Receiver's other messages).
        concerns: Who owns each command; a command without an owner is
            counted as ``unknown_command`` and not dispatched.
        clock: Time source (deadlines of received messages, log throttling).
        context_factory: Makes the zmq context the Receiver owns and ends
            (default ``transport.context.new_context``).
        on_reply: Offered each reply for us first; returns True when it took
            the reply (a pending request), else the reply goes to its Concern.
            Runs in the Receiver's thread: it must be quick and thread-safe.
        route: Takes the messages of a step that are for other uuids; without
            it they are dropped (``dropped["no-route"]``). Same rules as ``on_reply``.
        poll_interval: The longest wait of one step, in seconds: bounds the
            latency of ``stop`` and of asks such as ``stats``.
        batch: The most zmq messages one drain reads (fewer after native
            batch frames: see ``DRAIN_MESSAGES``).
        backlog: The most received messages the Concerns may have been
            handed and not yet handled (plus one drain): beyond it the
            Receiver reads no more until they are down to half.
        ttl: Seconds a received message may live (its deadline is arrival + ttl,
            arrival being when the drain that read it began).
        warn_every: Seconds between two WARNING lines of the same kind.
        max_message_size: The longest frame a peer may send, in bytes (None:
            no limit); libzmq disconnects a peer that sends a longer one
            (``CurveRouter``).
        receive_hwm: The most whole messages libzmq keeps unread per peer
            connection (``CurveRouter``).

    Raises:
        ConfigurationError: a malformed uuid, key pair or setting.
    """

    def __init__(
        self,
        *,
        uuid: bytes,
        keys: KeyPair,
        allowed: AllowedKeys,
        concerns: ConcernRegistry,
        clock: Clock,
        context_factory: Callable[[], Any] | None = None,
        on_reply: Callable[[Message], bool] | None = None,
        route: Callable[[list[Message]], None] | None = None,
        poll_interval: float = 0.05,
        batch: int = 256,
        backlog: int = BACKLOG,
        ttl: float = 30.0,
        warn_every: float = 10.0,
        max_message_size: int | None = MAX_MESSAGE_SIZE,
        receive_hwm: int = RECEIVE_HWM,
    ) -> None:
        super().__init__()
        _check_settings(uuid, poll_interval, batch, backlog, ttl, warn_every)
        self._max_message_size = check_message_size(max_message_size)
        self._receive_hwm = check_receive_hwm(receive_hwm)
        self._uuid = uuid
        self._keys = check_key_pair(keys)
        self._allowed = allowed
        self._concerns = concerns
        self._clock = clock
        self._context_factory = context_factory or new_context
        self._on_reply = on_reply
        self._route = route
        self._poll_interval = poll_interval
        self._batch = batch
        self._drain = batch  # zmq messages the next drain reads at most (see _handle)
        self._backlog = Backlog(backlog)
        self._alone = False  # whether the last poll that brought messages brought one
        self._lone = False  # whether the drain being handled is one zmq message
        # The rest of a drain whose native batch frames filled the backlog,
        # read at _undecoded_at (see _handle): frames not yet decoded, and
        # the 0.1.1 messages the router's reader decoded as it read them.
        self._undecoded: list[tuple[str | None, Any]] = []
        self._undecoded_at = 0.0
        self._read_at = 0.0  # when the last drain was read: its messages' arrival
        self._ttl = float(ttl)  # a float: the decoders' fast paths take floats
        self._throttle = _Throttle(clock, warn_every)
        self._context: Any = None
        self._router: CurveRouter | None = None
        self._endpoint = ""
        self._state = "NEW"  # -> READY (socket made) -> LISTENING -> CLOSED (or BROKEN)
        self._start_error: Exception | None = None  # raised by the first Bind
        self._steps = 0
        self._counts = dict.fromkeys(_COUNTERS, 0)
        self._rejected = dict.fromkeys(REJECT_REASONS, 0)
        self._dropped = dict.fromkeys(DROP_REASONS, 0)

    # -- life cycle --------------------------------------------------------

    def on_start(self) -> None:
        # What fails here is raised by the first Bind, to whoever asked for
        # it (Node's start): raised here, pykka would log it and stop this
        # actor, and the caller would see only that it is dead.
        try:
            context = self._context_factory()
        except Exception as exc:
            self._start_error, self._state = exc, "BROKEN"
            return
        try:
            self._router = CurveRouter(
                context,
                self._keys,
                self._allowed,
                max_message_size=self._max_message_size,
                receive_hwm=self._receive_hwm,
            )
        except Exception as exc:
            end_context(context, CONTEXT_END_TIMEOUT)
            self._start_error, self._state = exc, "BROKEN"
            return
        self._context = context
        self._state = "READY"

    def on_stop(self) -> None:
        self._shutdown()

    def on_failure(self, *_exc_info: object) -> None:
        self._shutdown()

    def _shutdown(self) -> None:
        self._state = "CLOSED"
        if self._undecoded:
            log.warning(
                "%r: stopped with %d zmq messages read and not handed on (their Concerns"
                " were full); they are dropped",
                self,
                len(self._undecoded),
            )
            self._undecoded = []
        self._close_router()
        context, self._context = self._context, None
        if context is not None and not end_context(context, CONTEXT_END_TIMEOUT):
            log.warning("%r: its zmq context is left to end once its sockets close", self)

    def _close_router(self) -> None:
        """Close the listening socket, its monitor and ZAP (once)."""
        if self._router is not None:
            try:
                self._router.close()
            except Exception:
                log.exception("%r: closing the listening socket failed", self)

    # -- messages ----------------------------------------------------------

    def on_receive(self, message: Any) -> Any:
        if message is _STEP:
            self._step()
        elif isinstance(message, Bind):
            return self._bind(message.endpoint)
        elif isinstance(message, Flush):
            return FLUSH
        else:
            log.warning("%r: unexpected message %r", self, message)
        return None

    def _bind(self, endpoint: str) -> str:
        if self._start_error is not None:
            raise self._start_error
        if self._router is None or self._state in ("CLOSED", "BROKEN"):
            raise ConfigurationError(
                f"{self!r} cannot listen on {endpoint!r}: it is {self._state}"
            )
        self._endpoint = self._router.bind(endpoint)
        log.info("%r: listening", self)
        if self._state != "LISTENING":
            self._state = "LISTENING"
            self.actor_ref.tell(_STEP)
        return self._endpoint

    def _step(self) -> None:
        # Polls back to back while nothing else waits in the inbox (at most
        # POLLS_PER_STEP), then tells itself to go on: a tell per poll would
        # cost GIL time on every batch and delay the Concerns just told.
        inbox = self.actor_inbox
        for _ in range(POLLS_PER_STEP):
            if not self._poll_once() or not inbox.empty():
                break
        if self._state == "LISTENING":
            self.actor_ref.tell(_STEP)

    def _poll_once(self) -> bool:
        """One poll and what it brought; False once the socket is gone.

        While messages come one at a time (the last poll that brought any
        brought one, as in a round trip), the first is handled before
        anything else is read: it reaches its Concern or its future without
        waiting for the question whether another waits, which is asked while
        that thread wakes up. Otherwise a poll reads a whole batch at once."""
        router = self._router
        if router is None or self._state != "LISTENING":
            return False
        if self._backlog.full:
            self._wait_for_concerns()
            return True
        if self._undecoded:  # the rest of a drain comes before anything newer
            undecoded, self._undecoded = self._undecoded, []
            self._take(router, undecoded, self._undecoded_at)
            return True
        self._steps += 1
        alone = self._alone
        batch = self._read(router, 1 if alone else self._drain, wait=True)
        if batch is None:
            return False
        self._take(router, batch, self._read_at)
        if alone and batch:
            # The Concern or the caller just woken waits for a CPU. If it
            # shares this one (a process pinned to one CPU), it would wait
            # until this thread blocks in its next poll; yielding lets it run
            # now. Measured, each process pinned to one CPU: a round trip's
            # two hops 18-21 -> 10.5-12 us each, p50 276-340 -> 243-253 us.
            # On an idle CPU elsewhere it changes nothing (the wake-up there
            # costs the same), and it costs a system call per lone message:
            # in bench scenario 3's streams, 1,112 of 3,785 polls, 122,000 zmq
            # messages. Any thread waiting for this CPU may run first (another
            # process's too) before this one goes on to its next poll.
            _yield_cpu()
            if self._backlog.full:  # the one message filled it: read no more
                return True
            rest = self._read(router, self._drain - 1, wait=False)
            if rest is None:
                return False
            if rest:
                self._take(router, rest, self._read_at)
                batch += rest
        if batch:  # an empty poll (idle) leaves the mode as it was
            self._alone = len(batch) == 1
        return True

    def _wait_for_concerns(self) -> None:
        """Read nothing until the Concerns handled half of what they hold, or
        for ``poll_interval`` (the step goes on, or ends if anything waits
        in the inbox); stopped Concerns hold nothing."""
        backlog = self._backlog
        if backlog.forget_stopped() and not backlog.full:
            return  # what stopped Concerns held was all that filled it
        self._counts["backlog_waits"] += 1
        if not self._socket_alive():
            return
        if backlog.wait(self._poll_interval):
            return
        backlog.forget_stopped()
        if backlog.full:
            held = ", ".join(f"{ref.actor_class.__name__}: {n}" for ref, n in backlog.holders())
            self._warn(
                "backlog",
                "Concerns hold %d received messages not yet handled (%s); "
                "reading no more until they are down to %d",
                backlog.total,
                held,
                backlog.resume_at,
            )

    def _socket_alive(self) -> bool:
        """Whether the listening socket is still there, asked without reading
        from it: a Receiver paused on its backlog polls nothing, yet a
        context ended meanwhile (``SocketClosedError``) must not wait for
        the Concerns before its sockets close."""
        router = self._router
        if router is None:
            return False
        try:
            router.readable()
        except SocketClosedError as exc:
            self._socket_gone(exc)
            return False
        except Exception:
            self._unexpected("receiving")
        return True

    def _read(
        self, router: CurveRouter, most: int, *, wait: bool
    ) -> list[tuple[str | None, Any]] | None:
        """Up to ``most`` messages: after a poll (``wait``), or only if one
        waits now. None once the socket is gone."""
        try:
            if wait:
                if not router.poll(self._poll_interval):
                    if self._backlog.total:  # idle: what stopped Concerns held is let go
                        self._backlog.forget_stopped()
                    return []
            elif most < 1 or not router.readable():
                return []
            # p2p0mq's six frames read into a reader's arguments and
            # decoded at once (``codec.p2p0mq_reader``): 0.45 us a message
            # less than a list of frames decoded after the drain. Every
            # message of a drain arrives at ``_read_at`` (see ``_handle``).
            self._read_at = now = self._clock.now()
            read = p2p0mq_reader(self._uuid, now + self._ttl)
            with TURNS:  # see turns.py
                return router.recv_batch(most, read)
        except SocketClosedError as exc:
            self._socket_gone(exc)
            return None
        except Exception:
            self._unexpected("receiving")
            return []

    def _socket_gone(self, exc: SocketClosedError) -> None:
        self._state = "BROKEN"
        log.error("%r: the listening socket is gone (%s); no longer receiving", self, exc)
        # Its context was ended (by whoever made it: a context_factory's
        # owner): our sockets are closed now, so that its ``term`` returns,
        # not when the node stops.
        self._close_router()

    def _take(self, router: CurveRouter, batch: list[tuple[str | None, Any]], now: float) -> None:
        """Handle ``batch``, read at ``now``, and report refused handshakes."""
        try:
            if batch:
                self._handle(batch, now)
            for name, text in router.take_failures():
                self._warn(f"handshake:{name}", "refused a client: %s", text)
        except Exception:
            self._unexpected("dispatching")

    def _unexpected(self, doing: str) -> None:
        self._counts["errors"] += 1
        self._warn(f"error:{doing}", "error while %s", doing, exc_info=True)

    def _warn(self, key: str, text: str, *args: object, exc_info: bool = False) -> None:
        self._throttle.warning(key, "%r: " + text, self, *args, exc_info=exc_info)

    # -- one batch ---------------------------------------------------------

    def _handle(self, batch: list[tuple[str | None, Any]], now: float) -> None:
        self._lone = len(batch) == 1
        ours: list[Message] = []
        others: list[Message] = []
        uuid, deadline = self._uuid, now + self._ttl  # as the router's reader gave
        passed: tuple[str | None, bytes] = (None, b"")  # the last pair that passed
        # Room left in the backlog: spent by native batch frames only, which
        # carry up to MAX_BATCH messages each (a drain of p2p0mq's messages
        # is at most ``batch`` of them). At none, the rest of the drain waits.
        room = self._backlog.limit - self._backlog.total
        drain = iter(batch)
        for user, item in drain:
            if type(item) is list:  # frames
                frames: list[bytes] = item
                sender, single = frames[0], None
            else:  # a 0.1.1 message, read by the router with our reader (``_read``)
                single = item
                sender = single.previous_hop
            # The identity check, skipped for the pair the last message
            # passed with (a drain's messages mostly come from one peer).
            if user is not None and (user != passed[0] or sender != passed[1]):
                refusal = self._identity_refusal(user, sender)
                if refusal is not None:
                    self._refuse_identity(sender, refusal)
                    continue
                passed = (user, sender)
            if single is not None:
                (ours if single.destination == uuid else others).append(single)
                continue
            if len(frames) == 2:  # native: one message or a batch of them
                if room <= 0:  # full already (a drain after the first of a poll)
                    self._undecoded, self._undecoded_at = [(user, frames), *drain], now
                    break
                messages = self._decode_native(frames, now)
                for message in messages:
                    (ours if message.destination == uuid else others).append(message)
                room -= len(messages)
                if room <= 0:
                    self._undecoded, self._undecoded_at = list(drain), now
                    break
                continue
            single = self._decode_p2p0mq(frames, deadline)  # one the reader left
            if single is not None:
                (ours if single.destination == uuid else others).append(single)
        decoded = len(ours) + len(others)
        self._counts["received"] += decoded
        self._size_next_drain(len(batch), decoded)
        if ours:
            self._dispatch(ours)
        if others:
            self._forward(others)

    def _size_next_drain(self, read: int, decoded: int) -> None:
        """The next drain's size: DRAIN_MESSAGES at this drain's messages a
        zmq message (undecoded ones counted as carrying none)."""
        if decoded > read:
            self._drain = min(self._batch, max(2, DRAIN_MESSAGES * read // decoded))
        else:
            self._drain = self._batch

    def _identity_refusal(self, user: str, sender: bytes) -> str | None:
        """Why a message on the connection of key ``user`` (ZAP's User-Id,
        the Z85 key libzmq attached to the connection) may not speak as
        ``sender`` (frame 0), if it may not.

        - ``"identity"``: a key added for a uuid speaks only as that uuid.
          ``CurveRouter`` names the owner itself; this guards frames that
          come another way (a transport of one's own).
        - ``"revoked"``: the key is no longer admitted. CURVE authenticates
          a connection once, at its handshake, and libzmq cannot close one
          accepted connection of a socket, so a revoked peer's connection
          stays up: what comes on it is refused here.
        """
        key = user.encode()
        owner = self._allowed.owner(key)
        if owner is None:
            return None if key in self._allowed else "revoked"
        return None if owner == sender else "identity"

    def _decode_p2p0mq(self, frames: list[bytes], deadline: float) -> Message | None:
        try:
            return decode_p2p0mq(frames, self._uuid, deadline)
        except ProtocolError as exc:
            self._reject(frames, exc)
        except Exception:  # decode is total: a bug, yet no reason to stop receiving
            self._rejected["other"] += 1
            self._unexpected("decoding")
        return None

    def _decode_native(self, frames: list[bytes], now: float) -> list[Message]:
        try:
            messages, errors = decode_many(frames, self._uuid, now=now, ttl=self._ttl)
        except ProtocolError as exc:
            self._reject(frames, exc)
            return []
        except Exception:  # decode is total: a bug, yet no reason to stop receiving
            self._rejected["other"] += 1
            self._unexpected("decoding")
            return []
        for error in errors:  # envelopes refused one by one in a batch
            self._reject(frames, error)
        return messages

    def _refuse_identity(self, sender: bytes, reason: str) -> None:
        self._rejected[reason] += 1
        why = "belongs to another peer" if reason == "identity" else "was revoked"
        self._warn(
            f"rejected:{reason}",
            "rejected a message from %r: its CURVE key %s",
            sender[:32],
            why,
        )

    def _reject(self, frames: list[bytes], exc: ProtocolError) -> None:
        reason = reject_reason(frames, exc)
        self._rejected[reason] += 1
        sender = _sender(frames)
        self._warn(
            f"rejected:{reason}", "rejected a message from %r (%s): %s", sender, reason, exc
        )

    def _dispatch(self, messages: list[Message]) -> None:
        # One registry lookup per command per step; each command's messages
        # go straight into the list of its Concern's group.
        lists: dict[bytes, list[Message] | None] = {}  # None: no Concern for it
        groups: dict[int, tuple[Any, list[Message]]] = {}  # by id: refs need not hash
        reply = Kind.REPLY
        for message in messages:
            if message.kind is reply and self._taken_as_reply(message):
                continue
            command = message.command
            group = lists.get(command, _UNSEEN)
            if group is _UNSEEN:
                group = lists[command] = self._group_of(command, groups)
            if group is None:
                self._counts["unknown_command"] += 1
                self._warn("unknown-command", "no Concern for %r; dropped %r", command, message)
                continue
            group.append(message)
        for ref, group in groups.values():
            self._tell(ref, group)

    def _group_of(
        self, command: bytes, groups: dict[int, tuple[Any, list[Message]]]
    ) -> list[Message] | None:
        """The list the messages for ``command``'s Concern gather in; None if
        no Concern takes it."""
        # One read: a command removed meanwhile is counted unknown, never
        # handed to the default Concern (which would answer nothing).
        ref = self._concerns.owner(command)
        if ref is None:
            return None
        entry = groups.get(id(ref))
        if entry is None:
            entry = groups[id(ref)] = (ref, [])
        return entry[1]

    def _taken_as_reply(self, message: Message) -> bool:
        if self._on_reply is None:
            return False
        try:
            taken = bool(self._on_reply(message))
        except Exception:
            self._counts["errors"] += 1
            self._warn(
                "on-reply", "on_reply raised; %r goes to its Concern", message, exc_info=True
            )
            return False
        if taken:
            self._counts["replies_consumed"] += 1
        return taken

    def _tell(self, ref: Any, group: list[Message]) -> None:
        # Inline only for a lone message (a round trip's): a drain of several
        # is told, so that the Concern's thread handles it beside this one.
        # A lone zmq message may be a native batch of thousands: told too.
        handle = handle_of(ref) if self._lone and len(group) == 1 else None
        if handle is not None and not self._backlog.held_by(ref) and self._inline(handle, group):
            self._counts["dispatched"] += len(group)
            self._counts["inline"] += 1
            return
        done = self._backlog.add(ref, len(group))
        try:
            ref.tell(Received(tuple(group), done, partial(done, False)))
        except pykka.ActorDeadError:
            done()
            self._dropped["concern-stopped"] += len(group)
            count, command = len(group), group[0].command
            self._warn("concern-stopped", "Concern of %r stopped; dropped %d", command, count)
            return
        self._counts["dispatched"] += len(group)

    def _inline(self, handle: InlineHandle, group: list[Message]) -> bool:
        """Let an idle inline Concern handle ``group`` in this thread (see
        ``inline.py``); False if it would not."""
        try:
            return handle(tuple(group))
        except Exception:  # its hooks are guarded: this is a bug, told like one
            self._counts["errors"] += 1
            self._warn("inline", "an inline Concern raised; its messages are lost", exc_info=True)
            return True

    def _forward(self, messages: list[Message]) -> None:
        if self._route is None:
            self._dropped["no-route"] += len(messages)
            count, first = len(messages), messages[0]
            self._warn("no-route", "no route; dropped %d for other peers, e.g. %r", count, first)
            return
        try:
            self._route(messages)
        except Exception:
            self._counts["errors"] += 1
            self._dropped["route-failed"] += len(messages)
            self._warn("route-failed", "route raised; dropped %d", len(messages), exc_info=True)
            return
        self._counts["routed"] += len(messages)

    # -- public, through a proxy -------------------------------------------

    def stats(self) -> dict[str, Any]:
        """Counters, as of the last step. Ask it through a proxy:
        ``receiver.proxy().stats().get(timeout=5)``.

        Returns:
            ``received`` (decoded), ``dispatched`` (told to Concerns, less
            those lost with a Concern that stopped before it handled them),
            ``replies_consumed`` (taken by ``on_reply``), ``routed`` (given to
            ``route``), ``unknown_command``, ``errors`` (unexpected failures);
            ``rejected`` and ``dropped``: counts by reason (``REJECT_REASONS``,
            ``DROP_REASONS``; a frame refused whole, as from a revoked key or
            one that does not decode, counts once, a native batch too); the
            socket's ``CurveRouter.counters()``
            (``accepted``, ``handshake_failed_*``, ``zap_refused``...);
            ``endpoint`` (empty until bound), ``state`` and ``steps`` (polls so far);
            ``backlog`` (messages the Concerns hold unhandled) and
            ``backlog_waits`` (polls skipped, waiting for them to fall);
            ``inline`` (batches an idle inline Concern handled in this
            thread, counted in ``dispatched`` too); ``receive_hwm``, the
            listening socket's, while it listens.
        """
        out: dict[str, Any] = dict(self._counts)
        out["backlog"] = self._backlog.total
        out["rejected"] = dict(self._rejected)
        out["dropped"] = dropped = dict(self._dropped)
        # Told, then lost with their stopped Concern: dropped, not dispatched
        # (each message is counted once).
        dropped["concern-stopped"] += self._backlog.lost
        out["dispatched"] -= self._backlog.lost
        if self._router is not None:
            out.update(self._router.counters())
            if self._state == "LISTENING":
                # (a socket gone under it, e.g. its context ended, has none)
                with contextlib.suppress(TransportError):
                    out["receive_hwm"] = self._router.receive_hwm
        out["endpoint"] = self._endpoint
        out["state"] = self._state
        out["steps"] = self._steps
        return out

    def allow(self, key: bytes) -> None:
        """Admit the client key ``key`` (Z85) from its next handshake on.

        Raises:
            ConfigurationError: ``key`` is not a CURVE public key in Z85.
        """
        self._allowed.add(key)

    def deny(self, key: bytes) -> None:
        """Refuse ``key``: its next handshakes, and what comes on a
        connection it already made (which stays up: CURVE authenticates
        only at the handshake), counted in ``rejected["revoked"]``."""
        self._allowed.discard(key)

    def __repr__(self) -> str:
        c = self._counts
        return (
            f"<Receiver {self._uuid!r} {self._state} {self._endpoint or 'unbound'} "
            f"received={c['received']} dispatched={c['dispatched']} "
            f"rejected={sum(self._rejected.values())} dropped={sum(self._dropped.values())} "
            f"unknown_command={c['unknown_command']} steps={self._steps}>"
        )


def _sender(frames: Sequence[Any]) -> bytes:
    """The sender's identity (frame 0), cut short, for log lines."""
    try:
        return memoryview(frames[0]).tobytes()[:32]
    except Exception:
        return b"?"


def _check_settings(  # noqa: PLR0917 - the settings, in the Receiver's order
    uuid: object,
    poll_interval: object,
    batch: object,
    backlog: object,
    ttl: object,
    warn_every: object,
) -> None:
    if not isinstance(uuid, bytes) or not 0 < len(uuid) <= MAX_UUID_LEN or uuid[0] == 0:
        raise ConfigurationError(
            f"uuid must be 1..{MAX_UUID_LEN} bytes not starting with a zero byte, got {uuid!r}"
        )
    check_seconds("poll_interval", poll_interval)
    check_seconds("ttl", ttl)
    check_seconds("warn_every", warn_every, zero_ok=True)
    check_count("batch", batch)
    check_count("backlog", backlog)
