"""The timer queue: order by due time then push order, cancel, compaction, live count.

Tables for the small cases, an exhaustive run over every cancel order, and a
Hypothesis state machine checked against a sorted-list model.
"""

from __future__ import annotations

import gc
import itertools
import math

import pytest
from gc_kit import cyclic_garbage
from hypothesis import given
from hypothesis import strategies as st
from hypothesis.stateful import RuleBasedStateMachine, invariant, precondition, rule

from p2p0mq_actors.core.errors import ConfigurationError
from p2p0mq_actors.core.timers import COMPACT_AT, Timer, TimerQueue, TimerState


def noop() -> None:
    pass


def drain(queue: TimerQueue, now: float = math.inf) -> list[Timer]:
    """Every timer ``pop_due(now)`` gives, in the order it gives them."""
    taken = []
    while (timer := queue.pop_due(now)) is not None:
        taken.append(timer)
    return taken


def named(queue: TimerQueue, dues: list[float]) -> dict[Timer, int]:
    """Push one timer per due time; map each to its push index."""
    return {queue.push(due, noop): index for index, due in enumerate(dues)}


# -- the table ---------------------------------------------------------------------------


def test_a_queue_holds_no_cycle_by_default_nor_after_forget_on_cancel() -> None:
    seen: list[Timer] = []
    owned = TimerQueue(on_cancel=seen.append)  # an owner's, as a clock's
    a, b = owned.push(1.0, lambda: None), owned.push(2.0, lambda: None)
    a.cancel()
    assert seen == [a] and a.state is TimerState.PENDING  # the owner's to do
    owned.forget_on_cancel()
    b.cancel()
    assert seen == [a] and b.state is TimerState.CANCELLED and len(owned) == 1
    with cyclic_garbage() as garbage:  # what the collector finds meanwhile
        plain = TimerQueue()
        timer = plain.push(1.0, lambda: None)
        timer.cancel()
        assert timer.state is TimerState.CANCELLED
        # (a timer in the heap and its queue hold each other until cleared)
        plain.clear()
        owned.clear()
        del plain, timer, owned, a, b
        gc.collect()
        assert not [o for o in garbage if isinstance(o, TimerQueue)]


def test_an_empty_queue_has_nothing_due() -> None:
    queue = TimerQueue()

    assert (len(queue), queue.peek(), queue.next_due(), queue.pop_due(math.inf)) == (
        0,
        None,
        None,
        None,
    )
    assert repr(queue) == "<TimerQueue pending=0 stale=0>"


def test_timers_leave_by_due_time_then_push_order() -> None:
    queue = TimerQueue()
    order = named(queue, [3.0, 1.0, 2.0, 1.0, 3.0, 1.0])

    assert [order[timer] for timer in drain(queue)] == [1, 3, 5, 2, 0, 4]


def test_a_timer_due_exactly_now_is_taken_and_a_later_one_is_not() -> None:
    queue = TimerQueue()
    early = queue.push(5.0, noop)
    late = queue.push(5.5, noop)

    assert queue.pop_due(4.999) is None
    assert queue.pop_due(5.0) is early
    assert queue.pop_due(5.0) is None
    assert (queue.next_due(), queue.peek(), len(queue)) == (5.5, late, 1)


def test_a_taken_timer_is_fired_and_no_longer_counted() -> None:
    queue = TimerQueue()
    timer = queue.push(1.0, noop)

    assert queue.pop_due(1.0) is timer
    assert (timer.state, len(queue), repr(timer)) == (
        TimerState.FIRED,
        0,
        "<TimerHandle due=1.000000 fired>",
    )


def test_a_new_timer_is_pending_and_keeps_its_callback() -> None:
    queue = TimerQueue()
    timer = queue.push(1001.0, print)

    assert (timer.due, timer.callback, timer.state) == (1001.0, print, TimerState.PENDING)
    assert repr(timer) == "<TimerHandle due=1001.000000 pending>"
    assert repr(queue) == "<TimerQueue pending=1 stale=0>"


def test_cancel_takes_a_pending_timer_out_of_the_order() -> None:
    queue = TimerQueue()
    first = queue.push(1.0, noop)
    second = queue.push(2.0, noop)

    assert queue.cancel(first) is True
    assert (first.state, len(queue), repr(queue)) == (
        TimerState.CANCELLED,
        1,
        "<TimerQueue pending=1 stale=1>",
    )
    assert (queue.next_due(), repr(queue)) == (2.0, "<TimerQueue pending=1 stale=0>")
    assert drain(queue) == [second]


