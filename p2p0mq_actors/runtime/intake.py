"""The node's intake: where ``send`` puts messages for the Scheduler.

Rules:
- Many application threads put, one Scheduler takes. A put costs a lock, not
  an actor message: the Scheduler is told once (``wake``) when the intake
  goes from empty to not empty, and takes everything there in one batch, so
  a loop of ``send()`` calls becomes a few large batches (PERFORMANCE.md:
  a tell costs 6-9 us of GIL time).
- Early preemption: the Scheduler tells the intake which epoch is in flight
  (``watch``); a ``put`` of work that preempts it under the planner's rule
  (anything but medium work for a peer in that epoch) requests the
  preemption at once, so the peers stop at their next round boundary
  instead of when the Scheduler's thread gets a CPU (on two busy cores,
  measured: up to a few hundred µs, a whole plan of a flooding peer).
- Bounded: ``put`` waits while the intake is full, up to its timeout, then
  raises ``IntakeFullError``; a pykka inbox would grow without limit (trap 5).
  The Scheduler takes only what it has room for, so the bound holds through
  the whole send path, not just this queue. Three kinds of work go past
  it, never waiting: a Concern's replies (``put_now``: a handler must not
  block), the Scheduler's own (``append_behind``), and the rest of a
  ``send_many`` part of which went straight out (``express_many``; then
  ``put_now``: a call never fails after part of it was sent).
- Small: the node's intake holds ``HANDOFF`` messages (the Scheduler holds
  the backlog, up to the node's ``intake_capacity``). An application
  thread sending in bulk never blocks on anything else, so with a large
  intake it kept the GIL for whole switch intervals (5 ms: thousands of
  messages built) before the Scheduler and the connection ran, and its
  messages were out of the cache when they were encoded. Waiting for the
  Scheduler's take every ``HANDOFF`` messages hands them over while they
  are still in it: measured with ``send()`` in a loop on the native wire
  (``python -m bench --only 1,2``), 2a rose 15-29 % and ``send_many`` in
  chunks of 1,000 (2b) 7-33 %; a hand-off of 64 was slower than none
  (a wait per 64 messages), and 4,000 no faster than none.
"""

from __future__ import annotations

import operator
import threading
from collections import deque
from collections.abc import Callable, Iterable, Sequence
from itertools import islice
from typing import Final

import pykka

from ..core.errors import ConfigurationError, P2P0MQError
from ..core.fairness import Plan, Preemption, preempts
from ..core.message import Message, Priority
from .express import ExpressGate

EXPRESS_MANY: Final = 1024
"""The most messages of a ``send_many`` sent at a time through an idle
peer's express gate (``Intake.express_many``), in one turn of the turns
lock (``turns.py``)."""
_NEXT_HOP: Final = operator.attrgetter("next_hop")
_PRIORITY: Final = operator.attrgetter("priority")
_FAST: Final = frozenset((Priority.FAST,))

HANDOFF: Final = 512
"""The most messages a node's intake holds before a ``put`` waits for the
Scheduler to take them (see the rules above)."""


class IntakeFullError(P2P0MQError, TimeoutError):
    """The send path stayed full for the whole timeout: peers are not keeping up."""


