"""Fairness: the three lanes and the rounds that drain them.

Rules (the contract of ARCHITECTURE.md):
- A round takes every fast message queued when it starts, then the oldest
  medium message of each peer (order across peers shuffled), then the single
  oldest slow message.
- Per peer and lane, messages leave in the order they were queued.
- ``FairQueues`` is the one-thread reference model of those rules.
- With one actor per peer the same rounds run as ``Plan``s: a peer's share of
  the next Q rounds (fast first, then per round at most one medium message
  and that round's slow items), carried out by ``run_plan``. The Planner
  (``planner.py``) decides the plans.
- A plan stops at a round boundary once its ``Preemption`` is requested, and
  at the first ``WouldBlock``; what it did not send is returned in its
  ``PlanResult``, in order, so nothing is planned twice or lost.
"""

from __future__ import annotations

from collections import Counter, deque
from collections.abc import Callable, Container, Sequence
from dataclasses import dataclass, field

from .errors import SendError, UnexpectedSendError, WouldBlock, detached
from .message import Message, Priority

Shuffle = Callable[[list[bytes]], None]
SendAll = Callable[[list[Message]], tuple[int, list[tuple[Message, SendError]]]]
"""Sends a list of messages at once (see ``run_plan``): returns how many of
the first it took, sent or failed, and the failures among those."""


def no_shuffle(items: list[bytes]) -> None:
    """Keeps the given order; pass ``random.Random(seed).shuffle`` for real use."""


class FairQueues:
    """The reference model: three lanes drained one whole round at a time."""

    def __init__(self, shuffle: Shuffle = no_shuffle) -> None:
        self._shuffle = shuffle
        self._fast: deque[Message] = deque()
        self._medium: dict[bytes, deque[Message]] = {}
        self._slow: deque[Message] = deque()

    def push(self, message: Message) -> None:
        """Queue ``message`` on the lane its priority names (medium: per next hop)."""
        if message.priority is Priority.FAST:
            self._fast.append(message)
        elif message.priority is Priority.SLOW:
            self._slow.append(message)
        else:
            self._medium.setdefault(message.next_hop, deque()).append(message)

    def next_round(self) -> list[Message]:
        """The messages of one round, in sending order."""
        out = list(self._fast)
        self._fast.clear()
        peers = [peer for peer, queue in self._medium.items() if queue]
        self._shuffle(peers)
        out.extend(self._medium[peer].popleft() for peer in peers)
        if self._slow:
            out.append(self._slow.popleft())
        return out

    def __len__(self) -> int:
        return len(self._fast) + len(self._slow) + sum(map(len, self._medium.values()))

    def __repr__(self) -> str:
        medium = sum(map(len, self._medium.values()))
        return f"<FairQueues fast={len(self._fast)} medium={medium} slow={len(self._slow)}>"


class Preemption:
    """Shared by the plans of one epoch: once ``requested``, peers stop at the
    next round boundary. Written by the scheduler, read by the peers."""

    __slots__ = ("requested",)

    def __init__(self) -> None:
        self.requested = False

    def __repr__(self) -> str:
        return f"<Preemption requested={self.requested}>"


def preempts(message: Message, planned: Container[bytes]) -> bool:
    """Whether new ``message`` preempts an epoch that plans for ``planned``
    peers: anything does but a medium message for a planned peer, which
    waits its turn in that peer's medium queue."""
    return message.priority is not Priority.MEDIUM or message.next_hop not in planned


@dataclass(frozen=True, slots=True)
class SlowItem:
    """A slow-lane message with its place in the lane (``seq``) and, once
    planned, the round of the epoch it belongs to."""

    seq: int
    message: Message
    round: int = 0


@dataclass(frozen=True, slots=True)
class Plan:
    """One peer's share of an epoch: fast first, then per round at most one
    medium message (after appending ``new_medium``) and that round's slow items."""

    peer: bytes
    epoch: int
    rounds: int
    fast: tuple[Message, ...] = ()
    new_medium: tuple[Message, ...] = ()
    slow: tuple[SlowItem, ...] = ()
    preemption: Preemption = field(default_factory=Preemption, compare=False)
    through_gate: bool = False
    """Sent by an application thread through the peer's express gate: the
    connection hands the gate back itself when the plan went out whole."""

    def messages(self) -> list[Message]:
        """Every message the plan carries: fast, new medium, then slow."""
        return [*self.fast, *self.new_medium, *(item.message for item in self.slow)]


@dataclass(frozen=True, slots=True)
class PlanResult:
    """What a peer reports when a plan ends: what it did not send, and its
    medium length (it owns that count)."""

    peer: bytes
    epoch: int
    medium_len: int
    unsent_fast: tuple[Message, ...] = ()
    unsent_slow: tuple[SlowItem, ...] = ()
    blocked: bool = False
    source: str = field(default="", compare=False)
    """The connection that ran the plan (its actor urn; empty if not said):
    a result from a peer's earlier connection is not the current one's."""

    def unsent(self) -> list[Message]:
        """What the plan did not send: fast, then slow."""
        return [*self.unsent_fast, *(item.message for item in self.unsent_slow)]


