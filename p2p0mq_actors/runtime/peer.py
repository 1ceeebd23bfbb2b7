"""PeerConnection: the actor that owns one peer's socket and medium queue.

It carries out the plans the Scheduler hands it (``core.fairness.run_plan``),
reports each batch's outcomes to the owning Concerns, and its result (with
its true medium length) to the Scheduler. When the socket is not writable
it stops at once, keeps everything in order, and polls in short steps until
it is writable again; a peer that stays unwritable too long, or refuses the
handshake, turns what it holds into failures.
"""

from __future__ import annotations

import contextlib
import logging
import math
import operator
import threading
import time
from collections import deque
from collections.abc import Callable, Sequence
from dataclasses import replace
from typing import Any, Final

import pykka

from ..core.codec import MAX_MESSAGE_SIZE, Encoder, WireShape
from ..core.errors import (
    EncodeError,
    PeerRefusedError,
    PeerUnreachableError,
    SendError,
    UnencodableError,
    UnexpectedSendError,
    WouldBlock,
    detached,
)
from ..core.fairness import Plan, PlanResult, SendAll, run_plan, sent_but
from ..core.message import Message
from ..core.native import batch_frame, single_frame
from ..core.ports import Clock, PeerAddress, PeerSocket, SocketEvent, SocketFactory
from .actor import Actor
from .bulk import FRAME_MESSAGES, BulkSend, frame_error
from .express import REPORT_SENT, DirectLane, ExpressGate
from .messages import FLUSH, Flush, PeerBlocked, PeerFailed, PeerGone, PeerWritable, Shutdown
from .outcomes import ConcernRegistry, report_dropped, report_failed, report_sent
from .turns import TURNS

log = logging.getLogger("p2p0mq_actors.runtime.peer")


class _Poll:
    """Self-message: one step of waiting for the socket to become writable."""


_POLL = _Poll()
_FIRST_RENEW = 0.1
_DEADLINE: Final = operator.attrgetter("deadline")
REPORT_BATCH: Final = 64
REPORT_PACE: Final = 0.001
_BATCH_HEAD_BYTES: Final = 5  # a batch frame's bytes before its bodies, at most


