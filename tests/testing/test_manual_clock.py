"""ManualClock: time moves only when the test moves it; callbacks run in the test's thread."""

from __future__ import annotations

import math
import threading
from collections.abc import Callable

import pytest

from p2p0mq_actors.core.errors import ConfigurationError
from p2p0mq_actors.core.ports import Clock
from p2p0mq_actors.testing.clock import ManualClock


class Log:
    """Callbacks that note their name and the time they saw."""

    def __init__(self, clock: ManualClock) -> None:
        self.clock = clock
        self.calls: list[tuple[str, float]] = []

    def __call__(self, name: str) -> Callable[[], None]:
        return lambda: self.calls.append((name, self.clock.now()))


def test_it_is_a_clock() -> None:
    clock: Clock = ManualClock()

    assert clock.now() == 1000.0


def test_time_stands_still_until_moved() -> None:
    clock = ManualClock(start=5)

    assert (clock.now(), clock.now()) == (5.0, 5.0)
    assert repr(clock) == "<ManualClock now=5.000000 pending=0>"


def test_call_later_never_runs_the_callback_by_itself() -> None:
    clock = ManualClock()
    log = Log(clock)

    clock.call_later(0, log("zero"))

    assert log.calls == []
    assert clock.pending == 1


def test_advance_runs_due_callbacks_in_due_order_at_their_due_time() -> None:
    clock = ManualClock()
    log = Log(clock)
    clock.call_later(3, log("c"))
    clock.call_later(1, log("a"))
    clock.call_later(2, log("b"))
    clock.call_later(10, log("later"))

    ran = clock.advance(5)

    assert ran == 3
    assert log.calls == [("a", 1001.0), ("b", 1002.0), ("c", 1003.0)]
    assert clock.now() == 1005.0
    assert clock.pending == 1
    assert repr(clock) == "<ManualClock now=1005.000000 pending=1>"


def test_callbacks_due_at_the_same_time_run_in_call_order() -> None:
    clock = ManualClock()
    log = Log(clock)
    for name in "abcde":
        clock.call_later(1, log(name))

    clock.advance(1)

    assert [name for name, _ in log.calls] == list("abcde")


def test_a_callback_due_exactly_at_the_end_of_the_window_runs() -> None:
    clock = ManualClock()
    log = Log(clock)
    clock.call_later(0.5, log("edge"))

    assert (clock.advance(0.5), log.calls) == (1, [("edge", 1000.5)])


def test_advance_zero_runs_zero_delay_and_negative_delay_callbacks() -> None:
    clock = ManualClock()
    log = Log(clock)
    clock.call_later(0, log("zero"))
    clock.call_later(-2, log("negative"))

    assert clock.advance(0) == 2
    assert log.calls == [("zero", 1000.0), ("negative", 1000.0)]


def test_callbacks_scheduled_by_callbacks_run_if_due_within_the_window() -> None:
    clock = ManualClock()
    log = Log(clock)

    def tick() -> None:
        log("tick")()
        clock.call_later(1, tick)

    clock.call_later(1, tick)
    ran = clock.advance(3.5)

    assert ran == 3
    assert log.calls == [("tick", 1001.0), ("tick", 1002.0), ("tick", 1003.0)]
    assert clock.pending == 1
    assert clock.now() == 1003.5


def test_callbacks_run_in_the_thread_that_advances() -> None:
    clock = ManualClock()
    threads: list[threading.Thread] = []
    clock.call_later(1, lambda: threads.append(threading.current_thread()))

    clock.advance(1)

    assert threads == [threading.current_thread()]


def test_set_moves_to_an_absolute_time_and_runs_what_is_due() -> None:
    clock = ManualClock()
    log = Log(clock)
    clock.call_later(1, log("a"))
    clock.call_later(3, log("b"))

    assert clock.set(1002.0) == 1
    assert (clock.now(), log.calls, clock.pending) == (1002.0, [("a", 1001.0)], 1)
    assert clock.set(1002.0) == 0


def test_a_cancelled_callback_never_runs() -> None:
    clock = ManualClock()
    log = Log(clock)
    handle = clock.call_later(1, log("cancelled"))
    clock.call_later(2, log("kept"))

    handle.cancel()

    assert clock.pending == 1
    assert repr(handle) == "<TimerHandle due=1001.000000 cancelled>"
    assert clock.advance(5) == 1
    assert log.calls == [("kept", 1002.0)]


def test_cancel_after_the_callback_ran_changes_nothing() -> None:
    clock = ManualClock()
    handle = clock.call_later(1, lambda: None)
    clock.advance(1)

    handle.cancel()

    assert clock.pending == 0
    assert repr(handle) == "<TimerHandle due=1001.000000 fired>"


def test_a_callback_may_cancel_a_later_one_in_the_same_window() -> None:
    clock = ManualClock()
    log = Log(clock)
    later = clock.call_later(2, log("later"))
    clock.call_later(1, later.cancel)

    assert clock.advance(3) == 1
    assert log.calls == []


