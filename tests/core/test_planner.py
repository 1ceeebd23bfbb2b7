"""The Scheduler's rules, run without threads: a Planner and simulated peers."""

from __future__ import annotations

import random
from collections import deque
from collections.abc import Callable
from dataclasses import replace
from typing import Any

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from lanes_kit import FAST, MEDIUM, SLOW, msg

from p2p0mq_actors.core.errors import WouldBlock
from p2p0mq_actors.core.fairness import Plan, PlanResult, run_plan
from p2p0mq_actors.core.message import Kind, Message, Priority
from p2p0mq_actors.core.planner import FAST_PLAN_MAX, Planner

PEERS = (b"p1", b"p2", b"p3", b"p4")


class Sim:
    """A Planner plus peers that carry out plans when told to ``step``."""

    def __init__(
        self, peers: tuple[bytes, ...] = PEERS, rounds: int = 16, fast_max: int = FAST_PLAN_MAX
    ) -> None:
        self.planner = Planner(max_rounds=rounds, fast_plan_max=fast_max)
        self.now = 0.0
        self.medium = {p: deque[Message]() for p in peers}
        self.inbox = {p: deque[Plan]() for p in peers}
        self.capacity: dict[bytes, int | None] = dict.fromkeys(peers)
        self.log: list[Message] = []
        self.slow_log: list[tuple[tuple[int, int], Message]] = []
        self.expired: list[Message] = []
        self.unknown: list[Message] = []
        self.on_send = lambda m: None
        for p in peers:
            self.planner.add_peer(p)

    def enqueue(self, *messages: Message) -> None:
        intake = self.planner.enqueue(messages)
        self.unknown += intake.unknown
        for plan in intake.express:
            self._deliver(plan)
        self.pump()

    def pump(self) -> None:
        plans, expired = self.planner.start_epoch(self.now)
        self.expired += expired
        for plan in plans:
            self._deliver(plan)

    def _deliver(self, plan: Plan) -> None:
        assert not self.inbox[plan.peer], "two plans in flight for one peer"
        self.inbox[plan.peer].append(plan)

    def step(self, peer: bytes) -> bool:
        if not self.inbox[peer]:
            return False
        plan = self.inbox[peer].popleft()
        slot = {id(i.message): (plan.epoch, i.round) for i in plan.slow}

        def send(m: Message) -> None:
            cap = self.capacity[peer]
            if cap is not None:
                if cap == 0:
                    raise WouldBlock("full")
                self.capacity[peer] = cap - 1
            self.log.append(m)
            if id(m) in slot:
                self.slow_log.append((slot[id(m)], m))
            self.on_send(m)

        run = run_plan(plan, self.medium[peer], send, self.now)
        self.expired += run.expired
        assert self.planner.complete(run.result) == []  # (no peer is removed here)
        if not self.planner.epoch_in_flight:
            self.pump()
        return True

    def unblock(self, peer: bytes, capacity: int | None = None) -> None:
        self.capacity[peer] = capacity
        self.planner.set_blocked(peer, False, len(self.medium[peer]))
        self.pump()

    def settle(self, order: list[bytes] | None = None) -> None:
        """Run every plan until nothing is in flight (all sockets open)."""
        for peer in self.capacity:
            if self.planner.is_blocked(peer) or self.capacity[peer] is not None:
                self.unblock(peer)
        for _ in range(100_000):
            busy = [p for p in (order or list(self.inbox)) if self.inbox[p]]
            if not busy:
                return
            self.step(busy[0])
        raise AssertionError("did not settle")


def planner(*peers: bytes, blocked: tuple[bytes, ...] = (), rounds: int = 16) -> Planner:
    """A Planner that knows ``peers``, of which ``blocked`` are blocked."""
    p = Planner(max_rounds=rounds)
    for peer in peers:
        p.add_peer(peer)
    for peer in blocked:
        p.set_blocked(peer, True)
    return p


def test_an_idle_planner_plans_nothing() -> None:
    sim = Sim()
    assert sim.planner.start_epoch(0.0) == ([], [])
    assert not sim.planner.epoch_in_flight


def test_a_fast_message_for_an_idle_peer_takes_the_express_path() -> None:
    p = Planner()
    p.add_peer(b"x")
    m = msg(b"x", FAST)
    intake = p.enqueue([m])
    assert intake.express == [Plan(peer=b"x", epoch=0, rounds=0, fast=(m,))]
    assert not intake.preempted and not p.epoch_in_flight


def test_in_one_batch_a_peer_stops_being_idle_once_work_is_queued_for_it() -> None:
    p = Planner()
    p.add_peer(b"x")
    first, second = msg(b"x", MEDIUM), msg(b"x", FAST)
    intake = p.enqueue([first, second])
    assert intake.express == []  # the fast one waits behind the queued medium one
    assert p.take_peer_messages(b"x") == [second, first]


def test_in_one_batch_fast_messages_for_an_idle_peer_share_its_express_plan() -> None:
    p = Planner()
    p.add_peer(b"x")
    a, m, b = msg(b"x", FAST), msg(b"x", MEDIUM), msg(b"x", FAST)
    intake = p.enqueue([a, m, b])
    assert [plan.fast for plan in intake.express] == [(a, b)]
    assert p.take_peer_messages(b"x") == [m]


@pytest.mark.parametrize(
    ("batch", "preempts"),
    [
        ([(b"x", MEDIUM)] * 3, False),  # medium work for a planned peer waits its turn
        ([(b"x", MEDIUM), (b"y", MEDIUM)], True),  # a peer the epoch does not plan for
        ([(b"x", MEDIUM), (b"x", SLOW)], True),
        ([(b"y", MEDIUM), (b"x", MEDIUM)], True),  # asked once, it stays asked
    ],
)
def test_a_batch_preempts_the_epoch_if_any_of_its_messages_calls_for_it(
    batch: list[tuple[bytes, Priority]], preempts: bool
) -> None:
    sim = Sim(peers=(b"x", b"y"), rounds=8)
    sim.enqueue(*(msg(b"x") for _ in range(50)))
    sim.step(b"x")  # now a two-round epoch for x is in flight
    sim.step(b"y")
    intake = sim.planner.enqueue([msg(peer, lane) for peer, lane in batch])
    assert intake.preempted is preempts
    assert sim.inbox[b"x"][0].preemption.requested is preempts


