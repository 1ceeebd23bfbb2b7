"""The reference model of the three lanes, and carrying out one plan."""

from __future__ import annotations

import gc
from collections import deque

from gc_kit import cyclic_garbage
from hypothesis import given, settings
from hypothesis import strategies as st
from lanes_kit import FAST, MEDIUM, SLOW, msg

from p2p0mq_actors.core.errors import (
    SendError,
    TransportError,
    UnencodableError,
    UnexpectedSendError,
    WouldBlock,
    detached,
)
from p2p0mq_actors.core.fairness import (
    FairQueues,
    Plan,
    PlanResult,
    SlowItem,
    run_plan,
    sent_but,
)
from p2p0mq_actors.core.message import Message


def ids(messages: list[Message]) -> list[int]:
    return [m.message_id for m in messages]


# -- FairQueues -----------------------------------------------------------------


def test_a_round_takes_all_fast_then_one_medium_per_peer_then_one_slow() -> None:
    q = FairQueues()
    x1, x2, x3 = msg(b"x"), msg(b"x"), msg(b"x")
    y1 = msg(b"y")
    s1, s2 = msg(b"x", SLOW), msg(b"y", SLOW)
    f1, f2 = msg(b"y", FAST), msg(b"x", FAST)
    for m in (x1, x2, x3, y1, s1, s2, f1, f2):
        q.push(m)
    assert q.next_round() == [f1, f2, x1, y1, s1]
    assert q.next_round() == [x2, s2]
    assert q.next_round() == [x3]
    assert q.next_round() == []
    assert len(q) == 0


def test_the_order_across_peers_comes_from_the_injected_shuffle() -> None:
    q = FairQueues(shuffle=lambda peers: peers.reverse())
    a, b, c = msg(b"a"), msg(b"b"), msg(b"c")
    for m in (a, b, c):
        q.push(m)
    assert q.next_round() == [c, b, a]


lanes = st.sampled_from([FAST, MEDIUM, SLOW])
peers = st.sampled_from([b"p1", b"p2", b"p3", b"p4"])


@settings(max_examples=200)
@given(st.lists(st.tuples(peers, lanes), max_size=60), st.randoms())
def test_rounds_keep_fifo_per_peer_and_lane_and_lose_nothing(pushes, rnd) -> None:  # type: ignore[no-untyped-def]
    q = FairQueues(shuffle=rnd.shuffle)
    queued = [msg(peer, lane) for peer, lane in pushes]
    for m in queued:
        q.push(m)
    out: list[Message] = []
    rounds = 0
    while len(q):
        this = q.next_round()
        fast = [m for m in this if m.priority is FAST]
        medium = [m for m in this if m.priority is MEDIUM]
        slow = [m for m in this if m.priority is SLOW]
        assert this == fast + medium + slow
        assert len(slow) <= 1
        assert len({m.next_hop for m in medium}) == len(medium)
        if rounds == 0:
            assert len(fast) == sum(1 for m in queued if m.priority is FAST)
        out.extend(this)
        rounds += 1
        assert rounds <= len(queued)
    assert sorted(ids(out)) == sorted(ids(queued))
    for peer in (b"p1", b"p2", b"p3", b"p4"):
        for lane in (FAST, MEDIUM, SLOW):
            want = [m for m in queued if m.next_hop == peer and m.priority is lane]
            assert [m for m in out if m.next_hop == peer and m.priority is lane] == want
    assert [m for m in out if m.priority is SLOW] == [m for m in queued if m.priority is SLOW]


@settings(max_examples=100)
@given(st.lists(st.tuples(peers, lanes), min_size=1, max_size=40))
def test_a_medium_peer_with_backlog_is_served_every_round(pushes) -> None:  # type: ignore[no-untyped-def]
    q = FairQueues()
    for peer, lane in pushes:
        q.push(msg(peer, lane))
    backlog = {p: sum(1 for pp, lane in pushes if pp == p and lane is MEDIUM) for p, _ in pushes}
    for k in range(max(backlog.values())):
        served = {m.next_hop for m in q.next_round() if m.priority is MEDIUM}
        assert served == {p for p, n in backlog.items() if n > k}


# -- run_plan -------------------------------------------------------------------