class Intake:
    """A bounded, thread-safe queue of messages with a single waking consumer.

    Args:
        capacity: the most messages waiting here at once.
        wake: called (from the putting thread) when the Scheduler must be
            told there is work; it must be cheap and thread-safe.
        timeout: how long ``put`` waits for room by default.
    """

    def __init__(
        self, capacity: int, wake: Callable[[], None], timeout: float | None = 10.0
    ) -> None:
        if capacity < 1:
            raise ConfigurationError(f"intake capacity must be >= 1, not {capacity!r}")
        self.capacity = capacity
        self.timeout = timeout
        self._wake = wake
        self._lock = threading.Lock()
        self._cond = threading.Condition(self._lock)
        self.gate = ExpressGate(self._lock)
        self._queue: deque[Message] = deque()
        self._woken = False
        self._closed = False
        self._watched: tuple[Preemption, frozenset[bytes]] | None = None
        self._since_take = 0  # messages put since the Scheduler last took
        self.puts = 0
        self.wakes = 0
        self.preemptions = 0

    def put(self, messages: Sequence[Message], timeout: float | None = -1.0) -> None:
        """Queue ``messages`` in order; waits while full (``timeout`` seconds,
        the default timeout if not given, forever if None).

        Raises:
            IntakeFullError: no room came in time.
            ConfigurationError: the node is stopped.
        """
        queue = self._queue
        with self._lock:  # the common case: room, and the Scheduler already woken
            if self._woken and len(queue) + len(messages) <= self.capacity:
                self._add_locked(messages)
                return
        wait = self.timeout if timeout == -1.0 else timeout
        with self._cond:
            if self._queue and len(self._queue) + len(messages) > self.capacity:
                room = self._cond.wait_for(self._has_room(len(messages)), wait)
                if not room:
                    raise IntakeFullError(
                        f"the send path stayed full for {wait} s ({len(self._queue)} "
                        "messages waiting for the Scheduler, which holds the node's "
                        "intake_capacity): the peers are not keeping up; send less, or "
                        "raise intake_capacity or intake_timeout"
                    )
            if self._closed:
                raise ConfigurationError("the node is stopped: nothing more can be sent")
            self._add_locked(messages)
            wake = self._first_since_take_locked()
        self._wake_if(wake)

    def put_now(self, messages: Sequence[Message]) -> bool:
        """Queue ``messages`` at once, room or not, and wake the Scheduler as
        ``put`` does; False if the intake is closed. For a thread that must
        not wait and whose messages must not overtake its own earlier ones:
        a Concern's replies (a handler must not block, and a reply told to
        the Scheduler instead could be overtaken by the next one going
        straight out once the Scheduler has emptied the intake)."""
        with self._lock:
            if self._closed:
                return False
            self._add_locked(messages)
            wake = self._first_since_take_locked()
        self._wake_if(wake)
        return True

    def _first_since_take_locked(self) -> bool:
        """Whether the Scheduler is to be woken for what was just queued (it
        was not since it last took); the caller holds the lock."""
        wake = not self._woken
        self._woken = True
        return wake

    def _wake_if(self, wake: bool) -> None:
        if wake:
            self.wakes += 1
            self._wake()

    def append_behind(self, messages: Sequence[Message]) -> bool:
        """Queue ``messages`` at once, room or not, behind what waits (the
        Scheduler's use: work it was told while older work still waits here,
        which it must not overtake); False if the intake is closed."""
        with self._lock:
            if self._closed:
                return False
            self._add_locked(messages)
            return True

    def _add_locked(self, messages: Sequence[Message]) -> None:
        """Queue ``messages`` and hold them to the watched epoch's rule; the
        caller holds the lock (``submit`` does the same for one message,
        inline: it is every ``send()``)."""
        self._queue.extend(messages)
        self._since_take += len(messages)
        self.puts += 1
        if self._watched is not None:
            self._preempt_for(messages)

    def submit(self, message: Message) -> None:
        """``express`` if it can, else ``put``: one message by the shortest
        way, the common case of a stream of ``send()`` calls (the Scheduler
        woken, room) taken under one lock without building a batch.

        Raises:
            IntakeFullError: no room came in time.
            ConfigurationError: the node is stopped.
        """
        queue = self._queue
        if not queue and self.express(message):
            return
        with self._lock:
            if self._woken and len(queue) < self.capacity:
                queue.append(message)
                self._since_take += 1
                self.puts += 1
                if self._watched is not None:
                    self._preempt_for((message,))
                return
        self.put((message,))

    def watch(self, epoch: tuple[Preemption, frozenset[bytes]] | None) -> None:
        """The epoch in flight, as ``Planner.preemptible`` gives it (None: no
        epoch new work can preempt). The Scheduler calls this. Messages put
        before it (after the Scheduler last took) are held to the rule too,
        so none slips in between an epoch's start and this call."""
        with self._lock:
            self._watched = epoch
            if epoch is not None and self._since_take:
                # Only what came after the last take, newest first: what the
                # Scheduler left behind it knows of, and a backlog of
                # thousands must not be read again at every epoch.
                self._preempt_for(islice(reversed(self._queue), self._since_take))

    def _preempt_for(self, messages: Iterable[Message]) -> None:
        """Request the watched epoch's preemption if ``messages`` call for it
        (the planner's rule); the caller holds the lock."""
        assert self._watched is not None
        preemption, planned = self._watched
        if preemption.requested:  # the Scheduler did it first
            self._watched = None
            return
        for message in messages:
            if preempts(message, planned):
                preemption.requested = True
                self.preemptions += 1
                self._watched = None
                return

    def _has_room(self, n: int) -> Callable[[], bool]:
        return lambda: self._closed or not self._queue or len(self._queue) + n <= self.capacity

    def take(self, limit: int) -> tuple[list[Message], list[bytes]]:
        """Up to ``limit`` messages, oldest first (the Scheduler calls this),
        and the peers whose express gates it closed for them in the same step.

        While messages stay behind (no room downstream), the next ``put`` does
        not wake the Scheduler again: it takes the rest when it has room.
        """
        with self._cond:
            if limit >= len(self._queue):
                batch = list(self._queue)
                self._queue.clear()
                self._woken = False
            else:
                batch = [self._queue.popleft() for _ in range(max(0, limit))]
            self._since_take = 0
            closed = self.gate.close_locked({m.next_hop for m in batch}) if batch else []
            self._cond.notify_all()
            return batch, closed

    def express(self, message: Message) -> bool:
        """Send ``message`` straight to its peer if the peer's gate is open and
        nothing waits here: on the peer's socket from this thread if it takes
        it at once, else as a plan told to the peer's connection. False if it
        must be ``put`` instead."""
        if message.priority is not Priority.FAST or self._queue:
            return False  # (a lock-free first look: it would wait behind them anyway)
        peer = message.next_hop
        lane = self.gate.lane(peer)
        if lane is not None and lane.in_burst():
            return False  # batched through the Scheduler instead (express.py)
        with self._lock:
            if self._queue or self._closed:
                return False
            ref = self.gate.claim_locked(peer)
        if ref is None:
            return False
        if lane is not None and lane.deliver(message):
            return True
        try:
            ref.tell(Plan(peer=peer, epoch=0, rounds=0, fast=(message,), through_gate=True))
        except pykka.ActorDeadError:
            return False  # gone: the Scheduler finds out and fails what it holds
        return True

    def express_many(self, messages: Sequence[Message]) -> int:
        """Send ``messages`` straight to their peer, as ``express`` does one,
        if they are all fast and all for one peer whose gate is open, and
        nothing waits here: ``EXPRESS_MANY`` at a time, each run on the
        peer's socket from this thread as far as the socket takes it at
        once (a lone message left after whole runs: by ``express``). Once
        the socket has taken part of a run, the first message it did not
        take goes to the peer's connection as a one-message plan, as in
        ``express``.

        Returns how many it took, from the first; the caller queues the
        rest, with ``put`` if that is all of them, else with ``put_now``:
        what it leaves waits behind the plan it told, if any (the Scheduler
        counts the peer busy until that plan's result, whose unsent message
        goes back to the head of the peer's queue).
        """
        count = len(messages)
        if count < 2 or self._queue:
            return 0  # one message: ``express``, which knows bursts
        if len(set(map(_NEXT_HOP, messages))) != 1 or set(map(_PRIORITY, messages)) != _FAST:
            return 0
        peer = messages[0].next_hop
        lane = self.gate.lane(peer)
        if lane is None or lane.in_burst():
            return 0  # no socket to lend, or a stream the Scheduler batches
        taken = 0
        while count - taken > 1:
            run = messages[taken : taken + EXPRESS_MANY]
            with self._lock:
                if self._queue or self._closed:
                    break
                ref = self.gate.claim_locked(peer)
            if ref is None:
                break
            done = lane.deliver_many(run)
            taken += done
            if not done:
                break  # the gate is handed back: the caller queues the rest
            if done < len(run):
                nxt = (run[done],)
                try:
                    ref.tell(Plan(peer=peer, epoch=0, rounds=0, fast=nxt, through_gate=True))
                except pykka.ActorDeadError:
                    return taken  # gone: the Scheduler fails what it is given
                return taken + 1
        if count - taken == 1 and taken and self.express(messages[-1]):
            taken += 1  # the last of a list that went out whole so far
        return taken

    def close(self) -> list[Message]:
        """Refuse new messages and return what was waiting."""
        with self._cond:
            self._closed = True
            # Nothing is put from now on, so nothing wakes the Scheduler:
            # letting go of ``wake`` (a bound method of the intake's owner,
            # which holds the intake) breaks that cycle.
            self._wake = _no_wake
            self._watched = None
            self._woken = False  # puts take the slow path, which refuses them
            rest = list(self._queue)
            self._queue.clear()
            self._since_take = 0
            self._cond.notify_all()
            return rest

    def __len__(self) -> int:
        with self._cond:
            return len(self._queue)

    def __bool__(self) -> bool:
        """Always true: ``if concern.intake:`` asks whether there is one (a
        Concern started alone has none), not whether it holds messages
        (``len`` says that)."""
        return True

    def __repr__(self) -> str:
        return f"<Intake {len(self)}/{self.capacity} puts={self.puts} wakes={self.wakes}>"


def _no_wake() -> None:
    """A closed intake's ``wake``."""