def test_messages_for_unknown_peers_are_handed_back() -> None:
    p = Planner()
    m = msg(b"ghost")
    assert p.enqueue([m]).unknown == [m]


def test_epochs_grow_from_one_round_and_fall_back_after_a_preemption() -> None:
    sim = Sim(peers=(b"x", b"y"), rounds=8)
    sim.enqueue(*(msg(b"x") for _ in range(100)))
    sizes = []
    for _ in range(5):
        sizes.append(sim.inbox[b"x"][0].rounds)
        sim.step(b"x")
    assert sizes == [1, 2, 4, 8, 8]
    sim.enqueue(msg(b"y"))  # y is not in the epoch in flight: preempt
    assert sim.inbox[b"x"][0].preemption.requested
    sim.step(b"x")
    assert [sim.inbox[p][0].rounds for p in (b"x", b"y")] == [1, 1]


def test_medium_work_for_a_peer_already_planned_does_not_preempt() -> None:
    sim = Sim(peers=(b"x", b"y"), rounds=8)
    sim.enqueue(*(msg(b"x") for _ in range(50)))
    sim.step(b"x")
    intake = sim.planner.enqueue([msg(b"x")])
    assert not intake.preempted


def test_preemptible_gives_the_epoch_new_work_may_preempt_and_its_peers() -> None:
    sim = Sim(peers=(b"x", b"y"), rounds=8)
    assert sim.planner.preemptible() is None  # no epoch
    sim.enqueue(*(msg(b"x") for _ in range(100)))
    assert sim.planner.preemptible() is None  # a one-round epoch: nothing to preempt
    sim.step(b"x")
    watched = sim.planner.preemptible()
    assert watched is not None
    preemption, planned = watched
    assert planned == {b"x"} and preemption is sim.inbox[b"x"][0].preemption
    sim.enqueue(msg(b"y"))
    assert preemption.requested
    assert sim.planner.preemptible() is None  # preempted already


def test_a_victim_goes_out_in_the_first_round_after_it_was_queued() -> None:
    """Y's message is queued while X, with 10,000 queued, is mid-plan: at most
    two more X messages go first (the round in flight and X's share of the
    synchronous round)."""
    sim = Sim(peers=(b"x", b"y"), rounds=16)
    sim.enqueue(*(msg(b"x") for _ in range(10_000)))
    for _ in range(6):  # epochs of 1, 2, 4, 8, 16, 16 rounds
        sim.step(b"x")
    victim = msg(b"y")
    queued_at: list[int] = []

    def send(m: Message) -> None:
        if len(sim.log) == 50:
            queued_at.append(len(sim.log))
            sim.enqueue(victim)

    sim.on_send = send
    sim.settle(order=[b"x", b"y"])  # x always runs first: the worst case for y
    sent_at = sim.log.index(victim)
    assert sent_at - queued_at[0] == 1  # one more x: its share of the synchronous round
    assert len(sim.log) == 10_001 and len(set(map(id, sim.log))) == 10_001


def test_an_epoch_that_a_peer_joins_has_one_round() -> None:
    """Y's work is taken between two epochs of X's (no epoch to preempt):
    the epoch both are in has one round, since X's connection may carry out
    its whole plan before Y's gets to run; then the epochs grow again."""
    sim = Sim(peers=(b"x", b"y"), rounds=8)
    sim.enqueue(*(msg(b"x") for _ in range(200)))
    for _ in range(4):  # epochs of 1, 2, 4, 8 rounds
        sim.step(b"x")
    assert sim.inbox[b"x"][0].rounds == 8
    sim.planner.enqueue([msg(b"y")])  # no pump: the epoch of 8 is still out
    sim.step(b"x")  # its result comes: the next epoch is planned with y in it
    assert [sim.inbox[p][0].rounds for p in (b"x", b"y")] == [1, 1]
    sim.step(b"y")
    sim.step(b"x")
    assert sim.inbox[b"x"][0].rounds == 2  # y is done: x alone, growing again
    sim.step(b"x")
    assert sim.inbox[b"x"][0].rounds == 4


def test_peers_that_stay_busy_keep_their_long_epochs() -> None:
    sim = Sim(peers=(b"x", b"y"), rounds=4)
    sim.enqueue(*(msg(p) for _ in range(100) for p in (b"x", b"y")))
    sizes = []
    for _ in range(5):
        sizes.append(sim.inbox[b"x"][0].rounds)
        sim.step(b"x")
        sim.step(b"y")
    assert sizes == [1, 2, 4, 4, 4]


def test_a_lone_newcomer_needs_no_short_epoch() -> None:
    sim = Sim(peers=(b"x", b"y"), rounds=8)
    sim.enqueue(*(msg(b"x") for _ in range(3)))
    sim.settle()  # x's epochs of 1 and 2 rounds: the ramp stands at 4
    sim.enqueue(*(msg(b"y") for _ in range(50)))
    assert sim.inbox[b"y"][0].rounds > 1  # nobody else to wait for it


def test_a_blocked_peer_is_skipped_and_its_slow_messages_wait_in_order() -> None:
    sim = Sim(peers=(b"x", b"y"))
    sim.capacity[b"x"] = 0
    sx1, sy1, sx2, sy2 = msg(b"x", SLOW), msg(b"y", SLOW), msg(b"x", SLOW), msg(b"y", SLOW)
    sim.enqueue(sx1, sy1, sx2, sy2)
    sim.step(b"x")  # would block at once: everything comes back
    assert sim.planner.is_blocked(b"x")
    while sim.step(b"y"):
        pass
    assert sim.log == [sy1, sy2]
    sim.unblock(b"x")
    while sim.step(b"x"):
        pass
    assert sim.log == [sy1, sy2, sx1, sx2]