class Socket:
    """A send function that accepts ``capacity`` messages, then would block."""

    def __init__(self, capacity: int | None = None, fail: set[int] | None = None) -> None:
        self.capacity = capacity
        self.fail = fail or set()
        self.sent: list[Message] = []

    def __call__(self, m: Message) -> None:
        if self.capacity is not None and len(self.sent) >= self.capacity:
            raise WouldBlock("full")
        if m.message_id in self.fail:
            raise TransportError("boom", errno=113)
        self.sent.append(m)


def test_a_plan_sends_fast_then_one_medium_per_round_with_its_slow_items() -> None:
    f1, f2 = msg(b"x", FAST), msg(b"x", FAST)
    m1, m2, m3 = msg(b"x"), msg(b"x"), msg(b"x")
    s1, s2 = msg(b"x", SLOW), msg(b"x", SLOW)
    medium = deque([m1])
    plan = Plan(
        peer=b"x",
        epoch=1,
        rounds=4,
        fast=(f1, f2),
        new_medium=(m2, m3),
        slow=(SlowItem(7, s1, 0), SlowItem(9, s2, 3)),
    )
    sock = Socket()
    run = run_plan(plan, medium, sock, now=0.0)
    assert sock.sent == [f1, f2, m1, s1, m2, m3, s2]
    assert run.result == PlanResult(peer=b"x", epoch=1, medium_len=0)
    assert run.sent == sock.sent and run.expired == [] and run.failed == []


def test_a_plan_leaves_medium_beyond_its_rounds_in_the_queue() -> None:
    medium = deque([msg(b"x") for _ in range(5)])
    rest = list(medium)[2:]
    run = run_plan(Plan(peer=b"x", epoch=1, rounds=2), medium, Socket(), now=0.0)
    assert run.result.medium_len == 3
    assert list(medium) == rest


def test_would_block_mid_plan_keeps_the_rest_in_order_and_sends_nothing_twice() -> None:
    f1, f2, f3 = (msg(b"x", FAST) for _ in range(3))
    m1, m2 = msg(b"x"), msg(b"x")
    s1 = msg(b"x", SLOW)
    plan = Plan(peer=b"x", epoch=3, rounds=4, fast=(f1, f2, f3), slow=(SlowItem(1, s1, 1),))
    medium = deque([m1, m2])
    run = run_plan(plan, medium, Socket(capacity=2), now=0.0)
    assert run.sent == [f1, f2]
    assert run.result == PlanResult(
        peer=b"x", epoch=3, medium_len=2, unsent_fast=(f3,), unsent_slow=plan.slow, blocked=True
    )
    assert list(medium) == [m1, m2]

    run = run_plan(plan, deque([m1, m2]), Socket(capacity=4), now=0.0)
    assert run.sent == [f1, f2, f3, m1]
    assert run.result.unsent_slow == plan.slow and run.result.blocked


def test_would_block_on_a_slow_item_returns_it_and_the_later_ones() -> None:
    s1, s2 = msg(b"x", SLOW), msg(b"x", SLOW)
    plan = Plan(peer=b"x", epoch=1, rounds=3, slow=(SlowItem(1, s1, 0), SlowItem(2, s2, 2)))
    run = run_plan(plan, deque(), Socket(capacity=1), now=0.0)
    assert run.sent == [s1]
    assert run.result.unsent_slow == (SlowItem(2, s2, 2),)


def test_expired_messages_are_not_sent_and_do_not_use_a_round() -> None:
    old, fresh = msg(b"x", deadline=5.0), msg(b"x")
    old_fast = msg(b"x", FAST, deadline=5.0)
    medium = deque([old, fresh])
    run = run_plan(Plan(peer=b"x", epoch=1, rounds=1, fast=(old_fast,)), medium, Socket(), 5.0)
    assert run.sent == [fresh]
    assert run.expired == [old_fast, old]
    assert run.result.medium_len == 0


def test_a_failed_send_is_reported_and_the_plan_goes_on() -> None:
    f1, f2 = msg(b"x", FAST), msg(b"x", FAST)
    m1, m2 = msg(b"x"), msg(b"x")
    sock = Socket(fail={f1.message_id, m1.message_id})
    run = run_plan(Plan(peer=b"x", epoch=1, rounds=2, fast=(f1, f2)), deque([m1, m2]), sock, 0.0)
    assert run.sent == [f2, m2]
    assert [(m, e.errno) for m, e in run.failed] == [(f1, 113), (m1, 113)]  # type: ignore[attr-defined]


