"""The Scheduler's rules: epochs of rounds handed out as per-peer plans.

Rules:
- The Planner owns the fast lanes (per peer), the slow lane (global, oldest
  first), the medium messages not yet handed to their peer, and deferred
  retries. Each peer owns its medium queue and reports its length with every
  ``PlanResult``, and while blocked when it drops or fails what the queue
  held; the Planner only keeps the last report (it counts against the
  node's bound: a stale one holds back the intake for every peer).
- The result of a plan for a peer removed meanwhile hands its unsent
  messages back to the caller, to fail like the rest of that peer's: none
  is kept, none is lost.
- An epoch is Q rounds (``Plan.rounds``) for every ready peer with work. The
  next epoch starts when every plan of this one has come back. Q doubles
  after each epoch up to ``max_rounds``, and falls to 1 after a preemption
  and for an epoch that a peer joins (one with work that was not in the
  last epoch, beside others): the connections carry out their plans one
  after the other, so a newcomer's one message must not wait for a whole
  long plan of a busy peer.
- New work preempts an epoch of more than one round, unless it is medium work
  for a peer already in the epoch (it queues behind that peer's own backlog
  and delays nobody else).
- Express path: a fast message for a peer with nothing queued and no plan in
  flight is handed out at once as a one-message plan.
- A peer has at most one plan in flight; a blocked peer gets no plan until it
  says it is writable again; its slow messages are skipped, not lost: set
  aside in order as the lane meets them, and merged back by age when it is
  writable, so that they are stepped over once, not in every epoch.
- A plan carries at most ``fast_plan_max`` fast messages. A round's fast
  messages (every one queued for the peer when the round starts) beyond
  that go out in the peer's next plans, and its medium and slow turn
  comes with the last of them, one round's turn if fast messages queued
  meanwhile wait (the slow items taken for it meanwhile go back to the
  lane); what is queued for the peer meanwhile, fast, medium or slow,
  waits for the next round, as behind one long plan. An express plan's
  rest is the rest of its round. Without the bound, every
  epoch copied and looked through the peer's whole fast lane to send what
  its socket took (a few thousand), and the copies, young containers as
  long as the lane, made every garbage collection in the process go
  through them: over a stream of 1,000,000 messages the sending process
  used 10.4-11.4 us of CPU a message, against 7.0-8.1 with the bound.
- Expired messages are dropped when about to be planned, and once per
  ``sweep_interval`` by a sweep of the lanes of the peers not planned since
  the last sweep (blocked ones, or with a plan in flight that long). The
  sweep looks only where something may have expired: in a peer's fast and
  medium lanes, at what joined them since the last sweep, unless the
  earliest deadline seen then has passed; in the slow lane, once a bound on
  its deadlines has. While a blocked peer has messages here, ``next_due``
  names the next sweep too, so that they are dropped within a sweep
  interval of their deadline even when nothing else happens.
- A reply for a peer whose fast lane here holds ``reply_backlog`` replies
  is not queued (``Intake.overflow``): a peer that sends requests and does
  not read its replies would otherwise fill the node's bounded room with
  them until their TTLs ran out, and the application's sends to every other
  peer would find the intake full (session 21's review: 79,000 replies held
  within 13 s of a flood of 8,000 requests a second). Only replies count:
  the node's own burst of fast messages to a peer that reads them costs
  that peer's replies nothing.
"""

from __future__ import annotations

import heapq
import math
from collections import deque
from collections.abc import Iterable, MutableSequence, Sequence
from dataclasses import dataclass, field
from itertools import islice
from typing import Final

from .fairness import Plan, PlanResult, Preemption, Shuffle, SlowItem, no_shuffle, preempts
from .message import Kind, Message, Priority

MAX_ROUNDS: Final = 32
"""The longest plan by default, in rounds (``Sender``'s docstring and
README.md's *Backlogs* have what it trades: 16 until session 19)."""

FAST_PLAN_MAX: Final = 8192
"""The most fast messages one plan carries (see the rules above). On
p2p0mq's wire, a zmq message each, a socket takes about as many before it
would block (its high-water mark is 10,000 zmq messages), so a longer plan
would mostly come back unsent; on the native wire, 64 to a frame, a socket
takes more, and the next plan follows at once."""