def test_a_writable_peers_set_aside_slow_messages_go_before_younger_ones_of_others() -> None:
    # While x is blocked the lane sets its slow messages aside; once x is
    # writable they are back in their place by age: the lane's oldest first.
    p = planner(b"x", b"y", blocked=(b"x",), rounds=1)
    sx1, sx2 = msg(b"x", SLOW), msg(b"x", SLOW)
    sy1, sy2, sy3 = (msg(b"y", SLOW) for _ in range(3))
    p.enqueue([sx1, sx2, sy1, sy2, sy3])

    def epoch() -> list[Message]:
        plans, _ = p.start_epoch(0.0)
        for plan in plans:
            p.complete(PlanResult(peer=plan.peer, epoch=plan.epoch, medium_len=0))
        return [item.message for plan in plans for item in plan.slow]

    assert epoch() == [sy1]  # x's two were stepped over
    assert p.depths()["slow"] == 4
    p.set_blocked(b"x", False)
    assert [epoch() for _ in range(5)] == [[sx1], [sx2], [sy2], [sy3], []]


def test_slow_messages_handed_back_by_several_plans_regain_their_order() -> None:
    p = planner(b"x", b"y", rounds=4)
    p.enqueue([msg(b"x"), msg(b"y")])
    for _ in range(3):  # epochs of 1, 2, then 4 rounds
        plans, _ = p.start_epoch(0.0)
        for plan in plans:
            p.complete(PlanResult(peer=plan.peer, epoch=plan.epoch, medium_len=5))
    slow = [msg(b"x", SLOW), msg(b"y", SLOW), msg(b"x", SLOW), msg(b"y", SLOW)]
    p.enqueue(slow)
    plans, _ = p.start_epoch(0.0)
    assert sorted((i.round, i.message) for plan in plans for i in plan.slow) == [
        (k, m) for k, m in enumerate(slow)
    ]  # x has rounds 0 and 2, y 1 and 3
    for plan in plans:  # neither sent anything
        p.complete(
            PlanResult(peer=plan.peer, epoch=plan.epoch, medium_len=5, unsent_slow=plan.slow)
        )
    plans, _ = p.start_epoch(0.0)
    assert sorted((i.round, i.message) for plan in plans for i in plan.slow) == [
        (k, m) for k, m in enumerate(slow)
    ]


def test_the_sweep_drops_expired_slow_messages_set_aside_for_a_blocked_peer() -> None:
    p = planner(b"x", b"y", blocked=(b"x",))
    old, live = msg(b"x", SLOW, deadline=5.0), msg(b"x", SLOW)
    p.enqueue([old, live])
    assert p.start_epoch(1.0) == ([], [])  # the lane meets them: set aside
    assert p.depths()["slow"] == 2
    assert p.start_epoch(6.0) == ([], [old])
    assert p.depths()["slow"] == 1
    assert p.take_peer_messages(b"x") == [live]
    assert p.depths()["slow"] == 0


def test_the_sweep_drops_each_slow_message_when_its_own_deadline_passed() -> None:
    # Deadlines out of queue order: the lane's bound is its earliest, not its first.
    p = planner(b"x", blocked=(b"x",))
    m10, m5, m20 = (msg(b"x", SLOW, deadline=d) for d in (10.0, 5.0, 20.0))
    p.enqueue([m10, m5, m20])
    assert p.start_epoch(1.0) == ([], [])
    assert p.start_epoch(6.0) == ([], [m5])
    assert p.start_epoch(9.0) == ([], [])
    assert p.start_epoch(11.0) == ([], [m10])
    assert p.start_epoch(21.0) == ([], [m20])
    assert p.drain() == []


def test_take_peer_messages_returns_everything_held_for_the_peer() -> None:
    sim = Sim(peers=(b"x", b"y"))
    sim.capacity[b"x"] = 0
    f, m, s = msg(b"x", FAST), msg(b"x"), msg(b"x", SLOW)
    keep = msg(b"y", SLOW)
    sim.enqueue(f, m, s, keep)
    sim.step(b"x")
    held = sim.planner.take_peer_messages(b"x")
    assert held == [f, m, s]  # f came back from its express plan; m was never handed out
    assert sim.planner.depths()["fast"] == sim.planner.depths()["medium"] == 0
    assert [i.message for i in sim.inbox[b"y"][0].slow] == [keep]


def test_a_result_for_a_removed_peer_hands_its_unsent_messages_back() -> None:
    p = planner(b"x")
    m, f, s = msg(b"x"), msg(b"x", FAST), msg(b"x", SLOW)
    p.enqueue([m, f, s])
    (plan,), _ = p.start_epoch(0.0)
    assert p.remove_peer(b"x") == []  # all of it was handed out
    result = PlanResult(
        peer=b"x", epoch=plan.epoch, medium_len=1, unsent_fast=(f,), unsent_slow=plan.slow
    )
    assert p.complete(result) == [f, s]
    assert not p.epoch_in_flight
    assert p.depths() == {"fast": 0, "medium": 0, "slow": 0, "delayed": 0}


def test_a_failed_peer_no_longer_counts_its_medium_queue() -> None:
    p = planner(b"x")
    f = msg(b"x", FAST)
    p.enqueue([msg(b"x") for _ in range(3)])
    (plan,), _ = p.start_epoch(0.0)
    p.complete(PlanResult(peer=b"x", epoch=plan.epoch, medium_len=3, blocked=True))
    p.enqueue([f])
    assert p.held() == 4
    assert p.fail_peer(b"x") == [f]
    assert p.held() == 0
    assert p.depths() == {"fast": 0, "medium": 0, "slow": 0, "delayed": 0}


def test_expired_messages_are_dropped_when_planned() -> None:
    sim = Sim(peers=(b"x", b"y"))
    sim.capacity[b"x"] = 0
    old_f, old_s = msg(b"x", FAST, deadline=5.0), msg(b"y", SLOW, deadline=5.0)
    sim.enqueue(msg(b"x", FAST), old_f, old_s)
    sim.step(b"x")
    sim.now = 6.0
    sim.settle()
    assert sorted(m.message_id for m in sim.expired) == [old_f.message_id, old_s.message_id]
    assert len(sim.log) == 1