def test_a_failed_sends_error_is_kept_without_the_frames_that_sent_it() -> None:
    # The error goes to the message's Concern and may stay (a request's
    # cause): with its traceback it kept the runner, the plan and its
    # messages alive, in a cycle only the collector frees.
    fast = tuple(msg(b"x", FAST) for _ in range(50))

    def send(m: Message) -> None:
        if m is fast[20]:
            try:
                raise ValueError("packing failed")
            except ValueError as exc:
                raise UnencodableError("cannot encode it") from exc

    with cyclic_garbage() as garbage:  # what the collector finds meanwhile
        run = run_plan(Plan(peer=b"x", epoch=1, rounds=1, fast=fast), deque(), send, 0.0)
        ((message, error),) = run.failed
        assert message is fast[20] and type(error) is UnencodableError
        assert error.__traceback__ is None and error.__cause__ is not None
        assert error.__cause__.__traceback__ is None  # nor what it was raised from
        del run, message, error
        gc.collect()
        assert not [o for o in garbage if isinstance(o, (BaseException, Plan))]


def test_detached_strips_the_tracebacks_of_a_cause_chain_even_one_that_loops() -> None:
    try:
        try:
            raise KeyError("inner")
        except KeyError as inner:
            raise TransportError("outer") from inner
    except TransportError as caught:
        outer = caught
    inner_error = outer.__cause__
    assert outer.__traceback__ is not None and inner_error is not None
    assert inner_error.__traceback__ is not None
    inner_error.__cause__ = outer  # a loop: it must still end
    assert detached(outer) is outer
    assert outer.__traceback__ is None and inner_error.__traceback__ is None
    assert outer.__cause__ is inner_error  # the chain itself is kept


def test_detached_leaves_alone_the_error_its_caller_is_handling() -> None:
    # An error raised in a caller's except block has the caller's error as
    # its __context__: that one's traceback is the caller's to log.
    try:
        raise ValueError("the caller's own")
    except ValueError as handled:
        try:
            raise TransportError("ours")
        except TransportError as ours:
            assert ours.__context__ is handled
            detached(ours)
            assert ours.__traceback__ is None
        assert handled.__traceback__ is not None


def test_preemption_stops_a_plan_at_the_next_round_boundary() -> None:
    medium = deque([msg(b"x") for _ in range(10)])
    s_late = msg(b"x", SLOW)
    plan = Plan(peer=b"x", epoch=1, rounds=8, slow=(SlowItem(4, s_late, 5),))
    sent: list[Message] = []

    def send(m: Message) -> None:
        sent.append(m)
        if len(sent) == 3:
            plan.preemption.requested = True

    run = run_plan(plan, medium, send, now=0.0)
    assert len(sent) == 3
    assert run.result.medium_len == 7
    assert run.result.unsent_slow == plan.slow


# -- a plan's fast messages handed over at once (send_all) ----------------------


class SendAll:
    """Takes at most ``take`` of what it is given and fails those whose ids
    are in ``fail``; records every call."""

    def __init__(self, take: int | None = None, fail: set[int] | None = None) -> None:
        self.take = take
        self.fail = fail or set()
        self.calls: list[list[Message]] = []

    def __call__(self, messages: list[Message]) -> tuple[int, list[tuple[Message, SendError]]]:
        self.calls.append(list(messages))
        taken = len(messages) if self.take is None else min(self.take, len(messages))
        failed: list[tuple[Message, SendError]] = [
            (m, TransportError("boom", errno=113))
            for m in messages[:taken]
            if m.message_id in self.fail
        ]
        return taken, failed


def test_send_all_gets_the_live_fast_messages_at_once_and_send_the_rest_of_the_plan() -> None:
    f1, f2, f3 = msg(b"x", FAST), msg(b"x", FAST, deadline=5.0), msg(b"x", FAST)
    m1 = msg(b"x")
    sock, send_all = Socket(), SendAll()
    plan = Plan(peer=b"x", epoch=1, rounds=1, fast=(f1, f2, f3))
    run = run_plan(plan, deque([m1]), sock, 5.0, send_all)
    assert send_all.calls == [[f1, f3]]
    assert sock.sent == [m1]
    assert run.sent == [f1, f3, m1] and run.expired == [f2]
    assert run.result == PlanResult(peer=b"x", epoch=1, medium_len=0)


def test_a_lone_fast_message_is_sent_one_by_one() -> None:
    f1 = msg(b"x", FAST)
    sock, send_all = Socket(), SendAll()
    run_plan(Plan(peer=b"x", epoch=1, rounds=1, fast=(f1,)), deque(), sock, 0.0, send_all)
    assert send_all.calls == [] and sock.sent == [f1]