REPLY_BACKLOG: Final = 10_000
"""The most replies a peer's fast lane holds before more replies for it
are dropped (see the rules above): as many as its socket takes (its
high-water mark)."""


@dataclass(slots=True)
class Intake:
    """What ``Planner.enqueue`` decided: messages for unknown peers, plans to
    send at once (the express path), and whether the epoch was preempted."""

    unknown: list[Message] = field(default_factory=list)
    express: list[Plan] = field(default_factory=list)
    preempted: bool = False
    overflow: list[Message] = field(default_factory=list)
    """Replies for a peer whose fast lane holds ``reply_backlog`` replies
    already: to drop (``"peer-backlog"``)."""


@dataclass(slots=True)
class _Epoch:
    number: int
    rounds: int
    waiting: set[bytes]
    preemption: Preemption


class Planner:
    """The Scheduler's state and rules; pure, so every rule is tested without threads."""

    def __init__(
        self,
        *,
        max_rounds: int = MAX_ROUNDS,
        shuffle: Shuffle = no_shuffle,
        fast_plan_max: int = FAST_PLAN_MAX,
        reply_backlog: int = REPLY_BACKLOG,
    ) -> None:
        if max_rounds < 1:
            raise ValueError(f"max_rounds must be >= 1, not {max_rounds!r}")
        if fast_plan_max < 1:
            raise ValueError(f"fast_plan_max must be >= 1, not {fast_plan_max!r}")
        self.max_rounds = max_rounds
        self.fast_plan_max = fast_plan_max
        self.reply_backlog = reply_backlog
        self._shuffle = shuffle
        self._peers: set[bytes] = set()
        self._dirty: set[bytes] = set()  # peers that may have work: a superset
        self._blocked: set[bytes] = set()
        self._in_flight: set[bytes] = set()
        self._fast: dict[bytes, deque[Message]] = {}
        self._replies: dict[bytes, int] = {}  # replies in a fast lane, where any
        self._pending: dict[bytes, list[Message]] = {}
        # What the last sweep saw of a peer's fast and pending lanes, which
        # only grow until a plan takes them or hands messages back (then it
        # is forgotten): per lane, how many messages it looked at, and the
        # earliest deadline among them.
        self._swept: dict[bytes, tuple[int, float, int, float]] = {}
        self._medium_len: dict[bytes, int] = {}
        self._slow: deque[SlowItem] = deque()
        self._slow_seq = 0
        self._slow_count: dict[bytes, int] = {}
        self._slow_earliest = math.inf  # no slow deadline is earlier (a lower bound)
        # Slow items of blocked peers, set aside (in order) as the lane meets
        # them, and merged back when the peer is writable: otherwise every
        # epoch would step over them again (20,000 of them took 1.8 ms).
        self._parked: dict[bytes, deque[SlowItem]] = {}
        self._delayed: list[tuple[float, int, Message]] = []
        self._epoch: _Epoch | None = None
        self._epochs = 0
        self._rounds = 1
        self._last_planned: frozenset[bytes] = frozenset()
        self.sweep_interval = 1.0
        self._next_sweep = float("-inf")
        self._planned: set[bytes] = set()  # peers given a plan since the last sweep
        # Per peer whose round's fast messages did not fit in one plan: how
        # many at the head of its fast lane still belong to that round (never
        # more than the lane holds), and the slow lane's next seq when the
        # round began (its slow items from then on wait for the next round).
        self._spread: dict[bytes, tuple[int, int]] = {}

    # -- peers -------------------------------------------------------------

    def add_peer(self, peer: bytes) -> None:
        """Make ``peer`` a destination; a known peer is left as it is."""
        if peer not in self._peers:
            self._peers.add(peer)
            self._fast[peer] = deque()
            self._pending[peer] = []
            self._medium_len[peer] = 0

    def remove_peer(self, peer: bytes) -> list[Message]:
        """Forget ``peer``; returns the messages the planner held for it."""
        orphans = self.take_peer_messages(peer)
        self._peers.discard(peer)
        self._blocked.discard(peer)
        self._in_flight.discard(peer)
        self._fast.pop(peer, None)
        self._pending.pop(peer, None)
        self._swept.pop(peer, None)
        self._medium_len.pop(peer, None)
        if self._epoch is not None:
            self._finish_if_done(peer, self._epoch.number)
        return orphans

    def fail_peer(self, peer: bytes) -> list[Message]:
        """``peer`` failed every message of its medium queue, which is empty
        now; returns the messages the planner holds for it, to fail as well."""
        if peer in self._medium_len:
            self._medium_len[peer] = 0
        return self.take_peer_messages(peer)

    def take_peer_messages(self, peer: bytes) -> list[Message]:
        """Remove and return every fast, slow and not-yet-handed medium message
        the planner holds for ``peer`` (e.g. to fail them)."""
        out = list(self._fast.get(peer, ()))
        if peer in self._fast:
            self._fast[peer].clear()
        self._replies.pop(peer, None)
        self._spread.pop(peer, None)
        out.extend(self._pending.get(peer, ()))
        if peer in self._pending:
            self._pending[peer] = []
        self._swept.pop(peer, None)
        if self._slow_count.pop(peer, 0):
            parked = self._parked.pop(peer, ())
            lane = [i for i in self._slow if i.message.next_hop == peer]
            out.extend(i.message for i in heapq.merge(parked, lane, key=_seq))
            if lane:
                self._slow = deque(i for i in self._slow if i.message.next_hop != peer)
        return out

    def set_blocked(self, peer: bytes, blocked: bool, medium_len: int | None = None) -> None:
        """Record that ``peer``'s socket is (not) writable, with its medium length."""
        if peer not in self._peers:
            return
        (self._blocked.add if blocked else self._blocked.discard)(peer)
        if not blocked and peer in self._parked:
            self._put_back(self._parked.pop(peer))
            self._dirty.add(peer)
        if medium_len is not None:
            self._medium_len[peer] = medium_len
            if medium_len:
                self._dirty.add(peer)

    def is_blocked(self, peer: bytes) -> bool:
        return peer in self._blocked

    @property
    def next_sweep(self) -> float:
        """When the next sweep is due."""
        return self._next_sweep

    @property
    def blocked_peers(self) -> int:
        """How many peers are blocked."""
        return len(self._blocked)

    # -- work in -----------------------------------------------------------

    def enqueue(self, messages: Iterable[Message]) -> Intake:
        """Queue messages; returns unknown-peer ones, express plans, preemption."""
        intake = Intake()
        express: dict[bytes, list[Message]] = {}
        # Per batch, not per message (a batch is often thousands for a few
        # peers): a peer is found idle or not once, as queueing for it ends
        # its idleness; the epoch's preemption rule is read once, and no more
        # once it has asked for a preemption.
        queued: set[bytes] = set()
        peers, fast, fast_lanes = self._peers, Priority.FAST, self._fast
        reply = Kind.REPLY
        slow_mark = self._slow_seq  # an express round begins before this batch's slow items
        watch = self._preemptible_epoch()
        for message in messages:
            peer = message.next_hop
            if peer not in peers:
                intake.unknown.append(message)
                continue
            if message.priority is fast:
                batch = express.get(peer)
                if batch is not None:
                    batch.append(message)
                    continue
                if peer not in queued:
                    if self._is_idle(peer):
                        express[peer] = [message]
                        continue
                    self._dirty.add(peer)
                    queued.add(peer)
                if message.kind is reply and not self._one_more_reply(peer):
                    intake.overflow.append(message)  # a peer that does not read its replies
                    continue
                fast_lanes[peer].append(message)  # _queue, inlined for the common case
            else:
                self._queue(message)
                queued.add(peer)
            if watch is not None and not intake.preempted:
                intake.preempted = preempts(message, watch.waiting)
        most = self.fast_plan_max
        for peer, batch in express.items():
            self._in_flight.add(peer)
            if len(batch) > most:  # the rest of this round waits in the lane
                self._lane_gains(peer, batch[most:])
                fast_lanes[peer].extend(batch[most:])
                self._spread[peer] = (len(batch) - most, slow_mark)
                self._dirty.add(peer)
                if watch is not None and not intake.preempted:
                    intake.preempted = preempts(batch[most], watch.waiting)
                del batch[most:]
            intake.express.append(Plan(peer=peer, epoch=0, rounds=0, fast=tuple(batch)))
        if intake.preempted and self._epoch is not None:
            self._epoch.preemption.requested = True
        return intake

    def _queue(self, message: Message) -> None:
        peer = message.next_hop
        self._dirty.add(peer)
        if message.priority is Priority.FAST:
            self._lane_gains(peer, (message,))
            self._fast[peer].append(message)
        elif message.priority is Priority.SLOW:
            self._slow.append(SlowItem(self._slow_seq, message))
            self._slow_seq += 1
            self._slow_earliest = min(self._slow_earliest, message.deadline)
            self._slow_count[peer] = self._slow_count.get(peer, 0) + 1
        else:
            self._pending[peer].append(message)

    def reserve(self, peer: bytes) -> bool:
        """Count an idle ``peer`` as having a plan in flight (its express gate
        is open); False, changing nothing, if it is not idle."""
        if peer not in self._peers or not self._is_idle(peer):
            return False
        self._in_flight.add(peer)
        return True

    def release(self, peer: bytes) -> None:
        """Undo ``reserve`` (the gate was closed before anyone used it)."""
        self._in_flight.discard(peer)

    def _is_idle(self, peer: bytes) -> bool:
        """Nothing queued for ``peer`` anywhere and no plan in flight."""
        return (
            peer not in self._in_flight
            and peer not in self._blocked
            and not self._fast[peer]
            and not self._pending[peer]
            and self._medium_len[peer] == 0
            and not self._slow_count.get(peer)
        )

    def _preemptible_epoch(self) -> _Epoch | None:
        """The epoch in flight if new work may still preempt it (more than one
        round, and no preemption asked yet)."""
        epoch = self._epoch
        if epoch is None or epoch.rounds <= 1 or epoch.preemption.requested:
            return None
        return epoch

    def defer(self, message: Message, due: float) -> None:
        """Hold ``message`` until ``due`` (a retry after a delay)."""
        heapq.heappush(self._delayed, (due, message.message_id, message))

    def release_due(self, now: float) -> list[Message]:
        """Deferred messages whose time has come, oldest due first."""
        out = []
        while self._delayed and self._delayed[0][0] <= now:
            out.append(heapq.heappop(self._delayed)[2])
        return out

    def next_due(self) -> float | None:
        """When the earliest deferred message falls due, or the next sweep
        while a blocked peer has messages here: whichever comes first (None
        if neither)."""
        due = self._delayed[0][0] if self._delayed else None
        if self._blocked and self._held_for_blocked():
            due = self._next_sweep if due is None else min(due, self._next_sweep)
        return due

    def _held_for_blocked(self) -> bool:
        """Whether a blocked peer has messages here (its medium queue is its
        connection's, which drops what expires there itself)."""
        return any(
            self._fast[peer] or self._pending[peer] or self._slow_count.get(peer)
            for peer in self._blocked
        )

    # -- epochs ------------------------------------------------------------

    @property
    def epoch_in_flight(self) -> bool:
        return self._epoch is not None

    def preemptible(self) -> tuple[Preemption, frozenset[bytes]] | None:
        """The epoch in flight's preemption token and planned peers, if new
        work may preempt it (more than one round, not preempted yet): what
        the intake needs to apply ``enqueue``'s preemption rule as work
        arrives."""
        epoch = self._preemptible_epoch()
        if epoch is None:
            return None
        return epoch.preemption, frozenset(epoch.waiting)

    def start_epoch(self, now: float) -> tuple[list[Plan], list[Message]]:
        """Plan the next epoch unless one is in flight.

        Returns the plans (in the order to hand them out) and the messages
        that expired while queued (to drop with reason ``"ttl"``). Messages
        about to be planned are checked every time; the rest of the lanes
        (e.g. for blocked peers) once per ``sweep_interval``.
        """
        if self._epoch is not None:
            return [], []
        expired = self.sweep_if_due(now)
        rounds = self._rounds
        # Only peers that may have work are looked at: an epoch costs O(busy
        # peers), not O(peers) (a node may have thousands of idle ones).
        self._dirty &= self._peers
        ready = [p for p in self._dirty if p not in self._blocked and p not in self._in_flight]
        if rounds > 1 and self._newcomer_among(ready):
            rounds = 1
        slow = self._take_slow(rounds, set(ready), now, expired)
        self._epochs += 1
        preemption = Preemption()
        plans = []
        for peer in ready:
            plan = self._plan_for(
                peer, rounds, slow.pop(peer, ()), preemption, now=now, expired=expired
            )
            if plan is not None:
                plans.append(plan)
            elif not self._slow_count.get(peer):
                self._dirty.discard(peer)  # nothing left anywhere for it
        if not plans:
            return [], expired
        order = [plan.peer for plan in plans]
        self._shuffle(order)
        by_peer = {plan.peer: plan for plan in plans}
        plans = [by_peer[peer] for peer in order]
        self._in_flight.update(order)
        self._epoch = _Epoch(self._epochs, rounds, set(order), preemption)
        self._last_planned = frozenset(order)
        return plans, expired

    def _newcomer_among(self, ready: list[bytes]) -> bool:
        """Whether a peer with work took no part in the last epoch while
        others did or do: its plan runs beside theirs, and each connection
        sends its whole plan in one go, so the epoch is kept to one round
        (as after a preemption) lest a long plan go out before its one."""
        last = self._last_planned
        busy = [
            p
            for p in ready
            if self._fast[p] or self._pending[p] or self._medium_len[p] or self._slow_count.get(p)
        ]
        return len(busy) > 1 and not last.issuperset(busy)

    def _plan_for(
        self,
        peer: bytes,
        rounds: int,
        slow: Sequence[SlowItem],
        preemption: Preemption,
        *,
        now: float,
        expired: list[Message],
    ) -> Plan | None:
        lane, most = self._fast[peer], self.fast_plan_max
        self._swept.pop(peer, None)
        spread = self._spread.pop(peer, None)
        replies_before, expired_before = self._replies.get(peer), len(expired)
        pending: list[Message] = []
        if spread is not None:  # a round goes on: medium work since it began waits
            owed, mark = spread
            fast, owed = _take_fast(lane, owed, most, now, expired)
            fast_expired = len(expired)
            if not owed:  # its last fast messages: its turn, for what came before it
                if lane:  # the next round's fast messages wait: this round's turn only
                    rounds = 1
                early = [i for i in slow if i.seq < mark and i.round < rounds]
                if fast or early or self._medium_len[peer]:
                    if len(early) < len(slow):
                        later = [i for i in slow if not (i.seq < mark and i.round < rounds)]
                        self._return_slow(peer, later)
                        slow = early
                else:  # the rest of it expired and no turn is due: the next begins
                    spread = None
        if spread is None:  # a round begins: every fast message queued now
            mark = self._slow_seq
            fast, owed = _take_fast(lane, 0, most, now, expired)
            fast_expired = len(expired)
            pending = _live(self._pending[peer], now, expired)
            self._pending[peer] = []
        if replies_before:  # count off the replies that left the lane
            self._lane_loses(peer, fast, expired[expired_before:fast_expired])
        if owed:  # the round's fast messages go on in the next plan: no turn yet
            self._spread[peer] = (owed, mark)
            rounds = 0
            if slow:
                self._return_slow(peer, slow)
                slow = ()
        if not (fast or pending or slow or self._medium_len[peer]):
            return None
        self._medium_len[peer] += len(pending)
        self._planned.add(peer)
        return Plan(
            peer=peer,
            epoch=self._epochs,
            rounds=rounds,
            fast=tuple(fast),
            new_medium=tuple(pending),
            slow=tuple(slow),
            preemption=preemption,
        )

    def _take_slow(
        self, rounds: int, ready: set[bytes], now: float, expired: list[Message]
    ) -> dict[bytes, list[SlowItem]]:
        """The first ``rounds`` live slow items, one per round, skipping blocked
        peers and stopping at a peer whose plan is still in flight."""
        taken: dict[bytes, list[SlowItem]] = {}
        if not ready:
            return taken  # nothing to take: the lane is left as it is
        kept: list[SlowItem] = []
        k = 0
        while self._slow and k < rounds:
            peer = self._slow[0].message.next_hop
            if peer in self._in_flight:
                break  # its turn comes as soon as its plan is back: keep the order
            item = self._slow.popleft()
            if peer not in ready:  # blocked: skipped, not lost
                if peer in self._blocked:
                    parked = self._parked.get(peer)
                    if parked is None:
                        parked = self._parked[peer] = deque()
                    parked.append(item)
                else:
                    kept.append(item)
                continue
            self._slow_count[peer] -= 1
            if item.message.deadline <= now:
                expired.append(item.message)
                continue
            taken.setdefault(peer, []).append(SlowItem(item.seq, item.message, k))
            k += 1
        self._slow.extendleft(reversed(kept))
        return taken

    def sweep_if_due(self, now: float) -> list[Message]:
        """The messages that expired here, dropped, if a sweep is due (once per
        ``sweep_interval``); callable with an epoch in flight, as a timer does
        while a blocked peer holds messages."""
        expired: list[Message] = []
        if now >= self._next_sweep:
            self._next_sweep = now + self.sweep_interval
            self._sweep(now, expired)
        return expired

    def _sweep(self, now: float, expired: list[Message]) -> None:
        """Drop every expired message the planner holds, in every lane but
        those of peers planned since the last sweep: their next plans take
        the lanes (a long fast lane a plan's share at a time) and drop what
        expired then (a flood's lane of 100,000 took 5 ms to look through,
        the GIL held). What it drops of a round that did not fit one plan
        is counted off that round. The slow lane is
        looked through only once its earliest deadline may have passed: a
        lower bound, kept as messages join the lane or are handed back."""
        planned, self._planned = self._planned, set()
        for peer in self._peers - (planned - self._blocked):  # a blocked one gets no plan
            lane = self._fast[peer]
            spread = self._spread.get(peer)
            if spread is not None:  # what the sweep drops of the round's rest
                owed = spread[0] - sum(m.deadline <= now for m in islice(lane, spread[0]))
                if owed:
                    self._spread[peer] = (owed, spread[1])
                else:  # what was left of its round expired: the round is over
                    del self._spread[peer]
            fast_seen, fast_earliest, seen, earliest = self._swept.get(peer, _UNSWEPT)
            before = len(expired)
            swept_fast = _sweep_lane(lane, fast_seen, fast_earliest, now, expired)
            if peer in self._replies:
                self._lane_loses(peer, expired[before:])
            self._swept[peer] = (
                *swept_fast,
                *_sweep_lane(self._pending[peer], seen, earliest, now, expired),
            )
        if now >= self._slow_earliest:  # (the lane is looked through only then)
            self._sweep_slow(now, expired)

    def _sweep_slow(self, now: float, expired: list[Message]) -> None:
        """Drop the slow lane's expired messages, and make its bound exact."""
        earliest = math.inf
        lanes = [self._slow, *self._parked.values()]
        for n, lane in enumerate(lanes):
            keep: deque[SlowItem] = deque()
            for item in lane:
                deadline = item.message.deadline
                if deadline > now:
                    keep.append(item)
                    earliest = min(earliest, deadline)
                else:
                    expired.append(item.message)
                    self._slow_count[item.message.next_hop] -= 1
            lanes[n] = keep
        self._slow = lanes[0]
        self._parked = {
            peer: lane for peer, lane in zip(self._parked, lanes[1:], strict=True) if lane
        }
        self._slow_earliest = earliest

    def complete(self, result: PlanResult) -> list[Message]:
        """Take a peer's result back.

        Returns what the plan did not send if the peer was removed meanwhile
        (fast, then slow), for the caller to fail as it failed the rest of
        that peer's messages; otherwise nothing. When no epoch is in flight
        after it (``epoch_in_flight``), it is time to call ``start_epoch``
        (an express plan's result can free work that waited).
        """
        peer = result.peer
        self._in_flight.discard(peer)
        orphans: list[Message] = []
        if peer in self._peers:
            self._take_back(result)
        else:
            orphans = result.unsent()
        self._finish_if_done(peer, result.epoch)
        return orphans

    def _take_back(self, result: PlanResult) -> None:
        peer = result.peer
        if result.unsent_fast or result.unsent_slow or result.medium_len:
            self._dirty.add(peer)
        if result.unsent_fast:
            self._lane_gains(peer, result.unsent_fast)
            self._fast[peer].extendleft(reversed(result.unsent_fast))
            self._swept.pop(peer, None)
            spread = self._spread.get(peer)
            if spread is not None:  # they are still that round's
                self._spread[peer] = (spread[0] + len(result.unsent_fast), spread[1])
        if result.unsent_slow:
            self._return_slow(peer, result.unsent_slow)
        self._medium_len[peer] = result.medium_len
        if result.blocked:
            self._blocked.add(peer)

    def _return_slow(self, peer: bytes, items: Sequence[SlowItem]) -> None:
        """Hand ``peer``'s slow items taken for a plan (oldest first) back to
        the lane, unsent."""
        returned = [SlowItem(i.seq, i.message) for i in items]
        self._put_back(returned)
        earliest = min(i.message.deadline for i in returned)
        self._slow_earliest = min(self._slow_earliest, earliest)
        self._slow_count[peer] = self._slow_count.get(peer, 0) + len(returned)

    def _put_back(self, items: Sequence[SlowItem]) -> None:
        """Return slow items (oldest first) to their places in the lane. Only
        the lane's head older than the youngest of them is looked at: they
        came from the head (merging a lane of 20,000 whole took 0.57 ms)."""
        lane, youngest = self._slow, items[-1].seq
        head: list[SlowItem] = []
        while lane and lane[0].seq < youngest:
            head.append(lane.popleft())
        if head:
            items = list(heapq.merge(items, head, key=_seq))
        lane.extendleft(reversed(items))

    def _finish_if_done(self, peer: bytes, epoch_number: int) -> None:
        epoch = self._epoch
        if epoch is None or epoch.number != epoch_number:
            return
        epoch.waiting.discard(peer)
        if epoch.waiting:
            return
        self._epoch = None
        if epoch.preemption.requested:
            self._rounds = 1
        else:
            self._rounds = min(self.max_rounds, max(1, epoch.rounds) * 2)

    # -- replies in the fast lanes ------------------------------------------

    def _one_more_reply(self, peer: bytes) -> bool:
        """Count one more reply in ``peer``'s fast lane; False, counting
        nothing, if it holds ``reply_backlog`` already."""
        held = self._replies.get(peer, 0)
        if held >= self.reply_backlog:
            return False
        self._replies[peer] = held + 1
        return True

    def _lane_gains(self, peer: bytes, messages: Iterable[Message]) -> None:
        """Count the replies of ``messages``, put in ``peer``'s fast lane."""
        added = _replies_in(messages)
        if added:
            self._replies[peer] = self._replies.get(peer, 0) + added

    def _lane_loses(self, peer: bytes, *gone: Iterable[Message]) -> None:
        """Count off the replies of ``gone``, taken out of ``peer``'s fast lane."""
        left = self._replies.get(peer, 0) - sum(map(_replies_in, gone))
        if left > 0:
            self._replies[peer] = left
        else:
            self._replies.pop(peer, None)

    def replies_held(self, peer: bytes) -> int:
        """How many replies ``peer``'s fast lane holds."""
        return self._replies.get(peer, 0)

    # -- looking in --------------------------------------------------------

    def has_work(self) -> bool:
        """True while anything is queued for a ready peer."""
        for peer in self._peers:
            if peer in self._blocked:
                continue
            if self._fast[peer] or self._pending[peer] or self._medium_len[peer]:
                return True
        return any(item.message.next_hop not in self._blocked for item in self._slow)

    def drain(self) -> list[Message]:
        """Remove and return every message the planner holds (node stopping)."""
        out: list[Message] = []
        for peer in list(self._peers):
            out.extend(self.take_peer_messages(peer))
        out.extend(item.message for item in self._slow)
        self._slow.clear()
        self._parked.clear()
        self._slow_count.clear()
        self._slow_earliest = math.inf
        out.extend(entry[2] for entry in sorted(self._delayed))
        self._delayed.clear()
        return out

    def held(self) -> int:
        """Every message waiting: in the lanes, deferred, and (as last
        reported) in the peers' medium queues."""
        return (
            sum(map(len, self._fast.values()))
            + sum(self._medium_len.values())
            + sum(map(len, self._pending.values()))
            + self._slow_len()
            + len(self._delayed)
        )

    def _slow_len(self) -> int:
        return len(self._slow) + sum(map(len, self._parked.values()))

    def depths(self) -> dict[str, int]:
        """Queue depths as the planner knows them (medium: last reported)."""
        return {
            "fast": sum(map(len, self._fast.values())),
            "medium": sum(self._medium_len.values()) + sum(map(len, self._pending.values())),
            "slow": self._slow_len(),
            "delayed": len(self._delayed),
        }

    def __repr__(self) -> str:
        d = self.depths()
        epoch = f"epoch={self._epoch.number}x{self._epoch.rounds}" if self._epoch else "idle"
        return (
            f"<Planner {epoch} peers={len(self._peers)} blocked={len(self._blocked)} "
            f"fast={d['fast']} medium={d['medium']} slow={d['slow']} delayed={d['delayed']}>"
        )


