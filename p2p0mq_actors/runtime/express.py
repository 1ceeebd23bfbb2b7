"""The express gate: from the application to an idle peer's socket, with no
actor hop when the socket takes the message at once.

Rules:
- The Scheduler opens a peer's gate when the peer is idle (nothing queued,
  no plan in flight, writable) and counts that peer as having a plan in
  flight from then on: it plans nothing for it until the gate is closed.
- A sender with a fast message for that peer may claim the gate (once:
  claiming closes it). Holding the claim, it sends the message itself on
  the peer's socket through the connection's ``DirectLane``, under the
  lane's lock, and hands the gate back open. The connection still owns the
  socket: it creates, polls, renews and closes it, and holds the same lock
  whenever it uses it; the claim means no plan of its own is running.
- If the lane cannot send at once (socket not writable, expired message,
  encode error, socket gone), nothing was sent: the sender tells the
  PeerConnection a one-message plan instead, which deals with it as any
  plan, skipping the Scheduler's thread.
- When that plan went out whole (the socket did not block), the
  PeerConnection hands the gate back open (``hand_back``), still counted
  busy, and tells the Scheduler nothing: an express message costs one tell,
  not two, and no Scheduler wake-up. Otherwise (blocked, closed, or the
  Scheduler asked for the gate meanwhile) its result goes to the Scheduler
  like any other plan's, and the Scheduler opens the gate again when the
  peer is idle.
- When the Scheduler gets work for a peer with an open gate it closes the
  gate itself first; whoever takes the gate (claim or close) wins, under one
  lock, so no peer ever has two plans in flight. A close that finds the gate
  claimed takes the claim away: that plan's result then goes to the
  Scheduler, which counts the peer busy until it arrives.
- A lane whose last ``BURST_STREAK`` sends came each within
  ``BURST_WINDOW`` of the one before, the last less than that ago, is in a
  burst: the next fast message for that peer goes to the intake, so a
  stream of sends reaches the peer in the Scheduler's plans. On the native
  wire those travel in batch frames (one zmq message and one CURVE box per
  64, not one each); on p2p0mq's wire the connection sends them back to
  back, and the application thread only queues. A few messages at a time
  (a request, a reply, the requests that a batch of replies sets off)
  still go straight out. Measured with ``send()`` in a loop between two
  processes: native 97k to 127-151k msg/s (then with a streak of one);
  p2p0mq's wire, our sending side alone on one CPU, 110k to 144-160k.
- A ``send_many`` of fast messages all for one peer (``Intake.express_many``)
  claims the gate the same way, ``EXPRESS_MANY`` messages at a time, and
  the lane sends each such run in the caller's thread in as few zmq
  messages as the wire allows (``bulk.py``: batch frames of up to 64 on the
  native wire), holding the turns lock as a plan does (``turns.py``). It
  stops before an expired or unencodable message and where the socket
  would block. If the socket took none of the run, the gate is handed
  back as it was and the call queues its messages as any others (it may
  wait for room, or raise, having sent nothing); if it took some, the
  next message goes to the connection as a one-message plan, as a single
  message that could not go does, and the rest is queued at once, room
  or not, as a batch put in an empty intake is: a call never fails after
  part of it went out. A message whose send raised anything but
  ``WouldBlock`` is failed, not sent again (``PeerSocket.send_each``). The
  connection then has nothing to do for such a call, and the Scheduler
  nothing: with ``send_many`` of 1,000 on the native wire (``python -m
  bench.cpu --wire native --send-many``) the sending process used 1.7-1.9
  us of CPU a message instead of 2.1, its collector 1 full collection a
  run instead of 6.
- A peer removed and added again has a new connection: a hand-back names
  the connection its claim was for, and leaves a claim on the newer one
  alone; a plan's result names the connection that ran it
  (``PlanResult.source``), and the Scheduler does not take an older
  connection's result for the newer one's.
- The gate shares the intake's lock: a sender claims only while the intake
  is empty, and the Scheduler closes the gates of the peers it takes work
  for in the same step as it empties the intake, so a direct message never
  overtakes one of the same sender's that is still on its way.
"""

from __future__ import annotations

import contextlib
import operator
import threading
from collections.abc import Callable, Sequence
from typing import Any, Final

import pykka