@pytest.mark.parametrize("end", ["cancelled", "fired"])
def test_cancel_after_the_end_changes_nothing(end: str) -> None:
    queue = TimerQueue()
    timer = queue.push(1.0, noop)
    other = queue.push(2.0, noop)
    if end == "cancelled":
        queue.cancel(timer)
    else:
        queue.pop_due(1.0)
    before = (timer.state, len(queue), repr(queue))

    assert queue.cancel(timer) is False
    assert (timer.state, len(queue), repr(queue)) == before
    assert drain(queue) == [other]


def test_cancel_of_a_timer_from_another_queue_is_refused_and_changes_nothing() -> None:
    queue, other = TimerQueue(), TimerQueue()
    foreign = other.push(1.0, noop)

    with pytest.raises(ConfigurationError) as info:
        queue.cancel(foreign)

    assert str(info.value) == (
        "cannot cancel <TimerHandle due=1.000000 pending>: it belongs to another queue"
    )
    assert (foreign.state, len(other), len(queue)) == (TimerState.PENDING, 1, 0)


def test_timer_cancel_goes_through_the_queue_by_default() -> None:
    queue = TimerQueue()
    timer = queue.push(1.0, noop)

    timer.cancel()
    timer.cancel()

    assert (timer.state, len(queue)) == (TimerState.CANCELLED, 0)


def test_timer_cancel_calls_on_cancel_so_the_owner_can_lock_first() -> None:
    calls: list[Timer] = []

    def on_cancel(timer: Timer) -> None:
        calls.append(timer)
        queue.cancel(timer)

    queue = TimerQueue(on_cancel=on_cancel)
    timer = queue.push(1.0, noop)

    timer.cancel()

    assert (calls, timer.state, len(queue)) == ([timer], TimerState.CANCELLED, 0)


def test_clear_cancels_every_pending_timer_and_counts_them() -> None:
    queue = TimerQueue()
    fired, cancelled, pending = (queue.push(due, noop) for due in (1.0, 2.0, 3.0))
    queue.pop_due(1.0)
    queue.cancel(cancelled)

    assert queue.clear() == 1
    assert [t.state for t in (fired, cancelled, pending)] == [
        TimerState.FIRED,
        TimerState.CANCELLED,
        TimerState.CANCELLED,
    ]
    assert (len(queue), queue.next_due(), repr(queue)) == (
        0,
        None,
        "<TimerQueue pending=0 stale=0>",
    )
    assert queue.clear() == 0


def test_a_nan_due_time_is_refused_and_changes_nothing() -> None:
    queue = TimerQueue()

    with pytest.raises(ConfigurationError) as info:
        queue.push(math.nan, noop)

    assert str(info.value) == "invalid due=nan: must be a number, not NaN"
    assert repr(queue) == "<TimerQueue pending=0 stale=0>"


def test_infinite_due_times_order_like_any_other() -> None:
    queue = TimerQueue()
    order = named(queue, [math.inf, -math.inf, 0.0])

    assert [order[t] for t in drain(queue, math.inf)] == [1, 2, 0]


@pytest.mark.parametrize("compact_at", [0, -1])
def test_compact_at_below_one_is_refused(compact_at: int) -> None:
    with pytest.raises(ConfigurationError) as info:
        TimerQueue(compact_at=compact_at)

    assert str(info.value) == f"invalid compact_at={compact_at}: must be at least 1"


def test_the_default_compaction_threshold_is_64() -> None:
    assert COMPACT_AT == 64


def test_cancelled_timers_are_dropped_once_they_are_enough_and_the_majority() -> None:
    queue = TimerQueue(compact_at=4)
    timers = [queue.push(float(due), noop) for due in range(10)]
    seen = []

    for timer in timers[:9]:
        queue.cancel(timer)
        seen.append(repr(queue))

    # the 6th cancel makes 6 of 10 stored cancelled: a majority, so all go
    assert seen == [
        "<TimerQueue pending=9 stale=1>",
        "<TimerQueue pending=8 stale=2>",
        "<TimerQueue pending=7 stale=3>",
        "<TimerQueue pending=6 stale=4>",
        "<TimerQueue pending=5 stale=5>",
        "<TimerQueue pending=4 stale=0>",
        "<TimerQueue pending=3 stale=1>",
        "<TimerQueue pending=2 stale=2>",
        "<TimerQueue pending=1 stale=3>",
    ]
    assert drain(queue) == [timers[9]]


