"""Scheduler: the actor that runs the rounds (``core.planner.Planner``).

It never touches a socket. It takes work in batches, hands each peer its
plan with one tell, runs epochs back to back while work is queued and goes
idle (no timer, no polling) when nothing is. Decisions of Concerns come back
as ``Retry`` tells; delayed retries wait on the clock.
"""

from __future__ import annotations

import contextlib
import logging
import random
from collections import deque
from collections.abc import Iterable, Sequence
from typing import Any, Final

import pykka

from ..core.errors import NoPeerError, SendError
from ..core.fairness import Plan, PlanResult, Shuffle
from ..core.message import Message
from ..core.planner import MAX_ROUNDS, REPLY_BACKLOG, Planner
from ..core.ports import Clock, TimerHandle
from .actor import Actor
from .intake import Intake
from .messages import (
    FLUSH,
    AddPeer,
    Enqueue,
    Flush,
    PeerBlocked,
    PeerFailed,
    PeerGone,
    PeerWritable,
    RemovePeer,
    Retry,
    Shutdown,
)
from .outcomes import ConcernRegistry, report_dropped, report_failed

log = logging.getLogger("p2p0mq_actors.runtime.scheduler")


class _Wake:
    """Self-message: a timer fell due (deferred retries, or pacing)."""


_WAKE = _Wake()


OVERFLOW_WARN_EVERY: Final = 10.0
"""Seconds between two warnings that replies were dropped (``"peer-backlog"``)."""


class TakeIntake:
    """Told by the intake when it goes from empty to not empty."""


TAKE_INTAKE = TakeIntake()