from ..core.codec import MAX_MESSAGE_SIZE, Encoder, WireShape
from ..core.errors import SendError
from ..core.fairness import PlanResult, sent_but
from ..core.message import Message
from ..core.ports import Clock, PeerSocket
from .bulk import BulkSend
from .outcomes import ConcernRegistry, listens_to_sent, report_failed, report_sent
from .turns import TURNS

_DEADLINE: Final = operator.attrgetter("deadline")
_COMMAND: Final = operator.attrgetter("command")


class ExpressGate:
    """Which idle peers may be sent to directly; thread-safe."""

    def __init__(self, lock: threading.Lock | None = None) -> None:
        self._lock = lock or threading.Lock()
        self._open: dict[bytes, Any] = {}
        self._claimed: dict[bytes, Any] = {}
        self._lanes: dict[bytes, DirectLane] = {}
        self._quiet_retired = 0  # quiet sends of lanes removed since

    def add_lane(self, peer: bytes, lane: DirectLane) -> None:
        """Let claims on ``peer``'s gate send through ``lane`` (its connection's)."""
        with self._lock:
            self._lanes[peer] = lane

    def remove_lane(self, peer: bytes, lane: DirectLane) -> None:
        """Forget ``lane`` (if it is still ``peer``'s)."""
        with self._lock:
            if self._lanes.get(peer) is lane:
                del self._lanes[peer]
                self._quiet_retired += lane.quiet

    def quiet_sent(self) -> int:
        """Messages sent through the lanes that no Concern listened to: they
        are counted here, not reported one by one (``DirectLane.quiet``)."""
        with self._lock:
            return self._quiet_retired + sum(lane.quiet for lane in self._lanes.values())

    def lane(self, peer: bytes) -> DirectLane | None:
        """``peer``'s lane, if its connection gave one."""
        return self._lanes.get(peer)

    def open(self, peer: bytes, ref: Any) -> None:
        """Let one fast message go straight to ``peer`` (the Scheduler calls this)."""
        with self._lock:
            self._open[peer] = ref

    def close(self, peer: bytes) -> bool:
        """Take the gate back; False if someone claimed it first (its plan's
        result then comes to the Scheduler)."""
        with self._lock:
            return self._close_one(peer)

    def close_locked(self, peers: set[bytes]) -> list[bytes]:
        """Close several gates; the caller holds the lock. Returns those closed."""
        return [peer for peer in peers if self._close_one(peer)]

    def _close_one(self, peer: bytes) -> bool:
        if self._open.pop(peer, None) is not None:
            return True
        self._claimed.pop(peer, None)
        return False

    def claim_locked(self, peer: bytes) -> Any:
        """Take the gate to tell ``peer`` directly (the caller holds the lock):
        its PeerConnection ref, or None if the gate is shut."""
        ref = self._open.pop(peer, None)
        if ref is not None:
            self._claimed[peer] = ref
        return ref

    def hand_back(self, peer: bytes, *, reopen: bool, owner: Any = None) -> bool:
        """End a claim (the PeerConnection calls this when the claimed plan is
        done). With ``reopen``, open the gate again if the claim still
        stands: True means the Scheduler needs no result for that plan.

        ``owner``, if given, is the connection the claim was for: a claim
        on another connection of the peer (it was removed and added again
        meanwhile) is someone else's, and is left alone."""
        with self._lock:
            ref = self._claimed.get(peer)
            if ref is None or (owner is not None and _urn(ref) != _urn(owner)):
                return False
            del self._claimed[peer]
            if not reopen:
                return False
            self._open[peer] = ref
            return True

    def close_all(self) -> None:
        with self._lock:
            self._open.clear()
            self._claimed.clear()

    def __repr__(self) -> str:
        return f"<ExpressGate open={len(self._open)} claimed={len(self._claimed)}>"


def _urn(ref: Any) -> Any:
    """An actor ref's urn (anything else stands for itself)."""
    return getattr(ref, "actor_urn", ref)


BURST_WINDOW: Final = 0.0002
"""Seconds between direct sends that make them a streak, and after the
last during which a streak is a burst (see ``BURST_STREAK``)."""
BURST_STREAK: Final = 16
"""Direct sends in a streak that make a burst: the next fast message for
the same peer goes to the intake instead (and out in the Scheduler's
plans). Requests kept 100 in flight lost 10 % of their rate when every
send in a streak counted (the intake's hops cost them more than batching
gains); a loop of ``send()`` calls is a burst after 16 of them either way."""


