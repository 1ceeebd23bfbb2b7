"""MonotonicClock: real time, one timer thread, no polling."""

from __future__ import annotations

import logging
import math
import threading
import time
from collections.abc import Callable, Iterator

import pytest

from p2p0mq_actors.core.errors import ConfigurationError
from p2p0mq_actors.runtime.clock import THREAD_NAME, MonotonicClock

WAIT = 5.0  # seconds: the longest any test waits for the timer thread


@pytest.fixture
def clock() -> Iterator[MonotonicClock]:
    clock = MonotonicClock()
    yield clock
    clock.close()


def timer_threads() -> list[threading.Thread]:
    return [t for t in threading.enumerate() if t.name == THREAD_NAME]


class Recorder:
    """Callbacks that note their name and thread; ``done`` is set by the last expected one."""

    def __init__(self, expected: int) -> None:
        self.calls: list[str] = []
        self.threads: set[str] = set()
        self.done = threading.Event()
        self._expected = expected

    def __call__(self, name: str) -> Callable[[], None]:
        def callback() -> None:
            self.calls.append(name)
            self.threads.add(threading.current_thread().name)
            if len(self.calls) == self._expected:
                self.done.set()

        return callback

    def wait(self) -> None:
        assert self.done.wait(WAIT), f"only {self.calls} ran within {WAIT} s"


def test_now_is_the_monotonic_clock(clock: MonotonicClock) -> None:
    before = time.monotonic()
    now = clock.now()
    after = time.monotonic()

    assert before <= now <= after


def test_callbacks_run_on_the_timer_thread_in_due_time_order(clock: MonotonicClock) -> None:
    record = Recorder(expected=3)
    clock.call_later(0.03, record("third"))
    clock.call_later(0.01, record("first"))
    clock.call_later(0.02, record("second"))

    record.wait()

    assert record.calls == ["first", "second", "third"]
    assert record.threads == {THREAD_NAME}


def test_callbacks_due_at_the_same_time_run_in_call_order(clock: MonotonicClock) -> None:
    record = Recorder(expected=4)
    clock.call_later(0.05, record("late"))
    for name in ("a", "b", "c"):
        clock.call_later(0, record(name))

    record.wait()

    assert record.calls == ["a", "b", "c", "late"]


def test_a_negative_delay_runs_as_soon_as_possible(clock: MonotonicClock) -> None:
    record = Recorder(expected=1)
    clock.call_later(-3, record("now"))

    record.wait()

    assert record.calls == ["now"]


def test_a_cancelled_callback_never_runs(clock: MonotonicClock) -> None:
    record = Recorder(expected=2)
    handle = clock.call_later(0.02, record("cancelled"))
    handle.cancel()
    clock.call_later(0.02, record("kept"))
    clock.call_later(0.03, record("last"))

    record.wait()

    assert record.calls == ["kept", "last"]
    assert repr(handle).endswith(" cancelled>")
    assert clock.pending == 0


def test_cancel_after_the_callback_ran_changes_nothing(clock: MonotonicClock) -> None:
    record = Recorder(expected=1)
    handle = clock.call_later(0, record("ran"))
    record.wait()

    handle.cancel()
    handle.cancel()

    assert record.calls == ["ran"]
    assert repr(handle).endswith(" fired>")


def test_many_cancellations_keep_the_clock_consistent(clock: MonotonicClock) -> None:
    record = Recorder(expected=1)
    handles = [clock.call_later(60, record(f"never-{i}")) for i in range(500)]
    clock.call_later(0.01, record("kept"))
    for handle in handles:
        handle.cancel()

    record.wait()

    assert record.calls == ["kept"]
    assert clock.pending == 0


@pytest.mark.parametrize("error", [RuntimeError("boom"), SystemExit(3)])
def test_a_callback_that_raises_is_logged_and_the_clock_goes_on(
    clock: MonotonicClock, caplog: pytest.LogCaptureFixture, error: BaseException
) -> None:
    """SystemExit used to end the timer thread silently: every later timer
    of the node (retries, sweeps, request timeouts) never fired."""

    def boom() -> None:
        raise error

    record = Recorder(expected=1)
    caplog.set_level(logging.ERROR, logger="p2p0mq_actors.runtime.clock")
    clock.call_later(0, boom)
    clock.call_later(0.01, record("after"))

    record.wait()

    assert record.calls == ["after"]
    [entry] = caplog.records
    assert entry.name == "p2p0mq_actors.runtime.clock"
    assert entry.getMessage() == f"timer callback {boom!r} raised; the clock goes on"
    assert entry.exc_info is not None
    assert entry.exc_info[1] is error


def test_a_delay_of_centuries_neither_runs_nor_breaks_the_timer_thread() -> None:
    clock = MonotonicClock()
    cond = RecordingCondition()
    clock._cond = cond  # white box: act only once the thread waits for the far timer
    record = Recorder(expected=1)

    clock.call_later(1e12, record("centuries"))
    assert cond.waiting.wait(WAIT)
    clock.call_later(0.01, record("soon"))
    record.wait()
    dropped = clock.close()

    assert record.calls == ["soon"]
    assert cond.timeouts[0] == threading.TIMEOUT_MAX
    assert dropped == 1