class PeerConnection(Actor):
    """One remote peer: its CURVE DEALER socket and its medium queue.

    Args:
        peer: who and where the peer is.
        scheduler: ref of the node's Scheduler.
        concerns: where outcomes go.
        sockets: creates the socket, in this actor's thread, in ``on_start``.
        clock: time source.
        shape: the wire shape this peer understands.
        unreachable_after: seconds of an unwritable socket before what is
            queued fails with ``PeerUnreachableError``.
        poll_interval: the longest single wait for writability (keeps
            ``stop`` and other messages responsive).
        renew_after: the longest wait, after a refused handshake, before a
            new socket tries again (libzmq does not retry a socket whose key
            was refused); the first wait is 0.1 s, doubling.
        refused_grace: seconds the handshake may keep failing before what is
            queued fails with ``PeerRefusedError`` (two peers that add each
            other's keys at about the same time refuse each other briefly).
        gate: the node's express gate, handed back open after an express
            plan that went out whole (``express.py``).
        start_failed: told ``(its actor urn, the exception)`` if its socket
            cannot be made as it starts (the actor then stops); the Scheduler
            is told instead when none is given. The ``Sender`` passes one, to
            raise the error from ``connect_peers``.
        max_frame: the longest frame it sends, in bytes (None: no limit); a
            message that does not fit fails with ``UnencodableError`` (a
            receiver would drop the connection on it). The peer's
            ``max_message_size``.
    """

    def __init__(
        self,
        peer: PeerAddress,
        *,
        scheduler: Any,
        concerns: ConcernRegistry,
        sockets: SocketFactory,
        clock: Clock,
        shape: WireShape = WireShape.V011,
        unreachable_after: float = 10.0,
        poll_interval: float = 0.02,
        renew_after: float = 2.0,
        refused_grace: float = 1.0,
        gate: ExpressGate | None = None,
        max_frame: int | None = MAX_MESSAGE_SIZE,
        start_failed: Callable[[str, BaseException], None] | None = None,
    ) -> None:
        super().__init__()
        self.peer = peer
        self._start_failed = start_failed
        self._scheduler = scheduler
        self._concerns = concerns
        self._sockets = sockets
        self._clock = clock
        self._encode = Encoder(shape, max_frame)
        self._gate = gate
        self._lane: DirectLane | None = None
        if gate is not None:
            self._lane = DirectLane(
                peer.uuid,
                shape=shape,
                clock=clock,
                concerns=concerns,
                gate=gate,
                tell_scheduler=scheduler.tell,
                max_frame=max_frame,
            )
        # Held whenever this actor uses its socket: the lane's (express.py).
        self._socket_lock = self._lane.lock if self._lane is not None else threading.Lock()
        self._unreachable_after = unreachable_after
        self._poll_interval = poll_interval
        self._renew_after = renew_after
        self._renew_at: float | None = None
        self._renew_delay = _FIRST_RENEW
        self._refused_grace = refused_grace
        self._refused_since: float | None = None
        self._socket: PeerSocket | None = None
        self._each: SendAll | None = None  # p2p0mq's wire: _send_fast, if the socket can
        self._medium: deque[Message] = deque()
        # No message in _medium has an earlier deadline: while blocked, a
        # poll scans the queue for expired messages only once one may be
        # (a scan of a flood's 100,000 held the GIL for 6-10 ms, each poll).
        self._earliest = math.inf
        self._blocked_since: float | None = None
        self._closed = False
        self._error: SendError | None = None  # why it closed, if it failed
        self._now = 0.0  # when the plan being carried out started (native TTLs)
        self._proven = False  # a send went through at least once
        self._sent = 0
        # Native wire: a plan's messages go out in batch frames (native.py).
        self._batching = shape is WireShape.NATIVE
        self._bodies: list[bytes] = []
        self._batched: list[Message] = []
        self._batch_bytes = 0
        self._bulk = BulkSend(peer.uuid, self._encode)  # a plan's fast messages
        self._frame_bytes = self._bulk.frame_bytes
        self._lost: list[tuple[Message, SendError]] = []  # in frames that failed

    # -- life cycle --------------------------------------------------------

    def on_start(self) -> None:
        try:
            socket = self._sockets.connect(self.peer)
        except Exception as exc:
            if self._start_failed is None:
                self._gone(exc)
                raise  # pykka logs it, stops this actor, and calls no on_failure
            self._start_failed(self.actor_urn, exc)  # raised where it was asked for
            self.stop()
            return
        self._set_socket(socket)
        if self._lane is not None and self._gate is not None:
            self._lane.owner = self.actor_ref
            self._gate.add_lane(self.peer.uuid, self._lane)

    def _set_socket(self, socket: PeerSocket | None) -> None:
        """Replace the socket (closing the old one), lending the new one to
        the lane; the lane's lock makes an express send in flight finish first."""
        with self._socket_lock:
            if self._socket is not None:
                self._socket.close()
            self._socket = socket
            # A PeerSocket of the application's written without send_each
            # still works: a plan's messages then go out one call each.
            self._each = self._send_fast if hasattr(socket, "send_each") else None
            if self._lane is not None:
                self._lane.attach(socket)

    def on_stop(self) -> None:
        self._shutdown()

    def on_failure(self, *exc_info: Any) -> None:
        """A bug, or a socket that could not be renewed: what this connection
        holds fails with it, and the Scheduler forgets the peer (it would
        otherwise hold the peer's messages for a connection that is gone)."""
        error = self._gone(exc_info[1])
        self._shutdown(error)

    def _gone(self, exc: BaseException) -> SendError:
        """Tell the Scheduler this connection is gone, and why; the error its
        messages fail with."""
        if isinstance(exc, SendError):
            error: SendError = detached(exc)
        else:
            error = UnexpectedSendError(
                f"the connection to peer {self.peer.uuid!r} at {self.peer.endpoint} failed: "
                f"{type(exc).__name__}: {exc}",
                peer=self.peer.uuid,
            )
            error.__cause__ = exc
        with contextlib.suppress(pykka.ActorDeadError):
            self._scheduler.tell(PeerGone(self.peer.uuid, self.actor_urn, error))
        return error

    def _shutdown(self, error: SendError | None = None) -> None:
        self._closed = True
        self._error = self._error or error
        self._set_socket(None)  # an express send in flight ends first; none after it
        if self._lane is not None and self._gate is not None:
            self._gate.remove_lane(self.peer.uuid, self._lane)  # (counts the lane's sends)
        self._report_lane()
        if self._medium:
            self._end_held(list(self._medium))
            self._medium.clear()

    def _end_held(self, messages: list[Message]) -> None:
        """What this closed connection holds ends: dropped ``"stopped"`` if
        the node stops, else failed with the connection's error (the node
        goes on: their Concerns decide)."""
        if self._error is None:
            report_dropped(self._concerns, [(m, "stopped") for m in messages])
        else:
            report_failed(self._concerns, [(m, self._error) for m in messages])

    def on_left(self, messages: list[Any]) -> None:
        # A plan told after the stop was asked for, before the actor stopped
        # (the Scheduler had not yet heard of a remove_peer, or an
        # application thread went through the gate), would be dropped
        # unseen: its messages would never end, and the Scheduler would
        # never hear the plan's result. Each is given back as one that came
        # after the close (which comes first: on_stop follows).
        self._shutdown()
        for message in messages:
            if isinstance(message, Plan):
                try:  # each on its own: one that fails costs no other
                    self._return_unrun(message)
                except Exception:
                    log.exception("%r: giving back a plan left at its stop failed", self)

    # -- messages ----------------------------------------------------------

    def on_receive(self, message: Any) -> Any:
        if isinstance(message, Plan):
            self._run(message)
        elif message is REPORT_SENT:
            self._report_lane(pace=True)
        elif message is _POLL:
            self._poll()
        elif isinstance(message, Shutdown):
            self._shutdown(message.error)
        elif isinstance(message, Flush):
            return FLUSH
        else:
            log.warning("%r: unexpected message %r", self, message)
        return None

    def _report_lane(self, *, pace: bool = False) -> None:
        """Report what went out through the lane. With ``pace``, after a
        small batch wait ``REPORT_PACE`` seconds, so that during a stream of
        express sends the next report is a batch: otherwise this thread
        wakes, and tells the Concern, for every message or two of the stream
        (measured: batches of 13 at 0.5 ms only when more were waiting, 75
        at 1 ms always). It delays ``on_sent`` by at most that much and
        nothing else: an open gate means this connection has no plan to run,
        and a plan or a stop told meanwhile waits at most that long."""
        lane = self._lane
        if lane is None:
            return
        sent = lane.take_unreported()
        if sent:
            report_sent(self._concerns, sent)
        if pace and len(sent) < REPORT_BATCH:
            time.sleep(REPORT_PACE)

    def _send(self, message: Message) -> None:
        try:
            frames = self._encode(message, self._now)
        except EncodeError as exc:
            raise UnencodableError(str(exc), peer=self.peer.uuid) from exc
        assert self._socket is not None
        self._socket.send_frames(frames)

    def _send_fast(self, messages: list[Message]) -> tuple[int, list[tuple[Message, SendError]]]:
        """A plan's fast messages, in as few calls as the wire allows
        (``bulk.py``: frames of up to ``FRAME_MESSAGES`` on the native
        wire, chunks encoded in one pass on p2p0mq's). A message (a native
        frame's messages) the socket fails fails alone, and the rest goes
        on. Stops where the socket would block, and where a message needs
        the care of ``_send`` or ``_add_to_frame`` (one that does not
        encode, two that overflow a frame, a native plan's last lone
        message), which go on from there, one message at a time, and name
        the culprit."""
        assert self._socket is not None and not self._bodies
        return self._bulk(self._socket, messages, self._now)

    def _add_to_frame(self, message: Message) -> None:
        """Native wire: put ``message`` in the frame being filled. A frame is
        begun only when the socket would take it now, so it goes out when
        full or at the end of the plan (``_send_frame``), or before a
        message that would take it past ``max_frame``; as a zmq message
        is sent whole or not at all, a frame that still fails (the
        connection dropped meanwhile) fails the messages in it."""
        if not self._bodies:
            self._check_writable()
        try:  # (the encoder refuses a body too long for a frame of its own)
            body = self._encode.body(message, self._now)
        except EncodeError as exc:
            raise UnencodableError(str(exc), peer=self.peer.uuid) from exc
        size, limit = len(body), self._encode.limit
        if self._bodies and self._batch_bytes + size + _BATCH_HEAD_BYTES > limit:
            self._send_frame()
            self._check_writable()
        self._bodies.append(body)
        self._batched.append(message)
        self._batch_bytes += size
        if len(self._bodies) >= FRAME_MESSAGES or self._batch_bytes >= self._frame_bytes:
            self._send_frame()

    def _check_writable(self) -> None:
        assert self._socket is not None
        if not self._socket.writable():
            raise WouldBlock(f"peer {self.peer.uuid!r} is not writable", peer=self.peer.uuid)

    def _send_frame(self) -> None:
        bodies, messages = self._bodies, self._batched
        if not bodies:
            return
        self._bodies, self._batched, self._batch_bytes = [], [], 0
        frame = single_frame(bodies[0]) if len(bodies) == 1 else batch_frame(bodies)
        try:
            assert self._socket is not None
            self._socket.send_frames([frame])
        except Exception as exc:  # the frame's messages fail; the connection goes on
            error = frame_error(self.peer.uuid, exc, len(messages))
            self._lost.extend((m, error) for m in messages)

    def _run(self, plan: Plan) -> None:
        if self._closed or self._blocked_since is not None:
            self._return_unrun(plan)
            return
        now = self._now = self._clock.now()
        if plan.new_medium:
            self._note_deadlines(plan.new_medium)
        with TURNS, self._socket_lock:  # see turns.py and express.py
            if self._batching:
                run = run_plan(plan, self._medium, self._add_to_frame, now, self._send_fast)
            else:
                run = run_plan(plan, self._medium, self._send, now, self._each)
            self._send_frame()
        if self._lost:
            lost, self._lost = self._lost, []
            run.sent = sent_but(run.sent, lost)
            run.failed.extend(lost)
        self._sent += len(run.sent)
        self._proven = self._proven or bool(run.sent)
        if run.sent:  # before the result: no later epoch's sends are heard of first
            report_sent(self._concerns, run.sent)
        if not (plan.through_gate and self._hand_back(run.result)):
            self._tell_scheduler(run.result)
        if run.expired:
            report_dropped(self._concerns, [(m, "ttl") for m in run.expired])
        if run.failed:
            report_failed(self._concerns, run.failed)
        if run.result.blocked:  # (connection events matter only while blocked)
            self._blocked_since = now
            self.actor_ref.tell(_POLL)

    def _hand_back(self, result: PlanResult) -> bool:
        """End an express plan's claim on the gate; True if it is open again
        (the plan went out whole), so the Scheduler needs no result."""
        if self._gate is None:
            return False
        whole = not result.blocked and result.medium_len == 0
        return self._gate.hand_back(result.peer, reopen=whole, owner=self.actor_ref)

    def _return_unrun(self, plan: Plan) -> None:
        """A plan that arrived while blocked or closed: give it all back."""
        if plan.through_gate and self._gate is not None:
            self._gate.hand_back(plan.peer, reopen=False, owner=self.actor_ref)
        if self._closed:
            self._end_held(plan.messages())
        elif plan.new_medium:
            self._note_deadlines(plan.new_medium)
            self._medium.extend(plan.new_medium)
        self._tell_scheduler(
            PlanResult(
                peer=plan.peer,
                epoch=plan.epoch,
                medium_len=len(self._medium),
                unsent_fast=() if self._closed else plan.fast,
                unsent_slow=() if self._closed else plan.slow,
                blocked=not self._closed,
            )
        )

    def _tell_scheduler(self, event: object) -> None:
        if isinstance(event, PlanResult):  # said to be this connection's
            event = replace(event, source=self.actor_urn)
        try:
            self._scheduler.tell(event)
        except pykka.ActorDeadError:
            if isinstance(event, PlanResult):
                gone = event.unsent()
                report_dropped(self._concerns, [(m, "stopped") for m in gone])

    # -- waiting for the socket ---------------------------------------------

    def _read_events(self, now: float) -> None:
        assert self._socket is not None
        for event in self._socket.events():
            if event is SocketEvent.HANDSHAKE_SUCCEEDED:
                self._refused_since, self._renew_delay = None, _FIRST_RENEW
            elif event is SocketEvent.HANDSHAKE_FAILED:
                if self._refused_since is None:
                    self._refused_since = now
                if self._renew_at is None:
                    # libzmq never reconnects a socket whose key the server's
                    # ZAP refused: only a new socket tries again (the peer may
                    # be adding our key right now), with a growing delay.
                    self._renew_at = now + self._renew_delay
                    self._renew_delay = min(2 * self._renew_delay, self._renew_after)

    def _poll(self) -> None:
        if self._closed or self._blocked_since is None or self._socket is None:
            return
        with self._socket_lock:
            writable = self._socket.wait_writable(self._poll_interval)
        now = self._clock.now()
        self._read_events(now)
        self._expire(now)
        if writable:
            self._blocked_since = self._refused_since = None
            self._proven = True
            self._tell_scheduler(PeerWritable(self.peer.uuid, len(self._medium)))
            return
        refused = self._refused_since is not None and (
            now - self._refused_since >= self._refused_grace
        )
        if refused or now - self._blocked_since >= self._unreachable_after:
            self._fail_all(now, refused=self._refused_since is not None)
            # The next wave comes after another grace period or another
            # ``unreachable_after``, if the peer is still not writable.
            self._blocked_since = now
            if refused:
                self._refused_since = now
        if self._renew_at is not None and now >= self._renew_at:
            self._renew_socket()
        self.actor_ref.tell(_POLL)

    def _renew_socket(self) -> None:
        assert self._socket is not None
        log.info("%r: opening a new socket after a refused handshake", self)
        self._set_socket(None)
        self._renew_at = None
        self._set_socket(self._sockets.connect(self.peer))

    def _note_deadlines(self, messages: Sequence[Message]) -> None:
        """Keep ``_earliest`` a bound for ``messages`` joining the queue."""
        earliest = min(map(_DEADLINE, messages))
        self._earliest = min(self._earliest, earliest)

    def _expire(self, now: float) -> None:
        """While blocked: drop what expired in the queue, and tell the
        Scheduler its new length (it counts against the node's bound)."""
        if now < self._earliest:
            return  # nothing in the queue can have expired yet
        expired: list[Message] = []
        live: list[Message] = []
        for m in self._medium:
            (live if m.deadline > now else expired).append(m)
        self._earliest = min(map(_DEADLINE, live), default=math.inf)
        if expired:
            self._medium = deque(live)
            report_dropped(self._concerns, [(m, "ttl") for m in expired])
            self._tell_scheduler(PeerBlocked(self.peer.uuid, len(live)))

    def _fail_all(self, now: float, *, refused: bool) -> None:
        error: SendError
        if refused:
            error = PeerRefusedError(
                f"peer {self.peer.uuid!r} at {self.peer.endpoint} refused the CURVE "
                "handshake: check its public key, and that it knows ours",
                peer=self.peer.uuid,
            )
        else:
            error = PeerUnreachableError(
                f"peer {self.peer.uuid!r} at {self.peer.endpoint} not writable for "
                f"{now - (self._blocked_since or now):.1f} s",
                peer=self.peer.uuid,
            )
        log.info("%r: failing queued messages: %s", self, error)
        if self._medium:
            report_failed(self._concerns, [(m, error) for m in self._medium])
            self._medium.clear()
        self._tell_scheduler(PeerFailed(self.peer.uuid, error))

    @property
    def sent_count(self) -> int:
        """Messages sent so far, by plans and through the express lane."""
        return self._sent + (self._lane.sent if self._lane is not None else 0)

    @property
    def direct_count(self) -> int:
        """Of those, the messages sent through the express lane, from the
        application's threads (``express.py``)."""
        return self._lane.sent if self._lane is not None else 0

    @property
    def medium_len(self) -> int:
        """How many medium messages wait in this peer's queue."""
        return len(self._medium)

    @property
    def state(self) -> str:
        """CONNECTING (nothing sent yet), READY, BLOCKED (not writable),
        REFUSED (the handshake failed) or CLOSED."""
        if self._closed:
            return "CLOSED"
        if self._blocked_since is None:
            proven = self._proven or (self._lane is not None and self._lane.sent > 0)
            return "READY" if proven else "CONNECTING"
        if self._refused_since is not None:
            return "REFUSED"
        return "BLOCKED"

    def __repr__(self) -> str:
        return (
            f"<PeerConnection {self.peer.uuid!r} {self.peer.endpoint} {self.state} "
            f"medium={len(self._medium)} sent={self.sent_count}>"
        )