class DirectLane:
    """A PeerConnection's socket, lent to whoever holds the peer's express
    gate claim: one message is encoded and sent in the caller's thread,
    under the lane's lock (see the rules above).

    The connection ``attach``-es its socket when it has one and attaches
    None before closing it, and holds ``lock`` whenever it uses the socket
    itself, so the socket is never used by two threads at once and every
    hand-over between threads passes a lock (zmq's rule for moving a socket
    between threads).
    """

    def __init__(
        self,
        peer: bytes,
        *,
        shape: WireShape,
        clock: Clock,
        concerns: ConcernRegistry,
        gate: ExpressGate,
        tell_scheduler: Callable[[object], None],
        max_frame: int | None = MAX_MESSAGE_SIZE,
    ) -> None:
        self.peer = peer
        self.lock = threading.Lock()
        # Its own packer: callers' threads vary. A message over ``max_frame``
        # is not sent here: the connection fails it, as any unencodable one.
        self._encode = Encoder(shape, max_frame)
        self._bulk = BulkSend(peer, self._encode)  # deliver_many's sends
        self._clock = clock
        self._concerns = concerns
        self._gate = gate
        self._tell_scheduler = tell_scheduler
        self._socket: PeerSocket | None = None
        self._last = -BURST_WINDOW  # when the lane last sent
        self._streak = 0  # sends in a row each within BURST_WINDOW of the one before
        self.sent = 0
        # Sends no Concern listens to: counted here (under ``lock``), and
        # added to the node's "sent" count when it is asked for, so that a
        # send costs no report and no other lock.
        self.quiet = 0
        self.owner: Any = None  # the connection's ref: it reports sends in batches
        self._unreported: list[Message] = []
        self._unreported_lock = threading.Lock()  # held briefly; never waits for a send

    def in_burst(self) -> bool:
        """Whether this lane's last ``BURST_STREAK`` sends came in a streak
        that goes on (the last less than ``BURST_WINDOW`` ago): a stream of
        sends is then left to the Scheduler, which sends it in plans."""
        return self._streak >= BURST_STREAK and self._clock.now() - self._last < BURST_WINDOW

    def attach(self, socket: PeerSocket | None) -> None:
        """Lend ``socket`` (None: lend nothing); the caller holds ``lock``."""
        self._socket = socket

    def deliver(self, message: Message) -> bool:
        """Send ``message`` now (the caller holds the gate's claim); True if
        it went out whole: it is reported sent and the claim is over.

        False if nothing was sent: the caller still holds the claim and
        gives the message to the connection as a plan.
        """
        concerns = self._concerns
        try:
            with self.lock:
                socket = self._socket
                if socket is None:
                    return False
                now = self._clock.now()
                if message.deadline <= now:
                    return False  # the connection reports it dropped
                try:
                    socket.send_frames(self._encode(message, now))
                except Exception:  # would block, cannot encode, transport: nothing went out
                    return False
                # The books after the send: a round trip waits for the send only.
                listens = listens_to_sent(concerns.get(message.command))
                self.sent += 1
                self._streak = self._streak + 1 if now - self._last < BURST_WINDOW else 1
                self._last = now
                if listens:  # noted before the socket's lock is let go: a
                    # connection that stops (it detaches under that lock) finds it
                    with self._unreported_lock:
                        self._unreported.append(message)
                        first = len(self._unreported) == 1
                else:
                    self.quiet += 1
        except BaseException:  # an interrupt, say: the claim must not be left taken
            self._abandon_claim()
            raise
        self._end_claim()
        # A Concern that listens (``on_sent``) hears of sends in batches: the
        # first unreported one tells the connection, which reports all that
        # wait then; a loop of express sends costs one tell per batch, not
        # per message. With no connection (any more) they are reported now.
        if listens and first and not self._tell_owner():
            report_sent(concerns, self.take_unreported())
        return True

    def deliver_many(self, messages: Sequence[Message]) -> int:
        """Send ``messages`` (two or more, fast, all for this peer; the
        caller holds the gate's claim) now, in order, in as few zmq messages
        as the wire allows (``bulk.py``): how many it took, from the first.
        A message whose send raised anything but ``WouldBlock`` is taken
        too, and reported failed, as a plan's would be (it was tried).

        It stops before a message that has expired, one that does not
        encode, and where the socket would block. When it took them all, or
        none, the claim is over (the gate handed back as after ``deliver``);
        otherwise the caller still holds it, and gives the next message to
        the connection as a plan.
        """
        concerns = self._concerns
        failed: list[tuple[Message, SendError]] = []
        held = True  # the claim, until it is handed back or left to the caller
        try:
            with TURNS, self.lock:  # a batch's sends: see turns.py
                socket = self._socket
                if socket is None:
                    held = False
                    self._end_claim()
                    return 0
                now = self._clock.now()
                live = messages
                if min(map(_DEADLINE, messages)) <= now:
                    live = messages[: next(i for i, m in enumerate(messages) if m.deadline <= now)]
                taken = 0
                if live:
                    taken, failed = self._bulk(socket, live, now, lone_last=True)
                if not taken:  # nothing changed: the caller queues them as any others
                    held = False
                    self._end_claim()
                    return 0
                sent: Sequence[Message] = messages[:taken]
                if failed:
                    sent = sent_but(sent, failed)
                heard = _listened(concerns, sent)
                self.sent += len(sent)
                self.quiet += len(sent) - len(heard)
                self._streak = self._streak + 1 if now - self._last < BURST_WINDOW else 1
                self._last = now
                first = False
                if heard:  # noted under the socket's lock, as in ``deliver``
                    with self._unreported_lock:
                        first = not self._unreported
                        self._unreported.extend(heard)
        except BaseException:  # an interrupt, say: what went out is unknown
            if held:
                self._abandon_claim()
            raise
        if taken == len(messages):
            self._end_claim()
        if first and not self._tell_owner():
            report_sent(concerns, self.take_unreported())
        if failed:
            report_failed(concerns, failed)
        return taken

    def _abandon_claim(self) -> None:
        """End a claim whose sends are in doubt: the Scheduler, which counts
        the peer busy until it hears of a result, hears of an empty one."""
        self._gate.hand_back(self.peer, reopen=False, owner=self.owner)
        self._tell_done()

    def _end_claim(self) -> None:
        """Hand the gate back open: what the claim was for went out whole,
        or (``deliver_many``) none of it did."""
        if not self._gate.hand_back(self.peer, reopen=True, owner=self.owner):
            # The Scheduler asked for the gate meanwhile: it counts the peer
            # busy until this plan's result comes, and nothing is queued in
            # the connection (its peer was idle when the gate opened).
            self._tell_done()

    def _tell_done(self) -> None:
        """Tell the Scheduler the claim's plan is over, with nothing left."""
        with contextlib.suppress(pykka.ActorDeadError):  # stopping: nobody waits
            source = "" if self.owner is None else str(_urn(self.owner))
            self._tell_scheduler(PlanResult(self.peer, 0, 0, source=source))

    def _tell_owner(self) -> bool:
        """Ask the connection to report the sends waiting; False if there is
        none to ask."""
        if self.owner is None:
            return False
        try:
            self.owner.tell(REPORT_SENT)
        except pykka.ActorDeadError:
            return False
        return True

    @property
    def unreported(self) -> int:
        """How many sends wait to be reported."""
        return len(self._unreported)

    def take_unreported(self) -> list[Message]:
        """The sends not reported yet, oldest first (the connection reports them)."""
        with self._unreported_lock:
            taken, self._unreported = self._unreported, []
        return taken

    def __repr__(self) -> str:
        return f"<DirectLane {self.peer!r} sent={self.sent}>"


class _ReportSent:
    def __repr__(self) -> str:
        return "REPORT_SENT"


REPORT_SENT: Final = _ReportSent()


def _listened(concerns: ConcernRegistry, messages: Sequence[Message]) -> list[Message]:
    """Those of ``messages`` whose Concern listens to ``on_sent``."""
    commands = set(map(_COMMAND, messages))
    if len(commands) == 1:  # the usual batch: one command (Node.messages)
        return list(messages) if listens_to_sent(concerns.get(commands.pop())) else []
    listening = {c for c in commands if listens_to_sent(concerns.get(c))}
    return [m for m in messages if m.command in listening]


"""Told to a PeerConnection when its lane has sends to report."""