@dataclass(slots=True)
class PlanRun:
    """The outcome of carrying out one plan (see ``run_plan``)."""

    result: PlanResult
    sent: list[Message]
    expired: list[Message]
    failed: list[tuple[Message, SendError]]


class _Runner:
    """Sends messages through ``send`` and sorts the outcomes."""

    __slots__ = ("blocked", "expired", "failed", "now", "send", "sent")

    def __init__(self, send: Callable[[Message], None], now: float) -> None:
        self.send = send
        self.now = now
        self.sent: list[Message] = []
        self.expired: list[Message] = []
        self.failed: list[tuple[Message, SendError]] = []
        self.blocked = False

    def offer(self, message: Message) -> bool:
        """Try one message; False only when the socket would block (not consumed)."""
        if message.deadline <= self.now:
            self.expired.append(message)
            return True
        try:
            self.send(message)
        except WouldBlock:
            self.blocked = True
            return False
        except SendError as exc:
            self.failed.append((message, detached(exc)))
            return True
        except Exception as exc:  # a bug below us: fail this message, keep the books
            error = UnexpectedSendError(f"sending {message!r} raised {type(exc).__name__}: {exc}")
            error.__cause__ = exc
            self.failed.append((message, error))
            return True
        self.sent.append(message)
        return True

    def offer_all(self, messages: Sequence[Message], send_all: SendAll) -> Sequence[Message]:
        """Hand the live ones of ``messages`` to ``send_all`` at once (the
        expired are set aside); returns those it did not take, in order, for
        ``offer`` to try one by one."""
        now = self.now
        live = [message for message in messages if message.deadline > now]
        if len(live) < len(messages):
            self.expired.extend(message for message in messages if message.deadline <= now)
        try:
            taken, failed = send_all(live)
        except Exception as exc:  # a bug below us: what it was given fails (some may have gone)
            error = UnexpectedSendError(
                f"sending {len(live)} messages raised {type(exc).__name__}: {exc}"
            )
            error.__cause__ = exc
            self.failed.extend((message, error) for message in live)
            return ()
        if failed:
            self.sent.extend(sent_but(live[:taken], failed))
            self.failed.extend(failed)
        else:
            self.sent.extend(live if taken == len(live) else live[:taken])
        return live[taken:]


def sent_but(
    messages: Sequence[Message], failed: Sequence[tuple[Message, object]]
) -> list[Message]:
    """``messages`` less one occurrence of each message that ``failed``: by
    identity, and once for each failure, as the same message object may be
    queued more than once (a failed copy used to take its sent copies with it).
    """
    owed = Counter(id(message) for message, _ in failed)
    out: list[Message] = []
    for message in messages:
        key = id(message)
        if owed[key]:
            owed[key] -= 1
        else:
            out.append(message)
    return out


def run_plan(
    plan: Plan,
    medium: deque[Message],
    send: Callable[[Message], None],
    now: float,
    send_all: SendAll | None = None,
) -> PlanRun:
    """Carry out ``plan`` for one peer whose medium queue is ``medium``.

    ``send`` raises ``WouldBlock`` when the socket is not writable: the plan
    stops there, the message stays at the head of its queue and the rest is
    returned unsent. Expired messages are not sent (they do not use a round's
    medium turn); other ``SendError``s are failures of that message only.

    ``send_all``, if given, is handed the plan's fast messages (two or more)
    at once, the expired left out; it may stop early (the socket would block,
    or a message needs ``send``'s care), and ``send`` goes on from the first
    it did not take.
    """
    runner = _Runner(send, now)
    fast: Sequence[Message] = plan.fast
    if send_all is not None and len(fast) > 1:
        fast = runner.offer_all(fast, send_all)
    i = 0
    while i < len(fast) and runner.offer(fast[i]):
        i += 1
    medium.extend(plan.new_medium)
    slow = plan.slow
    j = 0
    if not runner.blocked:
        j = _run_rounds(plan, medium, runner)
    result = PlanResult(
        peer=plan.peer,
        epoch=plan.epoch,
        medium_len=len(medium),
        unsent_fast=tuple(fast[i:]),
        unsent_slow=slow[j:],
        blocked=runner.blocked,
    )
    return PlanRun(result, runner.sent, runner.expired, runner.failed)


def _run_rounds(plan: Plan, medium: deque[Message], runner: _Runner) -> int:
    """The medium and slow part of a plan; returns how many slow items were used."""
    slow = plan.slow
    j = 0
    for k in range(plan.rounds):
        if k and plan.preemption.requested:
            break
        while medium:
            expired = medium[0].deadline <= runner.now
            if not runner.offer(medium[0]):
                return j
            medium.popleft()
            if not expired:
                break
        while j < len(slow) and slow[j].round == k:
            if not runner.offer(slow[j].message):
                return j
            j += 1
        if not medium and j == len(slow):
            break
    return j