def test_callbacks_are_handed_back_not_called() -> None:
    calls: list[str] = []

    def record() -> None:
        calls.append("ran")

    queue = TimerQueue()
    timer = queue.push(0.0, record)

    assert queue.pop_due(0.0) is timer
    assert (timer.callback is record, calls) == (True, [])


# -- exhaustive: every cancel order keeps the order of the rest ---------------------------

DUES = [2.0, 1.0, 2.0, 0.0, 1.0]  # ties on purpose


def expected_order(dues: list[float], cancelled: set[int]) -> list[int]:
    return sorted((i for i in range(len(dues)) if i not in cancelled), key=lambda i: (dues[i], i))


@pytest.mark.parametrize("compact_at", [1, 2, 3, COMPACT_AT])
def test_every_cancel_order_leaves_the_rest_in_order(compact_at: int) -> None:
    for size in range(len(DUES) + 1):
        for cancelled in itertools.permutations(range(len(DUES)), size):
            queue = TimerQueue(compact_at=compact_at)
            timers = [queue.push(due, noop) for due in DUES]
            for index in cancelled:
                assert queue.cancel(timers[index]) is True

            assert len(queue) == len(DUES) - size
            taken = [timers.index(t) for t in drain(queue)]
            assert taken == expected_order(DUES, set(cancelled)), (cancelled, compact_at)


# -- Hypothesis ---------------------------------------------------------------------------


@given(
    dues=st.lists(st.integers(0, 5).map(float), max_size=40),
    cancel=st.data(),
    compact_at=st.integers(1, 8),
)
def test_stored_cancelled_timers_stay_bounded_under_cancelling(
    dues: list[float], cancel: st.DataObject, compact_at: int
) -> None:
    queue = TimerQueue(compact_at=compact_at)
    timers = [queue.push(due, noop) for due in dues]
    order = cancel.draw(st.permutations(range(len(dues))))
    doomed = order[: cancel.draw(st.integers(0, len(dues)))]

    for index in doomed:
        queue.cancel(timers[index])
        stale = _stale(queue)
        assert stale < compact_at or stale <= len(queue), repr(queue)

    assert [timers.index(t) for t in drain(queue)] == expected_order(dues, set(doomed))


def _stale(queue: TimerQueue) -> int:
    # The repr is the queue's public view of its stored cancelled timers.
    return int(repr(queue).rsplit("stale=", 1)[1].rstrip(">"))


class TimerQueueMachine(RuleBasedStateMachine):
    """Any mix of push, cancel, pop_due and clear agrees with a sorted list of pending timers."""

    def __init__(self) -> None:
        super().__init__()
        self.queue = TimerQueue(compact_at=3)
        self.timers: list[Timer] = []
        self.pending: list[tuple[float, int]] = []  # (due, push index), the model

    @rule(due=st.integers(-3, 3).map(float))
    def push(self, due: float) -> None:
        self.pending.append((due, len(self.timers)))
        self.timers.append(self.queue.push(due, noop))

    @precondition(lambda self: self.timers)
    @rule(data=st.data())
    def cancel(self, data: st.DataObject) -> None:
        index = data.draw(st.integers(0, len(self.timers) - 1))
        was_pending = any(i == index for _, i in self.pending)
        self.pending = [(due, i) for due, i in self.pending if i != index]

        assert self.queue.cancel(self.timers[index]) is was_pending

    @rule(now=st.integers(-4, 4).map(float))
    def pop_due(self, now: float) -> None:
        due_now = sorted(entry for entry in self.pending if entry[0] <= now)
        timer = self.queue.pop_due(now)

        if not due_now:
            assert timer is None
            return
        assert timer is self.timers[due_now[0][1]]
        assert timer.state is TimerState.FIRED
        self.pending.remove(due_now[0])

    @rule()
    def clear(self) -> None:
        assert self.queue.clear() == len(self.pending)
        self.pending = []

    @invariant()
    def len_counts_pending_timers(self) -> None:
        assert len(self.queue) == len(self.pending)

    @invariant()
    def next_due_is_the_earliest_pending(self) -> None:
        head = min(self.pending, default=None)
        assert self.queue.next_due() == (None if head is None else head[0])
        assert self.queue.peek() is (None if head is None else self.timers[head[1]])

    @invariant()
    def states_match_the_model(self) -> None:
        pending = {i for _, i in self.pending}
        assert [t.state is TimerState.PENDING for t in self.timers] == [
            i in pending for i in range(len(self.timers))
        ]


TestTimerQueueMachine = TimerQueueMachine.TestCase