class Scheduler(Actor):
    """Runs the fast / medium / slow rounds for one node.

    Args:
        concerns: where outcomes of messages it drops or fails go.
        clock: time source and timers.
        max_rounds: the longest plan, in rounds (Q).
        pacing: if > 0, the least time between the starts of two epochs.
        shuffle: shuffles the order of peers in each epoch (injectable for tests).
        intake: where ``send`` puts messages; taken when ``TAKE_INTAKE`` is
            told, and whenever room comes while no epoch is in flight. Its
            express gate is opened for idle peers (``express.py``).
        max_held: the most messages the Scheduler (and the medium queues it
            knows of) holds; the rest waits in the intake, which is bounded.
        reply_backlog: a reply for a peer with this many replies queued
            here is dropped, ``"peer-backlog"`` (``Planner``'s rules).
    """

    def __init__(
        self,
        *,
        concerns: ConcernRegistry,
        clock: Clock,
        max_rounds: int = MAX_ROUNDS,
        pacing: float = 0.0,
        shuffle: Shuffle | None = None,
        intake: Intake | None = None,
        max_held: int = 100_000,
        reply_backlog: int = REPLY_BACKLOG,
    ) -> None:
        super().__init__()
        self._gate = intake.gate if intake is not None else None
        self._intake_queue = intake
        self._max_held = max_held
        self._concerns = concerns
        self._clock = clock
        self._planner = Planner(
            max_rounds=max_rounds,
            shuffle=shuffle or random.Random().shuffle,
            reply_backlog=reply_backlog,
        )
        self._pacing = pacing
        self._refs: dict[bytes, Any] = {}
        # Connections that died before their AddPeer came (the last few: an
        # AddPeer follows its connection's start at once).
        self._gone: deque[str] = deque(maxlen=64)
        self._timer: TimerHandle | None = None
        self._timer_due: float | None = None
        self._last_epoch = float("-inf")
        self._closed = False
        self.epochs = 0
        self.preemptions = 0
        self.overflowed = 0  # replies dropped for peers that do not read them
        self._overflow_warned = float("-inf")

    def on_receive(self, message: Any) -> Any:
        answer = self._handle(message)
        if not self._planner.epoch_in_flight:
            # Room may have come (a peer removed or failed, messages dropped)
            # while work waits in the intake, which wakes the Scheduler only
            # when it was empty: take it now. (An epoch in flight takes it
            # when it ends.)
            self._take_intake()
        return answer

    def _handle(self, message: Any) -> Any:
        if message is TAKE_INTAKE:
            self._take_intake()
        elif isinstance(message, Enqueue):
            self._enqueue(message.messages)
        elif isinstance(message, PlanResult):
            self._complete(message)
        elif isinstance(message, Retry):
            self._retry(message)
        elif message is _WAKE:
            self._wake()
        elif isinstance(message, PeerWritable):
            self._planner.set_blocked(message.uuid, False, message.medium_len)
            self._pump()
            self._open_gate(message.uuid)
        elif isinstance(message, PeerBlocked):
            self._planner.set_blocked(message.uuid, True, message.medium_len)
            self._arm_sweep()
        elif isinstance(message, PeerFailed):
            self._fail(self._planner.fail_peer(message.uuid), message.error)
        else:
            return self._control(message)
        return None

    def _control(self, message: Any) -> Any:
        if isinstance(message, AddPeer):
            if message.ref.actor_urn in self._gone or not message.ref.is_alive():
                return None  # it died starting: its messages fail as for an unknown peer
            self._refs[message.uuid] = message.ref
            self._planner.add_peer(message.uuid)
            self._open_gate(message.uuid)
        elif isinstance(message, RemovePeer):
            self._remove_peer(message.uuid)
        elif isinstance(message, PeerGone):
            ref = self._refs.get(message.uuid)
            if ref is None or ref.actor_urn != message.urn:
                self._gone.append(message.urn)  # its AddPeer may still come: ignored then
            else:
                log.warning(
                    "%r: the connection to peer %r is gone (%s); failing its messages",
                    self,
                    message.uuid,
                    message.error,
                )
                self._remove_peer(message.uuid, error=message.error)
        elif isinstance(message, Shutdown):
            self._shutdown()
        elif isinstance(message, Flush):
            return FLUSH
        else:
            log.warning("%r: unexpected message %r", self, message)
        return None

    # -- work in -----------------------------------------------------------

    def _intake(self, messages: Sequence[Message], *, gates_closed: bool = False) -> None:
        """Queue work. Messages that did not come through the intake (Concern
        tells, retries) first close their peers' express gates; the intake
        closes them itself as it hands its batch over."""
        if self._closed:
            report_dropped(self._concerns, [(m, "stopped") for m in messages])
            return
        if self._gate is not None and not gates_closed:
            for peer in {m.next_hop for m in messages}:
                if self._gate.close(peer):
                    self._planner.release(peer)
        intake = self._planner.enqueue(messages)
        if intake.unknown:
            self._fail(intake.unknown, None)
        if intake.overflow:
            self._overflowed(intake.overflow)
        for plan in intake.express:
            self._hand_out(plan)
        if intake.preempted:
            self.preemptions += 1
        if not self._planner.epoch_in_flight:
            self._pump()
        if self._planner.blocked_peers:
            self._arm_sweep()  # some of this may be for a blocked peer

    def _overflowed(self, replies: list[Message]) -> None:
        """Drop replies for a peer that does not read them (``Planner``'s rules)."""
        self.overflowed += len(replies)
        report_dropped(self._concerns, [(m, "peer-backlog") for m in replies])
        now = self._clock.now()
        if now - self._overflow_warned >= OVERFLOW_WARN_EVERY:
            self._overflow_warned = now
            log.warning(
                "%r: dropped %d replies so far for peers with %d replies not yet sent"
                " (the latest for %r): they send requests faster than they read the"
                " replies",
                self,
                self.overflowed,
                self._planner.reply_backlog,
                replies[-1].next_hop,
            )

    def _enqueue(self, messages: Sequence[Message]) -> None:
        """Queue work told to the Scheduler (a Concern's replies when it
        has no open intake): behind whatever waits in the intake, which
        went in first."""
        self._take_intake()
        queue = self._intake_queue
        if (
            queue is not None
            and not self._closed
            and messages
            and len(queue)
            and queue.append_behind(messages)  # no room yet: they wait there too, in order
        ):
            return
        self._intake(messages)

    def _take_intake(self) -> None:
        """Take from the intake as much as there is room for."""
        queue = self._intake_queue
        if queue is None or self._closed or not len(queue):
            return
        room = self._max_held - self._planner.held()
        if room > 0:
            batch, closed = queue.take(room)
            for peer in closed:
                self._planner.release(peer)
            if batch:
                self._intake(batch, gates_closed=True)

    def _complete(self, result: PlanResult) -> None:
        """Take a plan's result back: its unsent messages are planned again,
        failed if their peer was removed meanwhile (as its queued ones were),
        or dropped with reason ``"stopped"`` once the Scheduler is."""
        if self._closed:
            gone = result.unsent()
            report_dropped(self._concerns, [(m, "stopped") for m in gone])
            return
        ref = self._refs.get(result.peer)
        if result.source and ref is not None and ref.actor_urn != result.source:
            # From the peer's earlier connection (removed, the peer added
            # again since): the current one's plan is still in flight. What
            # it did not send fails, as that connection's queue did.
            self._fail(result.unsent(), None)
            return
        self._fail(self._planner.complete(result), None)
        if not self._planner.epoch_in_flight:
            self._watch_epoch()
            self._take_intake()
            self._pump()
        self._open_gate(result.peer)
        if result.blocked:
            self._arm_sweep()

    def _retry(self, retry: Retry) -> None:
        if self._closed:
            gone = [*retry.now, *(m for m, _ in retry.later)]
            report_dropped(self._concerns, [(m, "stopped") for m in gone])
            return
        for message, due in retry.later:
            self._planner.defer(message, due)
        if retry.now:
            self._intake(retry.now)
        self._arm_timer()

    def _wake(self) -> None:
        self._timer = self._timer_due = None
        now = self._clock.now()
        # The sweep runs here too, whatever stops an epoch from starting (one
        # in flight, pacing): else a sweep that is due while a blocked peer
        # holds messages would arm the timer at once, again and again.
        expired = self._planner.sweep_if_due(now)
        if expired:
            report_dropped(self._concerns, [(m, "ttl") for m in expired])
        due = self._planner.release_due(now)
        if due:
            self._intake(due)
        else:
            self._pump()
        self._arm_timer()

    # -- epochs ------------------------------------------------------------

    def _pump(self) -> None:
        if self._closed or self._planner.epoch_in_flight:
            return
        now = self._clock.now()
        if self._pacing > 0 and now < self._last_epoch + self._pacing:
            if self._planner.has_work():
                self._arm_timer(self._last_epoch + self._pacing)
            return
        plans, expired = self._planner.start_epoch(now)
        if expired:
            report_dropped(self._concerns, [(m, "ttl") for m in expired])
        if plans:
            self._last_epoch = now
            self.epochs += 1
            self._watch_epoch()
        for plan in plans:
            self._hand_out(plan)

    def _watch_epoch(self) -> None:
        """Let the intake preempt the epoch in flight as work arrives."""
        if self._intake_queue is not None:
            self._intake_queue.watch(self._planner.preemptible())

    def _open_gate(self, peer: bytes) -> None:
        """Open ``peer``'s express gate if it is idle (it then counts as busy)."""
        gate, ref = self._gate, self._refs.get(peer)
        if gate is None or ref is None or self._closed:
            return
        if self._planner.reserve(peer):
            gate.open(peer, ref)

    def _hand_out(self, plan: Plan) -> None:
        try:
            self._refs[plan.peer].tell(plan)
        except pykka.ActorDeadError:
            log.warning("%r: PeerConnection %r is gone; failing its messages", self, plan.peer)
            gone = plan.messages()
            self._remove_peer(plan.peer, gone)

    def _remove_peer(
        self, peer: bytes, extra: Iterable[Message] = (), error: SendError | None = None
    ) -> None:
        self._refs.pop(peer, None)
        if self._gate is not None:
            self._gate.close(peer)
        orphans = [*extra, *self._planner.remove_peer(peer)]
        self._fail(orphans, error)
        self._pump()

    def _fail(self, messages: list[Message], error: SendError | None) -> None:
        """Report ``messages`` failed (expired ones dropped) to their Concerns."""
        if not messages:
            return
        now = self._clock.now()
        report_dropped(self._concerns, [(m, "ttl") for m in messages if m.deadline <= now])
        failed = []
        for m in messages:
            if m.deadline > now:
                err = error or NoPeerError(
                    f"no connection to peer {m.next_hop!r}: add and connect it first",
                    peer=m.next_hop,
                )
                failed.append((m, err))
        report_failed(self._concerns, failed)

    # -- timers ------------------------------------------------------------

    def _arm_sweep(self) -> None:
        """Have the timer fire by the next sweep, if a blocked peer holds
        messages here (a sweep drops what expires for it meanwhile). Looks
        at the blocked peers only when no timer is armed that early."""
        if self._timer_due is None or self._timer_due > self._planner.next_sweep:
            self._arm_timer()

    def _arm_timer(self, due: float | None = None) -> None:
        if due is None:
            due = self._planner.next_due()
        if due is None or self._closed:
            return
        if self._timer is not None and self._timer_due is not None and self._timer_due <= due:
            return
        if self._timer is not None:
            self._timer.cancel()
        ref = self.actor_ref
        self._timer_due = due
        self._timer = self._clock.call_later(max(0.0, due - self._clock.now()), _teller(ref))

    # -- stopping ----------------------------------------------------------

    def _shutdown(self) -> None:
        if self._closed:
            return
        self._closed = True
        if self._gate is not None:
            self._gate.close_all()
        if self._timer is not None:
            self._timer.cancel()
        held = self._planner.drain()
        if self._intake_queue is not None:
            held.extend(self._intake_queue.close())
        report_dropped(self._concerns, [(m, "stopped") for m in held])

    def on_stop(self) -> None:
        self._shutdown()

    def on_left(self, messages: list[Any]) -> None:
        # Work told as it stopped (a Concern's retries and replies, a plan's
        # result) would be lost with its inbox: it is dropped, "stopped".
        self._shutdown()
        gone: list[Message] = []
        for message in messages:
            if isinstance(message, Enqueue):
                gone.extend(message.messages)
            elif isinstance(message, Retry):
                gone.extend([*message.now, *(m for m, _ in message.later)])
            elif isinstance(message, PlanResult):
                gone.extend(message.unsent())
        report_dropped(self._concerns, [(m, "stopped") for m in gone])

    def on_failure(self, *_exc_info: object) -> None:
        """A bug (pykka logged it): what it holds is dropped as ``"stopped"``
        and the intake is closed, so that sends raise instead of waiting for
        nobody. (Work told to it and not yet handled is dropped too, by
        ``on_left``; what the connections hold ends when the node stops.)"""
        self._shutdown()

    def counters(self) -> dict[str, int]:
        """Epochs started and epochs preempted so far, by the Scheduler or at
        the intake, and replies dropped for peers that do not read them
        (ask it through a proxy)."""
        early = self._intake_queue.preemptions if self._intake_queue is not None else 0
        return {
            "epochs": self.epochs,
            "preemptions": self.preemptions + early,
            "replies_overflowed": self.overflowed,
        }

    def depths(self) -> dict[str, int]:
        """Queue depths as the Scheduler knows them (ask it through a proxy)."""
        depths: dict[str, int] = self._planner.depths()
        return depths

    def __repr__(self) -> str:
        return f"<Scheduler {self._planner!r} epochs={self.epochs} closed={self._closed}>"


def _teller(ref: Any) -> Any:
    def wake() -> None:
        with contextlib.suppress(pykka.ActorDeadError):
            ref.tell(_WAKE)

    return wake