def test_the_sweep_looks_only_at_peers_not_planned_since_the_last_one_or_blocked() -> None:
    # A planned peer's next plan takes its lanes whole and drops what expired
    # then; the sweep (once a second) need not look through them. But a peer
    # planned and then blocked gets no next plan: the sweep looks at it.
    p = planner(b"x", b"y", blocked=(b"x",))
    old_x, live_x = msg(b"x", MEDIUM, deadline=5.0), msg(b"x", MEDIUM)
    p.enqueue([old_x, live_x])
    assert p.start_epoch(1.0) == ([], [])  # the sweep ran: nothing expired yet
    p.enqueue([msg(b"y", MEDIUM)])
    (plan,), _ = p.start_epoch(1.5)
    assert plan.peer == b"y"
    p.complete(PlanResult(peer=b"y", epoch=plan.epoch, medium_len=0))
    p.set_blocked(b"y", True)
    old_y, live_y = msg(b"y", MEDIUM, deadline=5.0), msg(b"y", MEDIUM)
    p.enqueue([old_y, live_y])
    plans, expired = p.start_epoch(6.0)
    assert (plans, {m.message_id for m in expired}) == ([], {old_x.message_id, old_y.message_id})
    assert p.take_peer_messages(b"x") == [live_x]
    assert p.take_peer_messages(b"y") == [live_y]


def test_deferred_messages_fall_due_in_order() -> None:
    p = Planner()
    a, b = msg(b"x"), msg(b"x")
    p.defer(b, 2.0)
    p.defer(a, 1.0)
    assert p.next_due() == 1.0
    assert p.release_due(0.5) == []
    assert p.release_due(2.0) == [a, b]
    assert p.next_due() is None


def test_drain_returns_every_message_held() -> None:
    p = Planner()
    p.add_peer(b"x")
    p.add_peer(b"y")
    express = msg(b"x", FAST)
    assert p.enqueue([express]).express  # handed out: x has a plan in flight
    held = [msg(b"x", FAST), msg(b"x"), msg(b"y", SLOW), msg(b"y")]
    p.enqueue(held)
    later = msg(b"x")
    p.defer(later, 5.0)
    assert sorted(m.message_id for m in p.drain()) == sorted(m.message_id for m in [*held, later])
    assert p.depths() == {"fast": 0, "medium": 0, "slow": 0, "delayed": 0}


def test_a_bad_max_rounds_is_refused() -> None:
    with pytest.raises(ValueError, match="max_rounds"):
        Planner(max_rounds=0)


def test_a_plan_carries_at_most_fast_plan_max_fast_messages_and_then_no_rounds() -> None:
    # x has seven fast messages (more than a plan's three), then a medium and
    # a slow one; y a slow one. x's plans carry its fast messages three at a
    # time with no turn in the rounds until the last of them.
    p = Planner(max_rounds=4, fast_plan_max=3)
    for peer in (b"x", b"y"):
        p.add_peer(peer)
    p.set_blocked(b"x", True)  # (no express plan for the first one)
    fast = [msg(b"x", FAST) for _ in range(7)]
    mx, sx, sy = msg(b"x", MEDIUM), msg(b"x", SLOW), msg(b"y", SLOW)
    p.enqueue([*fast, mx, sx, sy])
    p.set_blocked(b"x", False)
    plans_seen: list[list[Plan]] = []
    for _ in range(10):
        plans, expired = p.start_epoch(0.0)
        assert expired == []
        if not plans:
            break
        plans_seen.append(plans)
        for plan in plans:
            medium = len(plan.new_medium)
            p.complete(PlanResult(peer=plan.peer, epoch=plan.epoch, medium_len=medium))
    xs = [plan for plans in plans_seen for plan in plans if plan.peer == b"x"]
    assert [list(plan.fast) for plan in xs[:3]] == [fast[0:3], fast[3:6], fast[6:7]]
    assert [plan.rounds for plan in xs[:2]] == [0, 0]
    assert xs[2].rounds >= 1  # the last of them goes with its rounds
    assert [[item.message for item in plan.slow] for plan in xs[:3]] == [[], [], [sx]]
    assert xs[0].new_medium == (mx,)  # handed to its queue, not sent
    epoch_of = {
        item.message.message_id: n
        for n, plans in enumerate(plans_seen)
        for plan in plans
        for item in plan.slow
    }
    assert set(epoch_of) == {sx.message_id, sy.message_id}
    assert p.depths()["fast"] == p.depths()["slow"] == 0


def test_the_fast_messages_a_plan_leaves_keep_their_order_through_blocking_and_expiry() -> None:
    sim = Sim(peers=(b"x",), fast_max=4)
    sim.capacity[b"x"] = 0
    first = msg(b"x", FAST)
    sim.enqueue(first)  # express: comes back unsent, x is blocked
    sim.step(b"x")
    doomed = [msg(b"x", FAST, deadline=5.0) for _ in range(6)]
    rest = [msg(b"x", FAST) for _ in range(9)]
    sim.enqueue(*doomed, *rest)
    sim.now = 6.0
    sim.unblock(b"x", capacity=2)  # takes two a plan, then blocks again
    for _ in range(40):
        if not sim.step(b"x"):
            sim.unblock(b"x", capacity=2)
    sim.settle()
    assert sim.log == [first, *rest]
    assert sorted(m.message_id for m in sim.expired) == sorted(m.message_id for m in doomed)


def test_a_bad_fast_plan_max_is_refused() -> None:
    with pytest.raises(ValueError, match="fast_plan_max"):
        Planner(fast_plan_max=0)


# -- properties over random runs ----------------------------------------------------

ops = st.lists(
    st.one_of(
        st.tuples(
            st.just("enqueue"),
            st.lists(
                st.tuples(st.sampled_from(PEERS), st.sampled_from([FAST, MEDIUM, SLOW])),
                min_size=1,
                max_size=8,
            ),
        ),
        st.tuples(st.just("step"), st.sampled_from(PEERS)),
        st.tuples(st.just("block"), st.tuples(st.sampled_from(PEERS), st.integers(0, 3))),
        st.tuples(st.just("unblock"), st.sampled_from(PEERS)),
    ),
    max_size=80,
)