def _take_fast(
    lane: deque[Message], owed: int, most: int, now: float, expired: list[Message]
) -> tuple[list[Message], int]:
    """A plan's fast messages from the head of ``lane``, and how many of the
    round's are left for the next plan.

    ``owed``: how many at the head still belong to the round in progress;
    none starts a new round, of every message in the lane. Takes up to
    ``most`` of them, or more chunks of ``most`` while all it took expired
    (those go to ``expired``).
    """
    owed = min(owed, len(lane)) if owed else len(lane)
    while True:
        n = min(owed, most)
        owed -= n
        if n == len(lane):
            live = _live(lane, now, expired)
            lane.clear()
        else:
            take = lane.popleft
            live = _live([take() for _ in range(n)], now, expired)
        if live or not owed:
            return live, owed


def _replies_in(messages: Iterable[Message]) -> int:
    reply = Kind.REPLY
    return sum(1 for m in messages if m.kind is reply)


def _live(lane: Iterable[Message], now: float, expired: list[Message]) -> list[Message]:
    """The messages of ``lane`` still alive at ``now``; the others go to ``expired``."""
    live: list[Message] = []
    for message in lane:
        (live if message.deadline > now else expired).append(message)
    return live


_UNSWEPT: Final = (0, math.inf, 0, math.inf)


def _sweep_lane(
    lane: MutableSequence[Message], seen: int, earliest: float, now: float, expired: list[Message]
) -> tuple[int, float]:
    """Drop ``lane``'s expired messages (in place), looking only at those
    after the first ``seen`` (whose earliest deadline is ``earliest``) while
    that has not passed; returns what this sweep saw, for the next one.
    (100,000 medium messages held for a blocked peer took 3.4 ms to look
    through whole, the GIL held, at every sweep.)"""
    if now >= earliest or seen > len(lane):
        seen, earliest = 0, math.inf  # look at them all
    # (from the end: skipping the first ``seen`` would cost as much as a look)
    new = list(islice(reversed(lane), len(lane) - seen))[::-1] if seen else lane
    if any(m.deadline <= now for m in new):
        kept = [*islice(lane, seen), *_live(new, now, expired)]
        lane.clear()
        lane.extend(kept)
        new = kept[seen:]
    if new:
        joined = min(m.deadline for m in new)
        earliest = min(earliest, joined)
    return len(lane), earliest


def _seq(item: SlowItem) -> int:
    return item.seq