def test_send_goes_on_from_the_first_message_send_all_did_not_take() -> None:
    fast = tuple(msg(b"x", FAST) for _ in range(5))
    sock, send_all = Socket(capacity=1), SendAll(take=2)
    run = run_plan(Plan(peer=b"x", epoch=1, rounds=1, fast=fast), deque(), sock, 0.0, send_all)
    assert sock.sent == [fast[2]]  # then the socket would block
    assert run.sent == list(fast[:3])
    assert run.result.unsent_fast == fast[3:] and run.result.blocked


def test_send_all_failures_are_failures_of_those_messages_only() -> None:
    fast = tuple(msg(b"x", FAST) for _ in range(4))
    send_all = SendAll(fail={fast[1].message_id, fast[2].message_id})
    run = run_plan(Plan(peer=b"x", epoch=1, rounds=1, fast=fast), deque(), Socket(), 0.0, send_all)
    assert run.sent == [fast[0], fast[3]]
    assert [m for m, _ in run.failed] == [fast[1], fast[2]]


def test_a_send_all_that_raises_fails_what_it_was_given_and_the_plan_goes_on() -> None:
    fast = (msg(b"x", FAST), msg(b"x", FAST, deadline=5.0), msg(b"x", FAST))
    m1 = msg(b"x")

    def broken(messages: list[Message]) -> tuple[int, list[tuple[Message, SendError]]]:
        raise RuntimeError("a bug below the plan")

    sock = Socket()
    run = run_plan(Plan(peer=b"x", epoch=1, rounds=1, fast=fast), deque([m1]), sock, 5.0, broken)
    assert [m for m, _ in run.failed] == [fast[0], fast[2]]
    assert all(isinstance(e, UnexpectedSendError) for _, e in run.failed)
    assert run.expired == [fast[1]] and run.sent == [m1] == sock.sent


@settings(max_examples=200)
@given(
    st.lists(st.booleans(), min_size=0, max_size=12),  # expired or not, per fast message
    st.integers(0, 12),  # how many send_all takes
    st.sets(st.integers(0, 11)),  # which of them (by position) it fails
    st.one_of(st.none(), st.integers(0, 12)),  # the socket's capacity after it
)
def test_with_send_all_every_fast_message_ends_once_and_in_order(
    expired: list[bool], take: int, fail_at: set[int], capacity: int | None
) -> None:
    fast = tuple(msg(b"x", FAST, deadline=5.0 if gone else 1e9) for gone in expired)
    fail = {fast[i].message_id for i in fail_at if i < len(fast)}
    sock, send_all = Socket(capacity=capacity), SendAll(take=take, fail=fail)
    run = run_plan(Plan(peer=b"x", epoch=1, rounds=1, fast=fast), deque(), sock, 5.0, send_all)
    failed = [m for m, _ in run.failed]
    ends = [*run.sent, *run.expired, *failed, *run.result.unsent_fast]
    assert sorted(ids(ends)) == ids(list(fast))  # each exactly once
    for part in (run.sent, run.expired, failed, list(run.result.unsent_fast)):
        assert ids(part) == sorted(ids(part))  # in the plan's order
    assert run.expired == [m for m in fast if m.deadline <= 5.0]
    assert run.result.blocked == bool(run.result.unsent_fast)
    if run.result.unsent_fast:  # only what was never offered, and after all that was
        first = run.result.unsent_fast[0].message_id
        assert all(m.message_id < first for m in run.sent + failed)
    if take >= len(fast) and not fail:  # the same outcome as one by one
        one_by_one = run_plan(
            Plan(peer=b"x", epoch=1, rounds=1, fast=fast), deque(), Socket(), 5.0
        )
        assert (run.sent, run.expired, run.result) == (
            one_by_one.sent,
            one_by_one.expired,
            one_by_one.result,
        )


def test_sent_but_takes_one_copy_out_for_each_failure_of_a_message_queued_twice() -> None:
    """A failed copy of a message queued twice took the copy that went out
    with it: that one was never reported sent."""
    a, b = msg(b"x", FAST), msg(b"x", FAST)
    failure = TransportError("down", errno=113)
    assert sent_but([a, b, a, a], [(a, failure)]) == [b, a, a]
    assert sent_but([a, b, a], [(a, failure), (a, failure), (b, failure)]) == []
    assert sent_but([a, b], []) == [a, b]