def run_ops(sim: Sim, script: list[tuple[str, object]], *, settle: bool = True) -> list[Message]:
    """Carry out ``script`` (the ``ops`` or ``timed_ops`` below); the messages queued."""
    queued: list[Message] = []
    for op, arg in script:
        if op == "enqueue":
            batch = [msg(*item) for item in arg]  # type: ignore[attr-defined]
            queued += batch
            sim.enqueue(*batch)
        elif op == "step":
            sim.step(arg)  # type: ignore[arg-type]
        elif op == "block":
            peer, cap = arg  # type: ignore[misc]
            sim.capacity[peer] = cap
        elif op == "wait":
            sim.now += arg  # type: ignore[operator]
            sim.pump()
        elif sim.planner.is_blocked(arg):  # type: ignore[arg-type]
            sim.unblock(arg)  # type: ignore[arg-type]
    if settle:
        sim.settle()
    return queued


# A plan's bound on fast messages, small enough for the scripts to pass it
# (or the default, which they never reach).
fast_max = st.sampled_from([1, 2, 3, FAST_PLAN_MAX])


@settings(max_examples=300, deadline=None)
@given(ops, st.integers(1, 64), fast_max)
def test_every_message_is_sent_exactly_once_in_fifo_order_per_peer_and_lane(
    script: list[tuple[str, object]], q: int, most: int
) -> None:
    sim = Sim(rounds=q, fast_max=most)
    queued = run_ops(sim, script)
    assert sorted(m.message_id for m in sim.log) == sorted(m.message_id for m in queued)
    for peer in PEERS:
        for lane in (FAST, MEDIUM, SLOW):
            want = [m for m in queued if m.next_hop == peer and m.priority is lane]
            assert [m for m in sim.log if m.next_hop == peer and m.priority is lane] == want
    assert not sim.planner.epoch_in_flight and not sim.planner.has_work()


@settings(max_examples=200, deadline=None)
@given(ops.map(lambda s: [o for o in s if o[0] in ("enqueue", "step")]), st.integers(1, 64))
def test_without_blocking_the_slow_lane_gives_one_per_round_oldest_first(script, q) -> None:  # type: ignore[no-untyped-def]
    """Peers carry out their plans independently, so the slow lane's order is
    that of the rounds the messages were sent in: one per round, oldest first."""
    sim = Sim(rounds=q)
    queued = run_ops(sim, script)
    rounds = [slot for slot, _ in sim.slow_log]
    assert len(set(rounds)) == len(rounds)
    in_round_order = [m for _, m in sorted(sim.slow_log, key=lambda entry: entry[0])]
    assert in_round_order == [m for m in queued if m.priority is SLOW]


@settings(max_examples=200, deadline=None)
@given(ops.map(lambda s: [o for o in s if o[0] in ("enqueue", "step")]), fast_max)
def test_a_fast_message_is_never_behind_medium_or_slow_queued_earlier_for_its_peer(
    script: list[tuple[str, object]], most: int
) -> None:
    """Each plan sends its fast messages first, and new fast work preempts:
    after a fast message is queued, its peer sends at most one medium or
    slow message of the round in flight before it. A peer with more fast
    messages than a plan carries gets no medium or slow turn until they
    are out."""
    sim = Sim(rounds=16, fast_max=most)
    queued = run_ops(sim, script)
    position = {id(m): i for i, m in enumerate(sim.log)}
    for f in (m for m in queued if m.priority is FAST):
        before = [
            m
            for m in sim.log[: position[id(f)]]
            if m.next_hop == f.next_hop and m.priority is not FAST
        ]
        queued_before_f = {id(m) for m in queued[: queued.index(f)]}
        late = [m for m in before if id(m) not in queued_before_f]
        assert late == []


def timed(item: st.SearchStrategy[tuple[Any, ...]]) -> st.SearchStrategy[list[Any]]:
    """Scripts of ``run_ops`` steps, ``wait`` among them, queueing ``item``s."""
    return st.lists(
        st.one_of(
            st.tuples(st.just("enqueue"), st.lists(item, min_size=1, max_size=6)),
            st.tuples(st.just("step"), st.sampled_from(PEERS)),
            st.tuples(st.just("block"), st.tuples(st.sampled_from(PEERS), st.integers(0, 3))),
            st.tuples(st.just("unblock"), st.sampled_from(PEERS)),
            st.tuples(st.just("wait"), st.floats(0.0, 8.0)),
        ),
        max_size=60,
    )


timed_ops = timed(
    st.tuples(st.sampled_from(PEERS), st.sampled_from([FAST, MEDIUM, SLOW]), st.floats(0, 30))
)


@settings(max_examples=300, deadline=None)
@given(timed_ops, st.integers(1, 64), fast_max)
def test_after_the_sweeps_no_expired_message_is_held_in_any_lane(
    script: list[tuple[str, object]], q: int, most: int
) -> None:
    """Whatever was queued, handed back or set aside, with deadlines in any
    order: once every peer was swept, the planner holds no message whose
    deadline passed, and every message ends once (sent, expired, in a
    connection's medium queue, or still held)."""
    sim = Sim(rounds=q, fast_max=most)
    sim.planner.sweep_interval = 0.0  # every epoch sweeps
    queued = run_ops(sim, script, settle=False)
    for peer in PEERS:  # whatever is in flight comes back unsent
        sim.capacity[peer] = 0
    for _ in range(100):
        if not any([sim.step(peer) for peer in PEERS]):
            break
    # Two sweeps: the first skips the peers planned since the one before.
    sim.pump()
    sim.pump()
    held = sim.planner.drain()
    assert all(m.deadline > sim.now for m in held)
    in_queues = [m for queue in sim.medium.values() for m in queue]
    ended = [m.message_id for m in [*sim.log, *sim.expired, *held, *in_queues]]
    assert sorted(ended) == sorted(m.message_id for m in queued)


def test_the_sweep_drops_each_medium_message_held_for_a_blocked_peer_when_it_expired() -> None:
    # Messages that join the list after a sweep may expire before those it saw.
    p = planner(b"x", blocked=(b"x",))
    m10, m5, m20, m7 = (msg(b"x", MEDIUM, deadline=d) for d in (10.0, 5.0, 20.0, 7.0))
    p.enqueue([m10])
    assert p.start_epoch(1.0) == ([], [])
    p.enqueue([m5])
    assert p.start_epoch(2.0) == ([], [])
    assert p.start_epoch(6.0) == ([], [m5])
    p.enqueue([m20, m7])
    assert p.start_epoch(8.0) == ([], [m7])
    assert p.start_epoch(9.0) == ([], [])
    assert p.start_epoch(11.0) == ([], [m10])
    assert p.take_peer_messages(b"x") == [m20]