def test_a_callback_that_raises_stops_advance_and_leaves_the_rest_pending() -> None:
    clock = ManualClock()
    log = Log(clock)

    def boom() -> None:
        raise RuntimeError("boom")

    clock.call_later(1, log("before"))
    clock.call_later(2, boom)
    clock.call_later(3, log("after"))

    with pytest.raises(RuntimeError) as info:
        clock.advance(5)

    assert repr(info.value) == "RuntimeError('boom')"
    assert (clock.now(), log.calls, clock.pending) == (1002.0, [("before", 1001.0)], 1)
    assert clock.advance(1) == 1
    assert log.calls == [("before", 1001.0), ("after", 1003.0)]


def test_other_threads_may_read_the_time_and_schedule() -> None:
    clock = ManualClock()
    log = Log(clock)
    seen: list[float] = []

    def actor_thread() -> None:
        seen.append(clock.now())
        clock.call_later(1, log("from-thread"))

    thread = threading.Thread(target=actor_thread, name="fake-actor")
    thread.start()
    thread.join(5)
    clock.advance(1)

    assert seen == [1000.0]
    assert log.calls == [("from-thread", 1001.0)]


@pytest.mark.parametrize(
    ("move", "text"),
    [
        (lambda c: c.advance(-1), "invalid seconds=-1: a monotonic clock cannot go back"),
        (lambda c: c.advance(math.nan), "invalid seconds=nan: must be a finite number of seconds"),
        (lambda c: c.advance(math.inf), "invalid seconds=inf: must be a finite number of seconds"),
        (
            lambda c: c.set(999.5),
            "invalid t=999.5: earlier than now=1000.0; a monotonic clock cannot go back",
        ),
        (lambda c: c.set("1"), "invalid t='1': must be a finite number of seconds"),
        (
            lambda c: c.call_later(math.nan, print),
            "invalid delay=nan: must be a finite number of seconds",
        ),
        (lambda c: c.call_later(1, "tick"), "invalid callback='tick': must be callable"),
    ],
)
def test_bad_arguments_are_refused_and_change_nothing(
    move: Callable[[ManualClock], object], text: str
) -> None:
    clock = ManualClock()

    with pytest.raises(ConfigurationError) as info:
        move(clock)

    assert str(info.value) == text
    assert (clock.now(), clock.pending) == (1000.0, 0)


def test_the_start_time_must_be_a_finite_number() -> None:
    with pytest.raises(ConfigurationError) as info:
        ManualClock(start=math.inf)

    assert str(info.value) == "invalid start=inf: must be a finite number of seconds"


def test_wait_for_pending_returns_once_another_thread_has_scheduled_enough() -> None:
    clock = ManualClock()
    go = threading.Event()

    def schedule() -> None:
        assert go.wait(5)
        clock.call_later(0.05, lambda: None)
        clock.call_later(0.10, lambda: None)

    thread = threading.Thread(target=schedule)
    thread.start()
    go.set()
    clock.wait_for_pending(2, timeout=5)
    thread.join(5)
    assert clock.pending == 2 and clock.advance(0.1) == 2


def test_wait_for_pending_says_how_many_are_pending_when_it_times_out() -> None:
    clock = ManualClock()
    clock.call_later(1, lambda: None)
    with pytest.raises(TimeoutError, match=r"1 callbacks pending after 0\.01 s, not 2"):
        clock.wait_for_pending(2, timeout=0.01)


def test_advances_from_several_threads_take_turns_and_lose_no_time() -> None:
    """Two advances at once used to read the same start: time was lost, and
    callbacks ran at once in two threads, out of order."""
    clock = ManualClock(start=0.0)
    seen: list[tuple[float, float]] = []
    for i in range(1, 2001):
        clock.call_later(i * 0.5, lambda due=i * 0.5: seen.append((due, clock.now())))
    go = threading.Barrier(4)

    def move() -> None:
        go.wait(5)
        for _ in range(250):
            clock.advance(1.0)

    threads = [threading.Thread(target=move) for _ in range(4)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(30)
    assert clock.now() == 1000.0
    assert seen == [(due, due) for due in sorted(due for due, _ in seen)] and len(seen) == 2000


@pytest.mark.parametrize("move", ["advance", "set", "call_later"])
def test_an_int_too_large_for_a_float_or_a_move_to_infinity_is_refused(move: str) -> None:
    clock = ManualClock()
    with pytest.raises(ConfigurationError, match="finite"):
        if move == "advance":
            clock.advance(10**400)
        elif move == "set":
            clock.set(10**400)
        else:
            clock.call_later(10**400, lambda: None)
    with pytest.raises(ConfigurationError, match="finite"):
        clock.advance(1.7e308)
        clock.advance(1.7e308)  # to infinity
    assert math.isfinite(clock.now())