def test_a_callback_can_schedule_another(clock: MonotonicClock) -> None:
    record = Recorder(expected=2)

    def first() -> None:
        record("first")()
        clock.call_later(0.01, record("second"))

    clock.call_later(0, first)
    record.wait()

    assert record.calls == ["first", "second"]


def test_the_timer_thread_starts_only_with_the_first_call_later() -> None:
    clock = MonotonicClock()
    assert timer_threads() == []
    assert repr(clock) == "<MonotonicClock idle pending=0>"

    clock.call_later(60, lambda: None)

    assert [t.daemon for t in timer_threads()] == [True]
    assert repr(clock) == "<MonotonicClock running pending=1>"
    assert clock.close() == 1


def test_close_drops_pending_callbacks_and_joins_the_thread() -> None:
    clock = MonotonicClock()
    record = Recorder(expected=1)
    handles = [clock.call_later(60, record(f"late-{i}")) for i in range(3)]
    handles[0].cancel()

    dropped = clock.close()

    assert dropped == 2
    assert timer_threads() == []
    assert record.calls == []
    assert clock.pending == 0
    assert repr(clock) == "<MonotonicClock closed pending=0>"
    assert [repr(h).rsplit(" ", 1)[1] for h in handles] == ["cancelled>"] * 3


def test_close_is_idempotent() -> None:
    clock = MonotonicClock()
    clock.call_later(60, lambda: None)

    assert (clock.close(), clock.close()) == (1, 0)
    assert clock.closed
    assert timer_threads() == []


def test_close_without_any_timer_starts_nothing() -> None:
    clock = MonotonicClock()

    assert clock.close() == 0
    assert timer_threads() == []


def test_close_waits_for_the_running_callback_to_finish() -> None:
    clock = MonotonicClock()
    started = threading.Event()
    release = threading.Event()
    finished = threading.Event()

    def slow() -> None:
        started.set()
        release.wait(WAIT)
        finished.set()

    clock.call_later(0, slow)
    assert started.wait(WAIT)
    closer = threading.Thread(target=clock.close, name="closer")
    closer.start()
    release.set()
    closer.join(WAIT)

    assert finished.is_set()
    assert not closer.is_alive()
    assert timer_threads() == []


def test_a_callback_may_close_its_own_clock() -> None:
    clock = MonotonicClock()
    record = Recorder(expected=1)

    def close_it() -> None:
        record(f"dropped {clock.close()}")()

    clock.call_later(60, lambda: None)
    [thread] = timer_threads()
    clock.call_later(0, close_it)
    record.wait()
    thread.join(WAIT)

    assert record.calls == ["dropped 1"]
    assert not thread.is_alive()


def test_call_later_after_close_is_refused_with_a_clear_message() -> None:
    clock = MonotonicClock()
    clock.close()

    with pytest.raises(ConfigurationError) as info:
        clock.call_later(1, print)

    assert str(info.value) == (
        "call_later(1, <built-in function print>) on a closed MonotonicClock: "
        "create a new clock, or close it only after its last use"
    )


def test_the_clock_is_a_context_manager_that_closes() -> None:
    with MonotonicClock() as clock:
        clock.call_later(60, lambda: None)

    assert clock.closed
    assert timer_threads() == []


@pytest.mark.parametrize(
    ("delay", "shown"), [(math.nan, "nan"), (math.inf, "inf"), ("1", "'1'"), (None, "None")]
)
def test_a_delay_that_is_not_a_finite_number_is_refused(
    clock: MonotonicClock, delay: object, shown: str
) -> None:
    with pytest.raises(ConfigurationError) as info:
        clock.call_later(delay, lambda: None)  # type: ignore[arg-type]

    assert str(info.value) == f"invalid delay={shown}: must be a finite number of seconds"
    assert timer_threads() == []


def test_a_callback_that_is_not_callable_is_refused(clock: MonotonicClock) -> None:
    with pytest.raises(ConfigurationError) as info:
        clock.call_later(1, "tick")  # type: ignore[arg-type]

    assert str(info.value) == "invalid callback='tick': must be callable"


class RecordingCondition(threading.Condition):
    """A condition that reports every wait timeout, so a test can see there is no polling."""

    def __init__(self) -> None:
        super().__init__(threading.Lock())
        self.timeouts: list[float | None] = []
        self.waiting = threading.Event()

    def wait(self, timeout: float | None = None) -> bool:
        self.timeouts.append(timeout)
        self.waiting.set()
        return super().wait(timeout)


def test_the_timer_thread_sleeps_until_the_due_time_or_indefinitely_when_idle() -> None:
    clock = MonotonicClock()
    cond = RecordingCondition()
    clock._cond = cond  # white box: observe how the timer thread waits
    record = Recorder(expected=1)

    clock.call_later(0, record("quick"))
    record.wait()
    assert cond.waiting.wait(WAIT)
    idle = list(cond.timeouts)
    cond.waiting.clear()
    clock.call_later(60, lambda: None)
    assert cond.waiting.wait(WAIT)
    far = cond.timeouts[-1]
    clock.close()

    assert idle == [None]
    assert far is not None and 59 < far <= 60


def test_a_delay_as_an_int_too_large_for_a_float_is_refused(clock: MonotonicClock) -> None:
    with pytest.raises(ConfigurationError, match="finite"):
        clock.call_later(10**400, lambda: None)