def test_fast_messages_handed_back_are_swept_even_behind_those_seen_before() -> None:
    # x's express plan is out while a sweep looks at its lane; the plan then
    # hands f_a back, ahead of what that sweep saw.
    p = planner(b"x")
    f_a, f_b = msg(b"x", FAST, deadline=3.0), msg(b"x", FAST, deadline=50.0)
    (express,) = p.enqueue([f_a]).express
    p.enqueue([f_b])
    assert p.start_epoch(1.0) == ([], [])  # sweeps x's lane: f_b
    p.complete(
        PlanResult(peer=b"x", epoch=express.epoch, medium_len=0, unsent_fast=(f_a,), blocked=True)
    )
    assert p.start_epoch(4.0) == ([], [f_a])
    assert p.take_peer_messages(b"x") == [f_b]


def test_a_capped_lane_found_all_expired_leaves_no_live_slow_message_behind() -> None:
    # x's fast lane is longer than a plan carries and all of it expired: its
    # slow message still goes in that epoch (nothing else would plan again).
    p = Planner(fast_plan_max=2)
    p.add_peer(b"x")
    p.sweep_interval = 60.0
    p.sweep_if_due(9.0)
    slow = msg(b"x", SLOW)
    p.enqueue([slow, *(msg(b"x", FAST, deadline=5.0) for _ in range(3))])
    plans, expired = p.start_epoch(10.0)
    assert len(expired) == 3
    assert [[i.message for i in plan.slow] for plan in plans] == [[slow]]


def _round_of(*messages: Message) -> tuple[Planner, Plan]:
    """A Planner (a plan's bound: 2) whose peer x was sent ``messages`` while
    blocked (no express plan), and the first plan of that round."""
    p = Planner(fast_plan_max=2)
    p.add_peer(b"x")
    p.set_blocked(b"x", True)
    p.enqueue(messages)
    p.set_blocked(b"x", False)
    (first,), _ = p.start_epoch(0.0)
    return p, first


def test_when_the_rest_of_a_round_expired_the_next_rounds_fast_messages_go() -> None:
    a, b, c = (msg(b"x", FAST, deadline=5.0) for _ in range(3))
    p, first = _round_of(a, b, c)
    assert first.fast == (a, b) and first.rounds == 0  # c is left of the round
    later = msg(b"x", FAST)
    p.enqueue([later])
    p.complete(PlanResult(peer=b"x", epoch=first.epoch, medium_len=0))
    (second,), expired = p.start_epoch(6.0)  # c expired meanwhile
    assert expired == [c] and second.fast == (later,)


def test_a_slow_message_queued_during_a_round_whose_rest_expired_is_not_left_behind() -> None:
    p, first = _round_of(*(msg(b"x", FAST, deadline=5.0) for _ in range(3)))  # two of three
    slow = msg(b"x", SLOW)  # queued after the round began
    p.enqueue([slow])
    p.complete(PlanResult(peer=b"x", epoch=first.epoch, medium_len=0))
    (second,), expired = p.start_epoch(6.0)  # the round's third expired meanwhile
    assert len(expired) == 1 and [i.message for i in second.slow] == [slow]


def test_what_an_express_plan_leaves_in_the_lane_preempts_as_new_work_does() -> None:
    sim = Sim(peers=(b"x", b"y"), rounds=16, fast_max=2)
    sim.enqueue(*(msg(b"y", MEDIUM) for _ in range(200)))
    for _ in range(5):  # y's epochs grow to 16 rounds
        sim.step(b"y")
    assert sim.planner.preemptible() is not None
    intake = sim.planner.enqueue([msg(b"x", FAST) for _ in range(3)])  # x is idle
    assert [len(plan.fast) for plan in intake.express] == [2]
    assert intake.preempted  # the third waits in the lane: y's epoch must end


def test_a_sweep_that_drops_the_rest_of_a_round_ends_the_round() -> None:
    p, first = _round_of(*(msg(b"x", FAST, deadline=5.0) for _ in range(3)))
    p.complete(PlanResult(peer=b"x", epoch=first.epoch, medium_len=0, blocked=True))
    assert len(p.sweep_if_due(6.0)) == 1  # the round's third, x being blocked
    # (internal: a round's count of fast messages never passes its lane's)
    assert b"x" not in p._spread


@pytest.mark.parametrize("most", [2, FAST_PLAN_MAX])
def test_a_round_spread_over_plans_sends_what_one_long_plan_would(most: int) -> None:
    # A round of five fast messages; while it goes out, three more fast ones
    # are queued, then a medium and a slow one: the three go first.
    sim = Sim(peers=(b"x",), fast_max=most)
    sim.planner.set_blocked(b"x", True)  # (no express plan)
    round_one = [msg(b"x", FAST) for _ in range(5)]
    sim.planner.enqueue(round_one)
    sim.unblock(b"x")
    sim.step(b"x")
    later = [msg(b"x", FAST) for _ in range(3)]
    sim.enqueue(*later)
    medium, slow = msg(b"x", MEDIUM), msg(b"x", SLOW)
    sim.enqueue(medium, slow)
    sim.settle()
    assert sim.log == [*round_one, *later, medium, slow]


def _names_sent(
    most: int,
    script: Callable[[Planner, Callable[..., Message]], list[Plan]],
    on_send: Callable[[Planner, int], None],
) -> list[str]:
    """What ``script`` (which queues messages named through its second
    argument, and returns express plans) sends to x, carried out plan by
    plan with ``run_plan``; ``on_send`` is called after each send."""
    p = Planner(max_rounds=16, fast_plan_max=most)
    p.add_peer(b"x")
    names: dict[int, str] = {}
    log: list[str] = []
    queue: deque[Message] = deque()

    def make(prio: Priority, name: str) -> Message:
        m = msg(b"x", prio)
        names[m.message_id] = name
        return m

    def send(m: Message) -> None:
        log.append(names[m.message_id])
        on_send(p, len(log))

    plans = script(p, make)
    for _ in range(30):
        for plan in plans:
            p.complete(run_plan(plan, queue, send, 0.0).result)
        plans, _ = p.start_epoch(0.0)
        if not plans:
            break
    return log


def test_a_spread_rounds_last_plan_has_one_round_while_newer_fast_messages_wait() -> None:
    # The round's last plan would have 2 rounds; F, queued during the first
    # (one-round) epoch, goes after the round's one medium turn, not after two.
    late: list[Message] = []

    def script(p: Planner, make: Callable[..., Message]) -> list[Plan]:
        late.append(make(FAST, "F"))
        media = [make(MEDIUM, f"m{i}") for i in (1, 2, 3)]
        return p.enqueue([*media, *(make(FAST, f"f{i}") for i in (1, 2, 3))]).express

    def on_send(p: Planner, sent: int) -> None:
        if sent == 1:
            p.enqueue(late)

    want = _names_sent(FAST_PLAN_MAX, script, on_send)
    assert want == ["f1", "f2", "f3", "m1", "F", "m2", "m3"]
    assert _names_sent(2, script, on_send) == want


def test_the_rest_of_an_express_plan_is_the_rest_of_its_round() -> None:
    later: list[Message] = []

    def script(p: Planner, make: Callable[..., Message]) -> list[Plan]:
        plans = p.enqueue([make(FAST, f"e{i}") for i in range(4)]).express  # x idle
        p.enqueue([make(MEDIUM, "M")])
        later.extend([make(FAST, "L1"), make(FAST, "L2")])
        return plans

    def on_send(p: Planner, sent: int) -> None:
        if sent == 3:  # queued before one long express plan would have ended
            p.enqueue(later)

    want = _names_sent(FAST_PLAN_MAX, script, on_send)
    assert want == ["e0", "e1", "e2", "e3", "L1", "L2", "M"]
    assert _names_sent(2, script, on_send) == want


def test_what_a_sweep_drops_of_a_rounds_rest_is_counted_off_that_round() -> None:
    a1, a2, a4 = (msg(b"x", FAST) for _ in range(3))
    a3 = msg(b"x", FAST, deadline=5.0)
    p, first = _round_of(msg(b"x", MEDIUM), a1, a2, a3, a4)
    p.sweep_interval = 0.0
    assert first.fast == (a1, a2) and first.rounds == 0
    p.complete(PlanResult(peer=b"x", epoch=first.epoch, medium_len=1, blocked=True))
    later = msg(b"x", FAST)
    p.enqueue([later])
    assert p.sweep_if_due(6.0) == [a3]  # x is blocked: swept
    p.set_blocked(b"x", False, 1)
    (second,), _ = p.start_epoch(6.0)
    assert second.fast == (a4,) and second.rounds == 1  # the round's turn, then later's


def test_a_rounds_medium_turn_comes_before_fast_messages_queued_after_it_started() -> None:
    # x's round has five fast messages, more than a plan's two; three more
    # come while its plans go out. The round's medium message goes with its
    # last fast one, before the three: a steady inflow cannot starve it.
    sim = Sim(peers=(b"x",), fast_max=2)
    sim.capacity[b"x"] = 0
    sim.enqueue(msg(b"x", FAST))
    sim.step(b"x")  # express, unsent: x is blocked
    round_one = [msg(b"x", FAST) for _ in range(4)]
    medium = msg(b"x", MEDIUM)
    sim.enqueue(*round_one, medium)
    sim.unblock(b"x")
    sim.step(b"x")
    later = [msg(b"x", FAST) for _ in range(3)]
    sim.enqueue(*later)
    sim.settle()
    log = [m.message_id for m in sim.log]
    assert log.index(medium.message_id) < log.index(later[0].message_id)
    assert log[1:5] == [m.message_id for m in round_one]


def test_an_express_plan_carries_at_most_fast_plan_max_and_the_rest_follow_in_order() -> None:
    p = Planner(fast_plan_max=3)
    p.add_peer(b"x")
    batch = [msg(b"x", FAST) for _ in range(8)]
    (express,) = p.enqueue(batch).express
    assert express.fast == tuple(batch[:3])
    assert p.start_epoch(0.0) == ([], [])  # x's express plan is in flight
    p.complete(PlanResult(peer=b"x", epoch=0, medium_len=0))
    carried = []
    for _ in range(5):
        plans, _ = p.start_epoch(0.0)
        for plan in plans:
            carried += plan.fast
            p.complete(PlanResult(peer=plan.peer, epoch=plan.epoch, medium_len=0))
    assert carried == batch[3:]


# Two peers, mostly fast messages with near deadlines: long fast lanes that
# expire in part, the cases a plan's bound on fast messages meets.
crowded_ops = st.lists(
    st.one_of(
        st.tuples(
            st.just("enqueue"),
            st.lists(
                st.tuples(
                    st.sampled_from(PEERS[:2]),
                    st.sampled_from([FAST, FAST, FAST, SLOW, MEDIUM]),
                    st.floats(0, 10),
                ),
                min_size=1,
                max_size=8,
            ),
        ),
        st.tuples(st.just("step"), st.sampled_from(PEERS[:2])),
        st.tuples(st.just("block"), st.tuples(st.sampled_from(PEERS[:2]), st.integers(0, 3))),
        st.tuples(st.just("unblock"), st.sampled_from(PEERS[:2])),
        st.tuples(st.just("wait"), st.floats(0.0, 5.0)),
    ),
    max_size=60,
)


@settings(max_examples=500, deadline=None)
@given(st.one_of(timed_ops, crowded_ops), st.integers(1, 64), st.sampled_from([1, 2, 3]))
def test_once_every_socket_is_open_no_live_message_is_left_held(
    script: list[tuple[str, object]], q: int, most: int
) -> None:
    """Whatever happened before (blocking, expiry, sweeps), once every peer
    is writable and every plan has come back, the planner holds nothing
    alive: every live message was planned (no epoch left unstarted)."""
    sim = Sim(rounds=q, fast_max=most)
    sim.planner.sweep_interval = 1.0
    run_ops(sim, script, settle=False)
    sim.settle()
    assert not sim.planner.epoch_in_flight
    assert [m for m in sim.planner.drain() if m.deadline > sim.now] == []


def _seeded_run(seed: int) -> tuple[Sim, list[Message]]:
    """A random script (seeded), pumped only where the Scheduler pumps:
    after an enqueue, after a result with no epoch in flight, after a peer
    turns writable. Two busy peers, long fast lanes for a plan's bound of 1
    to 3, deadlines that pass; then every socket open and every plan back."""
    rnd = random.Random(seed)
    sim = Sim(rounds=rnd.randint(1, 64), fast_max=rnd.choice([1, 2, 3]))
    sim.planner.sweep_interval = rnd.choice([0.5, 1.0, 100.0])
    queued: list[Message] = []
    lanes = [FAST, FAST, FAST, MEDIUM, SLOW]
    for _ in range(rnd.randint(5, 60)):
        op = rnd.random()
        if op < 0.4:
            batch = [
                msg(rnd.choice(PEERS[:2]), rnd.choice(lanes), sim.now + rnd.uniform(0, 10))
                for _ in range(rnd.randint(1, 8))
            ]
            queued += batch
            sim.enqueue(*batch)
        elif op < 0.7:
            sim.step(rnd.choice(PEERS[:2]))
        elif op < 0.8:
            sim.capacity[rnd.choice(PEERS)] = rnd.randint(0, 3)
        elif op < 0.9:
            peer = rnd.choice(PEERS)
            if sim.planner.is_blocked(peer):
                sim.unblock(peer)
        else:
            sim.now += rnd.uniform(0, 5)
    sim.settle()
    return sim, queued


@pytest.mark.parametrize("first", range(0, 1200, 300))
def test_seeded_random_runs_lose_nothing_leave_nothing_live_and_keep_fast_first(
    first: int,
) -> None:
    for seed in range(first, first + 300):
        sim, queued = _seeded_run(seed)
        held = sim.planner.drain()
        in_queues = [m for queue in sim.medium.values() for m in queue]
        ended = [m.message_id for m in [*sim.log, *sim.expired, *held, *in_queues]]
        assert sorted(ended) == sorted(m.message_id for m in queued), seed
        assert [m for m in held if m.deadline > sim.now] == [], seed
        # No medium or slow message goes before a fast one queued earlier
        # for the same peer (the round in flight aside: it was planned first).
        order = {id(m): i for i, m in enumerate(queued)}
        for peer in PEERS[:2]:
            sent = [m for m in sim.log if m.next_hop == peer]
            for i, m in enumerate(sent):
                if m.priority is not FAST:
                    later_fast = [f for f in sent[i + 1 :] if f.priority is FAST]
                    assert not any(order[id(f)] < order[id(m)] for f in later_fast), seed


def reply_to(peer: bytes, prio: Priority = FAST, deadline: float = 1e9) -> Message:
    return replace(msg(peer, prio, deadline), kind=Kind.REPLY)


def test_replies_past_a_peers_reply_backlog_overflow_and_nothing_else_does() -> None:
    planner = Planner(reply_backlog=3)
    for peer in (b"slow", b"other"):
        planner.add_peer(peer)
    first = planner.enqueue([msg(b"slow", FAST)])  # express: now it has a plan in flight
    assert len(first.express) == 1
    burst = [msg(b"slow", FAST) for _ in range(10)]  # the node's own: they do not count
    replies = [reply_to(b"slow") for _ in range(3)]
    assert planner.enqueue([*burst, *replies]).overflow == []
    assert planner.replies_held(b"slow") == 3
    reply, request = reply_to(b"slow"), msg(b"slow", FAST)
    medium_reply, other = reply_to(b"slow", MEDIUM), reply_to(b"other")
    intake = planner.enqueue([reply, request, medium_reply, other])
    assert intake.overflow == [reply]  # the request, a medium reply and another peer's go in
    assert planner.depths()["fast"] == 14 and planner.depths()["medium"] == 1
    assert [plan.fast for plan in intake.express] == [(other,)]


def test_a_reply_goes_in_again_once_replies_have_left_the_lane() -> None:
    sim = Sim(peers=(b"x",), fast_max=2)
    sim.planner.reply_backlog = 2
    sim.capacity[b"x"] = 0  # x's first plan comes back unsent: x is blocked
    sim.enqueue(msg(b"x", FAST))
    sim.step(b"x")
    replies = [reply_to(b"x") for _ in range(3)]
    sim.enqueue(*replies)
    assert sim.planner.replies_held(b"x") == 2  # the third overflowed
    sim.unblock(b"x")
    sim.settle()
    assert sim.planner.replies_held(b"x") == 0
    assert [m for m in sim.log if m.kind is Kind.REPLY] == replies[:2]
    late = reply_to(b"x")
    assert sim.planner.enqueue([late]).overflow == []


reply_ops = timed(
    st.tuples(
        st.sampled_from(PEERS),
        st.sampled_from([FAST, FAST, MEDIUM]),
        st.floats(0, 30),
        st.booleans(),  # a reply
    )
)


@settings(max_examples=300, deadline=None)
@given(reply_ops, fast_max, st.integers(1, 4))
def test_the_replies_counted_in_each_fast_lane_are_the_replies_it_holds(
    script: list[tuple[str, object]], most: int, backlog: int
) -> None:
    """Through plans, hand-backs, expiry in plans and in sweeps, and overflow."""
    sim = Sim(rounds=4, fast_max=most)
    sim.planner.reply_backlog = backlog
    sim.planner.sweep_interval = 0.0
    for op, arg in script:
        if op == "enqueue":
            batch = [
                reply_to(peer, prio, deadline) if is_reply else msg(peer, prio, deadline)
                for peer, prio, deadline, is_reply in arg  # type: ignore[attr-defined]
            ]
            sim.enqueue(*batch)
        else:
            run_ops(sim, [(op, arg)], settle=False)
        for peer in PEERS:
            lane = sim.planner._fast[peer]
            held = sum(m.kind is Kind.REPLY for m in lane)
            assert sim.planner.replies_held(peer) == held <= backlog + most
